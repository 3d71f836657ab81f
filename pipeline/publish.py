"""Publishing: move the live pointer, roll back, and compute what changed (the purge set).

The live pointer is one small file replaced atomically by ``Store.set_live``; a build
is immutable and complete before it can become live, so there is no half-published
state to observe. ``diff_builds`` is pure: two manifests in, the paths and surrogate
keys an edge must purge out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import StoreError
from pipeline.store import Manifest, Store


@dataclass(frozen=True, slots=True)
class BuildDiff:
    old: str | None
    new: str
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    keys: tuple[str, ...]  # surrogate keys of every added, changed or removed output
    entries: tuple[str, ...] = ()  # ids of the entries whose pages were added, changed or removed

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.added + self.changed + self.removed))

    def to_json(self) -> dict[str, Any]:
        purges = purge_set(self)
        return {"from": self.old, "to": self.new, "added": list(self.added),
                "changed": list(self.changed), "removed": list(self.removed),
                "keys": list(self.keys), "entries": list(self.entries),
                "purge": {"paths": list(purges.paths), "keys": list(purges.keys)}}


def diff_manifests(old: Manifest, new: Manifest, *, old_id: str | None, new_id: str) -> BuildDiff:
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    changed = sorted(p for p in new if p in old and old[p].blob != new[p].blob)
    keys: set[str] = set()
    entries: set[str] = set()
    for manifest, paths in ((new, added + changed), (old, removed + changed)):
        for p in paths:
            item_keys = manifest[p].keys
            keys.update(item_keys)
            if item_keys and any(k.startswith("type:") for k in item_keys):
                entries.add(item_keys[0])  # an entry's page: its keys start with its id (graph.entry_keys)
    return BuildDiff(old_id, new_id, tuple(added), tuple(changed), tuple(removed), tuple(sorted(keys)),
                     tuple(sorted(entries)))


def diff_builds(store: Store, old_id: str | None, new_id: str) -> BuildDiff:
    old = store.manifest(old_id) if old_id else {}
    return diff_manifests(old, store.manifest(new_id), old_id=old_id, new_id=new_id)


def publish(store: Store, build_id: str, *, diff: BuildDiff | None = None) -> BuildDiff:
    """Make ``build_id`` live in one atomic step; return what changed for the edges.

    ``diff`` is the build's own diff against the build it started from; it is used when
    that build is still the live one (else the manifests are compared).
    """
    previous = store.live()
    if previous == build_id:
        return BuildDiff(previous, build_id, (), (), (), ())
    if diff is None or diff.old != previous or diff.new != build_id:
        diff = diff_builds(store, previous, build_id)
    store.set_live(build_id, action="publish")
    return diff


def rollback(store: Store, target: str | None = None) -> BuildDiff:
    """Move the pointer back to ``target`` (default: the build live before the current one)."""
    current = store.live()
    if current is None:
        raise StoreError("nothing is live yet; nothing to roll back")
    if target is None:
        seen = [h["build"] for h in store.history() if h.get("build")]
        earlier = [b for b in reversed(seen) if b != current and store.build_dir(b).is_dir()]
        if not earlier:
            raise StoreError("no earlier build to roll back to (see `flowcms builds`)")
        target = earlier[0]
    target = store.resolve(target)
    diff = diff_builds(store, current, target)
    store.set_live(target, action="rollback")
    return diff


@dataclass(frozen=True, slots=True)
class PurgeSet:
    """What every edge must drop after a publish: exact paths plus surrogate keys."""

    paths: tuple[str, ...]
    keys: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.paths or self.keys)

    def batches(self, max_items: int = 256) -> list[dict[str, list[str]]]:
        """Bodies for ``POST /.edge/purge``: paths first, then keys, never mixed (paths are
        purged hard, keys as asked), each under ``max_items`` entries (request size limits)."""
        return [{kind: list(values[start: start + max_items])}
                for kind, values in (("paths", self.paths), ("keys", self.keys))
                for start in range(0, len(values), max_items)]


def purge_set(diff: BuildDiff) -> PurgeSet:
    """What a publish purges: exactly the build outputs that changed, by path (added ones
    too — a 404 may be cached under their path), plus the delivery-API answers that can
    show a changed entry. Pages are never purged by key: a listing page whose content did
    not change keeps its cached copy (and its ETag), even though it names a changed entry.

    API answers carry ``api:``-namespaced keys (pipeline/origin): ``api:<entry id>`` per
    entry shown, ``api:type:…``/``api:tag:…``/``api:author:…`` for filtered lists, and
    ``api:contents``/``api:authors``/``api:tags``/``api:media`` for the rest.
    """
    keys: set[str] = set()
    if diff.entries:
        keys.add("api:contents")
        keys.update(f"api:{entry_id}" for entry_id in diff.entries)
    for k in diff.keys:
        if k.startswith(("type:", "tag:", "author:")):
            keys.add(f"api:{k}")
            if k.startswith("tag:"):
                keys.add("api:tags")
            elif k.startswith("author:"):
                keys.add("api:authors")
        elif k == "media":
            keys.add("api:media")
        elif k.startswith("api:"):
            keys.add(k)  # an output that stands for API answers (/public/feeds.json: api:feed:<key>)
    return PurgeSet(paths=diff.paths, keys=tuple(sorted(keys)))
