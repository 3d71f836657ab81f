"""The publish loop end to end: ``flowcms up`` (origin + edgeproxy + watcher) on a temp git site.

A commit to the published branch is noticed by the watcher, built, switched and purged at
the edge: the changed page is fresh at once, an unchanged page keeps its ETag and stays a
HIT, a removed entry 404s at the edge, and a broken commit leaves everything as it was.
"""

from __future__ import annotations

import email.utils
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.publish import BuildDiff, purge_set

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 40.0


@dataclass
class Stack:
    site: Path
    url: str
    token: str
    process: trio.Process
    origin: str = ""

    def records(self) -> list[dict[str, object]]:
        path = self.site / ".flowcms" / "publishes.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def next_record(self, before: int) -> dict[str, object]:
        """The first publish record after the ``before`` already there."""
        while len(self.records()) <= before:  # noqa: ASYNC110 — the file is the interface
            await trio.sleep(0.05)
        return self.records()[before]


@pytest.fixture
def up_options() -> list[str]:
    return []


@pytest.fixture
async def stack(tmp_path: Path, up_options: list[str]) -> AsyncIterator[Stack]:
    site = make_site(tmp_path / "site")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pipeline.cli", "--site", str(site), "up", "--port", "0", "--origin-port", "0",
         *up_options],
        cwd=ROOT, stdout=subprocess.PIPE, env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    output = b""
    try:
        with trio.fail_after(BOUND_S):
            assert process.stdout is not None
            while b"stops." not in output:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"flowcms up exited early: {output!r}"
                output += chunk
        url = re.search(rb"site:\s+(http://\S+?)/?\s", output)
        origin_url = re.search(rb"origin: (http://\S+?)/?\s", output)
        token = re.search(rb"admin token for this session: (\S+)", output)
        assert url is not None, output
        assert token is not None, output
        yield Stack(site, url.group(1).decode(), token.group(1).decode(), process,
                    origin_url.group(1).decode() if origin_url else "")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_commit_is_live_at_the_edge_and_nothing_else_goes_cold(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            for path in ("/blog/first-post/", "/blog/third-post/", "/"):  # warm the edge
                assert (await client.get(path)).status_code == 200
            before_third = await client.get("/blog/third-post/")
            before_home = await client.get("/")
            assert "hit" in before_third.headers["cache-status"]
            count = len(stack.records())
            write_files(stack.site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nFresh words.\n"})
            git_commit(stack.site, "edit first")
            record = await stack.next_record(count)
            first = await client.get("/blog/first-post/")
            third = await client.get("/blog/third-post/")
            home = await client.get("/")
            edge_metrics = (await client.get("/.edge/metrics")).text.splitlines()
    assert record["status"] == "live everywhere", record
    # the edge timed the same publish from its tagged purge (the publisher's probe was its first fresh 200)
    assert f'edgeproxy_last_publish_info{{id="{record["id"]}"}} 1' in edge_metrics
    edge_fresh = [line for line in edge_metrics if line.startswith("edgeproxy_last_publish_commit_to_first_fresh")]
    assert len(edge_fresh) == 1
    # measured at the edge, the first fresh answer is no later than the publisher's probe got it
    assert 0 <= float(edge_fresh[0].split()[1]) <= float(record["fresh_s"]) + 0.05  # type: ignore[arg-type]
    assert record["trigger"].startswith("watch")  # type: ignore[union-attr]
    assert record["edges"][0]["ok"]  # type: ignore[index]
    assert record["fresh_s"] is not None
    assert "Fresh words." in first.text
    # unchanged pages: same ETag, still served from the edge's cache
    assert third.headers["etag"] == before_third.headers["etag"]
    assert "hit" in third.headers["cache-status"]
    assert "stale" not in third.headers["cache-status"]
    assert home.headers["etag"] == before_home.headers["etag"]  # the card did not change
    assert "fwd=" not in home.headers["cache-status"]
    listing = await trio.run_process([sys.executable, "-m", "pipeline.cli", "--site", str(stack.site), "publishes",
                                      "--json"], capture_stdout=True, cwd=ROOT)
    assert json.loads(listing.stdout)[0]["id"] == record["id"]  # newest first


async def test_removed_entry_404s_and_a_broken_commit_changes_nothing(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            assert (await client.get("/blog/third-post/")).status_code == 200
            count = len(stack.records())
            write_files(stack.site, {"blog/third.md": None})
            git_commit(stack.site, "remove third")
            removed = await stack.next_record(count)
            gone = await client.get("/blog/third-post/")
            live_before = (stack.site / ".flowcms" / "LIVE").read_text()
            write_files(stack.site, {"blog/second.md": "---\ntitle: [broken\n---\nx\n"})
            git_commit(stack.site, "break it")
            failed = await stack.next_record(count + 1)
            second = await client.get("/blog/second-post/")
    assert removed["status"] == "live everywhere"
    assert removed["removed"] > 0
    assert gone.status_code == 404
    assert failed["status"] == "failed"
    assert "blog/second.md" in str(failed["error"])  # path:line:column from the build
    assert (stack.site / ".flowcms" / "LIVE").read_text() == live_before
    assert second.status_code == 200


async def test_publish_api_needs_the_admin_token(stack: Stack) -> None:
    origin = stack.url  # through the edge: the gateway-less edge forwards POST to the origin
    async with httpx.AsyncClient(base_url=origin) as client:
        with trio.fail_after(BOUND_S):
            anonymous = await client.post("/api/v3/publish")
            wrong = await client.post("/api/v3/publish", headers={"Authorization": "Bearer nope"})
            started = await client.post("/api/v3/publish", headers={"Authorization": f"Bearer {stack.token}"})
            location = started.headers["location"]
            while True:
                status = await client.get(location, headers={"Authorization": f"Bearer {stack.token}"})
                if status.json()["data"]["attributes"]["status"] != "running":
                    break
                await trio.sleep(0.05)
        metrics = await client.get("/metrics")
        rolled_nothing = await client.post("/api/v3/rollback", headers={"Authorization": f"Bearer {stack.token}"})
        admin = {"Authorization": f"Bearer {stack.token}"}
        wrong_method = [await client.request(m, path, headers=admin) for m in ("GET", "PUT", "DELETE")
                        for path in ("/api/v3/publish", "/api/v3/rollback")]
        unknown = await client.post("/api/v3/rollback", headers=admin, json={"build": "nope"})
        escaping = await client.post("/api/v3/rollback", headers=admin, json={"build": ".."})
        malformed = await client.post("/api/v3/rollback", headers=admin, json={"build": 7})
    # seed 002: "GET on a POST-only route" is a 405, with Allow: from the origin (GET on publish),
    # or from the edge's gateway, whose /api/v3/publish route also covers GET /api/v3/publish/<id>
    assert [r.status_code for r in wrong_method] == [405] * 6
    assert [r.headers["allow"] for r in wrong_method] == ["POST", "POST", "GET, POST, HEAD", "POST",
                                                          "GET, POST, HEAD", "POST"]
    assert [r.json()["errors"][0]["code"] for r in wrong_method] == ["METHOD_NOT_ALLOWED"] * 6
    assert (unknown.status_code, escaping.status_code, malformed.status_code) == (404, 404, 422)
    assert unknown.json()["errors"][0]["detail"].startswith("no build 'nope'")  # no exception class names
    assert "Error" not in rolled_nothing.json()["errors"][0]["detail"]
    # the edge's gateway refuses both before the origin sees them: no key, and a key it does not know
    assert (anonymous.status_code, wrong.status_code, started.status_code) == (401, 401, 202)
    nothing_before = rolled_nothing.json()["errors"][0]
    assert (rolled_nothing.status_code, nothing_before["code"]) == (409, "CONFLICT")
    assert 'flowcms_publishes_total{status="unchanged"} 1' in metrics.text.splitlines()
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHENTICATED"
    assert status.json()["data"]["attributes"]["status"] == "unchanged"


async def test_sigterm_stops_the_whole_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGTERM)
    with trio.fail_after(BOUND_S):
        await stack.process.wait()
    assert stack.process.returncode == 0
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(stack.url + "/")


def test_purge_set_is_exact_paths_plus_api_keys() -> None:
    diff = BuildDiff("a", "b", added=("/blog/new/",), changed=("/blog/x/", "/feed.xml"), removed=(),
                     keys=("cnt_1", "type:blog", "tag:news", "author:ada", "feed", "listing:home"),
                     entries=("cnt_1",))
    purges = purge_set(diff)
    assert purges.paths == ("/blog/new/", "/blog/x/", "/feed.xml")
    assert purges.keys == ("api:author:ada", "api:authors", "api:cnt_1", "api:contents", "api:tag:news",
                           "api:tags", "api:type:blog")
    assert not any(k in purges.keys for k in ("cnt_1", "type:blog", "listing:home"))  # never page keys
    many = purge_set(BuildDiff("a", "b", tuple(f"/p{i}/" for i in range(600)), (), (), ()))
    batches = many.batches(256)
    assert [len(b["paths"]) for b in batches] == [256, 256, 88]
    assert purges.batches(2) == [{"paths": ["/blog/new/", "/blog/x/"]}, {"paths": ["/feed.xml"]},
                                 {"keys": ["api:author:ada", "api:authors"]}, {"keys": ["api:cnt_1", "api:contents"]},
                                 {"keys": ["api:tag:news", "api:tags"]}, {"keys": ["api:type:blog"]}]


async def test_a_scheduled_entry_goes_live_at_its_second(stack: Stack) -> None:
    import datetime as dt

    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=4)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = (f"---\ntitle: Later\nstatus: published\nauthor: ada\npublishAt: {stamp}\n"
             "publishedAt: 2026-01-05T00:00:00Z\n---\nNot yet.\n")
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            count = len(stack.records())
            write_files(stack.site, {"blog/later.md": entry})
            git_commit(stack.site, "schedule later")
            committed = await stack.next_record(count)  # the commit itself: nothing visible yet
            early = await client.get("/blog/later/")
            flip = await stack.next_record(count + 1)
            late = await client.get("/blog/later/")
    assert committed["status"] in ("live everywhere", "unchanged")
    assert early.status_code == 404
    assert str(flip["trigger"]).startswith("schedule")
    assert flip["status"] == "live everywhere"
    assert flip["seen"] >= at.timestamp() - 0.05  # type: ignore[operator]  # not before its second
    assert flip["seen"] < at.timestamp() + 1.0  # type: ignore[operator]
    assert late.status_code == 200
    assert "Not yet." in late.text


async def cli(site: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "pipeline.cli", "--site", str(site), *args],
                                  capture_stdout=True, capture_stderr=True, cwd=ROOT)


@pytest.mark.parametrize("up_options", [["--no-watch"]])
async def test_git_hook_publishes_and_rollback_purges_the_reverse_diff(stack: Stack) -> None:
    """Without the watcher: the post-commit hook publishes, and that publish (another process)
    purges the running stack's edge; a rollback brings the old page back with its old ETag."""
    installed = await cli(stack.site, "hook", "install")
    assert b"post-commit" in installed.stdout
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            before = await client.get("/blog/second-post/")
            await client.get("/blog/second-post/")  # cached now
            live = (stack.site / ".flowcms" / "LIVE").read_text()
            write_files(stack.site, {"blog/second.md": TINY_SITE["blog/second.md"] + "\nHooked.\n"})
            subprocess_commit = await trio.run_process(["git", "commit", "-qam", "via git"], cwd=stack.site)
            assert subprocess_commit.returncode == 0
            while (stack.site / ".flowcms" / "LIVE").read_text() == live:  # noqa: ASYNC110
                await trio.sleep(0.05)
            while "Hooked." not in (after := await client.get("/blog/second-post/")).text:  # noqa: ASYNC110
                await trio.sleep(0.05)  # the hook's publish runs in the background
            rolled = await cli(stack.site, "rollback")
            back = await client.get("/blog/second-post/")
    assert after.headers["etag"] != before.headers["etag"]
    assert b"purged at http://" in rolled.stdout, rolled.stdout + rolled.stderr
    assert back.headers["etag"] == before.headers["etag"]  # the old page, with its old ETag
    assert "Hooked." not in back.text
    removed = await cli(stack.site, "hook", "uninstall")
    assert b"removed" in removed.stdout


async def test_webhooks_fire_for_a_publish_and_a_failed_build(stack: Stack) -> None:
    from test_webhooks import start_receiver, verify

    from pipeline.webhooks import Outbox

    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, [])
        endpoint = Outbox(stack.site / ".flowcms").add_endpoint(receiver.url)
        with trio.fail_after(BOUND_S):
            count = len(stack.records())
            write_files(stack.site, {"blog/fourth.md": "---\ntitle: Fourth\nstatus: published\nauthor: bob\n"
                                                        "publishedAt: 2026-04-01T00:00:00Z\n---\nNew.\n"})
            git_commit(stack.site, "add fourth")
            await stack.next_record(count)
            write_files(stack.site, {"blog/fourth.md": "---\ntitle: [broken\n---\n"})
            git_commit(stack.site, "break fourth")
            await stack.next_record(count + 1)
            while len(receiver.seen) < 3:  # noqa: ASYNC110
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    events = {json.loads(body)["type"]: json.loads(body) for _, body in receiver.seen}  # delivered concurrently
    assert sorted(events) == ["build.failed", "content.published", "publish.completed"]
    assert events["content.published"]["data"]["url"] == "/blog/fourth/"
    assert "blog/fourth.md" in events["build.failed"]["data"]["error"]
    assert all(verify(endpoint.secret, h, b) for h, b in receiver.seen)


async def test_rollback_api_brings_back_the_old_page(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            before = await client.get("/blog/first-post/")
            count = len(stack.records())
            write_files(stack.site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nNewer.\n"})
            git_commit(stack.site, "newer")
            await stack.next_record(count)
            newer = await client.get("/blog/first-post/")
            rolled = await client.post("/api/v3/rollback", headers={"Authorization": f"Bearer {stack.token}"})
            back = await client.get("/blog/first-post/")
    assert "Newer." in newer.text
    assert rolled.status_code == 200
    assert rolled.json()["data"]["attributes"]["status"] == "live everywhere"
    assert back.headers["etag"] == before.headers["etag"]


async def test_delivery_apis_through_the_edge_are_cached_and_purged_on_publish(stack: Stack) -> None:
    """REST, feed and GraphQL answers: MISS then HIT at the edge with rate-limit headers, and a
    publish that changes an entry purges exactly the API answers that show it (api: keys)."""
    rest = "/api/v3/posts?limit=5"
    graphql = "/graphql?query=%7B%20contents(first%3A%205)%20%7B%20edges%20%7B%20node%20%7B%20id%20title%20%7D%20%7D%20%7D%20%7D"
    feed = "/public/feed/blog"
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            first = {path: await client.get(path) for path in (rest, graphql, "/api/v3/tags")}
            second = {path: await client.get(path) for path in (rest, graphql, "/api/v3/tags")}
            # the stored 200 varies on Accept: a request the origin refuses (JSON:API 1.1) is not a hit
            refused = await client.get(rest, headers={"Accept": "application/vnd.api+json; charset=utf-8"})
            refused_type = await client.get(rest, headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
            count = len(stack.records())
            title = "First Post, Renamed"
            write_files(stack.site, {"blog/first.md": TINY_SITE["blog/first.md"].replace("First Post", title)})
            git_commit(stack.site, "rename first")
            record = await stack.next_record(count)
            after = {path: await client.get(path) for path in (rest, graphql, "/api/v3/tags")}
            missing_feed = await client.get(feed)
    assert record["status"] == "live everywhere"
    assert refused.status_code == 406
    assert "hit" not in refused.headers.get("cache-status", "")
    assert refused_type.status_code == 415  # Vary: Content-Type too
    assert "hit" not in refused_type.headers.get("cache-status", "")
    for path in (rest, graphql):
        assert first[path].status_code == 200, first[path].text
        assert "fwd=uri-miss" in first[path].headers["cache-status"]
        assert "hit" in second[path].headers["cache-status"]
        assert second[path].headers["x-ratelimit-limit"] == "10000"  # the gateway counted the hit too
        assert title in after[path].text  # purged by api: keys and fetched again
        assert after[path].headers["etag"] != second[path].headers["etag"]
    # the tag list may show the entry (api:tags was soft-purged) but did not change: the edge
    # revalidated it (a 304 from the origin) and kept the same answer and ETag
    assert after["/api/v3/tags"].headers["etag"] == second["/api/v3/tags"].headers["etag"]
    assert missing_feed.status_code == 404  # the tiny site defines no feeds


async def test_publish_truth_no_stale_url_after_random_edits(stack: Stack) -> None:
    """A few dozen random edits (body, title, tags, add, delete, template, author), each published
    by the watcher: after every publish, every URL of the live manifest answers the same through
    the edge as at the origin (zero stale URLs), and the purge set is the manifest diff."""
    import random

    from pipeline.publish import diff_builds
    from pipeline.store import Store

    rng = random.Random(20261124)
    store = Store(stack.site / ".flowcms")
    added: list[str] = []
    entries = ["blog/first.md", "blog/second.md", "blog/third.md"]
    texts = {path: TINY_SITE[path] for path in entries}

    def edit(step: int) -> dict[str, str | None]:
        kind = rng.choice(["body", "title", "tags", "add", "delete", "template", "author"])
        if kind == "add" or (kind == "delete" and not added):
            path = f"blog/gen-{step}.md"
            added.append(path)
            return {path: f"---\ntitle: Generated {step}\nstatus: published\nauthor: bob\ntags: [gen]\n"
                          f"publishedAt: 2026-0{1 + step % 9}-1{step % 10}T08:00:00Z\n---\nGenerated body {step}.\n"}
        if kind == "delete":
            return {added.pop(rng.randrange(len(added))): None}
        if kind == "template":
            return {"templates/partials/card.html": '<article class="card"><a href="{{ entry.url }}">'
                                                    f'{{{{ entry.title }}}}</a> v{step}</article>\n'}
        if kind == "author":
            return {"authors.yaml": TINY_SITE["authors.yaml"].replace("First programmer.", f"Bio {step}.")}
        path = rng.choice(entries)
        text = texts[path]
        if kind == "body":
            text += f"\nParagraph {step}.\n"
        elif kind == "title":
            title = text.split("title: ", 1)[1].split("\n", 1)[0]
            text = text.replace(f"title: {title}", f"title: {title.split(' v')[0]} v{step}", 1)
        else:
            tags = text.split("tags: ", 1)[1].split("\n", 1)[0]
            text = text.replace(f"tags: {tags}", f"tags: [{rng.choice(['intro', 'news', 'deep'])}]", 1)
        texts[path] = text
        return {path: text}

    async with httpx.AsyncClient(base_url=stack.url) as edge, httpx.AsyncClient(base_url=stack.origin) as origin:
        with trio.fail_after(BOUND_S * 4):
            for step in range(30):
                live_before = store.live()
                count = len(stack.records())
                write_files(stack.site, edit(step))
                git_commit(stack.site, f"edit {step}")
                record = await stack.next_record(count)
                assert record["status"] in ("live everywhere", "unchanged"), record
                live = store.live()
                assert live is not None
                if live_before is not None and live != live_before:
                    diff = diff_builds(store, live_before, live)
                    assert record["purge_paths"] == len(diff.paths)  # the purge set is the manifest diff
                    for path in diff.removed:
                        assert (await edge.get(path)).status_code == 404, path
                for path in store.manifest(live):
                    at_edge, at_origin = await edge.get(path), await origin.get(path)
                    assert (at_edge.status_code, at_edge.content) == (at_origin.status_code, at_origin.content), \
                        f"stale at the edge after edit {step}: {path}"


async def test_preview_of_a_branch_for_editors_only(stack: Stack) -> None:
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org"]
    for args in (["checkout", "-q", "-b", "draft-work"], None, ["add", "-A"], ["commit", "-qm", "draft"],
                 ["checkout", "-q", "main"]):
        if args is None:
            write_files(stack.site, {"blog/preview-only.md": "---\ntitle: Preview Only\nstatus: published\n"
                                                             "author: ada\npublishedAt: 2026-05-01T00:00:00Z\n---\nSoon.\n"})
            continue
        await trio.run_process([*git, *args], cwd=stack.site)
    admin = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with trio.fail_after(BOUND_S):
            anonymous = await client.get("/_preview/draft-work/blog/preview-only/")
            page = await client.get("/_preview/draft-work/blog/preview-only/", headers=admin)
            redirect = await client.get("/_preview/draft-work/blog/preview-only", headers=admin)
            live = await client.get("/blog/preview-only/")
            unknown = await client.get("/_preview/no-such-branch/", headers=admin)
    assert anonymous.status_code == 401  # the edge's gateway: previews need an editor
    assert page.status_code == 200
    assert "Soon." in page.text
    assert page.headers["cache-control"] == "no-store"
    assert email.utils.parsedate_to_datetime(page.headers["last-modified"]).timestamp() <= time.time()
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "/_preview/draft-work/blog/preview-only/"
    assert live.status_code == 404  # the branch is not published
    assert unknown.status_code == 404


async def test_sigkill_of_the_stack_mid_publish_leaves_a_whole_live_build(stack: Stack) -> None:
    """SIGKILL `flowcms up` right after a commit (its publish is in flight): the live build is
    complete (its manifest, index and every blob are there), the edge child goes too, and a
    new `up` serves every URL of it, through the edge, as the origin does."""
    import os

    from pipeline.store import Store

    edge_pid = _child_pids(stack.process.pid)
    write_files(stack.site, {"blog/second.md": TINY_SITE["blog/second.md"] + "\nKilled mid-publish.\n"})
    git_commit(stack.site, "edit before the kill")
    await trio.sleep(0.15)  # the watcher has seen it: the publish is running
    os.kill(stack.process.pid, signal.SIGKILL)
    with trio.fail_after(BOUND_S):
        await stack.process.wait()
        while any(_alive(pid) for pid in edge_pid):  # noqa: ASYNC110 — no event for another process's death
            await trio.sleep(0.05)
    store = Store(stack.site / ".flowcms")
    live = store.live()
    assert live is not None
    manifest = store.manifest(live)
    assert (store.build_dir(live) / "index.sqlite").exists()
    assert all(store.has(item.blob) for item in manifest.values())
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pipeline.cli", "--site", str(stack.site), "up", "--port", "0", "--origin-port", "0",
         "--no-watch"], cwd=ROOT, stdout=subprocess.PIPE, env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    try:
        output = b""
        with trio.fail_after(BOUND_S):
            assert process.stdout is not None
            while b"stops." not in output:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, output
                output += chunk
            site = re.search(rb"site:\s+(http://\S+?)/?\s", output)
            origin = re.search(rb"origin: (http://\S+?)/?\s", output)
            assert site is not None
            assert origin is not None
            async with httpx.AsyncClient(base_url=site.group(1).decode()) as edge, \
                    httpx.AsyncClient(base_url=origin.group(1).decode()) as direct:
                for path in store.manifest(store.live() or live):
                    a, b = await edge.get(path), await direct.get(path)
                    assert (a.status_code, a.content) == (b.status_code, b.content), path
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def _child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
