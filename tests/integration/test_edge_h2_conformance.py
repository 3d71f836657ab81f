"""HTTP/2 conformance (RFC 9113, RFC 7541) and hostile input against the edge, frame by frame.

Modeled on h2spec: each test writes raw frames to a prior-knowledge h2c connection
(``support.rawh2``) and checks the server's answer. Where RFC 9113 calls for a *stream
error*, RST_STREAM on that stream or GOAWAY with the code both pass (as in h2spec); a
*connection error* needs GOAWAY with the code followed by a close (§5.4.1). The limit and
flood tests also check that other clients are still served (a connection opened before the
attack and one opened after it, or during it for slowloris).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio
from support.loopback import Answer, Edge, OriginStub, start_edge, start_origin
from support.rawh2 import (
    DEFAULT_MAX_FRAME_SIZE,
    MAX_WINDOW,
    PREFACE,
    ErrorCode,
    Flag,
    Frame,
    FrameType,
    RawH2,
    Setting,
    code_name,
    frame,
    goaway_payload,
    hpack_indexed,
    hpack_literal,
    priority_payload,
    request_fields,
    rst_payload,
    settings_payload,
    window_update_payload,
)

from edgeproxy.config import ProxyConfig

CACHED = ((b"cache-control", b"max-age=60"),)
TWENTY = b"0123456789abcdefghij"
BIG = bytes(range(256)) * 400  # 100 KiB
Opener = Callable[..., Awaitable[RawH2]]

E = ErrorCode
T = FrameType


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    stub = await start_origin(nursery)
    stub.route("/ok", Answer(headers=CACHED, body=b"ok"))
    stub.route("/slow", Answer(headers=CACHED, body=b"slow", delay=1.0))
    stub.route("/slowish", Answer(headers=CACHED, body=b"slowish", delay=0.3))
    stub.route("/twenty", Answer(headers=CACHED, body=TWENTY))
    stub.route("/big", Answer(headers=CACHED, body=BIG))
    stub.route("/upload", Answer(status=201, body=b"stored"))
    return stub


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    return await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token="t", log_format="off"))


@pytest.fixture
async def h2open(edge: Edge) -> AsyncIterator[Opener]:
    """Open raw h2c connections (to ``edge`` unless a port is given), closed at teardown."""
    opened: list[RawH2] = []

    async def open_(port: int | None = None, *, handshake: bool = True,
                    settings: tuple[tuple[int, int], ...] = ()) -> RawH2:
        client = await RawH2.connect(edge.port if port is None else port)
        opened.append(client)
        if handshake:
            await client.handshake(settings)
        return client

    yield open_
    for client in opened:
        await client.aclose()


async def assert_connection_error(c: RawH2, code: ErrorCode) -> None:
    got = await c.expect_goaway()
    assert got == code, (f"expected GOAWAY({code.name}), got "
                         f"{'a close without GOAWAY' if got is None else 'GOAWAY(' + code_name(got) + ')'}; "
                         f"frames: {c.frames[-10:]}")
    assert await c.closed(), "a GOAWAY for a connection error must be followed by a close (RFC 9113 §5.4.1)"


async def assert_stream_error(c: RawH2, stream_id: int, code: ErrorCode) -> None:
    outcome = await c.expect_rst_or_goaway(stream_id)
    wanted = f"expected RST_STREAM({code.name}) on stream {stream_id} or GOAWAY({code.name})"
    assert outcome.kind in ("rst", "goaway"), f"{wanted}, got {outcome!r}; frames: {c.frames[-10:]}"
    assert outcome.code == code, f"{wanted}, got {outcome!r}; frames: {c.frames[-10:]}"


async def open_post(c: RawH2) -> int:
    """A POST stream left open (HEADERS without END_STREAM)."""
    stream_id = c.new_stream_id()
    await c.headers(stream_id, request_fields(b"POST", b"/upload"), end_stream=False)
    return stream_id


async def assert_ok(c: RawH2) -> None:
    s = await c.get(b"/ok")
    assert (s.status, s.body) == (200, b"ok")


async def assert_others_served(h2open: Opener, before: RawH2 | None = None, *, port: int | None = None) -> None:
    """Other clients are unaffected: ``before`` (opened ahead of the attack) and a new connection get 200."""
    clients = [before] if before is not None else []
    clients.append(await h2open(port))
    for client in clients:
        await assert_ok(client)


# --- 1. connection preface and SETTINGS (RFC 9113 §3.4, §6.5) --------------------------------------

async def test_h2_preface_first_frame_not_settings(h2open: Opener) -> None:
    """The client preface must be followed by SETTINGS; a PING first is a connection error (§3.4)."""
    c = await h2open(handshake=False)
    await c.send(PREFACE + frame(T.PING, 0, 0, b"12345678"))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_settings_ack_with_payload(h2open: Opener) -> None:
    """SETTINGS with ACK and a non-empty payload: connection error FRAME_SIZE_ERROR (§6.5)."""
    c = await h2open()
    await c.send_frame(T.SETTINGS, Flag.ACK, 0, settings_payload([(Setting.INITIAL_WINDOW_SIZE, 100)]))
    await assert_connection_error(c, E.FRAME_SIZE_ERROR)


async def test_h2_settings_on_stream_1(h2open: Opener) -> None:
    """SETTINGS on a stream other than 0: connection error PROTOCOL_ERROR (§6.5)."""
    c = await h2open()
    await c.send_frame(T.SETTINGS, 0, 1, settings_payload([(Setting.INITIAL_WINDOW_SIZE, 100)]))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_settings_length_3(h2open: Opener) -> None:
    """A SETTINGS length that is not a multiple of 6: connection error FRAME_SIZE_ERROR (§6.5)."""
    c = await h2open()
    await c.send_frame(T.SETTINGS, 0, 0, b"\x00\x03\x00")
    await assert_connection_error(c, E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(("setting", "value", "code"), [
    pytest.param(Setting.ENABLE_PUSH, 2, E.PROTOCOL_ERROR, id="enable_push_2"),
    pytest.param(Setting.INITIAL_WINDOW_SIZE, 2**31, E.FLOW_CONTROL_ERROR, id="initial_window_2_31"),
    pytest.param(Setting.MAX_FRAME_SIZE, 16383, E.PROTOCOL_ERROR, id="max_frame_size_16383"),
    pytest.param(Setting.MAX_FRAME_SIZE, 2**24, E.PROTOCOL_ERROR, id="max_frame_size_2_24"),
])
async def test_h2_settings_invalid_value(h2open: Opener, setting: Setting, value: int, code: ErrorCode) -> None:
    """Out-of-range SETTINGS values are connection errors (§6.5.2)."""
    c = await h2open()
    await c.send_frame(T.SETTINGS, 0, 0, settings_payload([(setting, value)]))
    await assert_connection_error(c, code)


async def test_h2_settings_unknown_id_is_ignored(h2open: Opener) -> None:
    """An unknown setting is ignored; the SETTINGS frame is still acknowledged (§6.5.2)."""
    c = await h2open()
    before = c.settings_acks
    await c.send_frame(T.SETTINGS, 0, 0, settings_payload([(0xFF, 1)]))
    await c.wait_settings_ack(before)
    await assert_ok(c)


async def test_h2_settings_server_advertises_max_concurrent_streams(h2open: Opener) -> None:
    """The server's SETTINGS name SETTINGS_MAX_CONCURRENT_STREAMS, at least 100 (§6.5.2 recommends >= 100)."""
    c = await h2open()
    limit = c.server_settings.get(Setting.MAX_CONCURRENT_STREAMS)
    assert limit is not None, f"no MAX_CONCURRENT_STREAMS in {c.server_settings}"
    assert limit >= 100


# --- 2. PING (§6.7) -----------------------------------------------------------------------------

async def test_h2_ping_is_acked_with_same_data(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.PING, 0, 0, b"h2spec!!")
    ack = await c.expect_frame(lambda f: f.type == T.PING)
    assert ack.has(Flag.ACK)
    assert (ack.stream_id, ack.payload) == (0, b"h2spec!!")


async def test_h2_ping_ack_gets_no_answer(h2open: Opener) -> None:
    """A PING with ACK set is not answered; the connection goes on."""
    c = await h2open()
    await c.send_frame(T.PING, Flag.ACK, 0, b"unasked!")
    await assert_ok(c)
    assert not [f for f in c.frames if f.type == T.PING], c.frames


async def test_h2_ping_on_stream_1(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.PING, 0, 1, b"12345678")
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_ping_length_6(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.PING, 0, 0, b"123456")
    await assert_connection_error(c, E.FRAME_SIZE_ERROR)


# --- 3. GOAWAY (§6.8) ---------------------------------------------------------------------------

async def test_h2_goaway_on_stream_1(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.GOAWAY, 0, 1, goaway_payload(0, E.NO_ERROR))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


# --- 4. WINDOW_UPDATE (§6.9) --------------------------------------------------------------------

async def test_h2_window_update_zero_on_connection(h2open: Opener) -> None:
    c = await h2open()
    await c.window_update(0, 0)
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_window_update_zero_on_stream(h2open: Opener) -> None:
    c = await h2open()
    stream_id = await open_post(c)
    await c.window_update(stream_id, 0)
    await assert_stream_error(c, stream_id, E.PROTOCOL_ERROR)


async def test_h2_window_update_length_3(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")
    await assert_connection_error(c, E.FRAME_SIZE_ERROR)


async def test_h2_window_update_connection_overflow(h2open: Opener) -> None:
    """65535 + (2^31 - 1) exceeds the largest window: connection error FLOW_CONTROL_ERROR (§6.9.1)."""
    c = await h2open()
    await c.window_update(0, MAX_WINDOW)
    await assert_connection_error(c, E.FLOW_CONTROL_ERROR)


async def test_h2_window_update_stream_overflow(h2open: Opener) -> None:
    """A stream window past 2^31 - 1: stream error FLOW_CONTROL_ERROR (§6.9.1)."""
    c = await h2open()
    stream_id = await open_post(c)
    await c.window_update(stream_id, MAX_WINDOW)
    await assert_stream_error(c, stream_id, E.FLOW_CONTROL_ERROR)


# --- 5. DATA (§6.1, §5.1) -----------------------------------------------------------------------

async def test_h2_data_on_stream_0(h2open: Opener) -> None:
    c = await h2open()
    await c.data(0, b"x")
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_data_on_idle_stream(h2open: Opener) -> None:
    """DATA on a stream never opened (idle): connection error PROTOCOL_ERROR (§5.1)."""
    c = await h2open()
    await c.data(5, b"x")
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_data_after_end_stream(h2open: Opener) -> None:
    """DATA on a half-closed (remote) stream: STREAM_CLOSED (§5.1), as a stream or connection error."""
    c = await h2open()
    stream_id = await c.request(b"GET", b"/slow")  # the answer takes 1 s: the stream stays half-closed
    await c.data(stream_id, b"late")
    await assert_stream_error(c, stream_id, E.STREAM_CLOSED)


async def test_h2_data_pad_length_too_large(h2open: Opener) -> None:
    """A pad length not smaller than the payload: connection error PROTOCOL_ERROR (§6.1)."""
    c = await h2open()
    stream_id = await open_post(c)
    await c.send_frame(T.DATA, Flag.PADDED, stream_id, bytes([10]) + b"abc")
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_data_larger_than_max_frame_size(h2open: Opener) -> None:
    """A DATA frame past the server's SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR (§4.2)."""
    c = await h2open()
    limit = c.server_settings.get(Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE)
    stream_id = await open_post(c)
    await c.data(stream_id, b"x" * (limit + 1))
    await assert_stream_error(c, stream_id, E.FRAME_SIZE_ERROR)


# --- 6. HEADERS and CONTINUATION (§6.2, §6.10, §5.1.1) --------------------------------------------

async def test_h2_headers_on_stream_0(h2open: Opener) -> None:
    c = await h2open()
    await c.headers(0, request_fields())
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_headers_on_even_stream(h2open: Opener) -> None:
    """A client may only open odd-numbered streams (§5.1.1)."""
    c = await h2open()
    await c.headers(2, request_fields())
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_headers_stream_id_decreases(h2open: Opener) -> None:
    """Stream ids must increase: HEADERS on 3 after 5 is a connection error (§5.1.1)."""
    c = await h2open()
    await c.headers(5, request_fields())
    await c.headers(3, request_fields())
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_headers_on_closed_stream(h2open: Opener) -> None:
    """HEADERS again on a stream that was answered and closed: STREAM_CLOSED (§5.1), not an id error."""
    c = await h2open()
    stream_id = await c.request(b"GET", b"/ok")
    assert (b":status", b"200") in (await c.response(stream_id)).headers
    await c.headers(stream_id, request_fields())
    await assert_connection_error(c, E.STREAM_CLOSED)


async def test_h2_closed_streams_remembered_past_the_bound(h2open: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory of closed streams is bounded, drops its oldest ids in bulk, and still knows the recent
    ones: many streams later, HEADERS on the last closed stream is STREAM_CLOSED and other streams work."""
    monkeypatch.setattr("edgeproxy.http2.RECENTLY_CLOSED", 4)
    c = await h2open()
    for _ in range(19):  # a bulk drop at the 9th, 14th and 19th stream: the last one is kept
        stream_id = await c.request(b"GET", b"/ok")
        assert (b":status", b"200") in (await c.response(stream_id)).headers
    await c.headers(stream_id, request_fields())
    await assert_connection_error(c, E.STREAM_CLOSED)


@pytest.mark.parametrize("interloper", ["ping", "data"])
async def test_h2_headers_without_end_headers_then_other_frame(h2open: Opener, interloper: str) -> None:
    """Only CONTINUATION may follow HEADERS without END_HEADERS (§6.10)."""
    c = await h2open()
    await c.headers(1, request_fields(b"POST", b"/upload"), end_stream=False, end_headers=False)
    if interloper == "ping":
        await c.send_frame(T.PING, 0, 0, b"12345678")
    else:
        await c.data(1, b"x")
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_continuation_without_headers(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.CONTINUATION, Flag.END_HEADERS, 1, c.encode(request_fields()))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_continuation_on_other_stream(h2open: Opener) -> None:
    c = await h2open()
    block = c.encode(request_fields())
    await c.send_frame(T.HEADERS, Flag.END_STREAM, 1, block[:5])
    await c.send_frame(T.CONTINUATION, Flag.END_HEADERS, 3, block[5:])
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_headers_split_over_two_continuations(h2open: Opener) -> None:
    """A header block in HEADERS + CONTINUATION + CONTINUATION is one request (§4.3)."""
    c = await h2open()
    block = c.encode(request_fields(extra=[(b"x-filler", b"f" * 60)]))
    third = len(block) // 3
    await c.send(frame(T.HEADERS, Flag.END_STREAM, 1, block[:third])
                 + frame(T.CONTINUATION, 0, 1, block[third:2 * third])
                 + frame(T.CONTINUATION, Flag.END_HEADERS, 1, block[2 * third:]))
    s = await c.response(1)
    assert (s.status, s.body) == (200, b"ok")


async def test_h2_headers_priority_depends_on_itself(h2open: Opener) -> None:
    """A stream cannot depend on itself: stream error PROTOCOL_ERROR (§5.3.1)."""
    c = await h2open()
    payload = priority_payload(1) + c.encode(request_fields())
    await c.send_frame(T.HEADERS, Flag.END_STREAM | Flag.END_HEADERS | Flag.PRIORITY, 1, payload)
    await assert_stream_error(c, 1, E.PROTOCOL_ERROR)


async def test_h2_headers_pad_length_too_large(h2open: Opener) -> None:
    """Padding longer than the rest of the HEADERS payload: PROTOCOL_ERROR (§6.2)."""
    c = await h2open()
    block = c.encode(request_fields())
    assert len(block) + 5 < 256
    payload = bytes([len(block) + 5]) + block
    await c.send_frame(T.HEADERS, Flag.END_STREAM | Flag.END_HEADERS | Flag.PADDED, 1, payload)
    await assert_connection_error(c, E.PROTOCOL_ERROR)


# --- 7. PRIORITY (§6.3) -------------------------------------------------------------------------

async def test_h2_priority_length_4(h2open: Opener) -> None:
    """A PRIORITY frame with a length other than 5: stream error FRAME_SIZE_ERROR (§6.3)."""
    c = await h2open()
    stream_id = await open_post(c)
    await c.send_frame(T.PRIORITY, 0, stream_id, priority_payload(0)[:4])
    await assert_stream_error(c, stream_id, E.FRAME_SIZE_ERROR)


async def test_h2_priority_depends_on_itself(h2open: Opener) -> None:
    c = await h2open()
    stream_id = await open_post(c)
    await c.send_frame(T.PRIORITY, 0, stream_id, priority_payload(stream_id))
    await assert_stream_error(c, stream_id, E.PROTOCOL_ERROR)


async def test_h2_priority_on_idle_stream_is_accepted(h2open: Opener) -> None:
    """PRIORITY may be sent for an idle stream (§5.1); the connection goes on."""
    c = await h2open()
    await c.send_frame(T.PRIORITY, 0, 3, priority_payload(0, 32))
    s = await c.response(await c.request(stream_id=5))
    assert (s.status, s.body) == (200, b"ok")
    assert c.goaway is None


# --- 8. RST_STREAM (§6.4) -----------------------------------------------------------------------

async def test_h2_rst_stream_on_stream_0(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.RST_STREAM, 0, 0, rst_payload(E.CANCEL))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_rst_stream_on_idle_stream(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(T.RST_STREAM, 0, 5, rst_payload(E.CANCEL))
    await assert_connection_error(c, E.PROTOCOL_ERROR)


async def test_h2_rst_stream_length_3(h2open: Opener) -> None:
    c = await h2open()
    stream_id = await open_post(c)
    await c.send_frame(T.RST_STREAM, 0, stream_id, b"\x00\x00\x08")
    await assert_connection_error(c, E.FRAME_SIZE_ERROR)


# --- 9. unknown and forbidden frame types (§5.5, §8.4) --------------------------------------------

async def test_h2_unknown_frame_type_is_ignored(h2open: Opener) -> None:
    c = await h2open()
    await c.send_frame(0xEE, 0xFF, 0, b"extension")
    await c.send_frame(0xEE, 0, 1, b"extension")
    await assert_ok(c)
    assert c.goaway is None


async def test_h2_push_promise_from_client(h2open: Opener) -> None:
    """A client cannot push: PUSH_PROMISE is a connection error PROTOCOL_ERROR (§8.4)."""
    c = await h2open()
    stream_id = await open_post(c)
    payload = struct.pack(">I", 2) + c.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                               (b":authority", b"edge.test"), (b":path", b"/pushed")])
    await c.send_frame(T.PUSH_PROMISE, Flag.END_HEADERS, stream_id, payload)
    await assert_connection_error(c, E.PROTOCOL_ERROR)


# --- 10. HPACK (RFC 7541 §2.3.3, RFC 9113 §4.3) ---------------------------------------------------

@pytest.mark.parametrize("bad", [
    pytest.param(b"\xc6", id="index_70_empty_table"),
    pytest.param(b"\xff\x80\x80\x80\x80\x08", id="huge_index"),
])
async def test_h2_hpack_index_out_of_range(h2open: Opener, bad: bytes) -> None:
    """An index past the static and dynamic tables is a decoding error: COMPRESSION_ERROR."""
    c = await h2open()
    block = hpack_indexed(2) + hpack_indexed(6) + hpack_indexed(4) + hpack_literal(1, b"edge.test") + bad
    await c.headers(1, block)
    await assert_connection_error(c, E.COMPRESSION_ERROR)


# --- 11. request validation: malformed requests are stream errors PROTOCOL_ERROR (§8.1.1, §8.2, §8.3) ---

BASE = request_fields(b"GET", b"/ok")
MALFORMED = {
    "uppercase_name": [*BASE, (b"X-Upper", b"1")],
    "unknown_pseudo": [*BASE, (b":foo", b"bar")],
    "pseudo_after_regular": [*BASE[:3], (b"x-regular", b"1"), BASE[3]],
    "duplicate_path": [*BASE, (b":path", b"/ok")],
    "missing_method": [f for f in BASE if f[0] != b":method"],
    "missing_path": [f for f in BASE if f[0] != b":path"],
    "empty_path": [*BASE[:3], (b":path", b"")],
    "connection_header": [*BASE, (b"connection", b"keep-alive")],
    "te_gzip": [*BASE, (b"te", b"gzip")],
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_h2_request_malformed(h2open: Opener, origin: OriginStub, case: str) -> None:
    c = await h2open()
    await c.headers(1, MALFORMED[case])
    await assert_stream_error(c, 1, E.PROTOCOL_ERROR)
    assert origin.count("/ok") == 0, "a malformed request must not be forwarded (§8.1.1)"


async def test_h2_request_te_trailers_is_accepted(h2open: Opener) -> None:
    c = await h2open()
    s = await c.get(b"/ok", [(b"te", b"trailers")])
    assert (s.status, s.body) == (200, b"ok")


async def test_h2_request_pseudo_header_in_trailers(h2open: Opener) -> None:
    c = await h2open()
    stream_id = await open_post(c)
    await c.data(stream_id, b"hello")
    await c.headers(stream_id, [(b":path", b"/upload")], end_stream=True)
    await assert_stream_error(c, stream_id, E.PROTOCOL_ERROR)


async def test_h2_request_content_length_mismatch(h2open: Opener, origin: OriginStub) -> None:
    """content-length: 10 with 5 bytes of DATA is malformed (§8.1.1)."""
    c = await h2open()
    stream_id = c.new_stream_id()
    await c.headers(stream_id, request_fields(b"POST", b"/upload", [(b"content-length", b"10")]), end_stream=False)
    await c.data(stream_id, b"12345", end_stream=True)
    await assert_stream_error(c, stream_id, E.PROTOCOL_ERROR)
    assert origin.count("/upload") == 0


# --- 12. limits and hostile input ----------------------------------------------------------------

async def test_h2_limits_concurrent_streams_refused(h2open: Opener) -> None:
    """Streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused one by one (§5.1.2); the connection lives."""
    bystander = await h2open()
    c = await h2open()
    limit = c.server_settings.get(Setting.MAX_CONCURRENT_STREAMS)
    assert limit is not None, "the server must advertise MAX_CONCURRENT_STREAMS"
    ids = [c.new_stream_id() for _ in range(limit + 5)]
    await c.send(b"".join(frame(T.HEADERS, Flag.END_HEADERS, sid, c.encode(request_fields(b"POST", b"/upload")))
                          for sid in ids))
    excess = ids[limit:]
    with trio.fail_after(5):
        while not all(sid in c.streams and c.streams[sid].reset is not None for sid in excess):
            f = await c.read_frame()
            assert f is not None, f"connection closed instead of refusing streams: {c.frames[-5:]}"
            assert c.goaway is None, f"GOAWAY instead of refusing streams: {c.frames[-5:]}"
    codes = {c.streams[sid].reset for sid in excess}
    assert codes <= {E.REFUSED_STREAM, E.PROTOCOL_ERROR}, [code_name(code) for code in codes]
    assert all(sid not in c.streams or c.streams[sid].reset is None for sid in ids[:limit])
    await c.data(ids[0], b"done", end_stream=True)  # one stream finishes: room for a new one
    s = await c.response(ids[0])
    assert (s.status, s.body) == (201, b"stored")
    await assert_ok(c)
    assert c.goaway is None
    await assert_others_served(h2open, bystander)


async def test_h2_limits_rapid_reset(h2open: Opener) -> None:
    """1000 x (HEADERS + RST_STREAM CANCEL), CVE-2023-44487: GOAWAY(ENHANCE_YOUR_CALM)."""
    bystander = await h2open()
    c = await h2open()

    def batches() -> Iterator[bytes]:
        for _ in range(2):
            chunk = bytearray()
            for _ in range(500):
                sid = c.new_stream_id()
                chunk += frame(T.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, sid, c.encode(request_fields()))
                chunk += frame(T.RST_STREAM, 0, sid, rst_payload(E.CANCEL))
            yield bytes(chunk)

    await c.flood(batches())
    code = await c.expect_goaway()
    assert code == E.ENHANCE_YOUR_CALM, code_name(code)
    await assert_others_served(h2open, bystander)


CONTINUATION_FRAMES = 2000
HEADER_BLOCK_LIMIT = 1024 * 1024  # what a server may reasonably buffer for one header block
# What the kernels take on top before the flood sees the GOAWAY or the reset: our send
# buffer and the server's unread receive buffer. A server that stops at exactly 1 MiB was
# measured at ~1.3 MB accepted on an idle machine; 3 MiB leaves room for a loaded one.
SOCKET_SLACK = 3 * 1024 * 1024


async def test_h2_limits_continuation_flood(h2open: Opener) -> None:
    """Endless CONTINUATION frames (16 KiB each) must be cut off at about 1 MiB of header block."""
    bystander = await h2open()
    c = await h2open()
    field_ = hpack_literal(b"x-flood", b"a" * 118)  # 128 bytes: a frame holds a whole number of fields
    assert len(field_) == 128
    filler = field_ * (16384 // 128)

    def batches() -> Iterator[bytes]:
        yield frame(T.HEADERS, Flag.END_STREAM, 1, c.encode(request_fields()))
        for _ in range(CONTINUATION_FRAMES // 4):  # 64 KiB per send: the count stays close to the truth
            yield frame(T.CONTINUATION, 0, 1, filler) * 4

    sent = await c.flood(batches())
    code = await c.expect_goaway()
    assert code in (None, E.ENHANCE_YOUR_CALM, E.PROTOCOL_ERROR, E.COMPRESSION_ERROR), code_name(code)
    assert await c.closed()
    total = CONTINUATION_FRAMES * (len(filler) + 9)
    assert sent < total, "the server accepted every CONTINUATION frame"
    assert sent <= HEADER_BLOCK_LIMIT + SOCKET_SLACK, f"{sent} bytes accepted before the server stopped"
    await assert_others_served(h2open, bystander)


async def test_h2_limits_hpack_bomb(h2open: Opener) -> None:
    """A ~1 KB block that decodes to ~4 MB (one 4000-byte table entry referenced 1000 times) is refused."""
    bystander = await h2open()
    c = await h2open()
    head = hpack_indexed(2) + hpack_indexed(6) + hpack_literal(1, b"edge.test") + hpack_literal(4, b"/ok")
    # 3 + 4000 + 32 = 4035 bytes: fits the default 4096-byte dynamic table as index 62.
    await c.headers(1, head + hpack_literal(b"x-b", b"b" * 4000, index=True))
    s = await c.response(1)
    assert s.status == 200
    bomb = head + hpack_indexed(62) * 1000
    assert len(bomb) < 1100
    await c.headers(3, bomb)
    outcome = await c.expect_rst_or_goaway(3, within=2.0)
    assert (outcome.kind == "rst"
            or (outcome.kind == "goaway"
                and outcome.code in (E.ENHANCE_YOUR_CALM, E.COMPRESSION_ERROR, E.PROTOCOL_ERROR))
            or (outcome.kind == "response" and outcome.status == 431)), outcome
    await assert_others_served(h2open, bystander)


async def test_h2_limits_ping_flood(h2open: Opener) -> None:
    bystander = await h2open()
    c = await h2open()
    batch = b"".join(frame(T.PING, 0, 0, b"%08d" % i) for i in range(1000))
    await c.flood(batch for _ in range(10))
    code = await c.expect_goaway()
    assert code == E.ENHANCE_YOUR_CALM, code_name(code)
    await assert_others_served(h2open, bystander)


async def test_h2_limits_settings_flood(h2open: Opener) -> None:
    bystander = await h2open()
    c = await h2open()
    batch = frame(T.SETTINGS, 0, 0) * 1000
    await c.flood(batch for _ in range(10))
    code = await c.expect_goaway()
    assert code == E.ENHANCE_YOUR_CALM, code_name(code)
    await assert_others_served(h2open, bystander)


async def test_h2_limits_window_update_flood(h2open: Opener) -> None:
    bystander = await h2open()
    c = await h2open()
    batch = frame(T.WINDOW_UPDATE, 0, 0, window_update_payload(1)) * 1000
    await c.flood(batch for _ in range(100))
    code = await c.expect_goaway()
    assert code == E.ENHANCE_YOUR_CALM, code_name(code)
    await assert_others_served(h2open, bystander)


async def test_h2_limits_empty_data_flood(h2open: Opener) -> None:
    """10,000 empty DATA frames on one stream: GOAWAY or RST_STREAM with ENHANCE_YOUR_CALM."""
    bystander = await h2open()
    c = await h2open()
    stream_id = await open_post(c)
    batch = frame(T.DATA, 0, stream_id) * 1000
    await c.flood(batch for _ in range(10))
    await assert_stream_error(c, stream_id, E.ENHANCE_YOUR_CALM)
    await assert_others_served(h2open, bystander)


@pytest.fixture
async def slow_edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    config = ProxyConfig(origin_port=origin.port, keepalive_timeout=1.0, header_timeout=1.0, log_format="off")
    return await start_edge(nursery, config)


SLOWLORIS_CLOSE_S = 4.0


async def test_h2_limits_slowloris_preface_only(h2open: Opener, slow_edge: Edge) -> None:
    """A client that sends the preface and nothing else is closed within a few seconds."""
    c = await h2open(slow_edge.port, handshake=False)
    await c.send(PREFACE)
    await assert_others_served(h2open, port=slow_edge.port)  # opened during the attack
    assert await c.closed(SLOWLORIS_CLOSE_S), f"still open after {SLOWLORIS_CLOSE_S} s: {c.frames}"


async def test_h2_limits_slowloris_partial_frame(h2open: Opener, slow_edge: Edge) -> None:
    """A HEADERS frame announcing 100 bytes of which 10 arrive: closed within a few seconds."""
    c = await h2open(slow_edge.port)
    block = c.encode(request_fields())
    await c.send(frame(T.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, 1, (block + b"\0" * 100)[:10], length=100))
    await assert_others_served(h2open, port=slow_edge.port)  # opened during the attack
    assert await c.closed(SLOWLORIS_CLOSE_S), f"still open after {SLOWLORIS_CLOSE_S} s: {c.frames}"


# --- 13. flow control on responses (§6.9) -----------------------------------------------------------

async def test_h2_flow_initial_window_1(h2open: Opener) -> None:
    """With INITIAL_WINDOW_SIZE=1, one byte per WINDOW_UPDATE; a larger SETTINGS releases the rest (§6.9.2)."""
    warm = await h2open()
    assert (await warm.get(b"/twenty")).body == TWENTY  # cached now
    c = await h2open(settings=((Setting.INITIAL_WINDOW_SIZE, 1),))
    stream_id = await c.request(b"GET", b"/twenty")

    def is_data(f: Frame) -> bool:
        return f.type == T.DATA and f.stream_id == stream_id

    first = await c.expect_frame(is_data)
    assert len(first.payload) == 1, first
    assert not first.has(Flag.END_STREAM), first
    assert not [f for f in await c.quiet(0.3) if is_data(f)], "DATA sent past the stream window"
    await c.window_update(stream_id, 1)
    second = await c.expect_frame(is_data)
    assert len(second.payload) == 1, second
    assert not [f for f in await c.quiet(0.3) if is_data(f)], "DATA sent past the stream window"
    acks = c.settings_acks
    await c.send_frame(T.SETTINGS, 0, 0, settings_payload([(Setting.INITIAL_WINDOW_SIZE, 65535)]))
    s = await c.response(stream_id, auto_window=False)
    assert (s.status, s.body) == (200, TWENTY)
    await c.wait_settings_ack(acks)


async def test_h2_flow_100k_response_in_max_size_frames(h2open: Opener) -> None:
    """100 KiB (past the 65535-byte default windows) arrives whole, in frames of at most 16384 bytes."""
    c = await h2open()
    for _ in range(2):  # miss, then hit
        s = await c.get(b"/big")
        assert (s.status, s.body) == (200, BIG)
        assert max(s.data_frames) <= DEFAULT_MAX_FRAME_SIZE, s.data_frames


# --- 14. trailers (§8.1) ----------------------------------------------------------------------------

async def test_h2_trailers_request_is_answered(h2open: Opener) -> None:
    c = await h2open()
    stream_id = await open_post(c)
    await c.data(stream_id, b"hello")
    await c.headers(stream_id, [(b"x-checksum", b"abc")], end_stream=True)
    s = await c.response(stream_id)
    assert (s.status, s.body) == (201, b"stored")


# --- 15. GOAWAY from the client (§6.8) --------------------------------------------------------------

async def test_h2_goaway_from_client_no_error(h2open: Opener) -> None:
    """The client's GOAWAY(NO_ERROR) concerns server-initiated streams only: the request in flight
    is still answered, and no error follows (§6.8)."""
    c = await h2open()
    stream_id = await c.request(b"GET", b"/slowish")
    await c.send_frame(T.GOAWAY, 0, 0, goaway_payload(0, E.NO_ERROR))
    s = await c.response(stream_id)
    assert (s.status, s.body) == (200, b"slowish")
    await c.quiet(0.2)
    assert c.goaway is None or c.goaway.error_code == E.NO_ERROR, c.goaway


async def test_h2_goaway_from_client_server_closes(h2open: Opener) -> None:
    """Policy beyond RFC 9113 (which lets the server keep the connection): once the client has
    said GOAWAY and its streams are answered, the server closes, with GOAWAY(NO_ERROR) or plainly."""
    c = await h2open()
    stream_id = await c.request(b"GET", b"/slowish")
    await c.send_frame(T.GOAWAY, 0, 0, goaway_payload(0, E.NO_ERROR))
    s = await c.response(stream_id)
    assert (s.status, s.body) == (200, b"slowish")
    code = await c.expect_goaway()
    assert code in (None, E.NO_ERROR), code_name(code)
    assert await c.closed()


async def test_h2_client_reset_while_answers_are_queued(h2open: Opener, caplog: pytest.LogCaptureFixture) -> None:
    """A client that asks for 6 MiB, reads nothing and resets the connection: the writer's broken
    socket ends the connection quietly (no error logged) and the edge serves the next client."""
    warm = await h2open()
    assert (b":status", b"200") in (await warm.response(await warm.request(b"GET", b"/big"))).headers
    c = await h2open(settings=((Setting.INITIAL_WINDOW_SIZE, MAX_WINDOW),))
    await c.window_update(0, MAX_WINDOW - 65535)
    for _ in range(60):  # 60 x 100 KiB: far more than the socket buffers hold
        await c.request(b"GET", b"/big")
    await trio.sleep(0.2)  # the edge has queued the answers and waits for room to write
    c.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await c.aclose()  # SO_LINGER 0: the close is a TCP reset
    await trio.sleep(0.3)
    after = await h2open()
    assert (b":status", b"200") in (await after.response(await after.request(b"GET", b"/big"))).headers
    failures = [r.getMessage() for r in caplog.records if r.name.startswith("edgeproxy") and r.levelname == "ERROR"]
    assert not failures, failures
