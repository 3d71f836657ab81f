"""The HTTP/2 hit lane (edgeproxy/h2lane.py via plainhit.plain_hit) in a real edge on 127.0.0.1.

The lane encodes a plain fresh hit's header block itself; the general path (``Exchange.try_hit``
and ``H2Connection._send_now``) builds a Reply and encodes it. Both must send the same frames:
here one request goes through the lane and the same request, on another connection, through the
general path (``plain_hit`` switched off for it), and the raw HEADERS payloads are compared with
only the Date and Age values blanked. The gateway's clock is frozen, so every rate-limit count is
exact; each keyed answer charges a bucket of its own, so the X-RateLimit-* numbers match too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from support.lanes import NOW, PUBLIC, SMALL_KEY, lane_gateway, lane_keys
from support.loopback import Answer, Edge, OriginStub, start_edge, start_origin
from support.rawh2 import Flag, FrameType, RawH2, Setting, StreamState

import edgeproxy.http2
from edgeproxy.config import ProxyConfig
from edgeproxy.gateway import NS
from edgeproxy.gateway_config import parse_gateway
from edgeproxy.h2wire import encode_field

BOUND_S = 10.0
KEYS = lane_keys("h2lane", 12)
GATEWAY = lane_gateway("h2lane", KEYS)
POSTS = b'{"data": [1, 2, 3]}' * 200  # 3,800 bytes
BIG = bytes(range(256)) * 160  # 40 KiB: more than one DATA frame, more than the default windows
HTTP_DATE = re.compile(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT")
RID = (b"x-request-id", b"h2lane-test-1")


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    stub = await start_origin(nursery)
    stub.route("/api/v3/posts", Answer(headers=(PUBLIC, (b"content-type", b"application/vnd.api+json"),
                                                (b"etag", b'"p1"'), (b"vary", b"X-Flowcms-Role")), body=POSTS))
    stub.route("/api/v3/contents/7", Answer(headers=(PUBLIC, (b"etag", b'"c7"')), body=b'{"data": 7}'))
    stub.route("/api/v3/big", Answer(headers=(PUBLIC,), body=BIG))
    stub.route("/graphql", Answer(headers=(PUBLIC, (b"vary", b"Accept, X-Flowcms-Role")), body=b'{"data": {}}'))
    stub.route("/blog/", Answer(headers=(PUBLIC, (b"etag", b'"b"')), body=b"<p>blog</p>"))
    return stub


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    config = ProxyConfig(origin_port=origin.port, gateway=parse_gateway(GATEWAY, source="test"))
    started = await start_edge(nursery, config)
    assert started.server.exchange is not None
    started.server.exchange.gateway_clock = lambda: NOW * NS
    return started


class Lane:
    """Records what ``plain_hit`` decided per request ("hit", "denied" or None); ``off`` sends
    requests to the general path (``try_hit``) instead."""

    def __init__(self) -> None:
        self.answers: list[str | None] = []
        self.off = False


@pytest.fixture
def lane(monkeypatch: pytest.MonkeyPatch) -> Lane:
    state = Lane()
    real: Callable[..., Any] = edgeproxy.http2.plain_hit

    def recording(*args: Any) -> Any:
        if state.off:
            return None
        found = real(*args)
        state.answers.append(None if found is None else "denied" if len(found) == 3 else "hit")
        return found

    monkeypatch.setattr(edgeproxy.http2, "plain_hit", recording)
    return state


@pytest.fixture
async def connect(edge: Edge) -> AsyncIterator[Callable[..., Any]]:
    opened: list[RawH2] = []

    async def connect(settings: tuple[tuple[int, int], ...] = ()) -> RawH2:
        conn = await RawH2.connect(edge.port)
        opened.append(conn)
        await conn.handshake(settings)
        return conn

    yield connect
    for conn in opened:
        await conn.aclose()


def authorization(key: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Bearer %s" % key.encode()


def raw_block(conn: RawH2, stream_id: int) -> bytes:
    """The payload of the HEADERS frame the server sent on ``stream_id`` (one frame: small blocks)."""
    frames = [f for f in conn.frames if f.type == FrameType.HEADERS and f.stream_id == stream_id]
    assert len(frames) == 1
    assert frames[0].has(Flag.END_HEADERS)
    return frames[0].payload


def comparable(conn: RawH2, stream_id: int, state: StreamState) -> bytes:
    """The raw header block with the Date and Age values blanked (a second may pass in between)."""
    block = HTTP_DATE.sub(b"-" * 29, raw_block(conn, stream_id))
    age = state.header(b"age")
    return block.replace(encode_field(b"age", age), b"<age>") if age is not None else block


async def get(conn: RawH2, method: bytes, target: bytes, fields: list[tuple[bytes, bytes]]) -> tuple[int, StreamState]:
    with trio.fail_after(BOUND_S):
        sid = await conn.request(method, target, [RID, *fields])
        return sid, await conn.response(sid)


CASES = [
    (b"GET", b"/api/v3/posts", [authorization(KEYS[0])], [authorization(KEYS[1])]),  # Vary on the role
    (b"HEAD", b"/api/v3/posts", [authorization(KEYS[2])], [authorization(KEYS[3])]),
    (b"GET", b"/api/v3/contents/7", [], []),  # anonymous: one per-IP bucket, see below
    (b"GET", b"/graphql", [authorization(KEYS[4]), (b"accept", b"application/json")],
     [authorization(KEYS[5]), (b"accept", b"application/json")]),  # Vary on a client field too
    (b"GET", b"/blog/", [], []),  # outside the gateway
]


@pytest.mark.parametrize("table_update", [False, True])
@pytest.mark.parametrize(("method", "target", "general_fields", "lane_fields"), CASES)
async def test_the_lane_sends_the_frames_the_general_path_sends(
        origin: OriginStub, connect: Callable[..., Any], lane: Lane, method: bytes, target: bytes,
        general_fields: list[tuple[bytes, bytes]], lane_fields: list[tuple[bytes, bytes]], table_update: bool) -> None:
    settings = ((Setting.HEADER_TABLE_SIZE, 0),) if table_update else ()  # the first block starts with an update
    fill = await connect()
    fill_fields = [authorization(SMALL_KEY) if n == b"authorization" else (n, v) for n, v in general_fields]
    await get(fill, b"GET", target, fill_fields)  # a miss, now stored (a third key of the same role)
    general_conn, lane_conn = await connect(settings), await connect(settings)
    lane.off = True
    general_sid, general = await get(general_conn, method, target, general_fields)
    lane.off = False
    lane.answers.clear()
    lane_sid, fast = await get(lane_conn, method, target, lane_fields)
    assert lane.answers == ["hit"]
    assert general.status == fast.status == 200
    assert b"hit" in (general.header(b"cache-status") or b"")
    assert fast.body == general.body
    assert (fast.body == b"") == (method == b"HEAD")
    expected = comparable(general_conn, general_sid, general)
    if not general_fields and target.startswith(b"/api/"):
        # anonymous: the fill, the general path and the lane charge one per-IP bucket, in turn
        assert general.header(b"x-ratelimit-remaining") == b"98"
        expected = expected.replace(encode_field(b"x-ratelimit-remaining", b"98"),
                                    encode_field(b"x-ratelimit-remaining", b"97"))
    assert comparable(lane_conn, lane_sid, fast) == expected
    assert origin.count(target.decode()) == 1


async def test_the_lane_charges_exactly_once_per_answer_under_concurrent_streams(
        connect: Callable[..., Any], lane: Lane) -> None:
    """101 streams at once on one connection at 100 per minute: exactly 100 answers, then the 429,
    the same as the general path's; the Remaining numbers are each given once."""
    fill = await connect()
    await get(fill, b"GET", b"/api/v3/contents/7", [authorization(KEYS[6])])
    conn = await connect()
    lane.answers.clear()
    with trio.fail_after(BOUND_S):
        sids = [await conn.request(b"GET", b"/api/v3/contents/7", [RID, authorization(SMALL_KEY)])
                for _ in range(101)]
        answers = [await conn.response(sid) for sid in sids]
    assert sorted(a.status or 0 for a in answers) == [200] * 100 + [429]
    remaining = sorted(int(a.header(b"x-ratelimit-remaining") or b"-1") for a in answers if a.status == 200)
    assert remaining == list(range(100))
    assert sorted(lane.answers, key=str) == ["denied"] + ["hit"] * 100
    denied = next(a for a in answers if a.status == 429)
    other = await connect()
    _, general = await get(other, b"GET", b"/api/v3/contents/7", [authorization(SMALL_KEY)])
    assert general.status == 429
    assert general.body == denied.body
    assert general.header(b"retry-after") == denied.header(b"retry-after") == b"1"


async def test_lane_denials_match_the_general_path(connect: Callable[..., Any], lane: Lane) -> None:
    """A bad key (401) and a route whose role the anonymous client lacks (401 without a challenge error)."""
    for target, fields in ((b"/api/v3/contents/7", [authorization("fc_live_nobody_0123456789")]), (b"/graphql", [])):
        general_conn, lane_conn = await connect(), await connect()
        lane.off = True
        general_sid, general = await get(general_conn, b"GET", target, fields)
        lane.off = False
        lane.answers.clear()
        lane_sid, fast = await get(lane_conn, b"GET", target, fields)
        assert fast.status == 401
        assert lane.answers == ["denied"]
        assert fast.body == general.body
        assert comparable(lane_conn, lane_sid, fast) == comparable(general_conn, general_sid, general)


async def test_a_hit_larger_than_the_windows_leaves_the_lane_and_is_charged_once(
        connect: Callable[..., Any], lane: Lane) -> None:
    """A stream window of 1,000 bytes: the 40 KiB hit is not sent inline; the stream's task sends
    it within the windows (no DATA frame past them), and the bucket is charged once."""
    fill = await connect()
    await get(fill, b"GET", b"/api/v3/big", [authorization(KEYS[7])])
    conn = await connect(((Setting.INITIAL_WINDOW_SIZE, 1000),))
    lane.answers.clear()
    _, answer = await get(conn, b"GET", b"/api/v3/big", [authorization(KEYS[8])])
    assert lane.answers == [None]
    assert (answer.status, answer.body) == (200, BIG)
    assert max(answer.data_frames) <= 1000
    assert answer.header(b"x-ratelimit-remaining") == b"999"
    _, again = await get(conn, b"GET", b"/api/v3/contents/7", [authorization(KEYS[8])])
    assert again.header(b"x-ratelimit-remaining") == b"998"  # the big answer was charged once: exact


async def test_bodies_span_frames_of_the_peers_size(connect: Callable[..., Any], lane: Lane) -> None:
    """A 40 KiB hit that fits the windows is sent inline as DATA frames of at most 16 KiB."""
    fill = await connect()
    await get(fill, b"GET", b"/api/v3/big", [authorization(KEYS[9])])
    conn = await connect(((Setting.INITIAL_WINDOW_SIZE, 1 << 20),))
    await conn.window_update(0, 1 << 20)
    lane.answers.clear()
    _, answer = await get(conn, b"GET", b"/api/v3/big", [authorization(KEYS[10])])
    assert lane.answers == ["hit"]
    assert (answer.status, answer.body) == (200, BIG)
    assert answer.data_frames == [16384, 16384, len(BIG) - 32768]
