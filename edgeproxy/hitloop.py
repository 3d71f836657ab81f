"""The HTTP/1.1 hit loop: idle keep-alive connections wait in one epoll set, and requests the
cache answers fresh are answered right there, without a task switch.

Why: with one trio task per connection, every request on a keep-alive connection costs a
park in ``wait_readable`` (two ``epoll_ctl`` calls and a reschedule) — measured, about three
quarters of the time of a cache hit (HOTPATH.md: a bare Python epoll loop serves 200k+
req/s here, trio + a hand-rolled parser ~20k). So a connection whose task has nothing to do
parks here instead: one task waits on the epoll descriptor for all of them, reads what
arrived, and answers each GET/HEAD the cache answers fresh (parse, lookup, pre-serialized
head): ``h1lane.h1_hit`` writes the common case straight to bytes, and
``Exchange.try_hit`` answers the rest (preconditions, request directives). Anything else — a
miss, a body, ``Expect``, HTTP/1.0, a parse error, a send that would block — is handed back
to the connection's own task with the request head already parsed, so the general path
(``server.py``) sees exactly what it would have read itself, in order (pipelined requests
included).

Answers are written when the whole batch of ready connections has been served, not one by
one: each connection's answers (several when requests are pipelined) go out with one
``sendmsg``, back to back. Why: on loopback the send runs the reader's receive path and wakes
it; a client that has gone to sleep between two of our answers costs a cross-CPU wake-up each
time (in a VM an IPI, a VM exit: measured at 9-15% of the edge's CPU under wrk, the share
growing as the edge gets slower per request). Sent in a burst, one wake-up serves the batch.
Nothing waits longer than the batch takes to compute (32 connections: a few hundred µs), and
a connection's answers are written at once past ``FLUSH_BYTES`` (a deep pipeline, a large
answer), so the socket's backpressure still stops a client that does not read.

Timeouts are kept per connection and swept once a second: an idle connection past
``keepalive_timeout`` is closed, one with half a request past ``header_timeout`` gets 408.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING, Any

import trio

from edgeproxy.answering import log_access, serialize_parts
from edgeproxy.errors import RemoteProtocolError
from edgeproxy.fastsocket import RECEIVE_BYTES, SEND_PARTS_MAX
from edgeproxy.h1lane import h1_hit
from edgeproxy.http1 import NEED_DATA, H1Server, RequestHead
from edgeproxy.replies import request_id

if TYPE_CHECKING:
    from edgeproxy.fastsocket import FastSocket
    from edgeproxy.server import Server

SWEEP_S = 1.0
FLUSH_BYTES = 256 * 1024  # a connection's answers are written at once past this, not at the batch's end
_EVENTS = select.EPOLLIN | select.EPOLLRDHUP

# outcomes handed back to a connection's task
CLOSED = "closed"  # the peer closed, or an idle connection timed out
TIMEOUT = "timeout"  # half a request, then nothing for header_timeout: answer 408
HEAD = "head"  # a request the general path must answer (the head is parsed)
PENDING = "pending"  # answers that did not fit the socket buffer: the task sends the rest (then
# answers the request head that follows, if any: (PENDING, rest, head))
PARSE = "parse"  # the buffered bytes do not parse: the task's own read raises and answers 400


class _Parked:
    __slots__ = ("client", "deadline", "done", "fd", "out", "out_bytes", "outcome", "parser", "sock")

    def __init__(self, sock: Any, parser: H1Server, deadline: float, client: str | None) -> None:
        self.sock = sock
        self.client = client
        self.fd = sock.fileno()
        self.parser = parser
        self.deadline = deadline
        self.done = trio.Event()
        self.outcome: tuple[Any, ...] = (CLOSED,)
        self.out: list[bytes] = []  # answers waiting for the end of the batch (heads and bodies)
        self.out_bytes = 0  # their size


class HitLoop:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.epoll = select.epoll()
        self.parked: dict[int, _Parked] = {}
        self.outbox: list[_Parked] = []  # connections with answers to write at the end of the batch

    def close(self) -> None:
        self.epoll.close()

    async def park(self, stream: FastSocket, parser: H1Server, client: str | None = None) -> tuple[Any, ...]:
        """Wait here until the connection needs its task again; returns why (an outcome)."""
        p = _Parked(stream.raw, parser, time.monotonic() + self.server.config.keepalive_timeout, client)
        self.parked[p.fd] = p
        self.epoll.register(p.fd, _EVENTS)
        try:
            await p.done.wait()
        finally:
            if self.parked.pop(p.fd, None) is not None:  # cancelled (shutdown) while parked
                self.epoll.unregister(p.fd)
        return p.outcome

    def _release(self, p: _Parked, *outcome: Any) -> None:
        del self.parked[p.fd]
        self.epoll.unregister(p.fd)
        p.outcome = outcome
        p.done.set()

    async def run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_S
        poll = self.epoll.poll
        while True:
            with trio.move_on_after(SWEEP_S):
                await trio.lowlevel.wait_readable(self.epoll.fileno())
            for fd, _ in poll(0):
                p = self.parked.get(fd)
                if p is not None:
                    self._service(p)
            if self.outbox:
                self._flush()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_S
                self._sweep(now)

    def _sweep(self, now: float) -> None:
        draining = self.server.draining
        for p in list(self.parked.values()):
            if now >= p.deadline or (draining and p.parser.idle):
                self._release(p, CLOSED if p.parser.idle else TIMEOUT)

    def _flush(self) -> None:
        """Write every connection's answers, one ``sendmsg`` each (see the module docstring)."""
        outbox, self.outbox = self.outbox, []
        for p in outbox:
            self._write(p)

    def _send_now(self, p: _Parked) -> bool:
        """Write ``p``'s answers before the batch ends: a deep pipeline or large answers must not pile
        up (memory, and sendmsg takes at most IOV_MAX pieces). False when ``p`` was handed back."""
        self.outbox.remove(p)
        return self._write(p)

    def _write(self, p: _Parked) -> bool:
        """One ``sendmsg`` of ``p``'s answers; what does not fit goes to its task (False then)."""
        out, total = p.out, p.out_bytes
        p.out, p.out_bytes = [], 0
        try:
            sent = p.sock.sendmsg(out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._release(p, CLOSED)
            return False
        if sent < total:
            self._release(p, PENDING, b"".join(out)[sent:], None)
            return False
        return True

    def _hand_back(self, p: _Parked, outcome: str, head: RequestHead | None = None) -> None:
        """Give the connection back to its task; answers still queued go first (the task sends them)."""
        if p.out:
            self.outbox.remove(p)
            rest, p.out, p.out_bytes = b"".join(p.out), [], 0
            self._release(p, PENDING, rest, head)  # a PARSE error shows again on the task's own read
        elif head is not None:
            self._release(p, outcome, head)
        else:
            self._release(p, outcome)

    def _service(self, p: _Parked) -> None:
        try:
            data = p.sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._release(p, CLOSED)
            return
        if not data:
            self._release(p, CLOSED)
            return
        parser = p.parser
        parser.receive_data(data)
        server = self.server
        exchange = server.exchange
        assert exchange is not None
        counters = exchange.counters
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError:
                self._hand_back(p, PARSE)
                return
            if event is NEED_DATA:
                config = server.config
                p.deadline = time.monotonic() + (config.keepalive_timeout if parser.idle else config.header_timeout)
                return
            if type(event) is not RequestHead:
                continue  # the EndOfMessage of a request answered below
            head: RequestHead = event
            if not ((head.method == b"GET" or head.method == b"HEAD") and head.http_version == b"1.1"
                    and head.keep_alive and not head.content_length and not head.chunked
                    and not head.expect_continue and not server.draining):
                self._hand_back(p, HEAD, head)
                return
            started = time.perf_counter()
            answer = h1_hit(exchange, head.method, head.target, head.headers, head.host, p.client)
            if answer is not None:
                head_bytes, body, status, rid = answer
            else:  # not a plain fresh hit: the general hit path decides (a precondition, a directive...)
                reply = exchange.try_hit(head.method, head.target, head.headers, head.host, client=p.client)
                if reply is None:
                    self._hand_back(p, HEAD, head)
                    return
                rid = request_id(head.headers)
                head_bytes, body = serialize_parts(reply, rid, head_only=head.method == b"HEAD", close=False)
                status = reply.status
            if not p.out:
                self.outbox.append(p)
            p.out.append(head_bytes)
            if body:
                p.out.append(body)
            total = len(head_bytes) + len(body)
            p.out_bytes += total
            counters.bytes_sent += total
            log_access(rid, head.method, head.target, status, total, started, "HTTP/1.1")
            if (p.out_bytes >= FLUSH_BYTES or len(p.out) >= SEND_PARTS_MAX - 1) and not self._send_now(p):
                return  # the socket is full: the task sends the rest, then reads on (backpressure)
