"""What every connection handler shares when it answers: the Date value of this second, a
Reply as HTTP/1.1 bytes, the access log and the peer's address.

Why a module of its own: the HTTP/1.1 hit loop (``hitloop.py``, ``h1lane.py``), HTTP/2
(``http2.py``) and the server's general path (``server.py``) all answer requests, and the
server starts the other two; kept in ``server.py``, these made each of them import the module
that imports them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgeproxy.headers import format_http_date
from edgeproxy.http1 import format_response_head
from edgeproxy.replies import Reply, has_body

access_log = logging.getLogger("edgeproxy.access")


class DateCache:
    """The Date field value, formatted once per second (nginx caches it the same way)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = format_http_date(now)
        return self._value


DATES = DateCache()


def serialize(reply: Reply, rid: bytes, *, head_only: bool, close: bool) -> bytes:
    """A Reply as HTTP/1.1 bytes. Cached replies reuse their pre-serialized head."""
    head, body = serialize_parts(reply, rid, head_only=head_only, close=close)
    return head + body if body else head


def serialize_parts(reply: Reply, rid: bytes, *, head_only: bool, close: bool) -> tuple[bytes, bytes]:
    """The head bytes and the body to send after it: kept apart so a large cached body goes
    out with one ``sendmsg`` instead of being copied into one buffer with its head."""
    prefix = reply.head
    tail = [b"x-request-id: ", rid, b"\r\n"] if reply.dated else [b"date: ", DATES.get(), b"\r\nx-request-id: ", rid,
                                                                     b"\r\n"]
    for name, value in reply.extra:
        tail += [name, b": ", value, b"\r\n"]
    if not prefix:
        fields = reply.fields
        if has_body(reply.status) and not any(n == b"content-length" for n, _ in fields):
            fields = [*fields, (b"content-length", b"%d" % len(reply.body))]
        prefix = format_response_head(reply.status, fields)[:-2]
    if close:
        tail.append(b"connection: close\r\n")
    tail.append(b"\r\n")
    if head_only or not has_body(reply.status):
        return prefix + b"".join(tail), b""
    return prefix + b"".join(tail), reply.body


def log_access(rid: bytes, method: bytes, target: bytes, status: int, size: int, started: float,
               protocol: str) -> None:
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s %s %s", method.decode("latin-1"), target.decode("latin-1"), status, extra={"request": {
            "id": rid.decode(), "method": method.decode("latin-1"), "target": target.decode("latin-1"),
            "status": status, "bytes": size, "ms": round((time.perf_counter() - started) * 1000, 3),
            "protocol": protocol}})


def peer_host(stream: Any) -> str | None:
    """The client's IP address (the gateway's per-IP rate-limit bucket), or None."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        transport = getattr(stream, "transport_stream", None)  # trio.SSLStream
        sock = getattr(transport, "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else None
    except OSError:
        return None
