"""A raw HTTP/2 client for conformance and hostile-input tests (modeled on h2spec).

``RawH2`` speaks prior-knowledge h2c over a ``trio.SocketStream`` without a protocol
library in the way: tests write any bytes they like (bad lengths, bad flags, invalid HPACK,
floods) with ``send_frame`` / ``send``, and read the server's frames back one by one with
``read_frame``. Every frame read is also folded into per-connection state (decoded header
blocks per stream with one ``hpack.Decoder``, DATA, RST_STREAM codes, the GOAWAY, the
server's SETTINGS), so ``response``, ``expect_goaway`` and ``expect_rst_or_goaway`` can wait
for an outcome while skipping unrelated frames. Every read is bounded by a timeout: a
server that says nothing makes a test fail, never hang. Everything is 127.0.0.1 only.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import hpack
import trio

HOST = "127.0.0.1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BOUND_S = 5.0  # the longest any single wait may take
RECEIVE_BYTES = 65536
DEFAULT_MAX_FRAME_SIZE = 16384
MAX_WINDOW = 2**31 - 1
RESET_GRACE_S = 0.3  # how long a RST_STREAM may trail an error answer

Fields = list[tuple[bytes, bytes]]


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag:
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


def code_name(code: int | None) -> str:
    if code is None:
        return "None"
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


# --- frame and payload builders ---------------------------------------------------------------

def frame(type_: int, flags: int, stream_id: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """One frame as bytes; ``length`` overrides the announced length (for truncated frames)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes((type_, flags)) + struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def settings_payload(pairs: Iterable[tuple[int, int]] = ()) -> bytes:
    return b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)


def goaway_payload(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return struct.pack(">II", last_stream_id & 0x7FFFFFFF, code) + debug


def window_update_payload(increment: int) -> bytes:
    return struct.pack(">I", increment & 0x7FFFFFFF)


def rst_payload(code: int) -> bytes:
    return struct.pack(">I", code)


def priority_payload(depends_on: int, weight: int = 16, *, exclusive: bool = False) -> bytes:
    """Stream dependency (E bit + 31 bits) and weight (sent as weight - 1)."""
    return struct.pack(">IB", (depends_on & 0x7FFFFFFF) | (0x80000000 if exclusive else 0), weight - 1)


# --- hand-made HPACK (RFC 7541) -----------------------------------------------------------------

def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with ``first`` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(data: bytes) -> bytes:
    """A string literal without Huffman coding (RFC 7541 §5.2)."""
    return hpack_int(len(data), 7) + data


def hpack_indexed(index: int) -> bytes:
    """Indexed header field (RFC 7541 §6.1)."""
    return hpack_int(index, 7, 0x80)


def hpack_literal(name: bytes | int, value: bytes, *, index: bool = False) -> bytes:
    """A literal field (RFC 7541 §6.2): with incremental indexing if ``index``, else without.

    ``name`` is a static/dynamic table index or a new name.
    """
    prefix, first = (6, 0x40) if index else (4, 0x00)
    if isinstance(name, int):
        return hpack_int(name, prefix, first) + hpack_string(value)
    return bytes((first,)) + hpack_string(name) + hpack_string(value)


# --- received state -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def error_code(self) -> int:
        """The error code of a RST_STREAM or GOAWAY frame."""
        if self.type == FrameType.RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == FrameType.GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        raise ValueError(f"{self!r} carries no error code")

    @property
    def last_stream_id(self) -> int:
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def __repr__(self) -> str:
        try:
            kind = FrameType(self.type).name
        except ValueError:
            kind = f"type=0x{self.type:x}"
        extra = ""
        if self.type in (FrameType.RST_STREAM, FrameType.GOAWAY) and len(self.payload) >= 4:
            extra = " " + code_name(self.error_code)
        return f"<{kind} flags=0x{self.flags:x} stream={self.stream_id} len={len(self.payload)}{extra}>"


@dataclass(slots=True)
class StreamState:
    """What the server sent on one stream."""

    blocks: list[Fields] = field(default_factory=list)  # decoded header blocks: response head, trailers
    data: bytearray = field(default_factory=bytearray)
    data_frames: list[int] = field(default_factory=list)  # the length of every DATA frame
    ended: bool = False  # END_STREAM seen
    reset: int | None = None  # RST_STREAM error code

    @property
    def headers(self) -> Fields:
        return self.blocks[0] if self.blocks else []

    @property
    def status(self) -> int | None:
        for name, value in self.headers:
            if name == b":status":
                return int(value)
        return None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def body(self) -> bytes:
        return bytes(self.data)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stream ended: "rst", "goaway", "closed" (no GOAWAY) or "response" (answered)."""

    kind: str
    code: int | None = None
    status: int | None = None

    def __repr__(self) -> str:
        if self.status is not None and self.kind != "response":
            return f"<response {self.status}, then {self.kind} {code_name(self.code)}>"
        if self.kind == "response":
            return f"<response {self.status}>"
        return f"<{self.kind} {code_name(self.code)}>"


class RawH2:
    """One h2c connection driven frame by frame (see the module docstring)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = bytearray()
        self.eof = False  # the server closed (or reset) the connection
        self.frames: list[Frame] = []  # every frame received, in order
        self.streams: dict[int, StreamState] = {}
        self.goaway: Frame | None = None
        self.server_settings: dict[int, int] = {}
        self.settings_acks = 0
        self.next_stream_id = 1
        self._pending: deque[Frame] = deque()
        self._block: tuple[int, bool, bytearray] | None = None  # stream, END_STREAM, header block so far

    @classmethod
    async def connect(cls, port: int) -> RawH2:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    # --- sending ----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        with trio.fail_after(BOUND_S):
            await self.stream.send_all(data)

    async def send_frame(self, type_: int, flags: int, stream_id: int, payload: bytes = b"", *,
                         length: int | None = None) -> None:
        await self.send(frame(type_, flags, stream_id, payload, length=length))

    async def handshake(self, settings: Sequence[tuple[int, int]] = ()) -> None:
        """Preface + our SETTINGS; read until the server's SETTINGS (ACKed) and its ACK of ours."""
        await self.send(PREFACE + frame(FrameType.SETTINGS, 0, 0, settings_payload(settings)))
        got_settings = False
        acks = self.settings_acks
        with trio.fail_after(BOUND_S):
            while not (got_settings and self.settings_acks > acks):
                f = await self.read_frame()
                assert f is not None, f"the server closed the connection during the handshake: {self.frames}"
                if f.type == FrameType.SETTINGS and not f.has(Flag.ACK):
                    got_settings = True
                    await self.send_frame(FrameType.SETTINGS, Flag.ACK, 0)

    def new_stream_id(self) -> int:
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        return stream_id

    def encode(self, fields: Sequence[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(list(fields))

    async def headers(self, stream_id: int, fields: Sequence[tuple[bytes, bytes]] | bytes, *,
                      end_stream: bool = True, end_headers: bool = True) -> None:
        """HEADERS with ``fields`` HPACK-encoded by this connection's encoder (or a raw block)."""
        block = fields if isinstance(fields, bytes) else self.encode(fields)
        flags = (Flag.END_STREAM if end_stream else 0) | (Flag.END_HEADERS if end_headers else 0)
        await self.send_frame(FrameType.HEADERS, flags, stream_id, block)
        self.next_stream_id = max(self.next_stream_id, stream_id + 2)

    async def data(self, stream_id: int, payload: bytes, *, end_stream: bool = False) -> None:
        await self.send_frame(FrameType.DATA, Flag.END_STREAM if end_stream else 0, stream_id, payload)

    async def window_update(self, stream_id: int, increment: int) -> None:
        await self.send_frame(FrameType.WINDOW_UPDATE, 0, stream_id, window_update_payload(increment))

    async def request(self, method: bytes = b"GET", path: bytes = b"/ok",
                      extra: Sequence[tuple[bytes, bytes]] = (), body: bytes | None = None,
                      *, stream_id: int | None = None) -> int:
        """Send a complete request and return its stream id: HEADERS with END_STREAM when
        ``body`` is None, else HEADERS then one DATA frame with END_STREAM."""
        sid = self.new_stream_id() if stream_id is None else stream_id
        fields = request_fields(method, path, extra)
        if body is None:
            await self.headers(sid, fields, end_stream=True)
        else:
            await self.headers(sid, fields, end_stream=False)
            await self.data(sid, body, end_stream=True)
        return sid

    async def get(self, path: bytes = b"/ok", extra: Sequence[tuple[bytes, bytes]] = ()) -> StreamState:
        return await self.response(await self.request(b"GET", path, extra))

    async def flood(self, chunks: Iterable[bytes], *, stop_when_closed: bool = True) -> int:
        """Write ``chunks`` while a reader task drains the server's frames (so neither side
        stalls on full socket buffers); stop early when the connection breaks or the server
        has said GOAWAY / closed. Returns the number of bytes the socket accepted."""
        sent = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain)
            try:
                for chunk in chunks:
                    if stop_when_closed and (self.eof or self.goaway is not None):
                        break
                    with trio.fail_after(BOUND_S):
                        await self.stream.send_all(chunk)
                    sent += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass  # the server closed under us, or stopped reading: what it said is read next
            nursery.cancel_scope.cancel()
        return sent

    async def _drain(self) -> None:
        while not self.eof:
            await self._fill()

    # --- receiving --------------------------------------------------------------------------

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""  # a reset connection is a closed one
        if not data:
            self.eof = True
            return
        self.buf += data
        self._parse()

    def _parse(self) -> None:
        buf = self.buf
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            f = Frame(buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, bytes(buf[9:9 + length]))
            del buf[:9 + length]
            self._process(f)
            self.frames.append(f)
            self._pending.append(f)

    def _stream(self, stream_id: int) -> StreamState:
        return self.streams.setdefault(stream_id, StreamState())

    def _process(self, f: Frame) -> None:
        t = f.type
        if t == FrameType.HEADERS:
            payload = f.payload
            if f.has(Flag.PADDED):
                payload = payload[1:len(payload) - payload[0]]
            if f.has(Flag.PRIORITY):
                payload = payload[5:]
            self._block = (f.stream_id, f.has(Flag.END_STREAM), bytearray(payload))
            if f.has(Flag.END_HEADERS):
                self._end_block()
        elif t == FrameType.CONTINUATION:
            assert self._block is not None, f"CONTINUATION without HEADERS: {f!r}"
            assert self._block[0] == f.stream_id, f"CONTINUATION on another stream: {f!r}"
            self._block[2].extend(f.payload)
            if f.has(Flag.END_HEADERS):
                self._end_block()
        elif t == FrameType.DATA:
            payload = f.payload
            if f.has(Flag.PADDED):
                payload = payload[1:len(payload) - payload[0]]
            s = self._stream(f.stream_id)
            s.data += payload
            s.data_frames.append(len(f.payload))
            if f.has(Flag.END_STREAM):
                s.ended = True
        elif t == FrameType.RST_STREAM:
            self._stream(f.stream_id).reset = f.error_code
        elif t == FrameType.GOAWAY:
            if self.goaway is None:
                self.goaway = f
        elif t == FrameType.SETTINGS:
            if f.has(Flag.ACK):
                self.settings_acks += 1
            else:
                for i in range(0, len(f.payload) - 5, 6):
                    ident, value = struct.unpack(">HI", f.payload[i:i + 6])
                    self.server_settings[ident] = value

    def _end_block(self) -> None:
        assert self._block is not None
        stream_id, end_stream, block = self._block
        self._block = None
        s = self._stream(stream_id)
        s.blocks.append(self.decoder.decode(bytes(block), raw=True))
        if end_stream:
            s.ended = True

    async def read_frame(self, within: float = BOUND_S) -> Frame | None:
        """The next frame, or None once the connection is closed; trio.TooSlowError after ``within`` seconds."""
        with trio.fail_after(within):
            while not self._pending:
                if self.eof:
                    return None
                await self._fill()
        return self._pending.popleft()

    async def quiet(self, seconds: float) -> list[Frame]:
        """The frames that arrive within ``seconds`` (stops early if the connection closes)."""
        got: list[Frame] = []
        with trio.move_on_after(seconds):
            while (f := await self.read_frame(seconds + 1)) is not None:
                got.append(f)
        return got

    def _fail(self, what: str, within: float) -> AssertionError:
        return AssertionError(f"{what} within {within} s; frames received: {self.frames[-20:]}")

    async def expect_goaway(self, within: float = BOUND_S) -> int | None:
        """Read until GOAWAY (its error code) or a close without one (None)."""
        try:
            with trio.fail_after(within):
                while self.goaway is None:
                    if await self.read_frame(within) is None:
                        return None
        except trio.TooSlowError:
            raise self._fail("no GOAWAY and no close", within) from None
        return self.goaway.error_code

    async def expect_rst_or_goaway(self, stream_id: int, within: float = BOUND_S) -> Outcome:
        """Read until RST_STREAM on ``stream_id``, a GOAWAY, a close, or a complete response."""
        try:
            with trio.fail_after(within):
                while True:
                    s = self.streams.get(stream_id)
                    if s is not None and s.reset is not None:
                        return Outcome("rst", s.reset)
                    if self.goaway is not None:
                        return Outcome("goaway", self.goaway.error_code)
                    if s is not None and s.ended:
                        break
                    if await self.read_frame(within) is None:
                        return Outcome("closed")
        except trio.TooSlowError:
            raise self._fail(f"no RST_STREAM on stream {stream_id}, GOAWAY, close or answer", within) from None
        # Answered. A server MAY answer a malformed request before resetting the stream
        # (RFC 9113 §8.1.1): a RST_STREAM or GOAWAY that follows at once still counts.
        with trio.move_on_after(RESET_GRACE_S):
            while s.reset is None and self.goaway is None:
                if await self.read_frame(RESET_GRACE_S + 1) is None:
                    break
        if s.reset is not None:
            return Outcome("rst", s.reset, s.status)
        if self.goaway is not None:
            return Outcome("goaway", self.goaway.error_code, s.status)
        return Outcome("response", status=s.status)

    async def expect_frame(self, match: Callable[[Frame], bool], within: float = BOUND_S) -> Frame:
        """The next frame for which ``match`` is true (others are skipped); fails on close or after ``within`` seconds."""
        try:
            with trio.fail_after(within):
                while True:
                    f = await self.read_frame(within)
                    assert f is not None, f"connection closed; frames received: {self.frames[-20:]}"
                    if match(f):
                        return f
        except trio.TooSlowError:
            raise self._fail("no matching frame", within) from None

    async def closed(self, within: float = BOUND_S) -> bool:
        """True once the server has closed the connection (frames meanwhile are skipped), False after ``within`` seconds."""
        with trio.move_on_after(within):
            while await self.read_frame(within + 1) is not None:
                pass
            return True
        return False

    async def wait_settings_ack(self, before: int, within: float = BOUND_S) -> None:
        """Read until the server's SETTINGS ACK count exceeds ``before``."""
        try:
            with trio.fail_after(within):
                while self.settings_acks <= before:
                    assert await self.read_frame(within) is not None, f"closed: {self.frames[-10:]}"
        except trio.TooSlowError:
            raise self._fail("no SETTINGS ACK", within) from None

    async def response(self, stream_id: int, within: float = BOUND_S, *, auto_window: bool = True) -> StreamState:
        """Read until ``stream_id`` ends, returning its state; fails on RST_STREAM or close.

        With ``auto_window`` every DATA frame is given back to both windows with WINDOW_UPDATE.
        """
        try:
            with trio.fail_after(within):
                while True:
                    s = self._stream(stream_id)
                    assert s.reset is None, f"stream {stream_id} reset with {code_name(s.reset)}"
                    if s.ended:
                        return s
                    f = await self.read_frame(within)
                    assert f is not None, f"connection closed before stream {stream_id} ended: {self.frames[-10:]}"
                    if auto_window and f.type == FrameType.DATA and f.payload:
                        increment = window_update_payload(len(f.payload))
                        updates = frame(FrameType.WINDOW_UPDATE, 0, 0, increment)
                        if not f.has(Flag.END_STREAM):
                            updates += frame(FrameType.WINDOW_UPDATE, 0, f.stream_id, increment)
                        await self.send(updates)
        except trio.TooSlowError:
            raise self._fail(f"stream {stream_id} did not end", within) from None


def request_fields(method: bytes = b"GET", path: bytes = b"/ok", extra: Sequence[tuple[bytes, bytes]] = (),
                   *, authority: bytes = b"edge.test", scheme: bytes = b"http") -> Fields:
    return [(b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", path), *extra]


async def connect(port: int) -> RawH2:
    return await RawH2.connect(port)
