"""The gateway's hit-path memos give the answers it would compute without them.

Bearer tokens are remembered per Authorization value once verified: an API key while the
configuration still holds it, a JWT with its time window checked on every use; denials are
never remembered. Routes are remembered per target; ``charge`` and ``RateLimiter.take`` are
``admit`` and ``acquire`` without their result objects, and stay exact.
"""

from __future__ import annotations

import itertools
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeproxy import gateway as gateway_module
from edgeproxy.gateway import NS, Allow, Deny, Gateway, Identity, RateLimiter, Route, hash_key
from edgeproxy.gateway_config import parse_gateway

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW_NS = NOW * NS
VIEWER_KEY = "fc_live_viewer_0123456789"
SMALL_KEY = "fc_live_small_01234567890"  # the 100-per-minute tier


def gateway(**jwt_overrides: Any) -> Gateway:
    return Gateway(parse_gateway({
        "anonymous_tier": "anonymous",
        "tiers": {"anonymous": 100, "small": 100, "starter": 1000},
        "routes": [{"prefix": "/api/v3", "public": True}, {"prefix": "/api/v3/admin", "min_role": "admin"},
                   {"prefix": "/graphql", "min_role": "viewer"}],
        "keys": [{"id": "viewer", "key": VIEWER_KEY, "role": "viewer", "tier": "starter"},
                 {"id": "small", "key": SMALL_KEY, "role": "viewer", "tier": "small"}],
        "jwt": {"hs256_secret": SECRET, "audience": "flowcms", "tier": "starter", **jwt_overrides},
    }, source="test.toml"))


def token(**claims: Any) -> bytes:
    base = {"sub": "user-42", "role": "editor", "aud": "flowcms", "exp": NOW + 60}
    base.update(claims)
    return b"Bearer " + jwt.encode(base, SECRET, algorithm="HS256").encode()


def route(gw: Gateway, target: bytes = b"/api/v3/contents") -> Route:
    found = gw.route_for(target)
    assert found is not None
    return found


def auth(gw: Gateway, authorization: bytes | None, *, now_ns: int = NOW_NS, target: bytes = b"/api/v3/contents",
         method: bytes = b"GET") -> Identity | Deny:
    return gw.authenticate(route(gw, target), method, authorization, "192.0.2.1", now_ns)


def unauthenticated(result: object, detail: str) -> None:
    assert isinstance(result, Deny), result
    assert (result.status, result.code) == (401, "UNAUTHENTICATED")
    assert detail in result.message


# -- bearer tokens ------------------------------------------------------------------------------------

def test_api_key_is_hashed_once_per_authorization_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remembered key skips the hashing and answers the same identity (the configured one)."""
    gw = gateway()
    hashed: list[bytes] = []

    def counting(key: str | bytes) -> str:
        hashed.append(key if isinstance(key, bytes) else key.encode())
        return hash_key(key)

    monkeypatch.setattr(gateway_module, "hash_key", counting)
    first = auth(gw, b"Bearer " + VIEWER_KEY.encode())
    again = [auth(gw, b"Bearer " + VIEWER_KEY.encode()) for _ in range(3)]
    assert hashed == [VIEWER_KEY.encode()]
    assert all(found is first for found in again)
    assert first is gw.keys[hash_key(VIEWER_KEY)]
    other_form = auth(gw, b"bearer  " + VIEWER_KEY.encode() + b" ")  # another value: verified on its own
    assert other_form is first
    assert len(hashed) == 2


def test_unknown_key_is_denied_every_time_and_never_remembered() -> None:
    """A denial is not remembered: the memo holds only credentials that verified."""
    gw = gateway()
    for _ in range(3):
        unauthenticated(auth(gw, b"Bearer fc_live_unknown_0123456789"), "not valid")
    unauthenticated(auth(gw, b"Basic dXNlcjpwYXNz"), "Bearer")
    unauthenticated(auth(gw, token(aud="elsewhere")), "another audience")
    assert not gw._tokens
    assert gw.statistics().unauthenticated == 5


def test_revoked_key_is_denied_although_remembered() -> None:
    """``keys`` is the truth: a remembered key that is no longer configured is denied and forgotten."""
    gw = gateway()
    authorization = b"Bearer " + VIEWER_KEY.encode()
    assert isinstance(auth(gw, authorization), Identity)
    assert authorization in gw._tokens
    del gw.keys[hash_key(VIEWER_KEY)]
    unauthenticated(auth(gw, authorization), "not valid")
    assert authorization not in gw._tokens
    unauthenticated(auth(gw, authorization), "not valid")


def test_remembered_jwt_is_denied_once_expired() -> None:
    """RFC 7519 §4.1.4: exp is checked against now on every use, remembered or not (leeway included)."""
    gw = gateway(leeway_s=5)
    authorization = token(exp=NOW + 60)
    assert isinstance(auth(gw, authorization), Identity)
    assert authorization in gw._tokens
    assert isinstance(auth(gw, authorization, now_ns=(NOW + 64) * NS), Identity)  # inside the leeway
    unauthenticated(auth(gw, authorization, now_ns=(NOW + 65) * NS), "expired")
    unauthenticated(auth(gw, authorization, now_ns=(NOW + 3600) * NS), "expired")
    assert authorization in gw._tokens  # still verified; only its time has passed


def test_remembered_jwt_waits_for_nbf() -> None:
    """RFC 7519 §4.1.5: a token remembered before its nbf is refused until then, then accepted."""
    gw = gateway()
    authorization = token(nbf=NOW + 10, exp=NOW + 60)
    unauthenticated(auth(gw, authorization), "not valid yet")
    assert authorization in gw._tokens  # signature and claims verified: only the time was wrong
    found = auth(gw, authorization, now_ns=(NOW + 10) * NS)
    assert isinstance(found, Identity)
    assert (found.subject, found.bucket) == ("user-42", "jwt:user-42")


def test_remembered_credential_still_needs_the_routes_role() -> None:
    """The memo answers who is asking; each route's role check still runs (403 on a stricter route)."""
    gw = gateway()
    authorization = b"Bearer " + VIEWER_KEY.encode()
    assert isinstance(auth(gw, authorization), Identity)
    denied = auth(gw, authorization, target=b"/api/v3/admin/stats")
    assert isinstance(denied, Deny)
    assert denied.status == 403
    assert gw.statistics().forbidden == 1


def test_memo_is_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """API keys and JWTs share the bounded memo; a forgotten one is verified again."""
    monkeypatch.setattr(gateway_module, "TOKEN_CACHE_SIZE", 2)
    gw = gateway()
    values = [b"Bearer " + VIEWER_KEY.encode(), token(sub="a"), b"Bearer " + SMALL_KEY.encode()]
    for value in values:
        assert isinstance(auth(gw, value), Identity)
    assert list(gw._tokens) == values[1:]
    assert isinstance(auth(gw, values[0]), Identity)
    assert list(gw._tokens) == [values[2], values[0]]


# -- routes ---------------------------------------------------------------------------------------------

@given(st.lists(st.sampled_from([b"/api/v3", b"/api/v3/", b"/api/v3/admin/x?q=1", b"/%61pi/v3/admin", b"/api/v3x",
                                 b"/graphql?query=%7Bx%7D", b"/api/./v3/admin", b"//api/v3", b"http://h/api/v3",
                                 b"/blog/", b"/api/v3/admin/../contents"]), max_size=12))
def test_route_memo_answers_as_the_match(targets: list[bytes]) -> None:
    """Remembered or not, a target gets the route a fresh gateway computes for it."""
    gw = gateway()
    for target in targets:
        assert gw.route_for(target) == gateway().route_for(target)


def test_route_memo_is_bounded_and_skips_long_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "ROUTE_MEMO_SIZE", 2)
    gw = gateway()
    for n in range(5):
        assert gw.route_for(b"/api/v3/contents/%d" % n) == route(gw)
        assert len(gw._routes) <= 2
    long = b"/api/v3/contents?" + b"q" * gateway_module.ROUTE_MEMO_TARGET_BYTES
    assert gw.route_for(long) == route(gw)
    assert long not in gw._routes


# -- rate limits ------------------------------------------------------------------------------------------

arrivals = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([100, 101, 1000]),
                              st.integers(0, 2 * NS)), max_size=300)


@given(arrivals)
def test_take_is_acquire_without_the_rate_limit(steps: list[tuple[str, int, int]]) -> None:
    """Same admissions, remaining counts and reset seconds, and the same state afterwards."""
    taking, acquiring = RateLimiter(), RateLimiter()
    now = NOW_NS
    for bucket, per_minute, step in steps:
        now += step // 50
        taken = taking.take(bucket, per_minute, now)
        limit = acquiring.acquire(bucket, per_minute, now)
        assert (taken is not None) == limit.allowed
        if taken is not None:
            assert taken == (limit.remaining, limit.reset_s)
    assert {k: (b.tat, b.per_minute) for k, b in taking._buckets.items()} == {
        k: (b.tat, b.per_minute) for k, b in acquiring._buckets.items()}


@given(st.lists(st.integers(0, NS), min_size=1, max_size=250))
def test_charge_is_admit_without_the_allow(gaps: list[int]) -> None:
    """``charge`` gives ``admit``'s X-RateLimit fields and the same 429 (fields, Retry-After, counts)."""
    charging, admitting = gateway(), gateway()
    small = auth(charging, b"Bearer " + SMALL_KEY.encode())
    assert isinstance(small, Identity)
    now = NOW_NS
    for gap in gaps:
        now += gap // 100
        charged = charging.charge(small, now)
        admitted = admitting.admit(small, now)
        if isinstance(admitted, Allow):
            assert charged == admitted.headers
        else:
            assert charged == admitted
    assert (charging.statistics().allowed, charging.statistics().limited) == (
        admitting.statistics().allowed, admitting.statistics().limited)


def test_charge_is_exact_at_the_limit() -> None:
    """A 100-per-minute bucket admits exactly 100 at one instant, counting down to 0, then 429s."""
    gw = gateway()
    small = auth(gw, b"Bearer " + SMALL_KEY.encode())
    assert isinstance(small, Identity)
    remaining = []
    for _ in range(100):
        fields = gw.charge(small, NOW_NS)
        assert not isinstance(fields, Deny)
        assert dict(fields)[b"x-ratelimit-limit"] == b"100"
        remaining.append(int(dict(fields)[b"x-ratelimit-remaining"]))
    assert remaining == list(range(99, -1, -1))
    over = gw.charge(small, NOW_NS)
    assert isinstance(over, Deny)
    assert (over.status, dict(over.headers)[b"retry-after"]) == (429, b"1")
    assert isinstance(gw.charge(small, NOW_NS + 600_000_000), tuple)  # one interval later: one more


# -- the HTTP/1.1 hit lane's calls ----------------------------------------------------------------------

def test_anonymous_identity_is_remembered_per_address() -> None:
    """The same address, the same identity (and bucket); another address, its own; a full memo starts again."""
    gw = gateway()
    first = gw.authenticate(route(gw), b"GET", None, "192.0.2.1", NOW_NS)
    assert isinstance(first, Identity)
    assert gw.authenticate(route(gw), b"GET", None, "192.0.2.1", NOW_NS) is first
    other = gw.authenticate(route(gw), b"GET", None, "2001:db8::1", NOW_NS)
    assert isinstance(other, Identity)
    assert (first.bucket, other.bucket, first.per_minute) == ("ip:192.0.2.1", "ip:2001:db8::/64", 100)
    assert first == Identity(None, None, None, "ip:192.0.2.1", 100, ())
    for n in range(gateway_module.ANONYMOUS_MEMO_SIZE + 1):
        gw.authenticate(route(gw), b"GET", None, f"198.51.{n // 256}.{n % 256}", NOW_NS)
    assert len(gw._anonymous) <= gateway_module.ANONYMOUS_MEMO_SIZE
    assert gw.authenticate(route(gw), b"GET", None, "192.0.2.1", NOW_NS) == first


def test_identity_vary_values_keep_the_first_line_normalised() -> None:
    identity = Identity("s", None, None, "key:x", 100, ((b"x-flowcms-subject", b" a ,  b "),
                                                         (b"x-flowcms-subject", b"c")))
    assert identity.vary_values == {b"x-flowcms-subject": b"a, b"}
    assert identity == Identity("s", None, None, "key:x", 100, identity.fields)  # vary_values is not compared


@given(st.lists(st.integers(min_value=0, max_value=2_000_000_000), min_size=1, max_size=150))
def test_charge_counts_are_charge_as_numbers(steps: list[int]) -> None:
    """Two gateways, the same requests: charge_counts gives charge's X-RateLimit numbers and the same 429s."""
    numbers, fields = gateway(), gateway()
    identity = numbers.keys[hash_key(SMALL_KEY)]
    now = NOW_NS
    for step in steps:
        now += step
        counted = numbers.charge_counts(identity, now)
        charged = fields.charge(fields.keys[hash_key(SMALL_KEY)], now)
        if isinstance(charged, Deny):
            assert counted == charged
        else:
            assert isinstance(counted, tuple)
            assert charged == ((b"x-ratelimit-limit", b"100"), (b"x-ratelimit-remaining", b"%d" % counted[0]),
                               (b"x-ratelimit-reset", b"%d" % counted[1]))
    assert numbers.statistics() == fields.statistics()


# -- the hit lanes' one-call check --------------------------------------------------------------------

METHOD_LIMITED = Gateway(parse_gateway({
    "anonymous_tier": "starter",
    "tiers": {"starter": 1000},
    "routes": [{"prefix": "/api/v3", "public": True, "methods": ["GET", "HEAD", "POST"]},
               {"prefix": "/api/v3/admin", "min_role": "admin", "methods": ["POST"]},
               {"prefix": "/graphql", "public": True, "post_reads": True, "min_role": "editor",
                "methods": ["GET", "POST", "OPTIONS"]}],
    "keys": [{"id": "viewer", "key": VIEWER_KEY, "role": "viewer", "tier": "starter"},
             {"id": "admin", "key": SMALL_KEY, "role": "admin", "tier": "starter"}],
    "jwt": {"hs256_secret": SECRET, "audience": "flowcms", "tier": "starter"},
}, source="test.toml"))


def test_remembered_reader_is_authenticate_or_none() -> None:
    """``remembered_reader`` answers only what ``route_for`` and ``authenticate`` would (the same
    identity object), and for a remembered key allowed there it does answer: the lanes' short cut is
    taken, and never admits what the full check denies. Every combination, checked."""
    keyed = (b"Bearer " + VIEWER_KEY.encode(), b"Bearer " + SMALL_KEY.encode())
    for target, method, authorization, limited, seen, revoked in itertools.product(
            [b"/api/v3/contents", b"/api/v3/admin/publish", b"/graphql", b"/elsewhere"],
            [b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS"], [*keyed, b"Bearer fc_live_nobody", token(), b"Basic eDp5"],
            [False, True], [False, True], [False, True]):
        gw = METHOD_LIMITED if limited else gateway()
        gw._tokens.clear()
        gw._routes.clear()
        keys = dict(gw.keys)
        try:
            found_route = gw.route_for(target) if seen else None
            if found_route is not None:
                for warm in (b"GET", b"POST"):  # remembers a good key (past the route's method check)
                    gw.authenticate(found_route, warm, authorization, "192.0.2.1", NOW_NS)
            if revoked:
                gw.keys.pop(hash_key(VIEWER_KEY), None)  # after it was remembered
            quick = gw.remembered_reader(target, method, authorization)
            full = gw.authenticate(found_route, method, authorization, "192.0.2.1", NOW_NS) if found_route else None
            case = (target, method, authorization[:20], limited, seen, revoked)
            if quick is not None:
                assert quick is full, case
            if found_route is not None and isinstance(full, Identity) and authorization in keyed:
                assert quick is full, case  # the short cut is taken where it can be
            if not seen or authorization not in keyed:
                assert quick is None, case  # nothing remembered yet, a JWT, an unknown key or another scheme
        finally:
            gw.keys.clear()
            gw.keys.update(keys)
