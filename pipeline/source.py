"""Content sources: a git ref or a plain directory, seen as a tree of files.

Both give ``Tree`` = {path: blob id} where the blob id is git's (SHA-1 of
``blob <size>\\0<bytes>``), so a directory and a commit holding the same files have
the same ids, and two trees diff by comparing ids without reading any bytes.
Paths are POSIX, relative to the content root; files or folders whose name starts
with ``.`` or ``_`` are not content.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pygit2

from pipeline.errors import SourceError

Tree = dict[str, str]


@dataclass(frozen=True, slots=True)
class TreeDiff:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    @property
    def touched(self) -> frozenset[str]:
        return frozenset(self.added) | frozenset(self.changed) | frozenset(self.removed)


@dataclass(frozen=True, slots=True)
class Revision:
    """What was built: the commit (or ``dir:<tree hash>``) and its time."""

    commit: str
    time: int  # epoch seconds; commit time for git, newest mtime for a directory
    message: str
    tree: str  # identifies the whole file tree: equal trees, equal ids


class Source(Protocol):
    revision: Revision

    def tree(self) -> Tree: ...

    def read(self, path: str) -> bytes: ...

    def reopened(self) -> Source: ...


def is_content_name(name: str) -> bool:
    return not name.startswith((".", "_"))


def diff_trees(old: Tree, new: Tree) -> TreeDiff:
    added = [p for p in new if p not in old]
    removed = [p for p in old if p not in new]
    changed = [p for p, blob in new.items() if p in old and old[p] != blob]
    return TreeDiff(tuple(sorted(added)), tuple(sorted(changed)), tuple(sorted(removed)))


def git_blob_id(data: bytes) -> str:
    header = b"blob %d\0" % len(data)
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


class GitSource:
    """A commit of a git repository, addressed by branch, tag or commit id."""

    def __init__(self, repo_path: Path, ref: str = "main") -> None:
        try:
            self._repo = pygit2.Repository(str(repo_path))
        except pygit2.GitError as exc:
            raise SourceError(f"{repo_path}: not a git repository ({exc})") from None
        try:
            obj = self._repo.revparse_single(ref)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise SourceError(
                f"{repo_path}: ref {ref!r} not found (a branch, tag or commit id)"
            ) from None
        self.ref = ref
        self._path = repo_path
        self._root = commit.tree
        self.revision = Revision(str(commit.id), commit.commit_time, commit.message.strip(),
                                 f"git:{commit.tree.id}")
        self._tree: Tree | None = None

    def tree(self) -> Tree:
        if self._tree is None:
            files: Tree = {}
            self._walk(self._root, "", files)
            self._tree = files
        return self._tree

    def _walk(self, tree: pygit2.Tree, prefix: str, out: Tree) -> None:
        for item in tree:
            name = item.name
            if name is None or not is_content_name(name):
                continue
            if item.type == pygit2.GIT_OBJECT_TREE:
                self._walk(self._repo[item.id], f"{prefix}{name}/", out)  # type: ignore[arg-type]
            elif item.type == pygit2.GIT_OBJECT_BLOB:
                out[f"{prefix}{name}"] = str(item.id)

    def read(self, path: str) -> bytes:
        blob_id = self.tree().get(path)
        if blob_id is None:
            raise SourceError(f"{path}: not in {self.ref}")
        # The object database directly: no Blob object, no prefix lookup (half the cost of
        # repo[id].data, and a cold build reads every entry).
        return self._repo.odb.read(pygit2.Oid(hex=blob_id))[1]  # type: ignore[no-any-return]

    def reopened(self) -> GitSource:
        """The same commit through a fresh repository handle: what a forked worker reads
        with, so no libgit2 state (pack windows, caches, descriptors) is shared."""
        twin = GitSource(self._path, self.revision.commit)
        twin.ref = self.ref
        twin._tree = self._tree
        return twin


class DirSource:
    """A plain folder, for quick starts and the bundled sample site."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise SourceError(f"{root}: no such directory")
        self.root = root
        self._tree: Tree | None = None
        self._data: dict[str, bytes] = {}
        tree = self.tree()
        newest = max((os.stat(root / p).st_mtime for p in tree), default=0.0)
        digest = hashlib.sha1(
            "".join(f"{p}\0{b}\n" for p, b in sorted(tree.items())).encode(),
            usedforsecurity=False,
        ).hexdigest()
        self.revision = Revision(f"dir:{digest[:16]}", int(newest), str(root), f"dir:{digest}")

    def tree(self) -> Tree:
        if self._tree is None:
            files: Tree = {}
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if is_content_name(d))
                rel = os.path.relpath(dirpath, self.root)
                prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                for name in filenames:
                    if is_content_name(name):
                        data = (Path(dirpath) / name).read_bytes()
                        path = prefix + name
                        self._data[path] = data
                        files[path] = git_blob_id(data)
            self._tree = files
        return self._tree

    def read(self, path: str) -> bytes:
        try:
            return self._data[path]
        except KeyError:
            raise SourceError(f"{path}: not in {self.root}") from None

    def reopened(self) -> DirSource:
        return self  # files are read into memory by tree(): a forked worker shares nothing live


def open_source(site: Path, ref: str | None, branch: str = "main") -> Source:
    """A git checkout builds from a ref (default: the published branch); else the folder."""
    if (site / ".git").exists():
        return GitSource(site, ref or branch)
    if ref is not None:
        raise SourceError(f"{site}: --ref needs a git repository")
    return DirSource(site)
