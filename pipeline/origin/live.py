"""The live build's index, for the delivery APIs: reads run in worker threads, batched per hop.

SQLite connections belong to one thread, and trio's worker threads are reused, so each
thread keeps its own read-only connection per build (``threading.local``). A publish moves
the LIVE pointer; the next request sees the new build (one ``stat`` per request, like
``LiveSite``) and threads open its index on first use. An API request does all of its
index reads inside one ``LiveIndex.read`` call: one thread hop per request, not per query
(DEPS.md: ~10k point reads/s at one read per hop against ~100k/s batched).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from pipeline.errors import PipelineError
from pipeline.index import IndexCorrupt, RecordCache, open_index
from pipeline.store import Store

T = TypeVar("T")
KEPT_RECORD_CACHES = 2  # the live build's and the one before (requests still reading it)


class NoLiveBuild(PipelineError):
    """Nothing has been published yet: the APIs answer 503 until a build is live."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one request reads: a build id, its index connection (this thread's own) and the
    records already decoded from that index."""

    build_id: str
    conn: sqlite3.Connection
    records: RecordCache  # decoded records of that index file, shared by threads: read-only
    store: Store


class LiveIndex:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._stamp: tuple[int, int] | None = None
        self._live_path = os.fspath(store.live_path)  # stat'ed on every request: a str, made once
        self.build_id: str | None = None
        self._dir = ("", "")  # (build id, its folder): the folder's path, made once per build
        self._local = threading.local()
        self._limiter = trio.CapacityLimiter(4)  # SQLite readers in parallel (the GIL bounds the rest)
        self._records: dict[tuple[str, int, int], RecordCache] = {}
        self._records_lock = threading.Lock()

    def current(self) -> str | None:
        """The live build id, re-read when the LIVE file changed."""
        try:
            st = os.stat(self._live_path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self.build_id = self.store.live()
            self._stamp = stamp
        return self.build_id

    def generation(self) -> tuple[str, tuple[int, int] | None, int, int] | None:
        """A token that changes whenever an answer of the live build may: None when nothing
        is live (or its folder is gone), so nothing is memoized then.

        The build id and the LIVE file's stamp move on publish and rollback. The build
        folder's stamp covers a rebuild under the same id: ``Store.commit_build`` then
        replaces its build.json and index.sqlite (renames into the folder change its mtime).
        Two ``stat`` calls, so it can run on every request.
        """
        build_id = self.current()
        if build_id is None:
            return None
        if self._dir[0] != build_id:
            self._dir = (build_id, os.fspath(self.store.build_dir(build_id)))
        try:
            st = os.stat(self._dir[1])
        except FileNotFoundError:
            return None
        return build_id, self._stamp, st.st_mtime_ns, st.st_ino

    def _connection(self, build_id: str) -> tuple[sqlite3.Connection, RecordCache]:
        """This thread's connection to the build's index, and the record cache of that file."""
        cached = getattr(self._local, "conns", None)
        if cached is None:
            cached = self._local.conns = {}
        found = cached.get(build_id)
        if found is None:
            for old, _ in cached.values():  # an older build's connection: this thread will not need it again
                old.close()
            cached.clear()
            conn, file_key = _open_identified(self.store.build_dir(build_id) / "index.sqlite", build_id)
            found = cached[build_id] = (conn, self._records_for(file_key))
        return found

    def _records_for(self, file_key: tuple[str, int, int]) -> RecordCache:
        with self._records_lock:
            records = self._records.get(file_key)
            if records is None:
                records = self._records[file_key] = RecordCache()
                while len(self._records) > KEPT_RECORD_CACHES:  # the oldest files' caches go
                    del self._records[next(iter(self._records))]
            return records

    async def read(self, fn: Callable[[Snapshot], T]) -> T:
        """Run ``fn`` against the live build in a worker thread: all of a request's reads in one hop."""
        build_id = self.current()
        if build_id is None:
            raise NoLiveBuild("nothing is published yet")

        def work() -> T:
            return fn(Snapshot(build_id, *self._connection(build_id), self.store))

        return await trio.to_thread.run_sync(work, limiter=self._limiter)

    def read_sync(self, fn: Callable[[Snapshot], T]) -> T:
        """The same in the calling thread (tests, tools)."""
        build_id = self.current()
        if build_id is None:
            raise NoLiveBuild("nothing is published yet")
        return fn(Snapshot(build_id, *self._connection(build_id), self.store))


def _open_identified(path: os.PathLike[str], build_id: str) -> tuple[sqlite3.Connection, tuple[str, int, int]]:
    """A connection to the index at ``path`` and the identity of the file it reads.

    The record cache belongs to that file: a rebuild under the same id replaces it, and row
    ids differ between the two. SQLite's own file handle is out of reach, so the file is
    stat'ed before and after the open; when a replace fell in between, the open is retried.
    """
    for _ in range(10):
        before = os.stat(path)
        conn = open_index(path)
        try:
            after = os.stat(path)
        except OSError:
            conn.close()
            raise
        if (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns):
            return conn, (build_id, after.st_ino, after.st_mtime_ns)
        conn.close()
    raise IndexCorrupt(f"{path}: replaced again and again while it was opened")


def body_html(snapshot: Snapshot, record: dict[str, Any]) -> str:
    """An entry's rendered HTML: the index names its blob (``bodyBlob``)."""
    if record.get("bodyHtml") is not None:
        return str(record["bodyHtml"])
    return snapshot.store.read(record["bodyBlob"]).decode()
