"""The gated hit path (``edgeproxy/gated.py``): what ``Exchange.try_hit`` answers under a gateway route.

No sockets: an ``Exchange`` whose cache is filled directly, the gateway's clock frozen.
"""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeproxy.cache import CacheStore, Entry
from edgeproxy.config import ProxyConfig
from edgeproxy.exchange import Exchange, _vary_getter
from edgeproxy.gated import with_identity
from edgeproxy.gateway import IDENTITY_PREFIX, NS, Identity, Role
from edgeproxy.gateway_config import parse_gateway
from edgeproxy.replies import Reply
from edgeproxy.upstream import UpstreamResponse
from edgeproxy.variants import select

NOW_NS = 1_767_225_600 * NS
HOST = b"edge.test"
TARGET = b"/api/v3/posts?limit=20"
VIEWER_KEY = "fc_live_viewer_0123456789"
EDITOR_KEY = "fc_live_editor_0123456789"
SMALL_KEY = "fc_live_small_01234567890"  # the 100-per-minute tier
API_CACHE_CONTROL = b"public, max-age=0, s-maxage=31536000, stale-while-revalidate=60, stale-if-error=86400"  # the origin's (jsonapi.py)
GATEWAY = {
    "anonymous_tier": "anonymous",
    "tiers": {"anonymous": 100, "small": 100, "starter": 1000},
    "routes": [{"prefix": "/api/v3", "public": True}],
    "keys": [{"id": "viewer", "key": VIEWER_KEY, "role": "viewer", "tier": "starter"},
             {"id": "editor", "key": EDITOR_KEY, "role": "editor", "tier": "starter"},
             {"id": "small", "key": SMALL_KEY, "role": "viewer", "tier": "small"}],
}


# -- variant selection with the identity -------------------------------------------------------------

NAMES = [b"accept", b"accept-encoding", b"x-flowcms-role", b"x-flowcms-subject", b"x-flowcms-key-id",
         b"x-flowcms-other"]
values = st.sampled_from([b"viewer", b"editor", b" a ,b ", b"a,  b", b"", b"gzip", b"x\ty"])
identities = st.builds(
    lambda subject, role, key_id: Identity(subject, role, key_id, "key:x", 100, tuple(
        [(b"x-flowcms-subject", subject.encode())]
        + ([(b"x-flowcms-role", role.label.encode())] if role is not None else [])
        + ([(b"x-flowcms-key-id", key_id.encode())] if key_id is not None else []))),
    st.sampled_from(["key:viewer", "user 42", "a,b"]), st.none() | st.sampled_from(list(Role)),
    st.none() | st.just("viewer"))


fields_lists = st.lists(st.tuples(st.sampled_from(NAMES), values), max_size=6)
vary_lists = st.none() | st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True).map(tuple)


@settings(max_examples=400)  # cheap, and a wrong selection needs the right mix of fields to show
@given(fields_lists, identities | st.just(Identity(None, None, None, "ip:192.0.2.1", 100, ())),
       st.lists(st.tuples(vary_lists, fields_lists | st.none()), min_size=1, max_size=4))
def test_select_with_identity_picks_what_a_lookup_over_with_identity_picks(
        headers: list[tuple[bytes, bytes]], identity: Identity,
        stored: list[tuple[tuple[bytes, ...] | None, list[tuple[bytes, bytes]] | None]]) -> None:
    """Client X-Flowcms-* fields are ignored, the identity's count, every other field is the client's:
    the hit lanes' ``variants.select`` picks the variant (newest first, a Vary-less one at once) that
    ``CacheStore.peek`` picks over the ``with_identity`` copy; outside the gateway, the one it picks
    over the client's own fields."""
    copied = with_identity(headers, identity)
    store: CacheStore[int] = CacheStore(1 << 20)
    for n, (vary, request) in enumerate(stored):  # request None: the variant answered this very request
        answered = copied if request is None else request
        store.store(Entry(key=b"k", path=b"/", value=n, size=1, vary=vary,
                          vary_values=tuple(_vary_getter(answered, name) for name in vary or ())))
    expected = store.peek(b"k", lambda name: _vary_getter(copied, name))
    assert (expected is not None) >= (stored[-1][1] is None)  # the newest answered this request: found
    outside = store.peek(b"k", lambda name: _vary_getter(headers, name))
    for _ in range(2):  # each entry's selection plan is made on first use, per way of reading: use both twice
        assert select(store.peek_variants(b"k"), headers, identity.vary_values, IDENTITY_PREFIX) is expected
        assert select(store.peek_variants(b"k"), headers) is outside
    assert select(store.peek_variants(b"other"), headers) is None


# -- hits through an Exchange ---------------------------------------------------------------------------

@pytest.fixture
async def exchange(nursery: trio.Nursery) -> Exchange:
    ex = Exchange(ProxyConfig(gateway=parse_gateway(GATEWAY, source="test")), nursery)
    ex.gateway_clock = lambda: NOW_NS
    now = time.time()
    for role in (b"viewer", b"editor"):
        response = UpstreamResponse(200, [
            (b"cache-control", API_CACHE_CONTROL), (b"etag", b'"%s"' % role), (b"surrogate-key", b"posts"),
            (b"vary", b"X-Flowcms-Role"), (b"content-type", b"application/vnd.api+json")], b'{"for": "%s"}' % role)
        stored = ex.store_response(HOST + TARGET, TARGET, [(b"x-flowcms-role", role)], response, now, now)
        assert stored is not None
    return ex


def get(exchange: Exchange, key: str | None, *extra: tuple[bytes, bytes]) -> Reply | None:
    fields = [(b"accept", b"*/*"), *extra]
    if key is not None:
        fields.append((b"authorization", b"Bearer " + key.encode()))
    return exchange.try_hit(b"GET", TARGET, fields, HOST, client="192.0.2.1")


def answer(exchange: Exchange, key: str | None, *extra: tuple[bytes, bytes]) -> Reply:
    """``get`` that the hit path answers (a hit or the gateway's denial)."""
    reply = get(exchange, key, *extra)
    assert reply is not None
    return reply


async def test_hit_is_selected_by_the_gateways_role_and_carries_rate_limit_fields(exchange: Exchange) -> None:
    """The role variant the key's identity selects, with Age, Cache-Status and X-RateLimit-*."""
    hit = answer(exchange, VIEWER_KEY)
    assert (hit.status, hit.body) == (200, b'{"for": "viewer"}')
    extra = dict(hit.extra)
    assert list(extra) == [b"age", b"cache-status", b"x-ratelimit-limit", b"x-ratelimit-remaining",
                           b"x-ratelimit-reset"]
    assert (extra[b"x-ratelimit-limit"], extra[b"x-ratelimit-remaining"]) == (b"1000", b"999")
    assert extra[b"cache-status"].startswith(b"edgeproxy; hit")
    editor = answer(exchange, EDITOR_KEY)
    assert editor.body == b'{"for": "editor"}'
    assert (exchange.counters.requests, exchange.counters.hits) == (2, 2)
    assert exchange.cache.statistics().hits == 2


async def test_client_sent_identity_fields_do_not_select_a_variant(exchange: Exchange) -> None:
    """A viewer claiming the editor role in X-Flowcms-Role still gets the viewer's answer."""
    hit = answer(exchange, VIEWER_KEY, (b"x-flowcms-role", b"editor"))
    assert hit.body == b'{"for": "viewer"}'


async def test_policy_fields_take_the_general_policy_with_the_identity(exchange: Exchange) -> None:
    """With request directives or preconditions, ``choose`` decides on the identity's fields:
    still a hit (the Vary matches), a 304 for the variant's own ETag, and charged once each."""
    hit = answer(exchange, VIEWER_KEY, (b"cache-control", b"max-stale=10"))
    assert hit.status == 200
    assert hit.body == b'{"for": "viewer"}'
    not_modified = answer(exchange, EDITOR_KEY, (b"if-none-match", b'"editor"'))
    assert not_modified.status == 304
    assert dict(not_modified.extra)[b"x-ratelimit-remaining"] == b"999"
    assert get(exchange, VIEWER_KEY, (b"cache-control", b"no-cache")) is None  # revalidate: handle() decides
    assert (exchange.counters.requests, exchange.counters.hits) == (2, 2)


async def test_no_hit_charges_nothing(exchange: Exchange) -> None:
    """An anonymous request selects no variant (no role stored for it): None, and no bucket is charged."""
    assert get(exchange, None) is None
    assert exchange.gateway is not None
    assert len(exchange.gateway.limiter) == 0
    assert exchange.counters.requests == 0


async def test_denied_credential_is_answered_inline(exchange: Exchange) -> None:
    """An unknown key gets the gateway's 401 (JSON:API, WWW-Authenticate) without a cache lookup."""
    denial = answer(exchange, "fc_live_unknown_0123456789")
    assert denial.status == 401
    assert dict(denial.fields)[b"www-authenticate"].startswith(b'Bearer realm="flowcms"')
    assert (exchange.counters.requests, exchange.counters.hits) == (1, 0)


async def test_rate_limit_on_hits_is_exact(exchange: Exchange) -> None:
    """100 per minute: exactly 100 hits at one instant, counting down, then 429s that are not hits."""
    remaining = [dict(answer(exchange, SMALL_KEY).extra)[b"x-ratelimit-remaining"]
                 for _ in range(100)]
    assert remaining == [b"%d" % n for n in range(99, -1, -1)]
    over = answer(exchange, SMALL_KEY)
    assert over.status == 429
    assert dict(over.fields)[b"retry-after"] == b"1"
    assert (exchange.counters.requests, exchange.counters.hits) == (101, 100)
    assert exchange.cache.statistics().hits == 100
