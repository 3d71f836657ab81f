"""edgeproxy.policy: RFC 9111 decisions with explicit times, drawn from the RFC text."""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from pathlib import Path

import pytest

from edgeproxy import policy
from edgeproxy.headers import CacheDirectives, ETag, format_http_date
from edgeproxy.policy import (
    Fetch,
    GatewayTimeout,
    Pass,
    Revalidate,
    Serve,
    ServeStale,
    Stored,
    can_serve_stale_on_error,
    can_update_from_304,
    choose,
    conditional_headers,
    current_age,
    effective_directives,
    freshness_lifetime,
    invalidated_by,
    invalidation_targets,
    is_fresh,
    is_storable,
    make_stored,
    mark_stale,
    not_modified,
    request_directives,
    serve_headers,
    strip_for_client,
    update_from_304,
    vary_matches,
)

T0 = 1_700_000_000.0
DATE = format_http_date(T0)
Headers = list[tuple[bytes, bytes]]


def stored(*fields: tuple[bytes, bytes], status: int = 200, request: Headers | None = None,
           at: float = T0, date: float | None = T0) -> Stored:
    """A response received at ``at`` (request sent at the same instant) with a Date of ``date``."""
    headers = [(b"date", format_http_date(date))] if date is not None else []
    return make_stored(b"GET", request or [], status, headers + list(fields), at, at)


def cc(value: bytes) -> tuple[bytes, bytes]:
    return (b"cache-control", value)


def swr(*, age: float, ttl: float) -> ServeStale:
    return ServeStale(age=age, ttl=ttl, revalidate_in_background=True, reason="swr")


ETAGGED = (b"etag", b'"v1"')
INM_V1 = [(b"if-none-match", b'"v1"')]


# --- layering --------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["edgeproxy/headers.py", "edgeproxy/policy.py", "edgeproxy/variants.py"])
def test_module_is_pure(module: str) -> None:
    """STYLE.md 2.1: pure-core modules import no I/O, clock, trio or logging."""
    tree = ast.parse((Path(__file__).resolve().parents[3] / module).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = {"trio", "socket", "time", "os", "logging", "sqlite3", "pathlib", "pipeline"}
    assert not {name for name in names if name.split(".")[0] in forbidden}


# --- directive sources -----------------------------------------------------------------------

def test_cdn_cache_control_wins_over_surrogate_and_cache_control() -> None:
    """RFC 9213 §2.1: the first targeted field on the target list replaces Cache-Control."""
    headers = [cc(b"no-store"), (b"surrogate-control", b"max-age=10"), (b"cdn-cache-control", b"max-age=600")]
    assert effective_directives(headers) == (CacheDirectives(max_age=600), b"cdn-cache-control")
    assert effective_directives(headers[:2]) == (CacheDirectives(max_age=10), b"surrogate-control")
    assert effective_directives(headers[:1]) == (CacheDirectives(no_store=True), b"cache-control")


@pytest.mark.parametrize("value", [
    b"max-age=10000, &&&&&",  # cache-tests.fyi cdn-cc-invalid-sh-type-unknown
    b"max-age =3600", b"max-age= 3600", b"MAX-AGE=3600", b"max-age=3600, private=", b'no-store="unterminated',
])
def test_invalid_targeted_field_is_ignored_whole(value: bytes) -> None:
    """RFC 9213 §2.1: a targeted field that is not a valid Structured Field Dictionary is ignored,
    as if absent: Cache-Control decides (here its no-store), not the members that did parse."""
    assert effective_directives([cc(b"no-store"), (b"cdn-cache-control", value)]) == (
        CacheDirectives(no_store=True), b"cache-control")


@pytest.mark.parametrize(("value", "expected"), [
    # cache-tests.fyi cdn-cc-invalid-sh-type-wrong: the value is not consumed; read as stale, not as 10000
    (b'max-age="10000"', CacheDirectives(max_age=0)),
    (b"max-age=3600.5", CacheDirectives(max_age=0)), (b"max-age=-1", CacheDirectives(max_age=0)),
    (b"max-age", CacheDirectives(max_age=0)), (b"s-maxage=?1", CacheDirectives(s_maxage=0)),
    (b"max-age=600, s-maxage=60;x=1", CacheDirectives(max_age=600, s_maxage=60)),  # parameters ignored
    (b"max-age=1, max-age=2", CacheDirectives(max_age=2)),  # a Dictionary's last member of a name wins
    (b"max-age=99999999999", CacheDirectives(max_age=2**31)),
    (b"no-store, must-revalidate", CacheDirectives(no_store=True, must_revalidate=True)),
    (b"no-store=1, public=?0", CacheDirectives(no_store=True)),  # a wrong type counts, Boolean false does not
    (b"private", CacheDirectives(private=True)), (b"private=x", CacheDirectives(private=True)),
    (b'no-cache="Set-Cookie, x-a"', CacheDirectives(no_cache=True, no_cache_fields=(b"set-cookie", b"x-a"))),
    (b"no-cache=Set-Cookie, max-age=600", CacheDirectives(no_cache=True, max_age=600)),  # a Token: unqualified
    (b'stale-while-revalidate=30, stale-if-error=60, whatever=7, stale-if-error="5"',
     CacheDirectives(stale_while_revalidate=30)),  # the last stale-if-error is a String: not used
])
def test_targeted_members_take_their_types(value: bytes, expected: CacheDirectives) -> None:
    """RFC 9213 §2.1: a value of the wrong Structured Field type is not consumed; since the field
    replaces Cache-Control whole, it is read the restrictive way (max-age as 0, a flag as set)."""
    assert effective_directives([cc(b"max-age=5"), (b"cdn-cache-control", value)]) == (expected, b"cdn-cache-control")


def test_targeted_field_lines_are_one_dictionary() -> None:
    """Several field lines are joined into one Dictionary (RFC 8941 §4.2), an invalid line spoils all."""
    lines = [(b"cdn-cache-control", b"max-age=60"), (b"cdn-cache-control", b"private")]
    assert effective_directives([cc(b"no-store"), *lines]) == (CacheDirectives(max_age=60, private=True),
                                                               b"cdn-cache-control")
    assert effective_directives([cc(b"no-store"), *lines, (b"cdn-cache-control", b"&")])[1] == b"cache-control"
    assert effective_directives([cc(b"no-store"), lines[0], (b"cdn-cache-control", b" ")]) == (
        CacheDirectives(max_age=60), b"cdn-cache-control")  # an empty line is no member, not a syntax error


def test_empty_targeted_field_is_ignored() -> None:
    """RFC 9213 §2.1: only a non-empty targeted field is used; RFC 9213 §3.1's 'none' counts."""
    assert effective_directives([cc(b"max-age=5"), (b"cdn-cache-control", b" , ")])[1] == b"cache-control"
    assert effective_directives([cc(b"no-store"), (b"cdn-cache-control", b"none")]) == (
        CacheDirectives(), b"cdn-cache-control")


def test_request_directives_and_pragma() -> None:
    """RFC 9111 §5.4: Pragma: no-cache acts as no-cache only without Cache-Control."""
    assert request_directives([(b"pragma", b"no-cache")]).no_cache
    assert not request_directives([(b"pragma", b"no-cache"), cc(b"max-age=5")]).no_cache
    assert request_directives([cc(b"max-age=5")]).max_age == 5
    assert request_directives([]) == CacheDirectives()


# --- storability (RFC 9111 §3) ---------------------------------------------------------------

def test_plain_get_200_is_storable() -> None:
    """§3: a final, heuristically cacheable status needs no explicit freshness."""
    assert is_storable(b"GET", [], 200, [])
    assert is_storable(b"GET", [], 404, [(b"last-modified", DATE)])


def test_only_get_is_stored() -> None:
    """§3: the method must be cacheable; HEAD responses only freshen (§4.3.5) and are not stored."""
    assert not is_storable(b"HEAD", [], 200, [cc(b"max-age=60")])
    assert not is_storable(b"POST", [], 200, [cc(b"max-age=60")])


@pytest.mark.parametrize("status", [100, 101, 206, 304, 600, 99])
def test_non_final_partial_and_304_not_stored(status: int) -> None:
    """§3: final status only; 206 is not stored (we do not combine ranges); 304 only updates."""
    assert not is_storable(b"GET", [], status, [cc(b"max-age=60")])


def test_no_store_in_request_or_response() -> None:
    """§5.2.1.5 and §5.2.2.5: no-store forbids storing the response."""
    assert not is_storable(b"GET", [cc(b"no-store")], 200, [cc(b"max-age=60")])
    assert not is_storable(b"GET", [], 200, [cc(b"max-age=60, no-store")])


def test_must_understand_overrides_no_store_for_understood_status() -> None:
    """§5.2.2.3: a cache that understands the status ignores no-store alongside must-understand."""
    assert is_storable(b"GET", [], 200, [cc(b"max-age=60, must-understand, no-store")])
    assert not is_storable(b"GET", [], 299, [cc(b"max-age=60, must-understand, no-store")])
    assert not is_storable(b"GET", [], 299, [cc(b"max-age=60, must-understand")])


def test_private_never_stored_in_a_shared_cache() -> None:
    """§5.2.2.7: private (qualified or not) keeps a response out of shared caches."""
    assert not is_storable(b"GET", [], 200, [cc(b"private, max-age=60")])
    assert not is_storable(b"GET", [], 200, [cc(b'private="set-cookie", max-age=60')])


def test_authorization_needs_explicit_permission() -> None:
    """§3.5: a response to an authorised request is stored only with public, must-revalidate or s-maxage."""
    request = [(b"authorization", b"Bearer x")]
    assert not is_storable(b"GET", request, 200, [cc(b"max-age=60")])
    for allowing in (b"public", b"must-revalidate", b"s-maxage=5"):
        assert is_storable(b"GET", request, 200, [cc(allowing)])


def test_set_cookie_never_stored() -> None:
    """Varnish's default: a response that sets a cookie is not shared, even if public."""
    assert not is_storable(b"GET", [], 200, [cc(b"public, max-age=60"), (b"set-cookie", b"s=1")])


def test_vary_star_not_stored() -> None:
    """§4.1: Vary: * never matches a later request."""
    assert not is_storable(b"GET", [], 200, [cc(b"max-age=60"), (b"vary", b"*")])


def test_non_heuristic_status_needs_explicit_freshness() -> None:
    """§3: a 302 is storable only with max-age, s-maxage, Expires or public."""
    assert not is_storable(b"GET", [], 302, [])
    assert is_storable(b"GET", [], 302, [cc(b"max-age=60")])
    assert is_storable(b"GET", [], 302, [cc(b"s-maxage=60")])
    assert is_storable(b"GET", [], 302, [cc(b"public")])
    assert is_storable(b"GET", [], 302, [(b"expires", b"0")])


def test_targeted_field_hides_expires_and_cache_control() -> None:
    """RFC 9213 §2.1: a used targeted field makes the cache ignore Cache-Control and Expires."""
    assert not is_storable(b"GET", [], 302, [(b"cdn-cache-control", b"none"), (b"expires", DATE)])
    assert is_storable(b"GET", [], 200, [cc(b"no-store, private"), (b"cdn-cache-control", b"max-age=600")])


# --- make_stored -----------------------------------------------------------------------------

def test_make_stored_parses_metadata_once() -> None:
    """§3.1: connection-specific and proxy fields are not stored; the rest are, parsed."""
    request = [(b"accept-encoding", b"gzip,  br")]
    s = make_stored(b"GET", request, 200, [
        (b"date", DATE), (b"age", b"7"), (b"expires", format_http_date(T0 + 60)),
        (b"last-modified", format_http_date(T0 - 1000)), (b"etag", b'W/"x"'), (b"vary", b"Accept-Encoding"),
        (b"surrogate-key", b"post/1 tag/a"), (b"connection", b"x-hop"), (b"x-hop", b"1"),
        (b"proxy-authenticate", b"Basic"), (b"content-type", b"text/html"),
    ], T0 - 1, T0)
    assert s.date_value == T0
    assert s.age_value == 7
    assert s.expires == T0 + 60
    assert s.last_modified == T0 - 1000
    assert s.etag == ETag(weak=True, opaque=b"x")
    assert s.vary == (b"accept-encoding",)
    assert s.vary_values == (b"gzip, br",)
    assert s.surrogate_keys == (b"post/1", b"tag/a")
    assert s.directives_source == b"cache-control"
    assert not s.stale
    names = [name for name, _ in s.headers]
    assert b"x-hop" not in names
    assert b"connection" not in names
    assert b"proxy-authenticate" not in names
    assert (b"content-type", b"text/html") in s.headers


def test_make_stored_adds_missing_or_invalid_date() -> None:
    """RFC 9110 §6.6.1: a recipient with a clock adds Date, and may replace an invalid one."""
    for headers in ([], [(b"date", b"garbage")]):
        s = make_stored(b"GET", [], 200, headers, T0 - 1, T0)
        assert s.date_value == T0
        assert [v for k, v in s.headers if k == b"date"] == [DATE]


def test_make_stored_invalid_expires_is_already_expired() -> None:
    """RFC 9111 §5.3: an invalid Expires, especially "0", is a time in the past."""
    s = stored((b"expires", b"0"))
    assert s.expires == -math.inf
    assert freshness_lifetime(s) == 0.0


def test_make_stored_vary_star_and_targeted_expires() -> None:
    """§4.1 Vary: * has no values; RFC 9213 §2.1 ignores Expires under a targeted field."""
    s = stored((b"vary", b"*"), (b"expires", format_http_date(T0 + 60)), (b"surrogate-control", b"max-age=5"))
    assert s.vary == "*"
    assert s.vary_values == ()
    assert s.expires is None
    assert s.directives_source == b"surrogate-control"


def test_make_stored_refuses_other_methods() -> None:
    """Only GET responses become entries; HEAD can only update (RFC 9111 §4.3.5)."""
    with pytest.raises(ValueError, match="only responses to GET"):
        make_stored(b"HEAD", [], 200, [], T0, T0)


def test_stored_validates_vary_values() -> None:
    """A Stored must hold one request value per Vary field."""
    s = stored(cc(b"max-age=60"))
    with pytest.raises(ValueError, match="vary values"):
        replace(s, vary=(b"accept",), vary_values=())


def test_mark_stale() -> None:
    """Soft purge keeps the entry but flags it for revalidation."""
    s = stored(cc(b"max-age=60"))
    assert mark_stale(s).stale
    assert not s.stale


# --- freshness (§4.2.1, §4.2.2) --------------------------------------------------------------

def test_freshness_lifetime_precedence() -> None:
    """§4.2.1: s-maxage, then max-age, then Expires minus Date."""
    expires = (b"expires", format_http_date(T0 + 30))
    assert freshness_lifetime(stored(cc(b"max-age=60, s-maxage=120"), expires)) == 120
    assert freshness_lifetime(stored(cc(b"max-age=60"), expires)) == 60
    assert freshness_lifetime(stored(expires)) == 30
    assert freshness_lifetime(stored((b"expires", format_http_date(T0 - 30)))) == 0


def test_heuristic_freshness_is_ten_percent_capped_at_a_day() -> None:
    """§4.2.2: 10% of the time since Last-Modified, never more than a day here."""
    assert freshness_lifetime(stored((b"last-modified", format_http_date(T0 - 1000)))) == pytest.approx(100)
    assert freshness_lifetime(stored((b"last-modified", format_http_date(T0 - 10**8)))) == 86400
    assert freshness_lifetime(stored((b"last-modified", format_http_date(T0 + 50)))) == 0
    assert freshness_lifetime(stored()) == 0


def test_heuristic_only_for_heuristic_statuses_or_public() -> None:
    """§4.2.2: heuristics apply to heuristically cacheable statuses and to public responses."""
    last_modified = (b"last-modified", format_http_date(T0 - 1000))
    assert freshness_lifetime(stored(last_modified, status=302)) == 0
    assert freshness_lifetime(stored(last_modified, cc(b"public"), status=302)) == pytest.approx(100)


# --- age (§4.2.3) ----------------------------------------------------------------------------

def test_current_age_worked_example() -> None:
    """§4.2.3: corrected_initial_age = max(apparent_age, age_value + response_delay), plus resident time."""
    s = make_stored(b"GET", [], 200, [(b"date", format_http_date(T0 - 10)), (b"age", b"3")], T0 - 2, T0)
    # apparent_age = 10, corrected_age_value = 3 + 2 = 5 -> initial age 10, then 5 s resident.
    assert current_age(s, T0 + 5) == 15
    s = make_stored(b"GET", [], 200, [(b"date", DATE), (b"age", b"30")], T0 - 2, T0)
    assert current_age(s, T0) == 32


def test_current_age_tolerates_clock_skew() -> None:
    """§4.2.3: a Date ahead of our clock makes apparent_age 0, never negative."""
    s = stored(date=T0 + 3600)
    assert current_age(s, T0) == 0
    assert current_age(s, T0 + 4) == 4


def test_is_fresh_and_soft_purge() -> None:
    """§4.2: fresh while freshness_lifetime > current_age; a soft-purged entry is never fresh."""
    s = stored(cc(b"max-age=60"))
    assert is_fresh(s, T0 + 59)
    assert not is_fresh(s, T0 + 60)
    assert not is_fresh(mark_stale(s), T0)


# --- Vary (§4.1) -----------------------------------------------------------------------------

def test_vary_matching_normalises_whitespace_only() -> None:
    """§4.1: values match after whitespace normalisation; case and absence matter."""
    s = stored(cc(b"max-age=60"), (b"vary", b"accept-encoding"), request=[(b"accept-encoding", b"gzip, br")])
    assert vary_matches(s, [(b"accept-encoding", b"gzip,br")])
    assert vary_matches(s, [(b"accept-encoding", b"gzip"), (b"accept-encoding", b"br")])
    assert not vary_matches(s, [(b"accept-encoding", b"GZIP, br")])
    assert not vary_matches(s, [])
    absent = stored(cc(b"max-age=60"), (b"vary", b"accept-encoding"))
    assert vary_matches(absent, [])
    assert not vary_matches(absent, [(b"accept-encoding", b"")])


def test_vary_star_never_matches() -> None:
    """§4.1: a Vary of "*" always fails to match."""
    assert not vary_matches(stored(cc(b"max-age=60"), (b"vary", b"*")), [])


# --- conditional requests to the origin (§4.3.1) ---------------------------------------------

def test_conditional_headers() -> None:
    """§4.3.1: send the ETag in If-None-Match and the Last-Modified value as received."""
    raw_lm = b"Sunday, 06-Nov-94 08:49:37 GMT"
    assert conditional_headers(stored(ETAGGED, (b"last-modified", raw_lm))) == [
        (b"if-none-match", b'"v1"'), (b"if-modified-since", raw_lm)]
    assert conditional_headers(stored(ETAGGED)) == [(b"if-none-match", b'"v1"')]
    assert conditional_headers(stored()) == []


# --- choose ----------------------------------------------------------------------------------

def test_unsafe_methods_pass() -> None:
    """§4: only GET and HEAD are answered from the cache."""
    decision = choose(b"POST", [], stored(cc(b"max-age=60")), T0)
    assert decision == Pass(reason="method")
    assert decision.fwd == "method"


def test_miss() -> None:
    """§4: nothing stored means forward; the response may be stored."""
    assert choose(b"GET", [], None, T0) == Fetch(fwd="miss")
    assert choose(b"GET", [cc(b"only-if-cached")], None, T0) == GatewayTimeout()  # §5.2.1.7
    decision = choose(b"GET", [cc(b"no-store")], None, T0)  # §5.2.1.5
    assert decision == Pass(reason="request-no-store")
    assert isinstance(decision, Pass)
    assert decision.fwd == "bypass"


def test_fresh_hit_serves_with_age_and_ttl() -> None:
    """§4.2: a fresh response is served without contacting the origin; HEAD can use a GET response."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    assert choose(b"GET", [], s, T0 + 10) == Serve(age=10, ttl=50)
    assert choose(b"HEAD", [], s, T0 + 10) == Serve(age=10, ttl=50)


def test_vary_mismatch_is_a_vary_miss() -> None:
    """§4.1: a stored response nominating other field values cannot be used."""
    english = [(b"accept-language", b"en")]
    s = stored(cc(b"max-age=60"), ETAGGED, (b"vary", b"accept-language"), request=english)
    assert choose(b"GET", [(b"accept-language", b"fr")], s, T0) == Fetch(fwd="vary-miss")


def test_request_no_cache_revalidates() -> None:
    """§5.2.1.4 and §5.4: request no-cache (or Pragma: no-cache) forces validation."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    expected = Revalidate(conditional_headers=INM_V1, fwd="request")
    assert choose(b"GET", [cc(b"no-cache")], s, T0) == expected
    assert choose(b"GET", [(b"pragma", b"no-cache")], s, T0) == expected
    assert choose(b"GET", [cc(b"no-cache")], stored(cc(b"max-age=60")), T0) == Fetch(fwd="request")


def test_response_no_cache_always_revalidates() -> None:
    """§5.2.2.4: no-cache responses need validation each time (qualified treated as unqualified)."""
    for value in (b"no-cache, max-age=60", b'no-cache="set-cookie", max-age=60'):
        decision = choose(b"GET", [], stored(cc(value), ETAGGED), T0)
        assert decision == Revalidate(conditional_headers=INM_V1, fwd="stale")


def test_request_max_age_and_min_fresh() -> None:
    """§5.2.1.1 and §5.2.1.3: the client can ask for a younger or longer-fresh response."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    revalidate = Revalidate(conditional_headers=INM_V1, fwd="request")
    assert choose(b"GET", [cc(b"max-age=0")], s, T0 + 1) == revalidate
    assert choose(b"GET", [cc(b"max-age=5")], s, T0 + 5) == Serve(age=5, ttl=55)
    assert choose(b"GET", [cc(b"min-fresh=30")], s, T0 + 40) == revalidate
    assert choose(b"GET", [cc(b"min-fresh=30")], s, T0 + 30) == Serve(age=30, ttl=30)


def test_stale_without_permission_revalidates() -> None:
    """§4.2.4: a stale response is not served without explicit permission."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    assert choose(b"GET", [], s, T0 + 60) == Revalidate(conditional_headers=INM_V1, fwd="stale")
    assert choose(b"GET", [], stored(cc(b"max-age=60")), T0 + 61) == Fetch(fwd="stale")


def test_max_stale_allows_stale() -> None:
    """§5.2.1.2: max-stale=N accepts up to N seconds of staleness; bare max-stale any."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    served = ServeStale(age=70, ttl=-10, revalidate_in_background=False, reason="max-stale")
    assert choose(b"GET", [cc(b"max-stale=10")], s, T0 + 70) == served
    assert isinstance(choose(b"GET", [cc(b"max-stale=10")], s, T0 + 71), Revalidate)
    assert isinstance(choose(b"GET", [cc(b"max-stale")], s, T0 + 10**6), ServeStale)
    assert isinstance(choose(b"GET", [cc(b"max-stale, max-age=5")], s, T0 + 70), Revalidate)
    assert isinstance(choose(b"GET", [cc(b"max-stale, min-fresh=1")], s, T0 + 70), Revalidate)


@pytest.mark.parametrize("forbidding", [b"must-revalidate", b"proxy-revalidate", b"s-maxage=60"])
def test_revalidate_directives_defeat_max_stale(forbidding: bytes) -> None:
    """§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: never serve these stale, even with max-stale."""
    s = stored(cc(b"max-age=60, " + forbidding), ETAGGED)
    assert choose(b"GET", [cc(b"max-stale")], s, T0 + 61) == Revalidate(
        conditional_headers=INM_V1, fwd="stale"
    )


def test_stale_while_revalidate_window() -> None:
    """RFC 5861 §3: serve stale for up to N seconds while revalidating in the background."""
    s = stored(cc(b"s-maxage=60, stale-while-revalidate=30"), ETAGGED)
    assert choose(b"GET", [], s, T0 + 60) == swr(age=60, ttl=0)
    assert choose(b"GET", [], s, T0 + 90) == swr(age=90, ttl=-30)
    assert choose(b"GET", [], s, T0 + 91) == Revalidate(conditional_headers=INM_V1, fwd="stale")


def test_stale_while_revalidate_respects_client_and_must_revalidate() -> None:
    """§5.2.1.1, §5.2.1.3 and §5.2.2.2 outrank the origin's SWR permission."""
    s = stored(cc(b"max-age=60, stale-while-revalidate=30"), ETAGGED)
    assert isinstance(choose(b"GET", [cc(b"max-age=30")], s, T0 + 70), Revalidate)
    assert isinstance(choose(b"GET", [cc(b"max-age=100")], s, T0 + 70), ServeStale)
    assert isinstance(choose(b"GET", [cc(b"min-fresh=0")], s, T0 + 70), Revalidate)
    strict = stored(cc(b"max-age=60, stale-while-revalidate=30, must-revalidate"), ETAGGED)
    assert isinstance(choose(b"GET", [], strict, T0 + 70), Revalidate)


def test_soft_purged_entry_revalidates_or_uses_swr() -> None:
    """A soft purge makes an entry stale by 0 s: revalidate, or serve within SWR while revalidating."""
    plain = mark_stale(stored(cc(b"max-age=600"), ETAGGED))
    assert choose(b"GET", [], plain, T0 + 1) == Revalidate(conditional_headers=INM_V1, fwd="stale")
    with_swr = mark_stale(stored(cc(b"max-age=600, stale-while-revalidate=30"), ETAGGED))
    assert choose(b"GET", [], with_swr, T0 + 1) == swr(age=1, ttl=0)


def test_only_if_cached() -> None:
    """§5.2.1.7: use a stored response if one satisfies the request, otherwise 504."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    assert choose(b"GET", [cc(b"only-if-cached")], s, T0 + 1) == Serve(age=1, ttl=59)
    assert choose(b"GET", [cc(b"only-if-cached")], s, T0 + 61) == GatewayTimeout()
    assert isinstance(choose(b"GET", [cc(b"only-if-cached, max-stale")], s, T0 + 61), ServeStale)
    assert choose(b"GET", [cc(b"only-if-cached, no-cache")], s, T0) == GatewayTimeout()


def test_request_no_store_may_use_fresh_but_passes_otherwise() -> None:
    """§5.2.1.5: a stored response may answer a no-store request; nothing new is stored."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    assert choose(b"GET", [cc(b"no-store")], s, T0 + 1) == Serve(age=1, ttl=59)
    assert choose(b"GET", [cc(b"no-store")], s, T0 + 61) == Pass(reason="request-no-store")


# --- stale-if-error (RFC 5861 §4) ------------------------------------------------------------

def test_stale_if_error_response_window() -> None:
    """RFC 5861 §4.1: max-age=600, stale-if-error=1200 may be used until 1800 s old."""
    s = stored(cc(b"max-age=600, stale-if-error=1200"))
    assert can_serve_stale_on_error(s, [], T0 + 900)
    assert can_serve_stale_on_error(s, [], T0 + 1800)
    assert not can_serve_stale_on_error(s, [], T0 + 1801)
    assert can_serve_stale_on_error(s, [], T0 + 1)  # fresh: stale by 0 s


def test_stale_if_error_request_window() -> None:
    """RFC 5861 §4: the request directive applies to the request it appears in."""
    s = stored(cc(b"max-age=60"))
    assert not can_serve_stale_on_error(s, [], T0 + 70)
    assert can_serve_stale_on_error(s, [cc(b"stale-if-error=10")], T0 + 70)
    assert not can_serve_stale_on_error(s, [cc(b"stale-if-error=5")], T0 + 70)
    assert can_serve_stale_on_error(mark_stale(stored(cc(b"max-age=600, stale-if-error=1"))), [], T0 + 1)


@pytest.mark.parametrize("forbidding", [b"must-revalidate", b"proxy-revalidate"])
def test_stale_if_error_never_with_must_revalidate(forbidding: bytes) -> None:
    """§5.2.2.2: a must-revalidate response that cannot be validated becomes a 504."""
    s = stored(cc(b"max-age=60, stale-if-error=600, " + forbidding))
    assert not can_serve_stale_on_error(s, [cc(b"stale-if-error=600")], T0 + 70)


# --- 304 from the origin (§4.3.3, §4.3.4, §3.2) ----------------------------------------------

def test_can_update_from_304_selection() -> None:
    """§4.3.4: the 304's validator selects the stored response to update."""
    strong = stored(ETAGGED, (b"last-modified", format_http_date(T0 - 100)))
    assert can_update_from_304(strong, [(b"etag", b'"v1"')])
    assert not can_update_from_304(strong, [(b"etag", b'"v2"')])
    assert can_update_from_304(strong, [(b"etag", b'W/"v1"')])
    assert not can_update_from_304(stored(), [(b"etag", b'"v1"')])
    weak = stored((b"etag", b'W/"v1"'))
    assert not can_update_from_304(weak, [(b"etag", b'"v1"')])
    assert can_update_from_304(strong, [(b"last-modified", format_http_date(T0 - 100))])
    assert not can_update_from_304(strong, [(b"last-modified", format_http_date(T0 - 50))])
    assert not can_update_from_304(stored(), [(b"last-modified", format_http_date(T0 - 50))])
    assert can_update_from_304(strong, [])


def test_update_from_304_merges_headers() -> None:
    """§3.2: the 304's fields replace stored ones, except Content-Length; times refresh (§4.3.4)."""
    s = mark_stale(make_stored(b"GET", [(b"accept", b"text/html")], 200, [
        (b"date", DATE), (b"age", b"5"), cc(b"max-age=60"), ETAGGED, (b"content-length", b"42"),
        (b"x-old", b"a"), (b"x-old", b"b"), (b"vary", b"accept"), (b"surrogate-key", b"k1"),
    ], T0, T0))
    later = T0 + 120
    updated = update_from_304(s, [
        (b"date", format_http_date(later)), cc(b"max-age=300, stale-if-error=60"), ETAGGED,
        (b"content-length", b"0"), (b"x-old", b"c"), (b"vary", b"cookie"), (b"connection", b"close"),
        (b"surrogate-key", b"k2"),
    ], later - 1, later)
    assert not updated.stale
    assert (updated.request_time, updated.response_time, updated.date_value) == (later - 1, later, later)
    assert updated.age_value == 0
    assert updated.directives == CacheDirectives(max_age=300, stale_if_error=60)
    assert updated.vary == (b"accept",)
    assert updated.vary_values == (b"text/html",)
    assert updated.surrogate_keys == (b"k2",)
    fields = dict(updated.headers)
    assert fields[b"content-length"] == b"42"
    assert fields[b"vary"] == b"accept"
    assert [v for k, v in updated.headers if k == b"x-old"] == [b"c"]
    assert b"connection" not in fields
    assert b"age" not in fields
    # §4.2.3: the 1 s response delay counts towards the age.
    assert choose(b"GET", [(b"accept", b"text/html")], updated, later + 200) == Serve(age=201, ttl=99)


def test_update_from_304_without_date_uses_receive_time() -> None:
    """RFC 9110 §6.6.1: a 304 without Date gets the receive time, not the old Date."""
    s = stored(cc(b"max-age=60"), ETAGGED)
    updated = update_from_304(s, [ETAGGED], T0 + 500, T0 + 500)
    assert updated.date_value == T0 + 500
    assert current_age(updated, T0 + 500) == 0
    assert updated.directives == CacheDirectives(max_age=60)


# --- 304 to the client (RFC 9110 §13.2.2, RFC 9111 §4.3.2) -----------------------------------

def test_not_modified_if_none_match() -> None:
    """RFC 9110 §13.1.2: weak comparison of If-None-Match against the stored ETag."""
    s = stored(ETAGGED)
    assert not_modified(INM_V1, s)
    assert not_modified([(b"if-none-match", b'"x", W/"v1"')], s)
    assert not not_modified([(b"if-none-match", b'"x"')], s)
    assert not_modified([(b"if-none-match", b"*")], s)
    assert not not_modified([(b"if-none-match", b"garbage")], s)
    assert not not_modified(INM_V1, stored())


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    """RFC 9110 §13.2.2: If-Modified-Since is ignored when If-None-Match is present."""
    s = stored(ETAGGED, (b"last-modified", format_http_date(T0 - 100)))
    request = [(b"if-none-match", b'"other"'), (b"if-modified-since", DATE)]
    assert not not_modified(request, s)


def test_not_modified_if_modified_since() -> None:
    """RFC 9111 §4.3.2: compare Last-Modified, else Date, with the conditional timestamp."""
    s = stored((b"last-modified", format_http_date(T0 - 100)))
    assert not_modified([(b"if-modified-since", format_http_date(T0 - 100))], s)
    assert not not_modified([(b"if-modified-since", format_http_date(T0 - 101))], s)
    assert not not_modified([(b"if-modified-since", b"not a date")], s)
    assert not not_modified([], s)
    assert not_modified([(b"if-modified-since", DATE)], stored())
    assert not not_modified([(b"if-modified-since", format_http_date(T0 - 1))], stored())


def test_not_modified_only_for_get_head_and_2xx_3xx() -> None:
    """RFC 9110 §13.1.2-3 and §13.2.1: only GET/HEAD, and only when the answer would be 2xx/3xx."""
    s = stored(ETAGGED)
    assert not_modified(INM_V1, s, method=b"HEAD")
    assert not not_modified(INM_V1, s, method=b"POST")
    assert not not_modified(INM_V1, stored(ETAGGED, status=404))


# --- invalidation (§4.4) ---------------------------------------------------------------------

@pytest.mark.parametrize(("method", "status", "expected"), [
    (b"POST", 200, True), (b"PUT", 302, True), (b"DELETE", 204, True), (b"PATCH", 201, True),
    (b"FROB", 200, True), (b"POST", 404, False), (b"POST", 500, False), (b"POST", 100, False),
    (b"GET", 200, False), (b"HEAD", 200, False), (b"OPTIONS", 200, False), (b"TRACE", 200, False),
])
def test_invalidated_by(method: bytes, status: int, expected: bool) -> None:
    """§4.4: a non-error response to an unsafe (or unknown) method invalidates the target."""
    assert invalidated_by(method, status) is expected


def test_invalidation_targets_origin_form() -> None:
    """§4.4: Location and Content-Location are invalidated only when same-origin."""
    headers = [(b"location", b"../c?x=1#frag"), (b"content-location", b"http://other.example/a")]
    assert invalidation_targets(b"POST", 201, b"/a/b", headers, authority=b"site") == (b"/a/b", b"/c?x=1")
    headers = [(b"location", b"http://SITE/new"), (b"content-location", b"/a/b")]
    assert invalidation_targets(b"PUT", 200, b"/a/b", headers, authority=b"site") == (b"/a/b", b"/new")
    assert invalidation_targets(b"PUT", 200, b"/a", [(b"location", b"http://site/new")]) == (b"/a",)
    assert invalidation_targets(b"PUT", 200, b"/a", [(b"location", b"http://site")], authority=b"site") == (
        b"/a", b"/")


def test_invalidation_targets_absolute_form() -> None:
    """§4.4 with an absolute-form target: results stay absolute, fragments dropped."""
    headers = [(b"location", b"/x#top"), (b"content-location", b"https://site/y")]
    targets = invalidation_targets(b"DELETE", 200, b"http://site/a", headers)
    assert targets == (b"http://site/a", b"http://site/x")


def test_invalidation_targets_nothing_or_garbage() -> None:
    """Safe methods and errors invalidate nothing; unreadable references are skipped, never raised."""
    assert invalidation_targets(b"GET", 200, b"/a", [(b"location", b"/b")]) == ()
    assert invalidation_targets(b"POST", 500, b"/a", [(b"location", b"/b")]) == ()
    assert invalidation_targets(b"POST", 200, b"/a", [(b"location", b"http://[::1/x")]) == (b"/a",)
    assert invalidation_targets(b"POST", 200, b"http://[::1/a", [(b"location", b"/b")]) == (b"http://[::1/a",)


# --- output ----------------------------------------------------------------------------------

def test_strip_for_client_removes_edge_only_and_hop_by_hop() -> None:
    """Surrogate-Key/Control are ours; CDN-Cache-Control goes on to downstream CDNs (RFC 9213 §3,
    cache-tests.fyi cdn-private); hop-by-hop never forwarded."""
    headers = [(b"surrogate-key", b"a"), (b"surrogate-control", b"max-age=5"),
               (b"cdn-cache-control", b"none"), (b"keep-alive", b"5"), cc(b"max-age=60"),
               (b"content-type", b"text/html")]
    assert strip_for_client(headers) == [(b"cdn-cache-control", b"none"), cc(b"max-age=60"),
                                          (b"content-type", b"text/html")]


def test_serve_headers_sets_our_age() -> None:
    """RFC 9111 §5.1: a cache replaces Age with the current age in whole seconds."""
    s = stored(cc(b"max-age=60"), (b"age", b"3"), (b"surrogate-key", b"k"))
    assert serve_headers(s, 12.9) == [(b"date", DATE), cc(b"max-age=60"), (b"age", b"12")]


def test_cache_status_reexported() -> None:
    """The exchange formats Cache-Status through the policy module."""
    assert policy.format_cache_status(fwd="uri-miss") == b"edgeproxy; fwd=uri-miss"
    assert policy.CACHE_NAME == b"edgeproxy"
