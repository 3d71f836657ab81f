"""A plain TCP connection for the edge's hot paths: HTTP/1.1 reads and writes, HTTP/2 gathered writes."""

from __future__ import annotations

import socket

import trio

RECEIVE_BYTES = 65536
SEND_PARTS_MAX = 512  # pieces per sendmsg: below Linux's IOV_MAX of 1024 (sendmsg fails past it)


class FastSocket:
    """A plain TCP connection with the two stream methods HTTP/1.1 needs, minus trio's layers.

    ``recv``/``send`` go straight to the socket and wait (``wait_readable``/``wait_writable``)
    only when the kernel has nothing to read or no room to write: one syscall each way per
    request on the hit path (HOTPATH.md: per-request scheduler overhead decides HTTP/1.1
    throughput). It shares the trio socket's descriptor and is detached, never closed, when
    the connection ends (or by ``aclose``); the trio stream owns and closes the socket. Every 16th read
    yields to the scheduler so one busy pipelining client cannot starve the others.
    """

    __slots__ = ("_raw", "_reads", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._raw = socket.socket(fileno=stream.socket.fileno())
        self._reads = 0

    def detach(self) -> None:
        self._raw.detach()

    async def aclose(self) -> None:
        """Close the connection now (HTTP/2's writer, on a broken or stuck socket): the trio stream
        closes the descriptor and wakes a task waiting on it (ClosedResourceError). Detached first,
        so a later call fails (BrokenResourceError) instead of using a descriptor number that a new
        connection may already have."""
        self._raw.detach()
        await self.stream.aclose()

    @property
    def raw(self) -> socket.socket:
        return self._raw

    async def receive_some(self, max_bytes: int = RECEIVE_BYTES) -> bytes:
        while True:
            try:
                data = self._raw.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._raw)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            self._reads += 1
            if self._reads & 15 == 0:
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            return data

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._raw.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._raw)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            view = view[sent:]
        await trio.lowlevel.checkpoint_if_cancelled()

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """``send_all`` of the pieces' concatenation without making it: ``sendmsg`` gathers them
        (HTTP/2 queues a cached body as its own piece, so it is never copied on its way out).
        ``parts`` is consumed: a piece sent in part is replaced by a view of its rest."""
        raw = self._raw
        i, n = 0, len(parts)
        while i < n:
            try:
                sent = raw.sendmsg(parts[i: i + SEND_PARTS_MAX])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(raw)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            while i < n:
                size = len(parts[i])
                if sent < size:
                    if sent:
                        parts[i] = memoryview(parts[i])[sent:]
                    break
                sent -= size
                i += 1
        await trio.lowlevel.checkpoint_if_cancelled()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
