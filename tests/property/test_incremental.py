"""The incremental invariant: after any sequence of edits, an incremental build's manifest
equals a full build's manifest of the same commit (so reuse never serves a stale output)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.errors import BuildFailed
from pipeline.source import GitSource
from pipeline.store import STATE_FILE, Store

AS_OF = "2026-06-01T00:00:00Z"
TITLES = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]
TAGS = ["news", "intro", "deep-dive", "release"]
BODIES = ["Short.", "A longer body with **bold** and `code`.", "## Head\n\nText [s](/docs/start.md).",
          "| x | y |\n|---|---|\n| 1 | 2 |", "Link to [first](../blog/first.md)."]


def entry(title: str, tags: list[str], author: str, day: int, body: str, status: str) -> str:
    return (f"---\ntitle: {title}\nstatus: {status}\nauthor: {author}\ntags: [{', '.join(tags)}]\n"
            f"publishedAt: 2026-0{1 + day % 5}-1{day % 9}T10:00:00Z\n---\n{body}\n")


edits = st.one_of(
    st.builds(lambda n, t, tags, a, d, b, s: ("write", f"blog/e{n}.md", entry(t, tags, a, d, b, s)),
              st.integers(0, 4), st.sampled_from(TITLES), st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
              st.sampled_from(["ada", "bob"]), st.integers(0, 30), st.sampled_from(BODIES),
              st.sampled_from(["published", "published", "draft"])),
    st.builds(lambda n: ("delete", f"blog/e{n}.md", None), st.integers(0, 4)),
    st.builds(lambda bio: ("write", "authors.yaml", f"ada:\n  name: Ada\n  bio: {bio}\nbob:\n  name: Bob\n"),
              st.sampled_from(["One.", "Two."])),
    st.builds(lambda size: ("write", "flowcms.toml", f'[site]\ntitle = "Tiny"\npage_size = {size}\n'),
              st.integers(1, 3)),
    st.builds(lambda word: ("write", "templates/partials/card.html",
                            f'<article class="card"><a href="{{{{ entry.url }}}}">{{{{ entry.title }}}}</a> {word}</article>\n'),
              st.sampled_from(["one", "two"])),
    st.builds(lambda: ("write", "docs/start.md", TINY_SITE["docs/start.md"].replace("| 1 | 2 |", "| 3 | 4 |"))),
)


@settings(max_examples=25)
@given(st.lists(edits, min_size=1, max_size=6), st.lists(st.booleans(), min_size=1, max_size=6))
def test_incremental_build_equals_full_build(steps: list[tuple[str, str, str | None]], drop: list[bool]) -> None:
    """``drop`` removes the previous build's state cache before some steps, so both ways of
    reading the previous build (state.marshal, or manifest.json + index.sqlite) are checked."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = make_site(root / "site")
        store = Store(root / "inc")
        opts = BuildOptions(as_of=AS_OF, workers=1)
        previous = build_site(GitSource(site, "main"), store, previous=None, options=opts).build_id
        for step, (_, path, data) in enumerate(steps):
            write_files(site, {path: data})
            git_commit(site)
            if drop[step % len(drop)]:
                (store.build_dir(previous) / STATE_FILE).unlink(missing_ok=True)
            try:
                inc = build_site(GitSource(site, "main"), store, previous=previous, options=opts)
            except BuildFailed:
                # An edit that breaks the site (e.g. two entries with one title): a full build
                # must fail the same way, and the last good build stays the base.
                fresh = Store(root / "fail")
                try:
                    build_site(GitSource(site, "main"), fresh, previous=None,
                               options=BuildOptions(as_of=AS_OF, full=True, workers=1))
                except BuildFailed:
                    continue
                raise AssertionError("incremental build failed where a full build succeeds") from None
            finally:
                shutil.rmtree(root / "fail", ignore_errors=True)
            full_store = Store(root / "full")
            full = build_site(GitSource(site, "main"), full_store, previous=None,
                              options=BuildOptions(as_of=AS_OF, full=True, workers=1))
            assert store.manifest(inc.build_id) == full_store.manifest(full.build_id)
            assert inc.build_id == full.build_id
            shutil.rmtree(root / "full")
            previous = inc.build_id
