"""The Publisher on its own: triggers that arrive together are coalesced, never interleaved."""

from __future__ import annotations

from pathlib import Path

import trio
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.publisher import Publisher, PublishRecord, read_records
from pipeline.store import Store

BOUND_S = 60.0


async def test_concurrent_triggers_coalesce_and_never_interleave(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    store = Store(site / ".flowcms")
    publisher = Publisher(site, store, [])
    got: list[PublishRecord] = []

    async def trigger(name: str) -> None:
        got.append(await publisher.publish(name))

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trigger, "t0")
            await trio.sleep(0.1)  # t0's build (a child process) is running now
            for i in range(1, 6):
                nursery.start_soon(trigger, f"t{i}")
        write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nMore.\n"})
        git_commit(site)
        after = await publisher.publish("after the commit")
    records = read_records(store)[::-1]  # oldest first
    # the first trigger publishes; the five that arrived meanwhile share the next publish
    assert len(records) == 3
    assert records[0]["trigger"] == "t0"
    assert sorted(str(records[1]["trigger"]).split(", ")) == ["t1", "t2", "t3", "t4", "t5"]
    assert records[1]["seen"] >= records[0]["seen"] + records[0]["build_s"]  # started after t0's publish ended
    assert {r.id for r in got} == {records[0]["id"], records[1]["id"]}
    assert records[0]["status"] == "live everywhere"  # the first publish of the site (no edges configured)
    assert records[1]["status"] == "unchanged"
    assert after.status == "live everywhere"
    assert after.changed > 0
    assert store.live() == after.build
