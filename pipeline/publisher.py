"""The publish loop: a trigger → one build at a time → atomic switch → exact purge at every edge.

Builds run in a child process (``flowcms publish --json``): a crash or a runaway build
can never take the server down with it, and the store's lock already serialises it
against any other ``flowcms`` command. Triggers that arrive while a publish runs are
coalesced into the next one (they all wait for it and get its record); two publishes never
interleave.

Every publish leaves a record (``publishes.jsonl`` in the state directory) with what it
did and when: trigger seen, build done, pointer switched, each edge's purge acknowledged,
and the first fresh 200 through the edge. Its status says ``live everywhere`` only when
every edge acknowledged the purge.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from pipeline.edges import Edge, PublishTag, first_fresh, purge_all
from pipeline.origin.conditional import etag_for
from pipeline.publish import BuildDiff, publish, purge_set, rollback
from pipeline.store import Store
from pipeline.webhooks import Dispatcher, Outbox, publish_events

log = logging.getLogger(__name__)

RECORDS_FILE = "publishes.jsonl"
BUILD_TIMEOUT_S = 600.0
LIVE_EVERYWHERE = "live everywhere"


@dataclass(slots=True)
class PublishRecord:
    id: str
    trigger: str
    seen: float  # when the trigger arrived (epoch seconds)
    status: str = "running"  # running | live everywhere | partial | unchanged | failed
    build: str | None = None
    previous: str | None = None
    commit: str | None = None
    added: int = 0
    changed: int = 0
    removed: int = 0
    purge_paths: int = 0
    purge_keys: int = 0
    build_s: float | None = None  # trigger → build done and pointer switched
    purge_s: float | None = None  # switched → every edge acknowledged
    fresh_s: float | None = None  # trigger → first fresh 200 through the (first) edge
    edges: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        timing = " ".join(f"{name} {value * 1000:.0f} ms" for name, value in
                          (("build", self.build_s), ("purge", self.purge_s), ("first fresh", self.fresh_s))
                          if value is not None)
        if self.status == "failed":
            return f"publish {self.id} failed: {self.error}"
        if self.status == "unchanged":
            return f"publish {self.id}: nothing changed ({timing})"
        return (f"publish {self.id}: {self.status} — build {str(self.build)[:12]}, +{self.added} "
                f"~{self.changed} -{self.removed}, purged {self.purge_paths} paths / {self.purge_keys} keys; "
                f"{timing}")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A build made ahead of time for the instant ``as_of`` (the scheduler's next flip)."""

    build_id: str
    base: str | None  # the live build it was built from: the flip is only valid while it is live
    as_of: str


class _Waiting:
    """A publish that has not started yet: later triggers join it."""

    def __init__(self, trigger: str) -> None:
        self.triggers = [trigger]
        self.done = trio.Event()
        self.record: PublishRecord | None = None


class Publisher:
    def __init__(self, site: Path, store: Store, edges: list[Edge], *, soft: bool = True,
                 python: str = sys.executable) -> None:
        self.site = site
        self.store = store
        self.edges = edges
        self.soft = soft
        self.python = python
        self._lock = trio.Lock()
        self._waiting: _Waiting | None = None
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()
        self.last: PublishRecord | None = None
        self.published = trio.Event()  # set (and replaced) after every publish: schedules recompute
        self.counts: dict[str, int] = {}  # publishes by status (the origin's /metrics)
        self.outbox: Outbox | None = None  # webhooks: events are written here, then dispatched
        self.dispatcher: Dispatcher | None = None

    async def publish(self, trigger: str) -> PublishRecord:
        """Publish now, or join the publish that is waiting to start; returns its record."""
        waiting = self._waiting
        if waiting is not None:
            waiting.triggers.append(trigger)
        else:
            waiting = self._waiting = _Waiting(trigger)
            async with self._lock:
                self._waiting = None
                try:
                    waiting.record = await self._run(", ".join(waiting.triggers))
                finally:
                    waiting.done.set()
        await waiting.done.wait()
        assert waiting.record is not None
        return waiting.record

    async def prepare(self, as_of: str) -> Prepared | None:
        """Build (not publish) what the site looks like at ``as_of``, ahead of time."""
        base = self.store.live()
        command = [self.python, "-m", "pipeline.cli", "--site", str(self.site), "build", "--as-of", as_of, "--json"]
        with trio.fail_after(BUILD_TIMEOUT_S):
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode != 0:
            log.warning("preparing the build for %s failed: %s", as_of, result.stderr.decode(errors="replace"))
            return None
        return Prepared(json.loads(result.stdout)["id"], base, as_of)

    async def rollback(self, target: str | None, trigger: str = "rollback") -> PublishRecord:
        """Move the pointer back (to ``target`` or the build live before) and purge the reverse diff."""
        async with self._lock:
            return await self._run(trigger, rollback_to=target or "")

    async def publish_prepared(self, prepared: Prepared, trigger: str) -> PublishRecord:
        """At its instant: switch to the prepared build (as fast as a manual publish), or, when
        the live build moved since it was prepared, build and publish as of that instant."""
        async with self._lock:
            return await self._run(trigger, prepared=prepared)

    async def _run(self, trigger: str, *, prepared: Prepared | None = None,
                   rollback_to: str | None = None) -> PublishRecord:
        seen = time.time()
        started = time.perf_counter()
        record = PublishRecord(id=f"pub_{self._prefix}{next(self._ids):04d}", trigger=trigger, seen=seen)
        try:
            if rollback_to is not None:
                diff = await self._switch(record, None, started, rollback_to=rollback_to)
            elif prepared is not None and self.store.live() == prepared.base and prepared.build_id:
                diff = await self._switch(record, prepared, started)
            else:
                diff = await self._build(record, started, as_of=prepared.as_of if prepared else None)
            if diff is not None:
                await self._purge(record, diff, started)
        except Exception as exc:  # a publish never takes the loop down; the record says why
            log.exception("publish %s failed", record.id)
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
            diff = None
        self._save(record)
        status = "partial" if record.status.startswith("partial") else record.status
        self.counts[status] = self.counts.get(status, 0) + 1
        await self._events(record, diff, rollback=rollback_to is not None)
        self.last = record
        published, self.published = self.published, trio.Event()
        published.set()
        log.info("%s", record.summary())
        return record

    async def _events(self, record: PublishRecord, diff: BuildDiff | None, *, rollback: bool = False) -> None:
        outbox = self.outbox
        if outbox is None:
            return
        summary = record.to_json()

        def write() -> None:
            if record.status == "failed":
                if rollback:
                    return  # nothing was built: a refused rollback is not a failed build
                outbox.enqueue("build.failed", {"publish": record.id, "trigger": record.trigger,
                                                "error": record.error})
                return
            if diff is None:
                return  # nothing changed: no event
            old = self.store.manifest(diff.old) if diff.old else {}
            for event, data in publish_events(old, self.store.manifest(diff.new), diff.added, diff.removed, summary,
                                              rollback=rollback):
                outbox.enqueue(event, data)

        await trio.to_thread.run_sync(write)
        if self.dispatcher is not None:
            self.dispatcher.nudge()

    async def _switch(self, record: PublishRecord, prepared: Prepared | None, started: float, *,
                      rollback_to: str | None = None) -> BuildDiff | None:
        def switch() -> BuildDiff:
            with self.store.lock():
                if prepared is None:
                    return rollback(self.store, rollback_to or None)
                return publish(self.store, prepared.build_id)

        diff = await trio.to_thread.run_sync(switch)
        record.build_s = time.perf_counter() - started
        record.build, record.previous = diff.new, diff.old
        record.commit = self.store.info(diff.new).commit
        record.added, record.changed, record.removed = len(diff.added), len(diff.changed), len(diff.removed)
        if diff.old == diff.new or not diff.paths:
            record.status = "unchanged"
            return None
        return diff

    async def _build(self, record: PublishRecord, started: float, *, as_of: str | None = None) -> BuildDiff | None:
        """Build and switch in a child process; the diff when something changed."""
        command = [self.python, "-m", "pipeline.cli", "--site", str(self.site), "publish", "--json", "--no-purge"]
        if as_of is not None:
            command += ["--as-of", as_of]
        with trio.fail_after(BUILD_TIMEOUT_S):
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False,
                                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
        record.build_s = time.perf_counter() - started
        if result.returncode != 0:
            record.status = "failed"
            record.error = (result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}")
            return None
        data = json.loads(result.stdout)
        diff = BuildDiff(data["from"], data["to"], tuple(data["added"]), tuple(data["changed"]),
                         tuple(data["removed"]), tuple(data["keys"]), tuple(data.get("entries", ())))
        record.build, record.previous = diff.new, diff.old
        record.commit = (data.get("build") or {}).get("commit")
        record.added, record.changed, record.removed = len(diff.added), len(diff.changed), len(diff.removed)
        if diff.old == diff.new or not diff.paths:
            record.status = "unchanged"
            return None
        return diff

    async def _purge(self, record: PublishRecord, diff: BuildDiff, started: float) -> None:
        purges = purge_set(diff)
        record.purge_paths, record.purge_keys = len(purges.paths), len(purges.keys)
        switched = time.perf_counter()
        tag = PublishTag(record.id, record.seen)  # each edge times the publish from it (its /.edge/metrics)
        acks = await purge_all(self.edges, purges, soft=self.soft, publish=tag) if self.edges else []
        record.purge_s = time.perf_counter() - switched
        record.edges = [a.to_json() for a in acks]
        failed = [a for a in acks if not a.ok]
        record.status = LIVE_EVERYWHERE if not failed else f"partial: {len(acks) - len(failed)} of {len(acks)} edges"
        probe = _probe_path(diff)
        if self.edges and probe is not None and diff.new:
            item = self.store.manifest(diff.new).get(probe)
            if item is not None:
                seconds = await first_fresh(self.edges[0], probe, etag_for(item.blob))
                if seconds is not None:
                    record.fresh_s = time.perf_counter() - started

    def _save(self, record: PublishRecord) -> None:
        with open(self.store.root / RECORDS_FILE, "a") as f:
            f.write(json.dumps(record.to_json()) + "\n")


def _probe_path(diff: BuildDiff) -> str | None:
    """A page the publish changed, to time its first fresh answer through the edge."""
    for path in (*diff.changed, *diff.added):
        if path.endswith("/") and not path.startswith("/tags/"):
            return path
    return next(iter((*diff.changed, *diff.added)), None)


def read_records(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` publish records, newest first."""
    try:
        lines = (store.root / RECORDS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in reversed(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # torn by a kill mid-append
        if len(out) >= limit:
            break
    return out



def next_change(store: Store) -> str | None:
    """When the live build stops being what the site looks like (an entry's publishAt or
    unpublishAt), from its build.json; None when nothing is scheduled."""
    live = store.live()
    if live is None:
        return None
    try:
        info = json.loads((store.build_dir(live) / "build.json").read_bytes())
    except (OSError, ValueError):
        return None
    until = info.get("stable_until")
    return str(until) if until else None
