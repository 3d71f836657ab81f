"""Drive an ASGI app in process, without sockets: one HTTP request in, the app's answer out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Sent:
    """What the app sent: status, ASGI headers in order, the body's chunks joined."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower().encode():
                return value.decode("latin-1")
        return None


def http_scope(method: str, path: str, query: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A scope as hypercorn makes it (decoded path, raw query, lowercase header names)."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
            "root_path": "", "headers": [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode("latin-1"))
                                                                      for k, v in headers],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "extensions": {}}


async def call(app: ASGIApp, method: str, path: str, query: bytes = b"",
               headers: Sequence[tuple[str, str]] = (), body: Sequence[bytes] = ()) -> Sent:
    """One request through ``app``, its body in the chunks of ``body`` (none: empty); fails
    if it does not answer within 10 s."""
    done = trio.Event()
    start: dict[str, Any] = {}
    chunks: list[bytes] = []
    parts = list(body) or [b""]

    async def receive() -> dict[str, Any]:
        if parts:
            chunk = parts.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    with trio.fail_after(10):
        await app(http_scope(method, path, query, headers), receive, send)
    assert done.is_set(), "the app returned without finishing its answer"
    return Sent(start["status"], list(start["headers"]), b"".join(chunks))
