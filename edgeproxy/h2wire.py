"""HTTP/2 wire format (RFC 9113 §4–§6) and the response side of HPACK (RFC 7541), pure.

Frames are parsed and built here; the connection (``http2.py``) owns state and I/O.
Header blocks we send use only the static table and literals *without indexing*
(RFC 7541 §6.2.2), so the peer's decoder state never depends on what we sent before:
a block can be encoded once per cached object and reused on any connection, and a
response that is cancelled half-way can never desynchronise the connection. (nginx
encodes the same way; the cost is a few bytes per response.)

Errors are typed: ``ConnectionError`` ends the connection with GOAWAY, ``StreamError``
resets one stream; both carry the RFC 9113 §7 error code.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# settings (RFC 9113 §6.5.2)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
MAX_WINDOW = (1 << 31) - 1


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


class H2Error(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConnectionError(H2Error):  # noqa: A001 — the RFC's name; never confused with the builtin here
    """A connection error (RFC 9113 §5.4.1): GOAWAY with ``code``, then close."""


class StreamError(H2Error):
    """A stream error (RFC 9113 §5.4.2): RST_STREAM on ``stream_id`` with ``code``."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.stream_id = stream_id


# -- frames ---------------------------------------------------------------------------

_HEAD = struct.Struct(">HBBBL")  # 24-bit length as (high 16, low 8), type, flags, stream id
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


def frame_head(kind: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def parse_head(data: bytes | bytearray, at: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at ``at``; the R bit is dropped."""
    high, low, kind, flags, sid = _HEAD.unpack_from(data, at)
    return (high << 8) | low, kind, flags, sid & 0x7FFFFFFF


def settings_frame(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: ErrorCode) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: ErrorCode, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def headers_frames(stream_id: int, block: bytes, *, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS, followed by CONTINUATION frames when the block exceeds the peer's frame size."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    parts = [block[i: i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags, stream_id, parts[0])]
    for i, part in enumerate(parts[1:], 2):
        out.append(frame(CONTINUATION, END_HEADERS if i == len(parts) else 0, stream_id, part))
    return b"".join(out)


def headers_frame_parts(stream_id: int, block: bytes, *, end_stream: bool, max_frame: int) -> list[bytes]:
    """``headers_frames`` as pieces to send in order: the common one-frame block is not copied."""
    if len(block) <= max_frame:
        return [frame_head(HEADERS, (END_STREAM if end_stream else 0) | END_HEADERS, stream_id, len(block)), block]
    return [headers_frames(stream_id, block, end_stream=end_stream, max_frame=max_frame)]


def data_frame_parts(stream_id: int, body: bytes, *, end_stream: bool, max_frame: int) -> list[bytes | memoryview]:
    """DATA frames as pieces to send in order (frame head, then a view of the body): no body copy.

    The caller checks flow control; a body of ``max_frame`` bytes or less is one frame.
    """
    if len(body) <= max_frame:
        return [frame_head(DATA, END_STREAM if end_stream else 0, stream_id, len(body)), body]
    out: list[bytes | memoryview] = []
    view = memoryview(body)
    for start in range(0, len(view), max_frame):
        chunk = view[start: start + max_frame]
        last = start + max_frame >= len(view)
        out += [frame_head(DATA, END_STREAM if (end_stream and last) else 0, stream_id, len(chunk)), chunk]
    return out


def data_frames(stream_id: int, body: bytes | memoryview, *, end_stream: bool, max_frame: int) -> list[bytes]:
    if len(body) <= max_frame:
        return [frame_head(DATA, END_STREAM if end_stream else 0, stream_id, len(body)), bytes(body)]
    out: list[bytes] = []
    view = memoryview(body)
    for start in range(0, len(view), max_frame):
        chunk = view[start: start + max_frame]
        last = start + max_frame >= len(view)
        out += [frame_head(DATA, END_STREAM if (end_stream and last) else 0, stream_id, len(chunk)), bytes(chunk)]
    return out


def unpad(flags: int, payload: bytes, stream_id: int) -> bytes:
    """The frame's content without its padding (RFC 9113 §6.1)."""
    if not flags & PADDED:
        return payload
    if not payload:
        raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, f"padded frame on stream {stream_id} has no pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionError(ErrorCode.PROTOCOL_ERROR, f"padding exceeds the frame on stream {stream_id}")
    return payload[1: len(payload) - pad]


def parse_settings(flags: int, stream_id: int, payload: bytes) -> list[tuple[int, int]]:
    """The (id, value) pairs of a SETTINGS frame, validated (RFC 9113 §6.5)."""
    if stream_id != 0:
        raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
    if flags & ACK:
        if payload:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
        return []
    if len(payload) % 6:
        raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length is not a multiple of 6")
    pairs = [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
    for key, value in pairs:
        if key == ENABLE_PUSH and value > 1:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        if key == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
        if key == MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME <= value <= (1 << 24) - 1:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
    return pairs


def parse_u32(kind: str, stream_id: int, payload: bytes) -> int:
    if len(payload) != 4:
        raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, f"{kind} length {len(payload)}, must be 4")
    return _U32.unpack(payload)[0]


def parse_goaway(payload: bytes) -> tuple[int, int]:
    if len(payload) < 8:
        raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
    last, code = _GOAWAY.unpack_from(payload)
    return last & 0x7FFFFFFF, code


def check_priority(stream_id: int, payload: bytes) -> None:
    """A PRIORITY frame, or the priority part of HEADERS: only its self-dependency matters."""
    if len(payload) != 5:
        raise StreamError(stream_id, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY length must be 5")
    if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")


# -- HPACK, sending side ------------------------------------------------------------

# RFC 7541 Appendix A: the first static-table index of each name.
_STATIC_NAMES = (
    ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme", ":status", ":status",
    ":status", ":status", ":status", ":status", ":status", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "accept", "access-control-allow-origin", "age", "allow",
    "authorization", "cache-control", "content-disposition", "content-encoding", "content-language",
    "content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag",
    "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "last-modified", "link", "location", "max-forwards", "proxy-authenticate",
    "proxy-authorization", "range", "referer", "refresh", "retry-after", "server", "set-cookie",
    "strict-transport-security", "transfer-encoding", "user-agent", "vary", "via", "www-authenticate",
)
STATIC_NAME_INDEX: dict[bytes, int] = {}
for _i, _name in enumerate(_STATIC_NAMES, 1):
    STATIC_NAME_INDEX.setdefault(_name.encode(), _i)
_STATUS_INDEX = {200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}


def encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; ``first`` holds the pattern bits."""
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


def _string(data: bytes) -> bytes:
    return encode_int(len(data), 7, 0) + data  # no Huffman: cheaper to make, a few bytes longer


_SHORT_LENGTHS = tuple(bytes((n,)) for n in range(127))  # string lengths that fit the 7-bit prefix
_NAME_PARTS: dict[bytes, bytes] = {}  # field name → the encoded start of its literal field
NAME_PARTS_MAX = 1024  # names remembered: ours and the origin's are a few dozen; the rest are encoded each time


def _name_part(name: bytes) -> bytes:
    index = STATIC_NAME_INDEX.get(name)
    part = encode_int(index, 4, 0) if index is not None else b"\x00" + _string(name)
    if len(_NAME_PARTS) < NAME_PARTS_MAX:
        _NAME_PARTS[name] = part
    return part


def name_part(name: bytes) -> bytes:
    """The encoded start of a literal field without indexing (``encode_field``'s, before the value's
    length): for a caller that formats a field whose value is short and whose name is fixed."""
    return _NAME_PARTS.get(name) or _name_part(name)


def encode_field(name: bytes, value: bytes) -> bytes:
    """A literal field without indexing (RFC 7541 §6.2.2); ``name`` is lower-case.

    Runs for every extra field of every HTTP/2 answer, so the name's part is remembered and a
    short value's length is one table lookup.
    """
    part = _NAME_PARTS.get(name) or _name_part(name)
    size = len(value)
    return part + (_SHORT_LENGTHS[size] if size < 127 else encode_int(size, 7, 0)) + value


def encode_status(status: int) -> bytes:
    index = _STATUS_INDEX.get(status)
    if index is not None:
        return bytes((0x80 | index,))  # indexed field (RFC 7541 §6.1)
    return encode_field(b":status", b"%d" % status)


def encode_block(status: int, fields: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> bytes:
    return encode_status(status) + b"".join(encode_field(n, v) for n, v in fields)


def table_size_update(size: int) -> bytes:
    """A dynamic table size update (RFC 7541 §6.3): sent after the peer's
    SETTINGS_HEADER_TABLE_SIZE changes, as the start of the next block."""
    return encode_int(size, 5, 0x20)


# -- requests -------------------------------------------------------------------------

REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"})
_NAME_OK = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


class RequestHead:
    """A validated request header section (RFC 9113 §8.3.1)."""

    __slots__ = ("authority", "content_length", "fields", "lane", "method", "path", "scheme")

    def __init__(self, method: bytes, scheme: bytes | None, authority: bytes | None, path: bytes,
                 fields: list[tuple[bytes, bytes]], content_length: int | None) -> None:
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.fields = fields  # regular fields, cookie crumbs joined (RFC 9113 §8.2.3)
        self.content_length = content_length
        self.lane: Any = None  # the hit lane's selection for this head (plainhit.LaneMemo)


def _check_field(stream_id: int, name: bytes, value: bytes) -> None:
    if not name or not all(c in _NAME_OK for c in name):
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"invalid field name {name[:40]!r}")
    if b"\x00" in value or b"\r" in value or b"\n" in value:
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"invalid value in field {name!r}")
    if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"whitespace around the value of {name!r}")
    if name in CONNECTION_SPECIFIC:
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"connection-specific field {name!r}")
    if name == b"te" and value.lower() != b"trailers":
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "te other than 'trailers'")


def parse_request(stream_id: int, headers: list[tuple[bytes, bytes]]) -> RequestHead:
    """Validate a decoded request header list; malformed requests are stream errors (§8.1.1)."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    content_length: int | None = None
    for name, value in headers:
        if name[:1] == b":":
            if fields or cookies:
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "pseudo-header after a regular field")
            if name not in REQUEST_PSEUDO:
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"unknown pseudo-header {name[:40]!r}")
            if name in pseudo:
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"duplicate {name.decode()}")
            pseudo[name] = value
            continue
        _check_field(stream_id, name, value)
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "invalid content-length")
            content_length = int(value)
        fields.append((name, value))
    method = pseudo.get(b":method")
    if method is None:
        raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "missing :method")
    path = pseudo.get(b":path")
    scheme = pseudo.get(b":scheme")
    if method == b"CONNECT":
        if path is not None or scheme is not None or b":authority" not in pseudo:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "CONNECT takes :authority only")
        path = b""
    else:
        if scheme is None:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "missing :scheme")
        if not path:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "missing or empty :path")
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    return RequestHead(method, scheme, pseudo.get(b":authority"), path, fields, content_length)


def check_trailers(stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name[:1] == b":":
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "pseudo-header in trailers")
        _check_field(stream_id, name, value)
