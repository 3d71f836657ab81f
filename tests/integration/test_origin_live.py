"""LiveIndex: the APIs' view of the live build, read in worker threads, switching on publish."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.index import get_entry_by_slug
from pipeline.origin.live import LiveIndex, NoLiveBuild, Snapshot, body_html
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-06-01T00:00:00Z"


def build_and_publish(site: Path, store: Store) -> str:
    result = build_site(GitSource(site, "main"), store, previous=store.live(), options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return result.build_id


def first_post(snapshot: Snapshot) -> tuple[str, str]:
    record = get_entry_by_slug(snapshot.conn, "first-post", content_type="blog")
    assert record is not None
    return snapshot.build_id, body_html(snapshot, record)


async def test_reads_follow_the_live_pointer(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    store = Store(tmp_path / "state")
    live = LiveIndex(store)
    with pytest.raises(NoLiveBuild):
        await live.read(first_post)
    first = build_and_publish(site, store)
    results = []
    async with trio.open_nursery() as nursery:  # concurrent reads: one connection per worker thread
        for _ in range(8):
            nursery.start_soon(lambda: _append(results, live.read(first_post)))
    assert {r[0] for r in results} == {first}
    assert "Body one" in results[0][1] or "<p>" in results[0][1]
    write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nA new paragraph.\n"})
    git_commit(site)
    second = build_and_publish(site, store)
    build_id, html = await live.read(first_post)
    assert build_id == second != first
    assert "A new paragraph." in html


async def _append(results: list[tuple[str, str]], awaitable: object) -> None:
    results.append(await awaitable)  # type: ignore[misc]
