"""HTTP/2 (RFC 9113) on the h2 state machine: one task per stream, flow control both ways.

The connection task reads frames and feeds h2; each complete request (END_STREAM seen)
runs the shared ``Exchange`` in its own task, inside a cancel scope that a RST_STREAM from
the client cancels; responses are written as HEADERS + DATA frames, waiting on the peer's
flow-control window when it is exhausted. Limits: concurrent streams
(SETTINGS_MAX_CONCURRENT_STREAMS), header list size, request body size (413), and a cap on
resets and pings per connection so rapid-reset (CVE-2023-44487) and ping floods end the
connection with GOAWAY(ENHANCE_YOUR_CALM).

h2 updates its HPACK table while it encodes a header block, so a block that fails half-way
leaves the peer's decoder out of step: after any h2 error other than "stream closed" while
sending, the connection is ended rather than reused.

On graceful shutdown the streams in flight finish, then a GOAWAY naming the last stream
processed ends the connection (RFC 9113 §6.8).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from edgeproxy.exchange import Reply, error_reply, has_body, request_id
from edgeproxy.server import DATES, log_access

if TYPE_CHECKING:
    from edgeproxy.server import Server

log = logging.getLogger(__name__)

MAX_CONCURRENT_STREAMS = 100  # RFC 9113 §6.5.2 recommends at least 100; nginx uses 128
MAX_HEADER_LIST_SIZE = 32 * 1024  # twice the HTTP/1.1 head limit: HPACK-decoded sizes count 32 B per field
INITIAL_WINDOW_SIZE = 1 << 20  # per-stream receive window: 1 MiB request bodies flow without a round trip
CONNECTION_WINDOW_INCREMENT = 1 << 24  # connection receive window grows to 16 MiB (nginx: 2^31-1 less)
MAX_RESETS_PER_WINDOW = 200  # rapid-reset guard: client resets allowed per WINDOW_S
MAX_PINGS_PER_WINDOW = 200
WINDOW_S = 10.0
MAX_BODY = 64 * 1024 * 1024  # same request body limit as HTTP/1.1 (http1.H1Server)
RECEIVE_BYTES = 65536
SEND_TIMEOUT_S = 60.0  # nginx send_timeout: a client that reads nothing for this long is gone


class _Stream:
    __slots__ = ("body", "headers", "scope", "size", "window_open")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.body: list[bytes] = []
        self.size = 0
        self.window_open = trio.Event()
        self.scope = trio.CancelScope()  # cancelled by the client's RST_STREAM


class _RateGuard:
    """Events per sliding window, e.g. client resets; True from ``hit`` means a flood."""

    __slots__ = ("_limit", "_times")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._times: deque[float] = deque()

    def hit(self, now: float) -> bool:
        times = self._times
        times.append(now)
        while times[0] < now - WINDOW_S:
            times.popleft()
        return len(times) > self._limit


class H2Connection:
    def __init__(self, server: Server, stream: Any) -> None:
        self.server = server
        self.stream = stream
        # Inbound headers are validated by h2 (the client is untrusted). Outbound validation
        # and normalisation are off: every field we send was built by us or already
        # validated by h11 on the way in from the origin, and h2's checks cost ~8% of a hit.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_inbound_headers=True,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
        })
        self.streams: dict[int, _Stream] = {}
        self.streams_gone = trio.Event()  # set when the last stream in flight finishes
        self.last_stream_id = 0
        self.resets = _RateGuard(MAX_RESETS_PER_WINDOW)
        self.pings = _RateGuard(MAX_PINGS_PER_WINDOW)
        # The writer task owns the socket's send side (see flush).
        self._outbox: list[bytes] = []
        self._queued = 0  # bytes handed to the writer so far
        self._sent = 0  # bytes the writer has written so far
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self._broken = False

    async def flush(self) -> None:
        """Queue h2's pending bytes for the writer task and wait until they are written.

        Only the writer touches the socket's send side, so cancelling a stream's task (its
        RST_STREAM) can never cut a frame in half and break the framing of every other stream;
        waiting for the write keeps the backpressure of a direct write.
        """
        data = self.conn.data_to_send()
        if data:
            self._outbox.append(data)
            self._queued += len(data)
            self._wakeup.set()
        target = self._queued
        while self._sent < target:
            if self._broken:
                raise trio.BrokenResourceError("the HTTP/2 connection is gone")
            await self._progress.wait()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._outbox:
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    with trio.fail_after(SEND_TIMEOUT_S):
                        await self.stream.send_all(data)
                    self._sent += len(data)
                    self._notify()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self._broken = True
            self._notify()
            await trio.aclose_forcefully(self.stream)  # the reader sees it and ends the connection

    def _notify(self) -> None:
        progress, self._progress = self._progress, trio.Event()
        progress.set()

    async def run(self, first: bytes) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            nursery.start_soon(self._drain_on_shutdown, nursery)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self.conn.initiate_connection()
                self.conn.increment_flow_control_window(CONNECTION_WINDOW_INCREMENT)
                await self.flush()
                await self._read_loop(first, nursery)
            nursery.cancel_scope.cancel()

    async def _read_loop(self, data: bytes, nursery: trio.Nursery) -> None:
        while True:
            if data:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.info("HTTP/2 protocol error from client: %s", exc)
                    await self.flush()  # h2 queued the GOAWAY with the right code
                    return
                for event in events:
                    if not self.on_event(event, nursery):
                        await self.flush()
                        return
                await self.flush()
            with trio.move_on_after(self.server.config.keepalive_timeout) as scope:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            if scope.cancelled_caught:
                if self.streams:
                    continue  # not idle: answers are still being worked on
                self.conn.close_connection()
                await self.flush()
                return
            if not data:
                return

    async def _drain_on_shutdown(self, nursery: trio.Nursery) -> None:
        await self.server.drain_started.wait()
        # No advisory GOAWAY(2^31-1) first: h2-based clients (httpx) drop every frame that
        # follows a GOAWAY, so the answers in flight would be lost. Finish them, then say goodbye.
        while self.streams:
            self.streams_gone = trio.Event()
            await self.streams_gone.wait()
        self.conn.close_connection(last_stream_id=self.last_stream_id)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.flush()
        nursery.cancel_scope.cancel()

    def on_event(self, event: h2.events.Event, nursery: trio.Nursery) -> bool:
        """Handle one h2 event; False means the connection must end (after GOAWAY)."""
        conn = self.conn
        if isinstance(event, h2.events.RequestReceived):
            assert self.server.exchange is not None
            self.server.exchange.counters.streams_total += 1
            self.streams[event.stream_id] = _Stream(list(event.headers))
            self.last_stream_id = max(self.last_stream_id, event.stream_id)
            # The answer starts on the StreamEnded event that h2 always emits as well.
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            s = self.streams.get(event.stream_id)
            if s is not None:
                s.size += len(event.data)
                if s.size > MAX_BODY:
                    s.body = []
                    self._forget(event.stream_id)  # now: no StreamEnded in this batch may answer it too
                    nursery.start_soon(self.reject, event.stream_id, s,
                                       error_reply(413, "CONTENT_TOO_LARGE", "request body too large"))
                else:
                    s.body.append(event.data)
        elif isinstance(event, h2.events.StreamEnded):
            s = self.streams.get(event.stream_id)
            if s is not None:
                nursery.start_soon(self.respond, event.stream_id, s)
        elif isinstance(event, h2.events.StreamReset):
            s = self.streams.get(event.stream_id)
            if s is not None:
                s.scope.cancel()
                s.window_open.set()
                self._forget(event.stream_id)
            if self.resets.hit(time.monotonic()):
                log.warning("HTTP/2 rapid reset flood: closing the connection")
                conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                return False
        elif isinstance(event, h2.events.WindowUpdated):
            for sid, s in self.streams.items():
                if event.stream_id in (0, sid):
                    s.window_open.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for s in self.streams.values():  # a new SETTINGS_INITIAL_WINDOW_SIZE resizes every window
                s.window_open.set()
        elif isinstance(event, h2.events.PingReceived):
            if self.pings.hit(time.monotonic()):  # h2 has queued the PING ACK already
                log.warning("HTTP/2 ping flood: closing the connection")
                conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                return False
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if not self.streams:
            self.streams_gone.set()

    async def respond(self, stream_id: int, s: _Stream) -> None:
        server = self.server
        exchange = server.exchange
        assert exchange is not None
        pseudo = {n: v for n, v in s.headers if n.startswith(b":")}
        headers = _request_fields(s.headers)
        method = pseudo.get(b":method", b"GET")
        target = pseudo.get(b":path", b"/")
        rid = request_id(headers)
        started = time.perf_counter()
        server.request_started()
        try:
            with s.scope:
                try:
                    reply = await exchange.handle(method, target, headers, b"".join(s.body),
                                                  pseudo.get(b":authority") or _host(headers), rid=rid)
                except Exception:
                    log.exception("request %s %r failed", rid.decode(), target)
                    reply = error_reply(500, "INTERNAL_ERROR", "the edge failed to answer")
                await self.send_reply(stream_id, s, reply, rid, head_only=method == b"HEAD")
                log_access(rid, method, target, reply.status, len(reply.body), started, "HTTP/2")
        finally:
            server.request_done()
            self._forget(stream_id)

    async def reject(self, stream_id: int, s: _Stream, reply: Reply) -> None:
        """Answer before the request body ends, then stop the upload (RFC 9113 §8.1)."""
        with s.scope:
            await self.send_reply(stream_id, s, reply, request_id(s.headers), head_only=False)
            try:
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                return
            await self.flush()

    async def send_reply(self, stream_id: int, s: _Stream, reply: Reply, rid: bytes, *, head_only: bool) -> None:
        """HEADERS, then DATA within the peer's flow-control windows."""
        try:
            await self._send_reply(stream_id, s, reply, rid, head_only=head_only)
        except (h2.exceptions.StreamClosedError, trio.BrokenResourceError, trio.ClosedResourceError):
            return  # reset by the client meanwhile, or the connection is gone (the reader sees it)
        except h2.exceptions.ProtocolError:
            if self.conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
                return  # we sent GOAWAY meanwhile (flood, protocol error): h2 refused before encoding
            log.exception("HTTP/2 send on stream %d failed: ending the connection", stream_id)
            await trio.aclose_forcefully(self.stream)

    async def _send_reply(self, stream_id: int, s: _Stream, reply: Reply, rid: bytes, *, head_only: bool) -> None:
        conn = self.conn
        fields = [(b":status", b"%d" % reply.status)]
        fields += [(n, v) for n, v in reply.fields if n not in (b"connection", b"transfer-encoding")]
        if has_body(reply.status) and not any(n == b"content-length" for n, _ in reply.fields):
            fields.append((b"content-length", b"%d" % len(reply.body)))
        fields += [(b"date", DATES.get()), (b"x-request-id", rid), *reply.extra]
        body = reply.body if has_body(reply.status) and not head_only else b""
        conn.send_headers(stream_id, fields, end_stream=not body)
        await self.flush()
        view = memoryview(body)
        while view:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                s.window_open = trio.Event()
                await s.window_open.wait()
                continue
            chunk, view = view[:window], view[window:]
            conn.send_data(stream_id, bytes(chunk), end_stream=not view)
            await self.flush()
        assert self.server.exchange is not None
        self.server.exchange.counters.bytes_sent += len(body)


def _request_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Regular fields; HTTP/2 cookie crumbs joined into one field for HTTP/1.1 (RFC 9113 §8.2.3)."""
    fields = [(n, v) for n, v in headers if not n.startswith(b":") and n != b"cookie"]
    cookies = [v for n, v in headers if n == b"cookie"]
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    return fields


def _host(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"host":
            return value
    return None


async def serve_h2(server: Server, stream: Any, first: bytes) -> None:
    await H2Connection(server, stream).run(first)
