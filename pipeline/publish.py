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

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.added + self.changed + self.removed))

    def to_json(self) -> dict[str, Any]:
        return {"from": self.old, "to": self.new, "added": list(self.added),
                "changed": list(self.changed), "removed": list(self.removed),
                "keys": list(self.keys), "purge": {"paths": list(self.paths), "keys": list(self.keys)}}


def diff_manifests(old: Manifest, new: Manifest, *, old_id: str | None, new_id: str) -> BuildDiff:
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    changed = sorted(p for p in new if p in old and old[p].blob != new[p].blob)
    keys: set[str] = set()
    for p in added + changed:
        keys.update(new[p].keys)
    for p in removed + changed:
        keys.update(old[p].keys)
    return BuildDiff(old_id, new_id, tuple(added), tuple(changed), tuple(removed), tuple(sorted(keys)))


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
