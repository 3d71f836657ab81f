"""The build store: content-addressed blobs, immutable builds, the live pointer.

Layout under the state directory (``<site>/.flowcms``)::

    blobs/ab/cdef…        every output, named by the blake3 of its bytes, stored once
    builds/<id>/          manifest.json, index.sqlite, build.json — a build
                          directory appears by one rename, so it is complete or absent;
                          state.marshal — a cache of what the next incremental build
                          reads (manifest + entry records), rebuilt from the others
                          when missing or from another version
    LIVE                  the live build id; replaced atomically (tmp, fsync, rename)
    history.jsonl         one line per publish/rollback, newest last

Every write is tmp file + ``os.replace``, so SIGKILL at any instant leaves either the
old or the new state, never a torn file.
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import blake3
import orjson

from pipeline.documents import canonical_json
from pipeline.errors import PublishConflict, StoreError, UnknownBuild

BUILD_ID_CHARS = 20  # 80 bits of blake3: collision-free for any realistic build count
STATE_FILE = "state.marshal"
STATE_VERSION = 2  # bump when the records or manifest items change shape
MANIFESTS_KEPT = 3  # parsed manifests a Store keeps: the live build, the previous, one preview


def blob_hash(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (Linux syncfs; os.sync elsewhere).

    One flush per publish instead of an fsync per blob; unlike os.sync it does not
    wait for every other disk of the machine.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ManifestItem(NamedTuple):
    """One output of a build. A NamedTuple, not a frozen dataclass: 25k of them are made
    per incremental build of a 10k-entry site and tuple construction is 3× cheaper."""

    blob: str
    type: str
    size: int
    keys: tuple[str, ...]
    fp: str = ""  # fingerprint of the inputs the output was rendered from (graph.py)

    def to_json(self) -> dict[str, Any]:
        # keys in sorted order, so plain json.dumps gives canonical bytes
        return {"blob": self.blob, "fp": self.fp, "keys": list(self.keys), "size": self.size,
                "type": self.type}


Manifest = dict[str, ManifestItem]


def manifest_bytes(manifest: Mapping[str, ManifestItem]) -> bytes:
    """Canonical manifest bytes: ``canonical_json`` of the items' ``to_json``."""
    return canonical_json({path: m.to_json() for path, m in manifest.items()})


def parse_manifest(data: bytes) -> Manifest:
    """A build's manifest.json (orjson: 25k items in ~85 ms, json.loads ~130 ms; the edge and
    the origin parse it on every publish before the first fresh answer)."""
    raw = orjson.loads(data)
    return {
        p: ManifestItem(v["blob"], v["type"], v["size"], tuple(v["keys"]), v.get("fp", ""))
        for p, v in raw.items()
    }


@dataclass(frozen=True, slots=True)
class BuildInfo:
    id: str
    commit: str
    ref: str
    created: float
    as_of: str
    outputs: int
    bytes: int
    entries: int
    live_entries: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildInfo:
        return cls(**{k: data[k] for k in cls.__slots__})  # type: ignore[attr-defined]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.builds = root / "builds"
        self.tmp = root / "tmp"
        self._blobs_str = str(self.blobs)
        self._folders: set[str] = set()  # fan-out folders known to exist (this process)
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()  # build id -> parsed, newest last
        self._manifest_lock = threading.Lock()  # the APIs read manifests from worker threads
        for d in (self.blobs, self.builds, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- blobs ---------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` once under its hash. The hot loop of a cold build (36k blobs at
        10k entries): plain ``os`` calls, no ``Path`` or buffered file objects."""
        digest = blob_hash(data)
        fan = digest[:2]
        folder = f"{self._blobs_str}/{fan}"
        path = f"{folder}/{digest[2:]}"
        if os.path.exists(path):
            return digest
        if fan not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(fan)
        tmp = f"{folder}/.{digest[2:]}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return digest

    def has(self, digest: str) -> bool:
        return os.path.exists(f"{self._blobs_str}/{digest[:2]}/{digest[2:]}")

    def read(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from {self.blobs}") from None

    # -- builds --------------------------------------------------------------
    def build_dir(self, build_id: str) -> Path:
        return self.builds / build_id

    def resolve(self, ref: str) -> str:
        """A build id or a unique prefix of one (a name, never a path: ``..`` is no build)."""
        plain = bool(ref) and "/" not in ref and "\\" not in ref and not ref.startswith(".")
        if plain and (self.builds / ref).is_dir():
            return ref
        matches = [d.name for d in self.builds.iterdir() if d.name.startswith(ref)] if plain else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownBuild(f"no build {ref!r} (see `flowcms builds`)")
        raise StoreError(f"build prefix {ref!r} is ambiguous: {', '.join(sorted(matches))}")

    def commit_build(self, staging: Path, manifest: Manifest) -> str:
        """Move a fully written staging dir into place under its manifest-derived id."""
        # No fsync per file: a build is reachable only through LIVE, and set_live syncs the
        # file system before it moves the pointer (one sync per publish, not per file).
        data = manifest_bytes(manifest)
        build_id = blob_hash(data)[:BUILD_ID_CHARS]
        _write_atomic(staging / "manifest.json", data)
        info_path = staging / "build.json"
        info = json.loads(info_path.read_bytes())
        info["id"] = build_id
        _write_atomic(info_path, canonical_json(info))
        final = self.build_dir(build_id)
        if final.exists():
            # Same manifest built before: keep its index, refresh what describes how it was
            # built (dependency fingerprints, source), so the next incremental build reuses it.
            for name in ("manifest.json", "build.json", "index.sqlite", STATE_FILE):
                if (staging / name).exists():
                    os.replace(staging / name, final / name)
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)
        return build_id

    def new_staging(self) -> Path:
        path = self.tmp / f"build-{os.getpid()}-{time.monotonic_ns()}"
        path.mkdir()
        return path

    def manifest(self, build_id: str) -> Manifest:
        """The build's manifest, parsed once per process for the last few builds asked for.

        A build never changes once committed (its id is the hash of its manifest), so the
        parse can be shared: in ``flowcms up`` the publisher (purge probe, webhook events),
        the live site and the APIs all ask for the new build's manifest right after a
        switch, and at 10k entries each parse held the event loop ~0.1 s. Callers must
        not modify the mapping they get.
        """
        with self._manifest_lock:
            cached = self._manifests.get(build_id)
            if cached is not None:
                self._manifests.move_to_end(build_id)
                return cached
        try:
            manifest = parse_manifest((self.build_dir(build_id) / "manifest.json").read_bytes())
        except FileNotFoundError:
            raise StoreError(f"build {build_id} has no manifest") from None
        with self._manifest_lock:
            self._manifests[build_id] = manifest
            while len(self._manifests) > MANIFESTS_KEPT:
                self._manifests.popitem(last=False)
        return manifest

    @staticmethod
    def write_state(staging: Path, manifest: Manifest, records: Mapping[str, Any]) -> None:
        """Save what the next incremental build needs, in the form it needs it.

        Parsing a 10k-entry site's manifest.json and index rows costs ~0.25 s; marshal
        (plain tuples, dicts and strings) reads the same data back in well under half
        that and writes it in a fifth. It is a cache in our own state directory, never
        read from elsewhere; a file from another Python or layout is simply ignored.
        """
        items = {path: tuple(item) for path, item in manifest.items()}
        _write_atomic(staging / STATE_FILE, marshal.dumps((STATE_VERSION, items, dict(records))))

    def load_state(self, build_id: str) -> tuple[Manifest, dict[str, Any]] | None:
        """The cache written by `write_state`; None when absent, torn or of another version."""
        try:
            version, items, records = marshal.loads((self.build_dir(build_id) / STATE_FILE).read_bytes())
            if version != STATE_VERSION or not isinstance(records, dict):
                return None
            make = ManifestItem._make
            return {path: make(item) for path, item in items.items()}, records
        except (OSError, EOFError, ValueError, TypeError, AttributeError):
            return None  # absent, torn by a kill, or written by another version: rebuild it

    def info(self, build_id: str) -> BuildInfo:
        try:
            return BuildInfo.from_json(json.loads((self.build_dir(build_id) / "build.json").read_bytes()))
        except FileNotFoundError:
            raise StoreError(f"no build {build_id!r}") from None

    def list_builds(self) -> list[BuildInfo]:
        infos = []
        for d in self.builds.iterdir():
            try:
                infos.append(self.info(d.name))
            except (StoreError, ValueError, KeyError, TypeError):
                continue  # torn by a power cut before any publish synced it: not a build
        return sorted(infos, key=lambda i: (i.created, i.id))

    # -- live pointer --------------------------------------------------------
    @property
    def live_path(self) -> Path:
        return self.root / "LIVE"

    def live(self) -> str | None:
        try:
            value = self.live_path.read_text().strip()
        except FileNotFoundError:
            return None
        return value or None

    def set_live(self, build_id: str, *, action: str = "publish") -> str | None:
        """The one atomic step of a publish: returns the previous live build."""
        if not (self.build_dir(build_id) / "manifest.json").exists():
            raise StoreError(f"build {build_id} is not complete; not publishing it")
        previous = self.live()
        _syncfs(self.root)  # blobs and build files were written without fsync: flush them first
        _write_atomic(self.live_path, build_id.encode() + b"\n", fsync=True)
        _fsync_dir(self.root)
        with open(self.root / "history.jsonl", "a") as f:
            f.write(json.dumps({"action": action, "build": build_id, "previous": previous,
                                "time": time.time()}) + "\n")
        return previous

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-append; the LIVE file is the truth
        return out

    @contextmanager
    def lock(self, *, wait: bool = True) -> Iterator[None]:
        """One build/publish at a time per state directory."""
        import fcntl

        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise PublishConflict("another build or publish is running") from None
            yield
        finally:
            os.close(fd)

    # -- garbage collection --------------------------------------------------
    def _index_blobs(self, build_id: str) -> set[str]:
        """Blobs a build's index refers to (entry bodies); an unreadable index stops gc."""
        from pipeline.index import IndexCorrupt, body_blobs, open_index

        try:
            conn = open_index(self.build_dir(build_id) / "index.sqlite")
            try:
                return body_blobs(conn)
            finally:
                conn.close()
        except IndexCorrupt as exc:
            raise StoreError(f"gc stopped, nothing removed: build {build_id}: {exc}") from None

    def gc(self, keep: int) -> tuple[int, int]:
        """Keep the live build and the ``keep`` newest; remove other builds and unreferenced blobs."""
        builds = self.list_builds()
        live = self.live()
        kept = {b.id for b in builds[-keep:]} if keep > 0 else set()
        if live:
            kept.add(live)
        referenced: set[str] = set()  # first: an unreadable kept build stops gc before it removes anything
        for build_id in kept:
            referenced.update(item.blob for item in self.manifest(build_id).values())
            referenced.update(self._index_blobs(build_id))
        removed_builds = 0
        for b in builds:
            if b.id not in kept:
                shutil.rmtree(self.build_dir(b.id))
                removed_builds += 1
        removed_blobs = 0
        for sub in self.blobs.iterdir():
            for blob in sub.iterdir():
                if sub.name + blob.name not in referenced and not blob.name.startswith("."):
                    blob.unlink()
                    removed_blobs += 1
        for stale in self.tmp.iterdir():  # staging dirs of killed builds
            shutil.rmtree(stale, ignore_errors=True)
        return removed_builds, removed_blobs
