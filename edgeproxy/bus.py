"""The worker bus: a purge reaches every worker's cache before it is acknowledged.

With ``--workers N`` each worker process has its own cache. The supervisor holds one
Unix socket to each worker and relays: a worker that receives a purge applies it to its
own cache, asks the supervisor to fan it out, and answers the client only when every
other worker has applied it too (or says which did not, with a 503). ``/.edge/stats``
and ``/.edge/metrics`` gather every worker's counters the same way.

Messages are JSON lines. A request is ``{"op", "id", "data"}``; its answer is
``{"reply": id, ...}``. Both ends read in one task and send under a lock, so requests and
answers may interleave freely on one socket.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger(__name__)

BUS_TIMEOUT_S = 5.0  # a worker that cannot apply a purge in this long is reported as missed
MAX_LINE = 1 << 20

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class Link:
    """One end of a bus socket: send JSON lines, read them, match answers to questions."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.lock = trio.Lock()
        self.pending: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self.ids = itertools.count(1)
        self.alive = True

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self.lock:
            await self.stream.send_all(data)

    async def ask(self, op: str, data: dict[str, Any], within: float) -> dict[str, Any] | None:
        """Send a request and wait for its answer; None when it does not come in time."""
        ident = next(self.ids)
        done = trio.Event()
        box: list[dict[str, Any]] = []
        self.pending[ident] = (done, box)
        try:
            with trio.move_on_after(within):
                await self.send({"op": op, "id": ident, "data": data})
                await done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        finally:
            self.pending.pop(ident, None)
        return box[0] if box else None

    async def read(self, on_request: Callable[[dict[str, Any]], Awaitable[None]], nursery: trio.Nursery) -> None:
        """Dispatch lines until the peer goes away: answers wake ``ask``, requests run in ``nursery``."""
        buffer = b""
        try:
            while True:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
                if len(buffer) > MAX_LINE and b"\n" not in buffer:
                    log.error("worker bus: oversized message; closing the link")
                    return
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "reply" in message:
                        waiting = self.pending.get(message["reply"])
                        if waiting is not None:
                            waiting[1].append(message)
                            waiting[0].set()
                    else:
                        nursery.start_soon(on_request, message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self.alive = False
            for done, _ in self.pending.values():
                done.set()


class WorkerBus:
    """A worker's end: fan-outs are asked of the supervisor; its fan-outs are answered by ``handler``."""

    def __init__(self, stream: trio.abc.Stream, workers: int) -> None:
        self.link = Link(stream)
        self.workers = workers
        self.handler: Handler | None = None

    async def run(self, handler: Handler) -> None:
        self.handler = handler
        async with trio.open_nursery() as nursery:
            await self.link.read(self._answer, nursery)
            nursery.cancel_scope.cancel()

    async def _answer(self, message: dict[str, Any]) -> None:
        assert self.handler is not None
        try:
            data = self.handler(message["op"], message.get("data") or {})
        except Exception:
            log.exception("worker bus: %s failed", message.get("op"))
            data = {"error": True}
        try:
            await self.link.send({"reply": message["id"], "data": data})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def fan_out(self, op: str, data: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The other workers' answers to ``op`` and how many of them did not answer."""
        answer = await self.link.ask(op, data, BUS_TIMEOUT_S + 1.0)
        if answer is None:
            return [], self.workers - 1
        return list(answer.get("results") or []), int(answer.get("missing") or 0)


class Hub:
    """The supervisor's end: relays each worker's fan-out to every other live worker."""

    def __init__(self) -> None:
        self.links: dict[int, Link] = {}  # worker slot -> its link

    async def serve(self, slot: int, stream: trio.abc.Stream) -> None:
        link = Link(stream)
        self.links[slot] = link
        try:
            async with trio.open_nursery() as nursery:
                await link.read(lambda message: self._relay(link, message), nursery)
                nursery.cancel_scope.cancel()
        finally:
            if self.links.get(slot) is link:
                del self.links[slot]

    async def _relay(self, origin: Link, message: dict[str, Any]) -> None:
        others = [link for link in self.links.values() if link is not origin and link.alive]
        results: list[dict[str, Any]] = []
        missing = 0

        async def one(link: Link) -> None:
            nonlocal missing
            answer = await link.ask(message["op"], message.get("data") or {}, BUS_TIMEOUT_S)
            if answer is None or not isinstance(answer.get("data"), dict) or answer["data"].get("error"):
                missing += 1
            else:
                results.append(answer["data"])

        async with trio.open_nursery() as nursery:
            for link in others:
                nursery.start_soon(one, link)
        try:
            await origin.send({"reply": message["id"], "results": results, "missing": missing})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
