"""The send side of an HTTP/2 connection: frames queued whole, written by one task.

Why one task: a stream task cancelled by its RST_STREAM must never cut a frame in half, and
the hit path must not wait for the socket. So frames are queued synchronously (``write``,
``write_parts``) and a single writer task sends whatever has piled up, one ``sendmsg`` per
batch on plain TCP (``FastSocket.send_parts``: a cached body is its own piece, never copied),
one joined ``send_all`` on TLS. The writer runs in trio's next batch after the reader queued,
so the answers of every connection read in one pass go out together, after all of them were
worked out. ``flush`` is the backpressure: it waits until what was queued so far is written.
A client that reads nothing for ``SEND_TIMEOUT_S`` is gone (nginx ``send_timeout``).
"""

from __future__ import annotations

from typing import Any

import trio

from edgeproxy.fastsocket import FastSocket

SEND_TIMEOUT_S = 60.0


class FrameWriter:
    __slots__ = ("_gather", "_outbox", "_progress", "_queued", "_sent", "_wakeup", "broken", "stream")

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._outbox: list[bytes | memoryview] = []
        self._gather = isinstance(stream, FastSocket)  # plain TCP: one sendmsg per batch, no join
        self._queued = 0
        self._sent = 0
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self.broken = False  # the socket failed or timed out: nothing more will be written

    def write(self, data: bytes) -> None:
        """Queue whole frames; the writer sends them in order."""
        self._outbox.append(data)
        self._queued += len(data)
        self._wakeup.set()

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Queue whole frames as pieces (a frame head, then its payload): bodies are not copied."""
        self._outbox += parts
        for part in parts:
            self._queued += len(part)
        self._wakeup.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written (backpressure)."""
        target = self._queued
        while self._sent < target:
            if self.broken:
                raise trio.BrokenResourceError("the HTTP/2 connection is gone")
            await self._progress.wait()

    async def run(self) -> None:
        """The writer task; on a broken or stuck socket it closes the stream (the reader then ends)."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._outbox:
                    parts, self._outbox = self._outbox, []
                    queued = self._queued  # everything in ``parts``: nothing is queued meanwhile
                    with trio.fail_after(SEND_TIMEOUT_S):
                        if self._gather:  # sendmsg: the pieces as they are
                            await self.stream.send_parts(parts)
                        else:
                            await self.stream.send_all(b"".join(parts))
                    self._sent = queued
                    progress, self._progress = self._progress, trio.Event()
                    progress.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.broken = True
            self._progress.set()
            await trio.aclose_forcefully(self.stream)
