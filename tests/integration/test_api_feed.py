"""The Flowbox feed (seed 003) over real HTTP: ``/public/feed/{flowKey}`` on hypercorn, 127.0.0.1:0."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from support.sites import TINY_SITE, copy_sample, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.index import load_entry_records, open_index
from pipeline.origin import create_app, openapi
from pipeline.origin.jsonapi import CACHE_CONTROL
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-06-01T00:00:00Z"
Record = dict[str, Any]
FEEDS = ('\n[feeds.all]\ntitle = "Everything"\n'
         '[feeds.blog]\ntitle = "Blog"\ncontentType = "blog"\n'
         '[feeds.news]\ntitle = "News"\ntag = "news"\n'
         '[feeds.ada-news]\ntitle = "Ada\'s news"\ntag = "news"\nauthor = "ada"\n'
         '[feeds.empty]\ntitle = "Nothing"\ntag = "no-such-tag"\n')
SELECTIONS: dict[str, Callable[[Record], bool]] = {
    "all": lambda r: True,
    "blog": lambda r: r["contentType"] == "blog",
    "news": lambda r: "news" in r["tags"],
    "ada-news": lambda r: "news" in r["tags"] and r["author"] == "ada",
    "empty": lambda r: False,
}


def feed_site_files(n: int = 40) -> dict[str, str]:
    """TINY_SITE with feeds and ``n`` more posts, three per publishedAt (ties broken by id)."""
    files = dict(TINY_SITE)
    files["flowcms.toml"] += FEEDS
    for i in range(n):
        files[f"blog/post-{i:02d}.md"] = (
            f"---\ntitle: Post {i}\nstatus: published\nauthor: {'ada' if i % 2 else 'bob'}\n"
            f"tags: [{'news' if i % 3 else 'intro'}]\npublishedAt: 2025-04-{1 + i // 3:02d}T12:00:00Z\n"
            f"excerpt: Post number {i}.\n---\nBody {i}.\n")
    return files


def build_and_publish(site: Path, store: Store) -> str:
    result = build_site(GitSource(site, "main"), store, previous=store.live(), options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return result.build_id


def live_records(store: Store) -> list[Record]:
    conn = open_index(store.build_dir(store.live() or "") / "index.sqlite")
    try:
        return [r for r in load_entry_records(conn, bodies=False).values() if r["live"]]
    finally:
        conn.close()


def newest_first(records: list[Record]) -> list[str]:
    """The feed order by brute force: (publishedAt, id), newest first."""
    return [r["id"] for r in sorted(records, key=lambda r: (r["publishedAt"], r["id"]), reverse=True)]


async def start_origin(nursery: trio.Nursery, store: Store) -> str:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    urls = await nursery.start(serve, create_app(store), config)
    return str(urls[0])


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("feed")
    store = Store(root / "state")
    build_and_publish(make_site(root / "site", feed_site_files()), store)
    return store


@pytest.fixture
async def client(nursery: trio.Nursery, published: Store) -> AsyncIterator[httpx.AsyncClient]:
    base = await start_origin(nursery, published)
    async with httpx.AsyncClient(base_url=base) as http:
        yield http


async def walk(client: httpx.AsyncClient, flow_key: str, *, per_page: int | None = None,
               cursor: dict[str, str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow the JSON cursor (sent URL-encoded in ?cursor=) to the last page."""
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    while True:
        params: dict[str, str] = {}
        if per_page is not None:
            params["postsPerPage"] = str(per_page)
        if cursor is not None:
            params["cursor"] = json.dumps(cursor)
        r = await client.get(f"/public/feed/{flow_key}", params=params)
        assert r.status_code == 200, r.text
        doc = r.json()
        pages.append(doc)
        ids += [p["key"] for p in doc["posts"]]
        if doc["cursor"] is None:
            assert doc["hasMore"] is False
            assert "link" not in r.headers
            return ids, pages
        assert doc["hasMore"] is True
        cursor = doc["cursor"]


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    (error,) = r.json()["errors"]
    assert (error["status"], error["code"]) == (str(status), code)
    return str(error["detail"])


async def test_feed_pages_29_by_default_and_the_cursor_walks_all(client: httpx.AsyncClient,
                                                                 published: Store) -> None:
    """29 posts by default; the seed's cursor object pages through every live entry once, newest first."""
    r = await client.get("/public/feed/all")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    expected = newest_first(live_records(published))
    assert len(expected) == 44
    assert [p["key"] for p in doc["posts"]] == expected[:29]
    assert doc["flowKey"] == "all"
    assert doc["title"] == "Everything"
    assert doc["hasMore"] is True
    last = doc["posts"][-1]
    assert doc["cursor"] == {"feedKey": "all", "key": last["key"], "publishedAt": last["publishedAt"]}
    link = r.headers["link"]
    assert link.startswith("</public/feed/all?postsPerPage=29&cursor=")
    assert link.endswith('>; rel="next"')
    encoded = link[1:link.index(">")].split("cursor=", 1)[1]
    assert json.loads(unquote(encoded)) == doc["cursor"]  # URL-encoded JSON, as the seed says
    following = await client.get(link[1:link.index(">")])
    assert [p["key"] for p in following.json()["posts"]] == expected[29:]
    ids, pages = await walk(client, "all")
    assert ids == expected
    assert len(pages) == 2
    for per_page in (1, 7, 100):
        ids, pages = await walk(client, "all", per_page=per_page)
        assert ids == expected, per_page
        assert len(pages) == -(-len(expected) // per_page)  # a full last page says hasMore: false


@pytest.mark.parametrize("flow_key", sorted(SELECTIONS))
async def test_feed_selections_match_brute_force(client: httpx.AsyncClient, published: Store,
                                                 flow_key: str) -> None:
    ids, _ = await walk(client, flow_key, per_page=6)
    expected = newest_first([r for r in live_records(published) if SELECTIONS[flow_key](r)])
    assert ids == expected
    assert len(set(ids)) == len(ids)


async def test_feed_posts_and_caching_headers(client: httpx.AsyncClient, published: Store) -> None:
    r = await client.get("/public/feed/ada-news?postsPerPage=3")
    doc = r.json()
    post = doc["posts"][0]
    assert set(post) == {"key", "title", "url", "excerpt", "publishedAt", "tags", "author", "contentType"}
    assert post["author"] == {"key": "ada", "name": "Ada Lovelace", "avatar": None, "url": None}
    assert post["publishedAt"].endswith("Z")
    assert "news" in post["tags"]
    assert r.headers["cache-control"] == CACHE_CONTROL
    assert r.headers["x-build"] == published.live()
    keys = r.headers["surrogate-key"].split()
    assert keys == ["api:feed:ada-news", "api:tag:news", "api:author:ada", *(f"api:{p['key']}" for p in doc["posts"])]
    assert (await client.get("/public/feed/all?postsPerPage=1")).headers["surrogate-key"].split()[:2] == [
        "api:feed:all", "api:contents"]
    assert (await client.get("/public/feed/blog?postsPerPage=1")).headers["surrogate-key"].split()[:2] == [
        "api:feed:blog", "api:type:blog"]
    nm = await client.get("/public/feed/ada-news?postsPerPage=3", headers={"If-None-Match": r.headers["etag"]})
    assert nm.status_code == 304
    assert nm.content == b""
    assert nm.headers["etag"] == r.headers["etag"]
    head = await client.head("/public/feed/ada-news?postsPerPage=3")
    assert head.content == b""
    assert head.headers["content-length"] == str(len(r.content))
    empty = (await client.get("/public/feed/empty")).json()
    assert empty == {"flowKey": "empty", "title": "Nothing", "posts": [], "cursor": None, "hasMore": False}


@pytest.mark.parametrize("path", ["/public/feed/blog/", "/v1/flow/blog", "/v1/flow/blog/"])
async def test_feed_answers_under_seed_003s_other_spellings(client: httpx.AsyncClient, path: str) -> None:
    """Seed 003 builds URIs as Endpoint+Resource+"/?QUERYSTRING" and shows
    /v1/flow/<FLOWKEY>/?postsPerPage=15: each spelling answers the same feed as the canonical URI."""
    canonical = await client.get("/public/feed/blog?postsPerPage=15")
    r = await client.get(f"{path}?postsPerPage=15")
    assert r.status_code == 200, r.text
    assert r.content == canonical.content
    assert r.headers["etag"] == canonical.headers["etag"]
    assert r.headers["surrogate-key"] == canonical.headers["surrogate-key"]  # a publish purges it too
    assert r.headers["link"] == canonical.headers["link"]  # the next page at the canonical URI
    assert len(r.json()["posts"]) == 15
    head = await client.head(f"{path}?postsPerPage=15")
    assert (head.status_code, head.content) == (200, b"")
    nm = await client.get(f"{path}?postsPerPage=15", headers={"If-None-Match": r.headers["etag"]})
    assert nm.status_code == 304
    error_of(await client.get(path.replace("blog", "no-such-feed")), 404, "NOT_FOUND")


async def test_feed_errors(client: httpx.AsyncClient) -> None:
    detail = error_of(await client.get("/public/feed/unknown"), 404, "NOT_FOUND")
    assert "unknown" in detail
    # an unknown feed is 404 whatever its parameters (no right to know which are wrong)
    error_of(await client.get("/public/feed/unknown?cursor=garbage&postsPerPage=0"), 404, "NOT_FOUND")
    error_of(await client.get("/public/feed"), 404, "NOT_FOUND")
    error_of(await client.get("/public/feed/blog/extra"), 404, "NOT_FOUND")
    good = {"feedKey": "blog", "key": "cnt_x", "publishedAt": "2026-01-01T00:00:00Z"}
    cases = {
        "not json": "not JSON",
        json.dumps([good]): "JSON object",
        json.dumps({"feedKey": "blog", "key": "cnt_x"}): "lacks 'publishedAt'",
        json.dumps({**good, "feedKey": "news"}): "belongs to feed 'news'",
        json.dumps({**good, "publishedAt": "soon"}): "not an ISO 8601",
        json.dumps({**good, "key": 7}): "'key' must be a non-empty string",
    }
    for cursor, message in cases.items():
        r = await client.get("/public/feed/blog", params={"cursor": cursor})
        assert message in error_of(r, 400, "BAD_CURSOR"), cursor
        assert r.json()["errors"][0]["source"] == {"parameter": "cursor"}
        assert r.headers["cache-control"] == "no-store"
    for size in ("0", "101", "ten"):
        r = await client.get("/public/feed/blog", params={"postsPerPage": size})
        assert "postsPerPage" in error_of(r, 400, "BAD_REQUEST")
    assert "limit" in error_of(await client.get("/public/feed/blog?limit=3"), 400, "BAD_REQUEST")
    r = await client.post("/public/feed/blog")
    error_of(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "GET, HEAD"
    error_of(await client.get("/public/feed/blog", headers={"Accept": "application/vnd.api+json"}),
             406, "NOT_ACCEPTABLE")


async def test_feed_answers_match_openapi(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/api/v3/openapi.json")).json()
    for url in ("/public/feed/blog?postsPerPage=2", "/public/feed/empty", "/public/feed/unknown",
                "/public/feed/blog?cursor=x", "/public/feed/all?postsPerPage=100"):
        r = await client.get(url)
        found = openapi.response_schema(doc, "/public/feed/{flowKey}", r.status_code)
        assert found is not None, (url, r.status_code)
        media_type, schema = found
        assert r.headers["content-type"] == media_type
        assert openapi.validate(r.json(), schema, doc) == [], url


async def test_feed_cursor_is_stable_while_entries_are_published(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A cursor taken before a publish continues after it: no repeats, no older entry skipped."""
    site = make_site(tmp_path / "site", feed_site_files(12))
    store = Store(tmp_path / "state")
    first_build = build_and_publish(site, store)
    before = newest_first([r for r in live_records(store) if r["contentType"] == "blog"])
    base = await start_origin(nursery, store)
    async with httpx.AsyncClient(base_url=base) as http:
        page = (await http.get("/public/feed/blog?postsPerPage=5")).json()
        seen = [p["key"] for p in page["posts"]]
        write_files(site, {
            "blog/breaking.md": "---\ntitle: Breaking\nstatus: published\nauthor: bob\n"
                                "publishedAt: 2026-05-01T00:00:00Z\n---\nNew.\n",
            "blog/backdated.md": "---\ntitle: Backdated\nstatus: published\nauthor: bob\n"
                                 "publishedAt: 2025-04-01T13:00:00Z\n---\nOld.\n"})
        git_commit(site)
        assert build_and_publish(site, store) != first_build
        ids = {r["path"]: r["id"] for r in live_records(store)}
        rest, _ = await walk(http, "blog", per_page=5, cursor=page["cursor"])
        assert not set(seen) & set(rest)
        assert ids["blog/breaking.md"] not in rest
        assert seen + [i for i in rest if i != ids["blog/backdated.md"]] == before
        assert ids["blog/backdated.md"] in rest
        fresh = (await http.get("/public/feed/blog?postsPerPage=5")).json()
        assert fresh["posts"][0]["key"] == ids["blog/breaking.md"]


async def test_feed_definitions_follow_the_content_repo(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Editing only [feeds.*] in flowcms.toml changes no page, but the build's /public/feeds.json
    (so a publish purges the feed's answers, api:feed:<key>); the origin serves the new
    definitions at once; a site without feeds has none (404)."""
    site = make_site(tmp_path / "site")
    store = Store(tmp_path / "state")
    first = build_and_publish(site, store)
    base = await start_origin(nursery, store)
    async with httpx.AsyncClient(base_url=base) as http:
        error_of(await http.get("/public/feed/blog"), 404, "NOT_FOUND")
        write_files(site, {"flowcms.toml": TINY_SITE["flowcms.toml"] + '[feeds.blog]\ntitle = "B"\n'
                                                                       'contentType = "blog"\n'})
        git_commit(site)
        assert build_and_publish(site, store) != first
        doc = (await http.get("/public/feed/blog")).json()
        assert doc["title"] == "B"
        assert len(doc["posts"]) == 3


async def test_sample_content_feeds(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The bundled content/ defines blog, releases and edge-caching feeds; each selects what it says."""
    store = Store(tmp_path / "state")
    build_and_publish(copy_sample(tmp_path / "site"), store)
    records = live_records(store)
    selections: dict[str, Callable[[Record], bool]] = {
        "blog": lambda r: r["contentType"] == "blog",
        "releases": lambda r: "release" in r["tags"],
        "edge-caching": lambda r: "caching" in r["tags"] and r["author"] == "ken",
    }
    base = await start_origin(nursery, store)
    async with httpx.AsyncClient(base_url=base) as http:
        for flow_key, keep in selections.items():
            ids, pages = await walk(http, flow_key)
            expected = newest_first([r for r in records if keep(r)])
            assert expected, flow_key
            assert ids == expected, flow_key
            assert pages[0]["title"]
