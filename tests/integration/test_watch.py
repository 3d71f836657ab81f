"""The ref watcher: commits wake it through inotify, and one made before it started is not lost."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import trio
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.watch import changes, current_state

BOUND_S = 10.0


async def next_change(site: Path, **kwargs: str | None) -> str:
    with trio.fail_after(BOUND_S):
        async with aclosing(changes(site, "main", **kwargs)) as states:
            async for state in states:
                return state
    raise AssertionError("changes() ended")


async def test_a_commit_wakes_the_watcher(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    got: list[str] = []

    async def watch() -> None:
        got.append(await next_change(site))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.sleep(0.3)  # the watcher has read its baseline
        write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nMore.\n"})
        commit = git_commit(site, "edit")
    assert got == [commit]


async def test_a_commit_before_the_watcher_started_is_reported(tmp_path: Path) -> None:
    """The stack takes ``since`` before its first build; a commit between that and the watcher's
    start used to become the watcher's baseline, and was never published."""
    site = make_site(tmp_path / "site")
    since = current_state(site, "main")
    write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nMore.\n"})
    commit = git_commit(site, "edit while the stack was starting")
    assert await next_change(site, since=since) == commit


async def test_nothing_new_since_means_no_change(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    since = current_state(site, "main")
    with trio.move_on_after(1.0) as scope:
        await next_change(site, since=since)
    assert scope.cancelled_caught
