"""Talking to the edges after a publish: purge (batched, retried, acknowledged) and probe.

An edge is any proxy that speaks edgeproxy's purge protocol (``POST /.edge/purge`` with a
bearer token and ``{"paths", "keys", "soft", "invalidate"}``; the answer counts what it purged). A
publish is "live everywhere" only when every edge acknowledged every batch; what did not
get through is reported with the reason, never dropped silently.

Each batch may name its publish (``"publish": {"id", "seen"}``) so the edge can time it
(commit → purge → first fresh answer, in its metrics). An edge that does not know the field
answers 400; the batch is then sent again untagged, so a publish never fails for it.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from pipeline.publish import PurgeSet
from pipeline.store import Store

RETRY_DELAYS_S = (0.2, 0.5, 1.0)  # after the first attempt: three retries, then give up
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class PublishTag:
    """The publish a purge belongs to: its id and when its commit was seen (epoch seconds)."""

    id: str
    seen: float

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "seen": self.seen}


@dataclass(frozen=True, slots=True)
class Edge:
    url: str  # e.g. http://127.0.0.1:8080
    token: str | None = None


SESSION_FILE = "session.json"  # a running `flowcms up` names its edge here (state dir, mode 0600)


def known_edges(site: Path, store: Store) -> list[Edge]:
    """The edges a publish purges: ``[edges] urls`` in flowcms.toml (token from the environment
    variable named by ``token_env``, default FLOWCMS_EDGE_TOKEN), plus the edge of a running
    ``flowcms up`` session on this site."""
    edges: list[Edge] = []
    try:
        config = tomllib.loads((site / "flowcms.toml").read_text()).get("edges", {})
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    token = os.environ.get(str(config.get("token_env", "FLOWCMS_EDGE_TOKEN")))
    edges += [Edge(str(url).rstrip("/"), token) for url in config.get("urls", [])]
    try:
        session = json.loads((store.root / SESSION_FILE).read_text())
        os.kill(int(session["pid"]), 0)  # still running?
        edges.append(Edge(str(session["edge"]), str(session["token"])))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return edges


def write_session(store: Store, edge: Edge) -> Path:
    path = store.root / SESSION_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "edge": edge.url, "token": edge.token}, f)
    return path


@dataclass(slots=True)
class PurgeAck:
    edge: str
    ok: bool
    purged: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"edge": self.edge, "ok": self.ok, "purged": self.purged, "seconds": round(self.seconds, 4),
                "attempts": self.attempts, "error": self.error}


async def purge_edge(client: httpx.AsyncClient, edge: Edge, purges: PurgeSet, *, soft: bool,
                     publish: PublishTag | None = None) -> PurgeAck:
    """Every batch acknowledged by ``edge`` (with retries), or the reason it was not; each
    batch tagged with ``publish`` while the edge accepts the tag."""
    started = time.perf_counter()
    ack = PurgeAck(edge.url, ok=True)
    headers = {"Authorization": f"Bearer {edge.token}"} if edge.token else {}

    async def post(body: dict[str, object]) -> httpx.Response:
        # Changed paths are purged hard: their cached copies can never revalidate to a 304
        # (the ETag is the content hash). Keys (answers that may not have changed) are
        # invalidated when a soft purge is asked: kept for a conditional request (a 304 keeps
        # the body), but never served before the origin answered it, so a publish is live at
        # once although answers carry stale-while-revalidate.
        keep = soft and "paths" not in body
        sent: dict[str, object] = {**body, "soft": keep, "invalidate": keep}
        if publish is not None:
            sent["publish"] = publish.to_json()
        return await client.post(f"{edge.url}/.edge/purge", json=sent, headers=headers, timeout=REQUEST_TIMEOUT_S)

    for body in purges.batches():
        for delay in (0.0, *RETRY_DELAYS_S):
            await trio.sleep(delay)
            ack.attempts += 1
            try:
                response = await post(body)
                if response.status_code == 400 and publish is not None:
                    publish = None  # an edge that does not take publish tags: purge untagged from now on
                    response = await post(body)
            except httpx.HTTPError as exc:
                ack.error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                ack.purged += int(response.json().get("purged", 0))
                ack.error = None
                break
            ack.error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code in (400, 401, 403):
                break  # a wrong token or body does not get better by retrying
        if ack.error is not None:
            ack.ok = False
            break
    ack.seconds = time.perf_counter() - started
    return ack


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: every ``AsyncClient()`` builds its own (loading the
    CA store, ~40 ms), and a publish made two of them between its purge and its first fresh answer."""
    return httpx.create_ssl_context()


async def purge_all(edges: list[Edge], purges: PurgeSet, *, soft: bool,
                    publish: PublishTag | None = None) -> list[PurgeAck]:
    """Purge every edge concurrently; one acknowledgement (or failure) per edge, in order.
    ``publish`` tags every batch, so each edge can time the publish in its metrics."""
    acks: list[PurgeAck | None] = [None] * len(edges)
    async with httpx.AsyncClient(verify=tls_context()) as client:

        async def one(i: int) -> None:
            acks[i] = await purge_edge(client, edges[i], purges, soft=soft, publish=publish)

        async with trio.open_nursery() as nursery:
            for i in range(len(edges)):
                nursery.start_soon(one, i)
    return [a for a in acks if a is not None]


async def first_fresh(edge: Edge, path: str, etag: str, *, within: float = 5.0) -> float | None:
    """Seconds until ``edge`` answers ``path`` with ``etag`` (the new build's), or None.

    After a soft purge the first answer may be the stale copy while the edge revalidates
    (RFC 5861), so this asks until the fresh one arrives, at most ``within`` seconds. The tags are
    compared weakly (RFC 9110 §8.8.3.2): the edge's gzip copy carries the build's tag made weak.
    """
    started = time.perf_counter()
    async with httpx.AsyncClient(verify=tls_context()) as client:
        with trio.move_on_after(within):
            while True:
                try:
                    response = await client.get(f"{edge.url}{path}", timeout=REQUEST_TIMEOUT_S)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200 and response.headers.get("etag", "").removeprefix("W/") == etag:
                    return time.perf_counter() - started
                await trio.sleep(0.01)
    return None
