"""Listeners and connection lifecycle: trio TCP (and TLS), HTTP/1.1 loop, HTTP/2 hand-off.

One task per connection owns its protocol adapter. The first bytes decide the protocol:
the HTTP/2 connection preface means prior-knowledge h2c, anything else HTTP/1.1; with
TLS, ALPN decides. Requests on one HTTP/1.1 connection are answered in order, which
makes pipelining correct by construction. A request head must arrive within
``header_timeout`` (slowloris); an idle keep-alive connection closes after
``keepalive_timeout``. On SIGTERM/SIGINT (or ``shutdown()``) the listeners close,
in-flight requests get ``grace`` seconds, then everything is cancelled.

Error handling: a failure inside one connection (a bug in the exchange included) is
logged with the request id, answered with a 500 when the protocol still allows it, and
ends that connection only; errors of the server loop itself propagate.
"""

from __future__ import annotations

import logging
import math
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from edgeproxy.answering import DATES, log_access, peer_host, serialize
from edgeproxy.bus import WorkerBus
from edgeproxy.config import ProxyConfig
from edgeproxy.errors import ConfigError, RemoteProtocolError, UpstreamError
from edgeproxy.exchange import Exchange
from edgeproxy.fastsocket import RECEIVE_BYTES, FastSocket
from edgeproxy.http1 import NEED_DATA, Body, EndOfMessage, H1Server, RequestHead, format_response_head
from edgeproxy.replies import Reply, error_reply, has_body, request_id

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LISTEN_BACKLOG = 1024  # above trio's default (min(SOMAXCONN, 0xFFFF)) on small machines; nginx uses 511
ACCEPT_BACKOFF_S = 0.1  # after EMFILE and friends: back off instead of spinning (trio serve_listeners)
CLOSE_TIMEOUT_S = 1.0  # bound on the goodbye write (408) before a connection is closed
LINGER_S = 2.0  # lingering close after an error answer; nginx lingering_timeout is 5 s
LINGER_BYTES = 1024 * 1024  # ...reading at most this much of what the client still sends
_TOO_LARGE = b"\x00too large"  # _h1_body's answer for a body past the gateway's limit (compared by identity)


class Server:
    """One worker: listeners, connections, and the shared Exchange (cache, origin pool)."""

    def __init__(self, config: ProxyConfig, *, bus: trio.abc.Stream | None = None, workers: int = 1) -> None:
        self.config = config
        self.bus = bus  # with several workers: this worker's socket to the supervisor (bus.py)
        self.hitloop: Any = None  # idle plain-TCP HTTP/1.1 connections wait there (hitloop.py)
        self.workers = workers
        self.exchange: Exchange | None = None
        self.draining = False
        self.active = 0  # requests being answered now, plus open HTTP/2 connections
        self._idle = trio.Event()  # set whenever active drops to 0
        self._shutdown = trio.Event()
        self.drain_started = trio.Event()

    def shutdown(self) -> None:
        """Begin a graceful shutdown, as SIGTERM does."""
        self._shutdown.set()

    async def serve(self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
                    listeners: list[trio.SocketListener] | None = None) -> None:
        """Serve until SIGINT/SIGTERM or ``shutdown()``; ``task_status`` gets the listeners.

        Raises:
            ConfigError: the port cannot be bound or the TLS files cannot be loaded
                (raised before anything starts, so the CLI can print it and exit 1).
        """
        config = self.config
        # Everything that can fail on bad configuration happens before the first nursery,
        # so the error reaches the caller as itself, not wrapped in an ExceptionGroup.
        ssl_context = make_ssl_context(config) if config.tls_cert else None
        if listeners is None:
            listeners = await open_listeners(config)
        handler = partial(self.handle_tls, ssl_context=ssl_context) if ssl_context else self.handle_plain
        try:
            async with trio.open_nursery() as background:
                self.exchange = Exchange(config, background)
                from edgeproxy.hitloop import HitLoop  # it imports this module

                self.hitloop = HitLoop(self)
                background.start_soon(self.hitloop.run)
                if self.bus is not None:
                    self.exchange.bus = WorkerBus(self.bus, self.workers)
                    background.start_soon(self._run_bus, self.exchange.bus)
                async with trio.open_nursery() as connections:
                    for listener in listeners:
                        connections.start_soon(self._accept_loop, listener, connections, handler)
                    task_status.started(listeners)
                    await self._until_shutdown()
                    self.draining = True
                    self.drain_started.set()
                    await _close_all(listeners)
                    with trio.move_on_after(config.grace):
                        await self.wait_drained()
                    connections.cancel_scope.cancel()
                background.cancel_scope.cancel()
        finally:
            if self.hitloop is not None:
                self.hitloop.close()
            # Also when cancelled from outside (an embedding nursery, a test): nothing may leak.
            with trio.CancelScope(shield=True):
                await _close_all(listeners)
                if self.exchange is not None:
                    await self.exchange.pool.aclose()

    async def _run_bus(self, bus: WorkerBus) -> None:
        assert self.exchange is not None
        await bus.run(self.exchange.bus_request)
        if not self.draining:
            log.warning("the supervisor is gone: shutting down")
            self.shutdown()

    async def wait_drained(self) -> None:
        """Wait until no request is being answered."""
        while self.active:
            self._idle = trio.Event()
            await self._idle.wait()

    def request_started(self) -> None:
        """Count work that a graceful shutdown waits for (``grace`` seconds at most)."""
        self.active += 1

    def request_done(self) -> None:
        self.active -= 1
        if not self.active:
            self._idle.set()

    async def _until_shutdown(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_signals)
            await self._shutdown.wait()
            nursery.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        try:
            receiver = trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            with receiver as signals:
                async for signum in signals:
                    log.info("received %s: shutting down (grace %g s)", signal.Signals(signum).name,
                             self.config.grace)
                    self.shutdown()
                    return
        except RuntimeError:  # not in the main thread (embedded use): only shutdown() stops us
            await trio.sleep_forever()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery,
                           handler: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await trio.sleep(ACCEPT_BACKOFF_S)
                continue
            nursery.start_soon(self._guard, handler, stream)

    async def _guard(self, handler: Callable[[trio.SocketStream], Awaitable[None]],
                     stream: trio.SocketStream) -> None:
        """One connection's top: its failures are logged and end only that connection."""
        try:
            await handler(stream)
        except Exception:
            log.exception("connection from %s failed", _peer(stream))
        finally:
            await trio.aclose_forcefully(stream)

    async def handle_tls(self, stream: trio.SocketStream, *, ssl_context: ssl.SSLContext) -> None:
        tls = trio.SSLStream(stream, ssl_context, server_side=True)
        try:
            with trio.fail_after(self.config.header_timeout):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if tls.selected_alpn_protocol() == "h2":
            await self.handle_h2(tls, b"")
        else:
            await self.handle_h1(tls, b"")

    async def handle_plain(self, stream: trio.SocketStream) -> None:
        first = b""
        try:
            with trio.fail_after(self.config.header_timeout):
                first = await stream.receive_some(RECEIVE_BYTES)
                while first and len(first) < len(H2_PREFACE) and H2_PREFACE.startswith(first):
                    more = await stream.receive_some(RECEIVE_BYTES)
                    if not more:
                        break
                    first += more
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not first:
            return
        if first.startswith(H2_PREFACE):
            await self.handle_h2(stream, first)
        else:
            await self.handle_h1(stream, first)

    async def handle_h2(self, stream: Any, first: bytes) -> None:
        from edgeproxy.http2 import serve_h2

        assert self.exchange is not None
        counters = self.exchange.counters
        counters.connections_total += 1
        counters.connections_open += 1
        # An HTTP/2 connection counts as work in progress: on shutdown it finishes its streams
        # and sends GOAWAY itself, and must not be cancelled before that (an idle one is quick).
        self.request_started()
        try:
            await serve_h2(self, stream, first)
        finally:
            self.request_done()
            counters.connections_open -= 1

    async def handle_h1(self, stream: Any, first: bytes) -> None:
        client = peer_host(stream)
        if isinstance(stream, trio.SocketStream):
            fast = FastSocket(stream)
            try:
                await self._handle_h1(fast, first, client)
            finally:
                fast.detach()
            return
        await self._handle_h1(stream, first, client)

    async def _handle_h1(self, stream: Any, first: bytes, client: str | None = None) -> None:
        assert self.exchange is not None
        counters = self.exchange.counters
        counters.connections_total += 1
        counters.connections_open += 1
        parser = H1Server()
        if first:
            parser.receive_data(first)
        # One cancel scope per connection whose deadline is armed only while waiting for
        # request bytes: entering a new timeout scope per request cost more than parsing it.
        waiting = trio.CancelScope()
        hitloop = self.hitloop if isinstance(stream, FastSocket) else None
        timed_out = False
        try:
            with waiting:
                head: RequestHead | None = None
                while True:
                    if hitloop is not None and parser.idle and not self.draining:
                        # between requests: wait in the hit loop, which answers fresh hits itself
                        outcome = await hitloop.park(stream, parser, client)
                        kind = outcome[0]
                        if kind == "closed":
                            return
                        if kind == "timeout":
                            timed_out = True  # answered with 408 below, as if our own read timed out
                            break
                        if kind == "pending":
                            await stream.send_all(outcome[1])
                            if outcome[2] is None:
                                continue
                            head = outcome[2]  # the request after the answers sent just now
                        if kind == "head":
                            head = outcome[1]
                    if not await self._h1_next(stream, parser, waiting, head, client):
                        break
                    head = None
            if (waiting.cancelled_caught or timed_out) and not parser.idle:
                reply = error_reply(408, "REQUEST_TIMEOUT", "the request did not arrive in time")
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await stream.send_all(serialize(reply, request_id([]), head_only=False, close=True))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            counters.connections_open -= 1

    async def _h1_next(self, stream: Any, parser: H1Server, waiting: trio.CancelScope,
                       head: RequestHead | None = None, client: str | None = None) -> bool:
        """Read (unless the hit loop did) and answer one request; False when the connection must close."""
        try:
            if head is None:
                head = await self._h1_head(stream, parser, waiting)
            if head is None:
                return False
            assert self.exchange is not None
            limit, denial = self.exchange.body_limit(head.method, head.target, head.headers, head.content_length)
            if denial is not None:  # over the API's body limit: refused before a byte of it is read
                denial.close = True
                await self._h1_answer(stream, head, b"", request_id(head.headers), client, reply=denial)
                await _linger(stream)
                return False
            if head.expect_continue and (head.content_length or head.chunked):
                await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")  # RFC 9110 §10.1.1
            body = await self._h1_body(stream, parser, limit)
            if body is _TOO_LARGE:  # a chunked body that grew past the limit
                _, denial = self.exchange.body_limit(head.method, head.target, head.headers, limit + 1)
                assert denial is not None
                denial.close = True
                await self._h1_answer(stream, head, b"", request_id(head.headers), client, reply=denial)
                await _linger(stream)
                return False
        except RemoteProtocolError as exc:
            assert self.exchange is not None
            self.exchange.counters.client_errors += 1
            reply = error_reply(exc.status_hint, "BAD_REQUEST", str(exc))
            fields = exc.fields or (head.headers if head is not None else [])  # a body's fault: the head is known
            await stream.send_all(serialize(reply, request_id(fields), head_only=False, close=True))
            await _linger(stream)
            return False
        except trio.TooSlowError:
            if not parser.idle:
                reply = error_reply(408, "REQUEST_TIMEOUT", "the request did not arrive in time")
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await stream.send_all(serialize(reply, request_id([]), head_only=False, close=True))
            return False
        if body is None:
            return False  # the client went away mid-body
        return not await self._h1_answer(stream, head, body, request_id(head.headers), client)

    async def _h1_head(self, stream: Any, parser: H1Server, waiting: trio.CancelScope) -> RequestHead | None:
        """The next request head; None on a clean close (or an idle connection while draining).

        ``waiting``'s deadline is armed around each read: when it passes, the connection's
        scope is cancelled and ``_handle_h1`` answers 408 if a request had begun.
        """
        while True:
            event = parser.next_event()
            if isinstance(event, RequestHead):
                return event
            if event is not NEED_DATA:
                continue  # the end of a request already answered
            if parser.idle and self.draining:
                return None
            timeout = self.config.keepalive_timeout if parser.idle else self.config.header_timeout
            waiting.deadline = trio.current_time() + timeout
            data = await stream.receive_some(RECEIVE_BYTES)
            waiting.deadline = math.inf
            if not data:
                return None
            parser.receive_data(data)

    async def _h1_body(self, stream: Any, parser: H1Server, limit: int = 0) -> bytes | None:
        """The whole request body; None when the client went away; ``_TOO_LARGE`` past ``limit``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = parser.next_event()
            if isinstance(event, EndOfMessage):
                return b"".join(chunks)
            if isinstance(event, Body):
                chunks.append(event.data)
                size += len(event.data)
                if limit and size > limit:
                    return _TOO_LARGE
                continue
            with trio.fail_after(self.config.header_timeout):  # a stalled body is a slowloris too
                data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return None
            parser.receive_data(data)

    async def _h1_answer(self, stream: Any, head: RequestHead, body: bytes, rid: bytes, client: str | None = None,
                         *, reply: Reply | None = None) -> bool:
        """Answer one parsed request (or send ``reply``); True when the connection must close afterwards."""
        exchange = self.exchange
        assert exchange is not None
        started = time.perf_counter()
        self.request_started()
        try:
            try:
                if reply is None:
                    reply = await exchange.handle(head.method, head.target, head.headers, body, head.host, rid=rid,
                                                  client=client)
            except Exception:
                log.exception("request %s %r failed", rid.decode(), head.target)
                reply = error_reply(500, "INTERNAL_ERROR", "the edge failed to answer")
                reply.close = True
            close = not head.keep_alive or reply.close or self.draining
            if reply.stream is not None and reply.length is None and head.http_version == b"1.0":
                close = True  # no chunked coding in HTTP/1.0: the close ends the body
            if head.http_version == b"1.0" and not close:
                reply.extra = [*reply.extra, (b"connection", b"keep-alive")]  # 1.0 keeps only when told
            if reply.stream is not None:
                sent, broken = await _send_streamed(stream, reply, rid, head, close=close)
                close = close or broken
            else:
                data = serialize(reply, rid, head_only=head.method == b"HEAD", close=close)
                await stream.send_all(data)
                sent = len(data)
            exchange.counters.bytes_sent += sent
        finally:
            self.request_done()
            if reply is not None and reply.stream is not None:
                with trio.CancelScope(shield=True):
                    await reply.aclose()
        log_access(rid, head.method, head.target, reply.status, sent, started, "HTTP/1.1")
        return close


async def _send_streamed(stream: Any, reply: Reply, rid: bytes, head: RequestHead, *, close: bool) -> tuple[int, bool]:
    """A body that streams from the origin: Content-Length when it is known, else chunked.

    Returns (bytes sent, broken). Broken: the origin failed mid-body, so the response
    cannot be completed and the connection must close (the client sees it cut short).
    """
    chunked = reply.length is None and head.http_version != b"1.0"
    fields = [(n, v) for n, v in reply.fields if n != b"transfer-encoding"]
    if chunked:
        fields.append((b"transfer-encoding", b"chunked"))
    tail = [(b"x-request-id", rid), *reply.extra] if reply.dated else [(b"date", DATES.get()), (b"x-request-id", rid),
                                                                       *reply.extra]
    if close:
        tail.append((b"connection", b"close"))
    data = format_response_head(reply.status, [*fields, *tail])
    sent = len(data)
    await stream.send_all(data)
    if head.method == b"HEAD" or not has_body(reply.status):
        return sent, False
    assert reply.stream is not None
    try:
        pieces = [reply.body] if reply.body else []
        while True:
            for piece in pieces:
                out = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                await stream.send_all(out)
                sent += len(out)
            try:
                pieces = [await reply.stream.__anext__()]
            except StopAsyncIteration:
                break
        if chunked:
            await stream.send_all(b"0\r\n\r\n")
            sent += 5
    except UpstreamError as exc:
        log.warning("request %s: origin failed mid-body (%s); closing the client connection", rid.decode(), exc)
        return sent, True
    return sent, False


async def _linger(stream: Any) -> None:
    """Drop what the client is still sending before closing (nginx lingering_close).

    Closing a socket with unread input makes the kernel send RST, which can destroy the
    error answer before the client has read it (a 431 for a huge head, a 400 mid-upload).
    """
    try:
        if isinstance(stream, (trio.SocketStream, FastSocket)):
            await stream.send_eof()  # the answer is complete: the client may see EOF now
        with trio.move_on_after(LINGER_S):
            received = 0
            while received < LINGER_BYTES:
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    return
                received += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def _close_all(listeners: list[trio.SocketListener]) -> None:
    for listener in listeners:
        await listener.aclose()  # idempotent


async def open_listeners(config: ProxyConfig) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(config.listen_port, host=config.listen_host, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.listen_host}:{config.listen_port}: "
                          f"{exc.strerror or exc}") from None


def make_ssl_context(config: ProxyConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert or "", config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {config.tls_cert} / key {config.tls_key}: {exc}") from None
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
