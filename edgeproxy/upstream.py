"""The origin side: a keep-alive connection pool (h11 over trio) and request collapsing.

``OriginPool.request`` sends one request and returns the response with its body
buffered, up to ``stream_after`` bytes: past that, the response comes back with the part
read so far and ``rest``, an async iterator over the remaining body that holds the
connection until it is exhausted or closed (large bodies stream through, never held
whole). Without ``stream_after``, bodies above ``max_body`` raise ``UpstreamProtocolError``.
A connection with bytes past the response's end (a Content-Length shorter than the body)
is closed, not pooled; an idle pooled connection that has become readable (the origin closed
it, or sent bytes nobody asked for) is discarded before use, as httpcore's pool does; one the origin closed
in the same instant still fails on first use, and an idempotent request is then retried
once on a fresh connection (what nginx's ``proxy_next_upstream error`` does). trio and h11
errors are translated here into the ``UpstreamError`` tree, once (STYLE.md 2.4 §5).

``Flights`` is request collapsing: concurrent misses for one key make one origin
request; every waiter wakes the moment the answer arrives (a ``trio.Event``, no
polling — nginx's ``proxy_cache_lock`` polls every 500 ms). The fetch runs in a
server-owned nursery, not in the first caller's task, so a client that goes away (or an
HTTP/2 stream that is reset) does not fail the requests collapsed into its fetch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import h11
import trio

from edgeproxy.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout

T = TypeVar("T")

MAX_IDLE_CONNECTIONS = 64  # per origin; nginx keepalive=32..64 is the usual range
# 64 KiB response head: twice h11's 16 KiB default, because origins send long Link and CSP fields.
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
RECEIVE_BYTES = 65536
# Methods that may be retried on a fresh connection (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# Methods whose requests carry a body, so Content-Length: 0 is sent even for an empty one.
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]  # lowercase names
    body: bytes  # the whole body, or its start when ``rest`` is set
    rest: AsyncIterator[bytes] | None = None  # the remaining body, read on demand (must be consumed or closed)
    length: int | None = None  # the origin's Content-Length, when it sent one

    async def aclose(self) -> None:
        """Release the origin connection of a streamed body that will not be read."""
        if self.rest is not None:
            await self.rest.aclose()  # type: ignore[attr-defined]


class _Connection:
    __slots__ = ("conn", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_BYTES)

    def is_done(self) -> bool:
        """The exchange ended cleanly on both sides and nothing came after the response: bytes
        past its end (a Content-Length shorter than the body) would be read as the next answer."""
        conn = self.conn
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE and not conn.trailing_data[0]

    def is_reusable(self) -> bool:
        """An idle connection is reusable while nothing is readable on it (no EOF, no junk)."""
        if isinstance(self.stream, trio.SocketStream):
            return not self.stream.socket.is_readable()
        return True


class _StaleConnection(Exception):
    """A pooled connection died before any response byte: safe to retry elsewhere."""


class OriginPool:
    """Keep-alive HTTP/1.1 connections to one origin, used one request at a time each."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, max_body: int = 64 * 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_body = max_body
        self._idle: list[_Connection] = []
        self.connections_opened = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"<OriginPool {self.host}:{self.port} idle={len(self._idle)} opened={self.connections_opened}>"

    async def _open_stream(self) -> trio.abc.Stream:
        """The one place that connects; tests replace it with an in-memory stream."""
        return await trio.open_tcp_stream(self.host, self.port)

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await self._open_stream()
        except trio.TooSlowError:
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: {_reason(exc)}") from None
        self.connections_opened += 1
        return _Connection(stream)

    async def _checkout(self) -> _Connection | None:
        """The most recently used idle connection that still looks alive, or None."""
        while self._idle:
            c = self._idle.pop()
            if c.is_reusable():
                return c
            await _close(c)
        return None

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes = b"", *, stream_after: int | None = None) -> UpstreamResponse:
        """Send one request, return the buffered response.

        Raises:
            UpstreamConnectError: the origin refused or could not be reached.
            UpstreamTimeout: connecting or answering took too long.
            UpstreamProtocolError: the origin broke the connection or sent invalid HTTP.
        """
        self.requests += 1
        while (conn := await self._checkout()) is not None:
            try:
                return await self._exchange(conn, method, target, headers, body, stream_after)
            except _StaleConnection:
                continue  # closed by the origin while idle: try the next one
        conn = await self._connect()
        try:
            return await self._exchange(conn, method, target, headers, body, stream_after)
        except _StaleConnection as exc:
            raise UpstreamProtocolError(f"origin closed the connection: {exc}") from None

    async def _exchange(self, c: _Connection, method: bytes, target: bytes,
                        headers: list[tuple[bytes, bytes]], body: bytes, stream_after: int | None) -> UpstreamResponse:
        retryable = method in IDEMPOTENT
        keep = False
        handed_off = False  # the connection now belongs to the response's ``rest``
        try:
            data = _serialize_request(c.conn, self.authority, method, target, headers, body)
            with trio.fail_after(self.read_timeout):
                try:
                    await c.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    if retryable:
                        raise _StaleConnection(str(exc)) from None
                    raise UpstreamProtocolError(f"connection to origin failed: {exc}") from None
                response = await self._receive(c, retryable, stream_after)
            handed_off = response.rest is not None
            keep = c.is_done()
        except trio.TooSlowError:
            raise UpstreamTimeout(f"origin did not answer within {self.read_timeout:g} s") from None
        except h11.ProtocolError as exc:
            raise UpstreamProtocolError(f"origin sent invalid HTTP: {exc}") from None
        finally:
            # Every path that does not hand the connection on closes it, cancellation included.
            if handed_off:
                pass
            elif keep and len(self._idle) < MAX_IDLE_CONNECTIONS:
                c.conn.start_next_cycle()
                self._idle.append(c)
            else:
                await _close(c)
        return response

    async def _rest(self, c: _Connection) -> AsyncIterator[bytes]:
        """The body after the buffered start, as it arrives; the connection is pooled at the end."""
        conn = c.conn
        done = False
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        with trio.fail_after(self.read_timeout):
                            received = await c.stream.receive_some(RECEIVE_BYTES)
                    except trio.TooSlowError:
                        raise UpstreamTimeout(f"origin stalled mid-body for {self.read_timeout:g} s") from None
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        raise UpstreamProtocolError(f"origin connection failed mid-body: {exc}") from None
                    if not received:
                        raise UpstreamProtocolError("origin closed the connection mid-body")
                    conn.receive_data(received)
                elif isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    done = True
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    raise UpstreamProtocolError("origin closed the connection mid-body")
        except h11.ProtocolError as exc:
            raise UpstreamProtocolError(f"origin sent invalid HTTP: {exc}") from None
        finally:
            if done and c.is_done() and len(self._idle) < MAX_IDLE_CONNECTIONS:
                conn.start_next_cycle()
                self._idle.append(c)
            else:
                await _close(c)

    async def _receive(self, c: _Connection, retryable: bool, stream_after: int | None) -> UpstreamResponse:
        conn = c.conn
        status = 0
        resp_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        answered = False  # a response byte arrived: from then on a retry could repeat a side effect
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    received = await c.stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    received, error = b"", str(exc)
                else:
                    error = "closed"
                if not received and not answered:
                    if retryable:
                        raise _StaleConnection(f"{error} before answering")
                    raise UpstreamProtocolError(f"origin connection {error} before answering")
                answered = True
                conn.receive_data(received)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = [(bytes(n).lower(), bytes(v)) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                size += len(event.data)
                chunks.append(bytes(event.data))
                if stream_after is not None and size > stream_after:
                    length = next((v for n, v in resp_headers if n == b"content-length"), None)
                    return UpstreamResponse(status, resp_headers, b"".join(chunks), rest=self._rest(c),
                                            length=int(length) if length is not None and length.isdigit() else None)
                if size > self.max_body:
                    raise UpstreamProtocolError(f"origin body larger than {self.max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return UpstreamResponse(status, resp_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamProtocolError("origin closed the connection mid-response")

    async def aclose(self) -> None:
        while self._idle:
            await _close(self._idle.pop())


def _reason(exc: OSError) -> str:
    """The OS's words (e.g. "Connection refused"): trio wraps per-address failures in a group."""
    cause = exc.__cause__
    if isinstance(cause, ExceptionGroup):
        reasons = dict.fromkeys(e.strerror for e in cause.exceptions if isinstance(e, OSError) and e.strerror)
        if reasons:
            return "; ".join(reasons)
    return exc.strerror or str(exc)


def _serialize_request(conn: h11.Connection, authority: bytes, method: bytes, target: bytes,
                       headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    out = [(b"host", authority)] + [(n, v) for n, v in headers if n != b"host"]
    if body or method in BODY_METHODS:
        # The body is buffered, so it is always sent with its length (never chunked).
        out = [(n, v) for n, v in out if n not in (b"content-length", b"transfer-encoding")]
        out.append((b"content-length", b"%d" % len(body)))
    data = conn.send(h11.Request(method=method, target=target, headers=out)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


async def _close(c: _Connection) -> None:
    # Shielded: closing must finish even when the request that used the connection is cancelled.
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(c.stream)


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: T | None = None
        self.error: Exception | None = None
        self.waiters = 0


class Flights(Generic[T]):
    """One in-flight fetch per key; later callers wait for the first one's answer.

    Args:
        nursery: where fetches run, so a fetch outlives the caller that started it
            (a server-owned nursery, STYLE.md 2.6 §6).
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._flights: dict[bytes, _Flight[T]] = {}
        self.collapsed = 0

    def __len__(self) -> int:
        return len(self._flights)

    def __repr__(self) -> str:
        return f"<Flights in flight={len(self._flights)} collapsed={self.collapsed}>"

    async def run(self, key: bytes, fetch: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, was_collapsed). The fetch's exception is raised in every waiter.

        A waiter that is cancelled stops waiting; the fetch goes on for the others (and, in
        the exchange, still fills the cache).
        """
        flight = self._flights.get(key)
        collapsed = flight is not None
        if flight is None:
            flight = self._flights[key] = _Flight()
            self._nursery.start_soon(self._fly, key, flight, fetch)
        else:
            self.collapsed += 1
        flight.waiters += 1
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.result, collapsed  # type: ignore[return-value]

    async def _fly(self, key: bytes, flight: _Flight[T], fetch: Callable[[], Awaitable[T]]) -> None:
        try:
            flight.result = await fetch()
        except Exception as exc:  # handed to every waiter, who owns the error handling
            flight.error = exc
        except BaseException:
            # Cancelled: the server is shutting down; waiters must not read a None result.
            flight.error = UpstreamError("the origin request was cancelled (shutting down)")
            raise
        finally:
            del self._flights[key]
            flight.done.set()
