"""HTTP/1.1 server side, sans-I/O, hand-rolled for the hit path (RFC 9112).

Theory of operation: bytes go in with ``receive_data``; ``next_event`` returns a
``RequestHead``, then ``Body`` chunks and ``EndOfMessage`` for that request, or
``NEED_DATA``. Requests are parsed one after another from the same buffer, which is
what pipelining needs: the server answers them in order. The head is found with one
``find(b"\\r\\n\\r\\n")`` and split with ``bytes.split``; every field is checked with a
regex compiled once from the RFC 9110/9112 ABNF. h11 does the same job about four
times slower (HOTPATH.md); the response side of a cache hit is a pre-serialized head
plus the body, so only parsing has to be fast.

Malformed input raises ``RemoteProtocolError`` with the status to answer: 400 for
syntax, 431 for an oversized head, 413 for a body over the limit, 501 for an unknown
transfer coding. After that error the connection must be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeproxy.errors import RemoteProtocolError

# 16 KiB request head: h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE and nginx's
# large_client_header_buffers 4×8k sit in the same range.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100  # Apache's LimitRequestFields default
MAX_CHUNK_LINE = 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (\S+) HTTP/(1\.[01])")
_FIELD_NAME = re.compile(_TOKEN)
# field-value: VCHAR / obs-text / SP / HTAB, no CR/LF/NUL (RFC 9110 §5.5)
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Every field line of a head at once, each preceded by its CRLF: the two regexes above, joined.
_FIELD_LINES = re.compile(rb"(?:\r\n" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*)*")
# the fields parse_head looks at beyond collecting them
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"host", b"expect"})
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    http_version: bytes  # b"1.1" or b"1.0"
    headers: list[tuple[bytes, bytes]]  # lowercase names, values stripped
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    host: bytes | None

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    trailers: list[tuple[bytes, bytes]]


Event = RequestHead | Body | EndOfMessage | _NeedData


def parse_head(head: bytes) -> RequestHead:
    """One request head (without the final CRLFCRLF) → RequestHead, or RemoteProtocolError."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise RemoteProtocolError("malformed request line")
    method, target, version = match.groups()
    if len(lines) - 1 > MAX_HEADERS:
        raise RemoteProtocolError("too many header fields", status_hint=431)
    headers: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    chunked = False
    connection = b""
    expect_continue = False
    host: bytes | None = None
    saw_te = False
    # One regex over all the field lines; only when it fails are they checked one by one, to say what is wrong.
    checked = _FIELD_LINES.fullmatch(head, len(lines[0])) is not None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not checked and (not sep or not _FIELD_NAME.fullmatch(name)):
            # also rejects whitespace before the colon and obs-fold (RFC 9112 §5.1, §5.2)
            raise RemoteProtocolError("malformed header field", fields=headers)
        value = value.strip(b" \t")
        if not checked and not _FIELD_VALUE.fullmatch(value):
            raise RemoteProtocolError("invalid character in header value", fields=headers)
        name = name.lower()
        headers.append((name, value))
        if name not in _FRAMING_FIELDS:
            continue
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise RemoteProtocolError("invalid Content-Length", fields=headers)
            length = int(value)
            if content_length is not None and content_length != length:
                raise RemoteProtocolError("conflicting Content-Length fields", fields=headers)
            content_length = length
        elif name == b"transfer-encoding":
            saw_te = True
            codings = [c.strip().lower() for c in value.split(b",")]
            if codings[-1] != b"chunked" or any(c != b"chunked" for c in codings):
                raise RemoteProtocolError("unsupported transfer coding", status_hint=501, fields=headers)
            chunked = True
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"host":
            if host is not None:
                raise RemoteProtocolError("more than one Host field", fields=headers)  # RFC 9112 §3.2
            host = value
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise RemoteProtocolError("unsupported expectation", status_hint=417, fields=headers)
            expect_continue = True
    if saw_te and content_length is not None:
        # RFC 9112 §6.1: a request with both is a smuggling attempt; refuse it.
        raise RemoteProtocolError("both Transfer-Encoding and Content-Length", fields=headers)
    if version == b"1.1" and host is None:
        raise RemoteProtocolError("HTTP/1.1 request without Host", fields=headers)  # RFC 9112 §3.2
    tokens = {t.strip() for t in connection.split(b",")}
    keep_alive = b"close" not in tokens if version == b"1.1" else b"keep-alive" in tokens
    if saw_te and version == b"1.0":
        keep_alive = False  # RFC 9112 §6.1: framing of a 1.0 message with Transfer-Encoding is faulty
    return RequestHead(method, target, version, headers, keep_alive, content_length, chunked,
                       expect_continue and version == b"1.1", host)


class H1Server:
    """Request parser for one connection; answers are written by the caller, in order."""

    __slots__ = ("_buf", "_chunk_left", "_left", "_max_body", "_state")

    def __init__(self, *, max_body: int = 64 * 1024 * 1024) -> None:
        self._buf = b""
        self._state = "head"  # head | length | chunk-size | chunk-data | chunk-crlf | trailers
        self._left = 0
        self._chunk_left = 0
        self._max_body = max_body

    def receive_data(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else data

    @property
    def idle(self) -> bool:
        """Between requests with nothing buffered: safe to close on a timeout."""
        return self._state == "head" and not self._buf

    def next_event(self) -> Event:
        state = self._state
        buf = self._buf
        if state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise RemoteProtocolError("request head too large", status_hint=431)
                if buf.startswith(b"\r\n"):  # RFC 9112 §2.2: ignore a CRLF before a request
                    self._buf = buf[2:]
                    return self.next_event() if self._buf else NEED_DATA
                return NEED_DATA
            if end > MAX_HEAD_BYTES:
                raise RemoteProtocolError("request head too large", status_hint=431)
            while buf.startswith(b"\r\n"):
                buf = buf[2:]
                end -= 2
            head = parse_head(buf[:end])
            self._buf = buf[end + 4:]
            if head.chunked:
                self._state = "chunk-size"
            elif head.content_length:
                if head.content_length > self._max_body:
                    raise RemoteProtocolError("request body too large", status_hint=413)
                self._state = "length"
                self._left = head.content_length
            else:
                self._state = "end"
            return head
        if state == "end":
            self._state = "head"
            return EndOfMessage([])
        if state == "length":
            if not buf:
                return NEED_DATA
            take = buf[: self._left]
            self._buf = buf[len(take):]
            self._left -= len(take)
            if self._left == 0:
                self._state = "end"
            return Body(take)
        return self._next_chunked()

    def _next_chunked(self) -> Event:
        buf = self._buf
        if self._state == "chunk-size":
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise RemoteProtocolError("chunk size line too long")
                return NEED_DATA
            match = _CHUNK_SIZE.fullmatch(buf[:nl])
            if match is None:
                raise RemoteProtocolError("malformed chunk size")
            size = int(match.group(1), 16)
            self._buf = buf[nl + 2:]
            if size == 0:
                self._state = "trailers"
                return self._next_chunked()
            self._left += size
            if self._left > self._max_body:
                raise RemoteProtocolError("request body too large", status_hint=413)
            self._chunk_left = size
            self._state = "chunk-data"
            return self._next_chunked()
        if self._state == "chunk-data":
            if not buf:
                return NEED_DATA
            take = buf[: self._chunk_left]
            self._buf = buf[len(take):]
            self._chunk_left -= len(take)
            if self._chunk_left == 0:
                self._state = "chunk-crlf"
            return Body(take)
        if self._state == "chunk-crlf":
            if len(buf) < 2:
                return NEED_DATA
            if buf[:2] != b"\r\n":
                raise RemoteProtocolError("chunk not followed by CRLF")
            self._buf = buf[2:]
            self._state = "chunk-size"
            return self._next_chunked()
        # trailers: zero or more fields, then an empty line
        end = buf.find(b"\r\n\r\n") if not buf.startswith(b"\r\n") else -2
        if end == -2:
            self._buf = buf[2:]
            self._state = "head"
            self._left = 0
            return EndOfMessage([])
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise RemoteProtocolError("trailers too large", status_hint=431)
            return NEED_DATA
        trailers = []
        for line in buf[:end].split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep or not _FIELD_NAME.fullmatch(name):
                raise RemoteProtocolError("malformed trailer field")
            trailers.append((name.lower(), value.strip(b" \t")))
        self._buf = buf[end + 4:]
        self._state = "head"
        self._left = 0
        return EndOfMessage(trailers)


REASONS = {
    100: b"Continue", 200: b"OK", 201: b"Created", 202: b"Accepted", 204: b"No Content",
    206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
    304: b"Not Modified", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 406: b"Not Acceptable", 408: b"Request Timeout",
    409: b"Conflict", 410: b"Gone", 411: b"Length Required", 412: b"Precondition Failed",
    413: b"Content Too Large", 414: b"URI Too Long", 415: b"Unsupported Media Type",
    417: b"Expectation Failed", 422: b"Unprocessable Content", 429: b"Too Many Requests",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def format_head_prefix(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and the fields, without the final blank line."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
    parts.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    return b"".join(parts)


def format_response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and the fields, ending with the blank line."""
    return format_head_prefix(status, headers) + b"\r\n"
