"""``flowcms init``: a new site as a git repository holding the sample content."""

from __future__ import annotations

import shutil
from pathlib import Path

import pygit2

from pipeline.errors import SourceError

SAMPLE = Path(__file__).resolve().parent.parent / "content"
GITIGNORE = ".flowcms/\n"


def create_site(directory: Path, *, sample: Path = SAMPLE) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise SourceError(f"{directory} exists and is not empty")
    shutil.copytree(sample, directory, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".flowcms", "__pycache__"))
    (directory / ".gitignore").write_text(GITIGNORE)
    repo = pygit2.init_repository(str(directory), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    try:
        author = repo.default_signature
    except (KeyError, pygit2.GitError):
        author = pygit2.Signature("FlowCMS", "flowcms@localhost")
    repo.create_commit("HEAD", author, author, "Initial content from flowcms init", tree, [])
