"""The HTTP/1.1 hit lane (edgeproxy/h1lane.py) in a real edge on 127.0.0.1, with the API gateway.

The lane writes a plain fresh hit straight to bytes; the general path (``Exchange.handle`` for the
first request on a connection, ``Exchange.try_hit`` in the hit loop) builds a Reply and serializes
it. Both must send the same bytes: here the first request of one connection (general path) is
compared with a request that arrives on another connection while it waits in the hit loop (the
lane), the same X-Request-ID on both, the Date field blanked. Each answer charges a bucket of its
own, so the X-RateLimit-* numbers match too. The gateway's clock is frozen, so every rate-limit
count is exact.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from support.lanes import NOW, PUBLIC, SMALL_KEY, lane_gateway, lane_keys
from support.loopback import Answer, Edge, OriginStub, start_edge, start_origin

import edgeproxy.hitloop
from edgeproxy.config import ProxyConfig
from edgeproxy.gateway import NS
from edgeproxy.gateway_config import parse_gateway

BOUND_S = 10.0
KEYS = lane_keys("lane", 8)
GATEWAY = lane_gateway("lane", KEYS)
REQUEST = b"%s %s HTTP/1.1\r\nhost: edge.test\r\nx-request-id: lane-test-1\r\n%s\r\n"
DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")
AGE = re.compile(rb"\r\nage: \d+\r\ncache-status: edgeproxy; hit; ttl=\d+\r\n")


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    stub = await start_origin(nursery)
    stub.route("/api/v3/posts", Answer(headers=(PUBLIC, (b"content-type", b"application/vnd.api+json"),
                                                (b"etag", b'"p1"'), (b"vary", b"X-Flowcms-Role")),
                                       body=b'{"data": [1, 2, 3]}' * 200))
    stub.route("/api/v3/contents/7", Answer(headers=(PUBLIC, (b"etag", b'"c7"')), body=b'{"data": 7}'))
    stub.route("/graphql", Answer(headers=(PUBLIC, (b"vary", b"Accept, X-Flowcms-Role")), body=b'{"data": {}}'))
    stub.route("/blog/", Answer(headers=(PUBLIC, (b"etag", b'"b"')), body=b"<p>blog</p>"))
    stub.route("/park", Answer(headers=(PUBLIC,), body=b"."))
    return stub


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    config = ProxyConfig(origin_port=origin.port, gateway=parse_gateway(GATEWAY, source="test"))
    started = await start_edge(nursery, config)
    assert started.server.exchange is not None
    started.server.exchange.gateway_clock = lambda: NOW * NS
    return started


@pytest.fixture
def lane_answers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The status of every answer the lane wrote (the hit loop's h1_hit, counted)."""
    answered: list[int] = []
    real: Callable[..., Any] = edgeproxy.hitloop.h1_hit

    def counting(*args: Any) -> Any:
        answer = real(*args)
        if answer is not None:
            answered.append(answer[2])
        return answer

    monkeypatch.setattr(edgeproxy.hitloop, "h1_hit", counting)
    return answered


class Raw:
    """A raw HTTP/1.1 connection: request bytes out, one whole answer's bytes back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def exchange(self, method: bytes, target: bytes, fields: bytes = b"") -> bytes:
        with trio.fail_after(BOUND_S):
            await self.stream.send_all(REQUEST % (method, target, fields))
            while b"\r\n\r\n" not in self.buffer:
                self.buffer += await self.stream.receive_some(65536)
            end = self.buffer.index(b"\r\n\r\n") + 4
            length = re.search(rb"\r\ncontent-length: (\d+)\r\n", self.buffer[:end])
            size = int(length.group(1)) if length and method != b"HEAD" and b" 304 " not in self.buffer[:20] else 0
            while len(self.buffer) < end + size:
                self.buffer += await self.stream.receive_some(65536)
        answer, self.buffer = self.buffer[:end + size], self.buffer[end + size:]
        return answer


@pytest.fixture
async def connect(edge: Edge) -> AsyncIterator[Callable[[], Any]]:
    opened: list[trio.SocketStream] = []

    async def connect() -> Raw:
        stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
        opened.append(stream)
        return Raw(stream)

    yield connect
    for stream in opened:
        await stream.aclose()


async def parked(connect: Callable[[], Any]) -> Raw:
    """A connection that has answered one request and now waits in the hit loop."""
    raw = await connect()
    assert (await raw.exchange(b"GET", b"/park")).startswith(b"HTTP/1.1 200")
    await trio.sleep(0.05)
    return raw


def comparable(answer: bytes) -> bytes:
    return DATE.sub(b"\r\ndate: -\r\n", answer)


def authorization(key: str) -> bytes:
    return b"authorization: Bearer %s\r\n" % key.encode()


CASES = [
    (b"GET", b"/api/v3/posts", authorization(KEYS[0]), authorization(KEYS[1])),  # Vary on the role
    (b"HEAD", b"/api/v3/posts", authorization(KEYS[2]), authorization(KEYS[3])),
    (b"GET", b"/api/v3/contents/7", b"", b""),  # anonymous: one per-IP bucket, see below
    (b"GET", b"/graphql", authorization(KEYS[4]) + b"accept: application/json\r\n",
     authorization(KEYS[5]) + b"accept: application/json\r\n"),  # Vary on a client field too
    (b"GET", b"/blog/", b"", b""),  # outside the gateway
]


@pytest.mark.parametrize(("method", "target", "general_fields", "lane_fields"), CASES)
async def test_the_lane_sends_the_bytes_the_general_path_sends(
        origin: OriginStub, edge: Edge, connect: Callable[[], Any], lane_answers: list[int],
        method: bytes, target: bytes, general_fields: bytes, lane_fields: bytes) -> None:
    fill = await connect()
    # a miss, now stored (keyed requests fill with a third key of the same role: the same variant)
    await fill.exchange(b"GET", target, general_fields.replace(authorization(KEYS[0]), authorization(SMALL_KEY))
                        .replace(authorization(KEYS[2]), authorization(SMALL_KEY))
                        .replace(authorization(KEYS[4]), authorization(SMALL_KEY)))
    lane = await parked(connect)
    general = await (await connect()).exchange(method, target, general_fields)  # handle(): the general path
    lane_answers.clear()
    fast = await lane.exchange(method, target, lane_fields)
    assert lane_answers == [200]
    if not general_fields and target.startswith(b"/api/"):
        # anonymous: the fill, the general path and the lane charge one per-IP bucket, in turn
        assert b"x-ratelimit-remaining: 98\r\n" in general
        fast = fast.replace(b"x-ratelimit-remaining: 97\r\n", b"x-ratelimit-remaining: 98\r\n")
    assert b"hit" in general
    assert comparable(fast) == comparable(general)
    assert origin.count(target.decode()) == 1


async def test_the_lane_charges_exactly_once_per_answer(edge: Edge, connect: Callable[[], Any],
                                                       lane_answers: list[int]) -> None:
    """100 per minute: exactly 100 answers over the lane, then its 429, the same as the general path's."""
    fill = await connect()
    await fill.exchange(b"GET", b"/api/v3/contents/7", authorization(KEYS[6]))
    lane = await parked(connect)
    lane_answers.clear()
    answers = [await lane.exchange(b"GET", b"/api/v3/contents/7", authorization(SMALL_KEY)) for _ in range(101)]
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200"] * 100 + [b"HTTP/1.1 429"]
    remaining = [int(re.search(rb"x-ratelimit-remaining: (\d+)", a).group(1)) for a in answers]  # type: ignore[union-attr]
    assert remaining == [*range(99, -1, -1), 0]
    assert lane_answers == [200] * 100 + [429]
    general = await (await connect()).exchange(b"GET", b"/api/v3/contents/7", authorization(SMALL_KEY))
    assert comparable(general) == comparable(answers[-1])  # the same 429, Retry-After included
    assert b"retry-after: 1\r\n" in general


async def test_lane_denials_match_the_general_path(edge: Edge, connect: Callable[[], Any],
                                                  lane_answers: list[int]) -> None:
    """A bad key (401) and a route whose role the anonymous client lacks (401 without a challenge error)."""
    for target, fields in ((b"/api/v3/contents/7", authorization("fc_live_nobody_0123456789")), (b"/graphql", b"")):
        lane = await parked(connect)
        lane_answers.clear()
        fast = await lane.exchange(b"GET", target, fields)
        general = await (await connect()).exchange(b"GET", target, fields)
        assert fast.startswith(b"HTTP/1.1 401")
        assert lane_answers == [401]
        assert comparable(fast) == comparable(general)


async def test_preconditions_leave_the_lane_for_the_general_hit_path(
        edge: Edge, connect: Callable[[], Any], lane_answers: list[int]) -> None:
    """If-None-Match: the hit loop still answers (304, charged, with X-RateLimit-*), not the lane."""
    fill = await connect()
    await fill.exchange(b"GET", b"/api/v3/contents/7", authorization(KEYS[7]))
    lane = await parked(connect)
    lane_answers.clear()
    answer = await lane.exchange(b"GET", b"/api/v3/contents/7", authorization(KEYS[7]) + b'if-none-match: "c7"\r\n')
    assert answer.startswith(b"HTTP/1.1 304")
    assert b"x-ratelimit-remaining: 998\r\n" in answer
    assert b"x-request-id: lane-test-1\r\n" in answer
    assert lane_answers == []


async def test_request_ids_the_lane_keeps_and_replaces(edge: Edge, connect: Callable[[], Any]) -> None:
    fill = await connect()
    await fill.exchange(b"GET", b"/blog/")
    lane = await parked(connect)
    kept = await lane.exchange(b"GET", b"/blog/")
    assert b"\r\nx-request-id: lane-test-1\r\n" in kept
    stream = lane.stream
    for bad in (b"x-request-id: has space\r\n", b"x-request-id: a\r\nx-request-id: b\r\n", b"x-request-id: \r\n"):
        await stream.send_all(b"GET /blog/ HTTP/1.1\r\nhost: edge.test\r\n%s\r\n" % bad)
        with trio.fail_after(BOUND_S):
            while b"<p>blog</p>" not in lane.buffer:
                lane.buffer += await stream.receive_some(65536)
        answer, lane.buffer = lane.buffer, b""
        rid = re.search(rb"\r\nx-request-id: ([^\r]*)\r\n", answer)
        assert rid is not None
        assert re.fullmatch(rb"req_[0-9a-f]{16}-[0-9a-f]+", rid.group(1))
