"""Small real sites for tests: files written into tmp_path, optionally committed to git."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pygit2

SAMPLE = Path(__file__).resolve().parents[2] / "content"
SIGNATURE = pygit2.Signature("Test Author", "author@example.org", 1700000000, 0)

TINY_SITE: dict[str, str] = {
    "flowcms.toml": '[site]\ntitle = "Tiny"\nbase_url = "https://tiny.example"\npage_size = 2\n',
    "authors.yaml": "ada:\n  name: Ada Lovelace\n  bio: First programmer.\nbob:\n  name: Bob\n",
    "types/blog.yaml": "title: Blog\nfields:\n  author: {required: true}\n  mood: {type: string, enum: [happy, sad]}\n",
    "types/docs.yaml": "title: Docs\nfields:\n  order: {type: integer, required: true}\n",
    "blog/first.md": "---\ntitle: First Post\nstatus: published\nauthor: ada\ntags: [intro, news]\n"
                     "publishedAt: 2026-01-01T10:00:00Z\n---\nHello *world*. See [docs](../docs/start.md).\n",
    "blog/second.md": "---\ntitle: Second Post\nstatus: published\nauthor: bob\ntags: [news]\n"
                      "publishedAt: 2026-02-01T10:00:00Z\n---\n## Part one\n\nText.\n\n## Part two\n\nMore.\n",
    "blog/third.md": "---\ntitle: Third Post\nstatus: published\nauthor: ada\ntags: [intro]\n"
                     "publishedAt: 2026-03-01T10:00:00Z\nexcerpt: The third one.\n---\nBody three.\n",
    "blog/draft.md": "---\ntitle: Not Yet\nstatus: draft\nauthor: ada\n---\nDraft body.\n",
    "docs/start.md": "---\ntitle: Start Here\nstatus: published\norder: 1\npublishedAt: 2026-01-01\n---\n"
                     "| a | b |\n|---|---|\n| 1 | 2 |\n\nBack to [the post](/blog/first.md).\n",
    "media/logo.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n',
}


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (or with None, delete) files under root."""
    for rel, data in files.items():
        path = root / rel
        if data is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)


def git_commit(root: Path, message: str = "edit", *, branch: str = "main") -> str:
    """Commit everything under root (creating the repository) and return the commit id."""
    if not (root / ".git").exists():
        repo = pygit2.init_repository(str(root), initial_head=branch)
        (root / ".gitignore").write_text(".flowcms/\n")
    else:
        repo = pygit2.Repository(str(root))
    repo.index.add_all()
    # add_all does not drop deleted files: remove them from the index by hand
    for entry in list(repo.index):
        if not (root / entry.path).exists():
            repo.index.remove(entry.path)
    repo.index.write()
    tree = repo.index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return str(repo.create_commit("HEAD", SIGNATURE, SIGNATURE, message, tree, parents))


def make_site(root: Path, files: Mapping[str, str] | None = None, *, git: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_files(root, files if files is not None else TINY_SITE)
    if git:
        git_commit(root, "initial")
    return root


def copy_sample(root: Path, *, git: bool = True) -> Path:
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".flowcms"))
    if git:
        git_commit(root, "sample")
    return root
