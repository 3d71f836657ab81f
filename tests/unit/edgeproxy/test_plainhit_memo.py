"""``plainhit``'s memo per request head (``LaneMemo``): what it remembers, when it lets go.

No sockets: an ``Exchange`` whose cache is filled directly (its gateway's clock frozen), and a
stand-in for the head HTTP/2 keeps per header block.
"""

from __future__ import annotations

import gc
import time

import pytest
import trio

from edgeproxy.config import ProxyConfig
from edgeproxy.exchange import Exchange
from edgeproxy.gateway import NS
from edgeproxy.gateway_config import parse_gateway
from edgeproxy.plainhit import plain_hit
from edgeproxy.upstream import UpstreamResponse

NOW_NS = 1_767_225_600 * NS
HOST = b"edge.test"
KEY = "fc_live_viewer_0123456789"
GATEWAY = {"anonymous_tier": "anonymous", "tiers": {"anonymous": 100, "starter": 1000},
           "routes": [{"prefix": "/api/v3", "public": True}],
           "keys": [{"id": "viewer", "key": KEY, "role": "viewer", "tier": "starter"}]}
PUBLIC = b"public, max-age=0, s-maxage=3600"


class Head:
    __slots__ = ("lane",)

    def __init__(self) -> None:
        self.lane = None


@pytest.fixture
async def exchange(nursery: trio.Nursery) -> Exchange:
    ex = Exchange(ProxyConfig(gateway=parse_gateway(GATEWAY, source="test")), nursery)
    ex.gateway_clock = lambda: NOW_NS
    return ex


def store(ex: Exchange, target: bytes, body: bytes, request: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    now = time.time()
    response = UpstreamResponse(200, [(b"cache-control", PUBLIC), (b"content-type", b"application/json")], body)
    assert ex.store_response(HOST + target, target, list(request), response, now, now) is not None


def hit(ex: Exchange, target: bytes, fields: list[tuple[bytes, bytes]], head: Head) -> object:
    return plain_hit(ex, b"GET", target, fields, HOST, "127.0.0.1", 1 << 20, head)


async def test_memo_is_made_for_pages_and_keys_and_answers_the_same(exchange: Exchange) -> None:
    store(exchange, b"/page", b"page")
    store(exchange, b"/api/v3/posts", b"posts")
    page, api = Head(), Head()
    keyed = [(b"authorization", b"Bearer " + KEY.encode()), (b"accept-encoding", b"gzip")]
    answers = [hit(exchange, b"/page", [], page) for _ in range(3)]
    first = hit(exchange, b"/api/v3/posts", keyed, api)  # the key's first use: authenticated, not remembered
    assert api.lane is None
    api_answers = [hit(exchange, b"/api/v3/posts", keyed, api) for _ in range(3)]
    assert page.lane is not None
    assert api.lane is not None
    assert [a[1] for a in answers] == [b"page"] * 3  # type: ignore[index]
    assert [a[1] for a in [first, *api_answers]] == [b"posts"] * 4  # type: ignore[index]
    assert [a[6] for a in [first, *api_answers]] == [999, 998, 997, 996]  # charged every time  # type: ignore[index]
    assert exchange.counters.requests == exchange.counters.hits == 7


async def test_anonymous_reads_under_a_route_are_not_remembered(exchange: Exchange) -> None:
    store(exchange, b"/api/v3/posts", b"posts")
    head = Head()
    answers = [hit(exchange, b"/api/v3/posts", [], head) for _ in range(3)]
    assert head.lane is None  # its per-IP identity goes through Gateway.authenticate every time
    assert [a[6] for a in answers] == [99, 98, 97]  # type: ignore[index]


async def test_memo_lets_go_of_a_removed_answer(exchange: Exchange) -> None:
    """A removal changes the store's generation: the next request looks again (a miss here), and
    the memo's weak reference does not keep the removed answer alive."""
    store(exchange, b"/page", b"x" * 100_000)
    head = Head()
    assert hit(exchange, b"/page", [], head) is not None
    assert head.lane is not None
    ref = head.lane[2]
    assert ref() is not None
    exchange.cache.remove(HOST + b"/page")
    gc.collect()
    assert ref() is None
    assert hit(exchange, b"/page", [], head) is None  # nothing stored: the caller's general path decides
    store(exchange, b"/page", b"new")
    answer = hit(exchange, b"/page", [], head)
    assert answer is not None
    assert answer[1] == b"new"  # type: ignore[index]
