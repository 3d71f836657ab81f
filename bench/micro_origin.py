#!/usr/bin/env python3
"""The origin's cost per API request in process: no sockets, no hypercorn, one request at a time.

Why: ``bench/api.py`` needs a quiet machine and minutes; this answers "did the origin's own
work per request get cheaper?" in seconds, on any machine. It publishes the bundled sample
site (``content/``) into a temporary folder, builds the origin app (``create_app``) and
drives its ASGI callable directly with the targets of ``bench/api.py`` (REST list, single
entry, feed, GraphQL GET) and the same GraphQL query by POST (``gql-post``, what most GraphQL
clients send), awaiting each answer before sending the next request.

Paths measured (``--paths``, default all that the code has):

  quart     the Quart app alone (``app.asgi_app.app``: routing, request/response objects)
  lane      the ASGI fast lane with the answer cache off: every request computed (index
            read in a worker thread, document, JSON, ETag), no Quart machinery
  cached    the fast lane answering from the per-build answer cache (after one warm-up)

Prints µs per request (median of ``--repeat`` timed batches of ``--requests``), and the
speed-up of each path over ``quart``. Figures move with the machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline.build import BuildOptions, build_site  # noqa: E402
from pipeline.origin import create_app  # noqa: E402
from pipeline.publish import publish  # noqa: E402
from pipeline.source import open_source  # noqa: E402
from pipeline.store import Store  # noqa: E402

AS_OF = "2026-06-01T00:00:00Z"
GRAPHQL_QUERY = "{ contents(first: 10) { edges { node { id title slug } } } }"  # bench/api.py's
PATHS = ("quart", "lane", "cached")

Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                 Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def scope_for(target: str, method: str = "GET") -> dict[str, Any]:
    path, _, query = target.partition("?")
    headers = [(b"host", b"127.0.0.1")] + ([(b"content-type", b"application/json")] if method == "POST" else [])
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "extensions": {}}


async def one(app: Asgi, target: str, body: bytes | None = None) -> tuple[int, int]:
    """One request through ``app`` (a POST of ``body`` when given); (status, body bytes)."""
    done = trio.Event()
    status = [0, 0]
    asked = [False]

    async def receive() -> dict[str, Any]:
        if not asked[0]:
            asked[0] = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif message["type"] == "http.response.body":
            status[1] += len(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope_for(target, "GET" if body is None else "POST"), receive, send)
    return status[0], status[1]


async def timed(app: Asgi, target: str, requests: int, repeat: int, body: bytes | None = None) -> float:
    """Median µs per request over ``repeat`` batches (one warm-up request first)."""
    status, size = await one(app, target, body)
    if status != 200 or not size:
        raise RuntimeError(f"{target} answered {status} with {size} bytes")
    batches = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(requests):
            await one(app, target, body)
        batches.append((time.perf_counter() - started) / requests * 1e6)
    return statistics.median(batches)


def publish_sample(work: Path) -> Store:
    site = work / "site"
    shutil.copytree(REPO_ROOT / "content", site, ignore=shutil.ignore_patterns(".flowcms", ".git"))
    store = Store(work / "state")
    result = build_site(open_source(site, None), store, previous=None, options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return store


def apps(store: Store, wanted: list[str]) -> dict[str, Asgi]:
    """The ASGI callables of each path this checkout has (a checkout without the lane: quart only)."""
    if "answer_cache" not in inspect.signature(create_app).parameters:
        return {"quart": create_app(store)} if "quart" in wanted else {}
    found: dict[str, Asgi] = {}
    uncached, cached = create_app(store, answer_cache=False), create_app(store, answer_cache=True)
    if "quart" in wanted:
        found["quart"] = uncached.asgi_app.app  # type: ignore[attr-defined]  # what the lane falls through to
    if "lane" in wanted:
        found["lane"] = uncached
    if "cached" in wanted:
        found["cached"] = cached
    return found


async def run(args: argparse.Namespace, store: Store) -> None:
    from pipeline.origin.live import LiveIndex

    entry_id = LiveIndex(store).read_sync(
        lambda snap: snap.conn.execute("SELECT id FROM entries WHERE live ORDER BY id LIMIT 1").fetchone()[0])
    targets = {"list": "/api/v3/posts?limit=20", "entry": f"/api/v3/contents/{quote(entry_id)}",
               "feed": "/public/feed/blog", "graphql": "/graphql?query=" + quote(GRAPHQL_QUERY, safe=""),
               "gql-post": "/graphql"}
    bodies = {"gql-post": json.dumps({"query": GRAPHQL_QUERY}).encode()}
    table = apps(store, args.paths)
    print(f"{'target':<8} " + " ".join(f"{p + ' µs':>10}" for p in table) + "   speed-up over quart")
    for name, target in targets.items():
        figures = {}
        for path, app in table.items():
            requests = args.requests * (10 if path == "cached" else 1)
            figures[path] = await timed(app, target, requests, args.repeat, bodies.get(name))
        ups = "  ".join(f"{p} {figures['quart'] / v:.1f}x" for p, v in figures.items()
                        if p != "quart" and "quart" in figures)
        print(f"{name:<8} " + " ".join(f"{v:>10.1f}" for v in figures.values()) + f"   {ups}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="requests per timed batch (cached: 10x)")
    p.add_argument("--repeat", type=int, default=3, help="timed batches per figure; the median is printed")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma list of {','.join(PATHS)}")
    args = p.parse_args(argv)
    args.paths = [x for x in PATHS if x in args.paths.split(",")]
    with tempfile.TemporaryDirectory(prefix="flowcms-micro-origin-") as tmp:
        store = publish_sample(Path(tmp))
        trio.run(run, args, store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
