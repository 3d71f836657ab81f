"""LiveIndex: the APIs' view of the live build, read in worker threads, switching on publish."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
import trio
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.index import (
    get_entry,
    get_entry_by_slug,
    list_authors,
    load_entry_records,
    open_index,
    update_index,
)
from pipeline.origin import live as live_module
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


def test_record_cache_belongs_to_the_index_file(tmp_path: Path) -> None:
    """Reads of one index file share decoded records; a publish, or a rebuild that replaces
    the file under the same build id, gives readers that open it a cache of their own."""
    site = make_site(tmp_path / "site")
    store = Store(tmp_path / "state")
    live = LiveIndex(store)
    first = build_and_publish(site, store)

    def record(snapshot: Snapshot) -> tuple[object, dict[str, object]]:
        found = get_entry_by_slug(snapshot.conn, "first-post", content_type="blog", cache=snapshot.records)
        assert found is not None
        return snapshot.records, found

    cache, one = live.read_sync(record)
    again_cache, again = live.read_sync(record)
    assert again_cache is cache
    assert again is one

    def in_new_thread() -> tuple[object, dict[str, object]]:
        out: list[tuple[object, dict[str, object]]] = []
        thread = threading.Thread(target=lambda: out.append(live.read_sync(record)))
        thread.start()
        thread.join()
        return out[0]

    assert in_new_thread()[0] is cache  # another thread, the same file: the same cache
    index = store.build_dir(first) / "index.sqlite"
    copy = index.with_name("copy.sqlite")
    shutil.copyfile(index, copy)
    os.replace(copy, index)  # what Store.commit_build does when a build id is built again
    other_cache, other = in_new_thread()
    assert other_cache is not cache
    assert other == one
    assert other is not one

    write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"].replace("tags: [intro, news]", "tags: [intro]")})
    git_commit(site)
    assert build_and_publish(site, store) != first
    newer_cache, retagged = live.read_sync(record)
    assert newer_cache is not cache
    assert one["tags"] == ["intro", "news"]
    assert retagged["tags"] == ["intro"]


def test_a_rebuild_landing_while_the_index_opens_gets_no_mixed_cache(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same build id rebuilt (other row ids) replaces the file between a thread's open and
    the stat naming its cache: that thread must not file the old file's records under the new
    file's cache, where another thread would read them by row id (the wrong entry)."""
    site = make_site(tmp_path / "site")
    store = Store(tmp_path / "state")
    build_id = build_and_publish(site, store)
    index = store.build_dir(build_id) / "index.sqlite"
    with closing(open_index(index)) as conn:
        records = load_entry_records(conn)
        authors = {a["key"]: a for a in list_authors(conn)}
        rows = conn.execute("SELECT rid, id FROM entries ORDER BY rid").fetchall()
    first, last = rows[0][1], rows[-1][1]
    rebuilt = index.with_name("rebuilt.sqlite")  # the same entries under other row ids
    update_index(index, rebuilt, upserts=[records[first], records[last]], deletes=[], authors=authors)
    real_open = live_module.open_index

    def open_then_rebuild(path: Path, **kwargs: object) -> sqlite3.Connection:
        conn = real_open(path, **kwargs)
        if rebuilt.exists():
            os.replace(rebuilt, index)  # lands between this open and what follows it
        return conn

    monkeypatch.setattr(live_module, "open_index", open_then_rebuild)
    live = LiveIndex(store)
    got: list[str] = []
    for wanted in (last, first):  # each in a thread of its own: each opens the index
        thread = threading.Thread(target=lambda w=wanted: got.append(
            live.read_sync(lambda snap: get_entry(snap.conn, w, cache=snap.records))["id"]))
        thread.start()
        thread.join()
    assert got == [last, first]
