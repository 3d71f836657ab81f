"""``edgeproxy --workers 2``: real worker processes on one port, and a purge that reaches all of them.

Which worker answered is visible in the generated X-Request-ID: each process has its own
random prefix. New connections are spread by the kernel (SO_REUSEPORT), so a test opens
connections until it has heard from both workers (bounded).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from support.loopback import Answer, H1Client, OriginStub, Response, fetch, get, start_origin

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 30.0
CACHED = ((b"cache-control", b"max-age=600"), (b"etag", b'"v1"'), (b"surrogate-key", b"news k2"))
MAX_TRIES = 200


@dataclass
class Workers:
    process: trio.Process
    port: int
    output: bytearray

    def worker_of(self, response: Response) -> str:
        rid = (response.header("x-request-id") or b"").decode()
        return rid.rsplit("-", 1)[0]


async def _read_port(process: trio.Process, output: bytearray) -> int:
    assert process.stderr is not None
    while (match := re.search(rb"listening on 127\.0\.0\.1:(\d+) with 2 workers", output)) is None:
        chunk = await process.stderr.receive_some(4096)
        assert chunk, f"edgeproxy exited early: {bytes(output)!r}"
        output += chunk
    return int(match.group(1))


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    return await start_origin(nursery)


@pytest.fixture
async def workers(nursery: trio.Nursery, origin: OriginStub) -> AsyncIterator[Workers]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "edgeproxy", "--workers", "2", "--listen", "127.0.0.1:0",
         "--origin", f"http://127.0.0.1:{origin.port}", "--purge-token", "t", "--log-format", "off",
         "--grace", "2"],
        cwd=ROOT, stderr=subprocess.PIPE)
    output = bytearray()
    try:
        with trio.fail_after(BOUND_S):
            port = await _read_port(process, output)
        yield Workers(process, port, output)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def from_each_worker(w: Workers, target: str) -> dict[str, Response]:
    """One response per worker, on fresh connections, until both have answered (bounded)."""
    seen: dict[str, Response] = {}
    for _ in range(MAX_TRIES):
        response = await get(w.port, target)
        seen.setdefault(w.worker_of(response), response)
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only {len(seen)} worker(s) answered {MAX_TRIES} new connections")


async def test_each_worker_caches_and_a_purge_reaches_both(origin: OriginStub, workers: Workers) -> None:
    origin.route("/page", Answer(headers=CACHED, body=b"v1"))
    with trio.fail_after(BOUND_S):
        first = await from_each_worker(workers, "/page")
        again = await from_each_worker(workers, "/page")
        assert origin.count("/page") == 2  # one miss per worker cache, then hits
        assert all("hit" in (r.header("cache-status") or b"").decode() for r in again.values())
        purge = await fetch(workers.port, "PURGE", "/page", [("authorization", "Bearer t")])
        origin.route("/page", Answer(headers=CACHED, body=b"v2"))
        after = await from_each_worker(workers, "/page")
    assert len(first) == 2
    assert (purge.status, purge.json()) == (200, {"purged": 2, "soft": False, "invalidate": False, "workers": 2})
    assert {r.body for r in after.values()} == {b"v2"}  # neither worker kept v1
    assert origin.count("/page") == 4


async def test_soft_purge_by_key_marks_every_worker_stale(origin: OriginStub, workers: Workers) -> None:
    origin.route("/a", Answer(headers=CACHED, body=b"a"))
    origin.route("/b", Answer(headers=CACHED, body=b"b"))
    with trio.fail_after(BOUND_S):
        await from_each_worker(workers, "/a")
        await from_each_worker(workers, "/b")
        purge = await fetch(workers.port, "POST", "/.edge/purge", [("authorization", "Bearer t")],
                            json.dumps({"keys": ["k2"], "soft": True}).encode())
        after = await from_each_worker(workers, "/a")
    assert purge.json() == {"purged": 4, "soft": True, "invalidate": False, "workers": 2}
    for response in after.values():  # stale, revalidated with the stored ETag
        assert "fwd=stale" in (response.header("cache-status") or b"").decode()
    assert any(r.header(b"if-none-match") == b'"v1"' for r in origin.requests_for("/a")[2:])


async def test_invalidation_reaches_every_worker(origin: OriginStub, workers: Workers) -> None:
    """An invalidation crosses the worker bus: with stale-while-revalidate allowed, neither worker
    answers from the invalidated copy; each asks the origin first and serves the new body."""
    swr = ((b"cache-control", b"max-age=600, stale-while-revalidate=600"), (b"surrogate-key", b"k"))
    origin.route("/i", Answer(headers=(*swr, (b"etag", b'"v1"')), body=b"old"))
    with trio.fail_after(BOUND_S):
        await from_each_worker(workers, "/i")
        purge = await fetch(workers.port, "POST", "/.edge/purge", [("authorization", "Bearer t")],
                            json.dumps({"keys": ["k"], "invalidate": True}).encode())
        origin.route("/i", Answer(headers=(*swr, (b"etag", b'"v2"')), body=b"new"))
        after = await from_each_worker(workers, "/i")
    assert purge.json() == {"purged": 2, "soft": False, "invalidate": True, "workers": 2}
    assert {r.body for r in after.values()} == {b"new"}
    # kept, not removed: both workers revalidated with the stored ETag (a hard purge would not)
    assert [r.header(b"if-none-match") for r in origin.requests_for("/i")[2:]] == [b'"v1"', b'"v1"']


async def test_stats_sum_every_worker(origin: OriginStub, workers: Workers) -> None:
    origin.route("/s", Answer(headers=CACHED, body=b"s"))
    with trio.fail_after(BOUND_S):
        await from_each_worker(workers, "/s")
        stats = (await get(workers.port, "/.edge/stats")).json()
        metrics = (await get(workers.port, "/.edge/metrics")).body.decode()
    assert stats["cache"]["workers"] == 2
    assert stats["cache"]["objects"] == 2  # /s in each worker's cache
    assert stats["counters"]["misses"] == 2
    assert "edgeproxy_misses_total 2" in metrics.splitlines()


def publish_samples(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                   if "publish" in line and not line.startswith("#"))}


async def test_publish_latency_merges_to_the_earliest_first_fresh(origin: OriginStub, workers: Workers) -> None:
    """A tagged purge reaches both workers; each serves its first fresh answer at another time. The merged
    metrics count one publish and time it by the earlier answer (not a sum, not the later one)."""
    origin.route("/w", Answer(headers=CACHED, body=b"v1"))
    with trio.fail_after(BOUND_S):
        await from_each_worker(workers, "/w")
        origin.route("/w", Answer(headers=CACHED, body=b"v2"))
        started = time.time()
        purge = await fetch(workers.port, "POST", "/.edge/purge", [("authorization", "Bearer t")],
                            json.dumps({"paths": ["/w"], "publish": {"id": "pub_w", "seen": started - 1.0}}).encode())
        first = await get(workers.port, "/w")
        first_done = time.time()
        await trio.sleep(0.3)  # the other worker's first fresh answer comes clearly later
        for _ in range(MAX_TRIES):
            other = await get(workers.port, "/w")
            if workers.worker_of(other) != workers.worker_of(first):
                break
        else:
            raise AssertionError("the other worker never answered")
        text = (await get(workers.port, "/.edge/metrics")).body.decode()
        stats = (await get(workers.port, "/.edge/stats")).json()
    assert (purge.status, first.body, other.body) == (200, b"v2", b"v2")
    assert origin.count("/w") == 4  # each worker: one miss before, one fresh fill after the purge
    sample = publish_samples(text)
    assert sample["edgeproxy_publishes_seen_total"] == 1
    assert sample['edgeproxy_last_publish_info{id="pub_w"}'] == 1
    assert 0 <= sample["edgeproxy_last_publish_purge_to_first_fresh_seconds"] <= first_done - started
    assert sample["edgeproxy_publish_commit_to_first_fresh_seconds_count"] == 1
    assert sample['edgeproxy_publish_commit_to_first_fresh_seconds_bucket{le="+Inf"}'] == 1
    assert stats["publish"]["seen_total"] == 1
    assert stats["publish"]["last"]["first_fresh"] <= first_done


async def test_a_killed_worker_is_replaced(origin: OriginStub, workers: Workers) -> None:
    origin.route("/k", Answer(headers=CACHED, body=b"k"))
    with trio.fail_after(BOUND_S):
        before = await from_each_worker(workers, "/k")
        pids = _worker_pids(workers.process.pid)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        while True:  # the supervisor starts a new worker in the killed one's place
            now = _worker_pids(workers.process.pid)
            if len(now) == 2 and pids[0] not in now:
                break
            await trio.sleep(0.1)
        after = await from_each_worker(workers, "/k")
    assert set(after) != set(before)  # a new process (new request-id prefix) answers
    assert all(r.status == 200 and r.body == b"k" for r in after.values())


async def test_sigterm_stops_supervisor_and_workers(workers: Workers) -> None:
    pids = _worker_pids(workers.process.pid)
    workers.process.send_signal(signal.SIGTERM)
    with trio.fail_after(BOUND_S):
        await workers.process.wait()
    assert workers.process.returncode == 0
    assert all(_is_gone(pid) for pid in pids)


def _worker_pids(parent: int) -> list[int]:
    """Live (not zombie) children of ``parent``, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _is_gone(pid: int) -> bool:
    """Exited (a zombie until reaped counts as gone) or no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_purge_says_so_when_a_worker_does_not_confirm(origin: OriginStub, workers: Workers) -> None:
    """A stopped worker cannot apply the purge: the answer is 503 PURGE_INCOMPLETE, not a false 200."""
    origin.route("/p", Answer(headers=CACHED, body=b"p"))
    with trio.fail_after(BOUND_S):
        seen = await from_each_worker(workers, "/p")
    pids = _worker_pids(workers.process.pid)
    os.kill(pids[0], signal.SIGSTOP)
    try:
        with trio.fail_after(BOUND_S):
            while True:  # a connection hashed to the stopped worker is not answered: try another
                client = await H1Client.connect(workers.port)
                with trio.move_on_after(0.5):
                    await client.request("GET", "/p")
                    break
                await client.aclose()
            started = trio.current_time()
            purge = await client.request("PURGE", "/p", [("authorization", "Bearer t")])
            waited = trio.current_time() - started
            await client.aclose()
    finally:
        os.kill(pids[0], signal.SIGCONT)
    assert len(seen) == 2
    assert purge.status == 503
    body = purge.json()
    assert (body["purged"], body["workers"]) == (1, 2)
    assert body["errors"][0]["code"] == "PURGE_INCOMPLETE"
    assert waited < 10  # bounded by the bus timeout, not hanging on the stopped worker
