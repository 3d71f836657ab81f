"""The REST delivery API (JSON:API) over real HTTP: hypercorn + quart-trio on 127.0.0.1:0.

Listings are compared against a brute-force Python filter over the build's own entry
records (STYLE.md 2.5), and every answer kind is validated against the OpenAPI document.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.index import load_entry_records, open_index
from pipeline.origin import create_app, openapi
from pipeline.origin.jsonapi import CACHE_CONTROL, SHORT_CACHE_CONTROL, media_id
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-06-01T00:00:00Z"
JSONAPI = "application/vnd.api+json"
Record = dict[str, Any]


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def api_site_files(n: int = 30) -> dict[str, Any]:
    """TINY_SITE plus ``n`` blog posts: pairs share a publishedAt (ties broken by id), titles
    out of date order, some updatedAt, two authors, three tags; plus an archived and a
    scheduled post and a PNG."""
    files: dict[str, Any] = dict(TINY_SITE)
    for i in range(n):
        tags = ["news"] if i % 2 == 0 else ["intro"]
        if i % 3 == 0:
            tags.append("tutorial")
        updated = f"updatedAt: 2025-05-{(i * 7) % 28 + 1:02d}T00:00:00Z\n" if i % 4 == 0 else ""
        body = {7: "A zebra crossing.", 8: "Zebrafish are small."}.get(i, f"Generated body number {i}.")
        files[f"blog/gen-{i:02d}.md"] = (
            f"---\ntitle: Gen {chr(ord('Z') - i % 26)} {i:02d}\nstatus: published\n"
            f"author: {'ada' if i % 2 else 'bob'}\ntags: [{', '.join(tags)}]\n"
            f"publishedAt: 2025-03-{1 + i // 2:02d}T08:00:00Z\n{updated}---\n{body}\n")
    files["blog/archived.md"] = ("---\ntitle: Old News\nstatus: archived\nauthor: ada\n"
                                 "publishedAt: 2024-01-01T00:00:00Z\n---\nGone.\n")
    files["blog/later.md"] = ("---\ntitle: Coming Soon\nstatus: published\nauthor: ada\n"
                              "publishAt: 2027-01-01T00:00:00Z\n---\nNot yet.\n")
    files["media/photo.png"] = png(3, 2)
    return files


def build_and_publish(site: Path, store: Store) -> str:
    result = build_site(GitSource(site, "main"), store, previous=store.live(), options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return result.build_id


def records_of(store: Store) -> list[Record]:
    """Every entry record of the live build (live or not), from its index."""
    build_id = store.live()
    assert build_id is not None
    conn = open_index(store.build_dir(build_id) / "index.sqlite")
    try:
        return list(load_entry_records(conn, bodies=False).values())
    finally:
        conn.close()


def ordered(records: list[Record], sort: str = "-publishedAt") -> list[str]:
    """The index's order, by brute force: (sort key, id), both reversed for descending sorts."""
    name = sort.lstrip("-")

    def key(r: Record) -> tuple[str, str]:
        if name == "updatedAt":
            return (r["updatedAt"] or r["publishedAt"] or "", r["id"])
        return (r[name] or "", r["id"])

    return [r["id"] for r in sorted(records, key=key, reverse=sort.startswith("-"))]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("api")
    store = Store(root / "state")
    build_and_publish(make_site(root / "site", api_site_files()), store)
    return store


@pytest.fixture(scope="module")
def live(published: Store) -> list[Record]:
    return [r for r in records_of(published) if r["live"]]


async def start_origin(nursery: trio.Nursery, store: Store) -> str:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    urls = await nursery.start(serve, create_app(store), config)
    return str(urls[0])


@pytest.fixture
async def client(nursery: trio.Nursery, published: Store) -> AsyncIterator[httpx.AsyncClient]:
    base = await start_origin(nursery, published)
    async with httpx.AsyncClient(base_url=base) as http:
        yield http


async def walk(client: httpx.AsyncClient, url: str) -> tuple[list[str], list[int]]:
    """Follow links.next to the end: every id seen, and meta.total of every page."""
    ids: list[str] = []
    totals: list[int] = []
    next_url: str | None = url
    while next_url:
        r = await client.get(next_url)
        assert r.status_code == 200, r.text
        doc = r.json()
        ids += [item["id"] for item in doc["data"]]
        totals.append(doc["meta"]["total"])
        next_url = doc["links"]["next"]
    return ids, totals


def error_of(r: httpx.Response, status: int, code: str, parameter: str | None = None) -> dict[str, Any]:
    """The one error object of an error answer, checked for status, code and source."""
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    (error,) = r.json()["errors"]
    assert (error["status"], error["code"]) == (str(status), code)
    assert error["title"]
    assert error["detail"]
    if parameter is not None:
        assert error["source"] == {"parameter": parameter}
    return error


async def test_seed_example_posts_published_limit_20(client: httpx.AsyncClient, live: list[Record]) -> None:
    """GET /api/v3/posts?status=published&limit=20 works as the seed writes it."""
    r = await client.get("/api/v3/posts?status=published&limit=20")
    assert r.status_code == 200
    assert r.headers["content-type"] == JSONAPI
    doc = r.json()
    blog = [x for x in live if x["contentType"] == "blog"]
    assert [item["id"] for item in doc["data"]] == ordered(blog)[:20]
    assert all(item["type"] == "contents" and item["attributes"]["contentType"] == "blog" for item in doc["data"])
    assert all("body" not in item["attributes"] for item in doc["data"])
    assert doc["meta"]["total"] == len(blog) == 33
    assert doc["links"]["self"] == "/api/v3/posts?status=published&limit=20"
    assert doc["links"]["next"].startswith("/api/v3/posts?status=published&limit=20&cursor=")
    assert all(item["attributes"]["publishedAt"].endswith("Z") for item in doc["data"])
    upper = await client.get("/api/v3/posts?status=PUBLISHED&limit=20")
    assert upper.json()["data"] == doc["data"]
    default = await client.get("/api/v3/contents")
    assert len(default.json()["data"]) == 20
    # seed 000's fetch URL, the API host's /v3/posts: a 308 to /api/v3/posts with the query kept
    alias = await client.get("/v3/posts?status=published&limit=20")
    assert (alias.status_code, alias.headers["location"]) == (308, "/api/v3/posts?status=published&limit=20")
    followed = await client.get("/v3/posts?status=published&limit=20", follow_redirects=True)
    assert followed.json()["data"] == doc["data"]
    assert (await client.get("/v2/posts")).status_code == 404  # the site's own 404 elsewhere


FILTERS: list[tuple[str, Callable[[Record], bool]]] = [
    ("contentType=docs", lambda r: r["contentType"] == "docs"),
    ("tag=news", lambda r: "news" in r["tags"]),
    ("tag=tutorial&authorId=bob", lambda r: "tutorial" in r["tags"] and r["author"] == "bob"),
    ("authorId=ada", lambda r: r["author"] == "ada"),
    ("dateFrom=2025-03-05&dateTo=2025-03-07", lambda r: "2025-03-05" <= r["publishedAt"][:10] <= "2025-03-07"),
    ("dateFrom=2026-02-01T10:00:00Z", lambda r: r["publishedAt"] >= "2026-02-01T10:00:00Z"),
    ("dateTo=2025-03-02T08:00:00%2B00:00", lambda r: r["publishedAt"] <= "2025-03-02T08:00:00Z"),
    ("search=zebra%20", lambda r: r["path"] == "blog/gen-07.md"),  # a whole word: no prefix match
    ("search=zebr", lambda r: r["path"] in ("blog/gen-07.md", "blog/gen-08.md")),
    ("search=generated%20number&tag=intro", lambda r: r["path"].startswith("blog/gen-") and "intro" in r["tags"]
     and r["path"] not in ("blog/gen-07.md", "blog/gen-08.md")),
    ("status=published&contentType=blog&tag=nosuchtag", lambda r: False),
]


@pytest.mark.parametrize(("query", "keep"), FILTERS, ids=[q for q, _ in FILTERS])
async def test_filters_match_brute_force(client: httpx.AsyncClient, live: list[Record], query: str,
                                         keep: Callable[[Record], bool]) -> None:
    r = await client.get(f"/api/v3/contents?{query}&limit=100")
    assert r.status_code == 200, r.text
    expected = ordered([x for x in live if keep(x)])
    assert [item["id"] for item in r.json()["data"]] == expected
    assert r.json()["meta"]["total"] == len(expected)


@pytest.mark.parametrize("sort", ["publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt"])
async def test_sorts_match_brute_force(client: httpx.AsyncClient, live: list[Record], sort: str) -> None:
    r = await client.get(f"/api/v3/contents?sort={sort}&limit=100")
    assert [item["id"] for item in r.json()["data"]] == ordered(live, sort)


@pytest.mark.parametrize(("query", "keep", "sort"), [
    ("limit=7", lambda r: True, "-publishedAt"),
    ("limit=4&sort=title", lambda r: True, "title"),
    ("limit=3&sort=updatedAt&tag=news", lambda r: "news" in r["tags"], "updatedAt"),
    ("limit=1&sort=publishedAt&authorId=bob&contentType=blog", lambda r: r["author"] == "bob", "publishedAt"),
])
async def test_cursor_walk_sees_every_entry_once(client: httpx.AsyncClient, live: list[Record], query: str,
                                                 keep: Callable[[Record], bool], sort: str) -> None:
    """Following links.next collects exactly the matching entries, in order, without repeats."""
    ids, totals = await walk(client, f"/api/v3/contents?{query}")
    expected = ordered([x for x in live if keep(x)], sort)
    assert ids == expected
    assert len(set(ids)) == len(ids)
    assert set(totals) == {len(expected)}


async def test_limit_bounds(client: httpx.AsyncClient) -> None:
    assert len((await client.get("/api/v3/contents?limit=1")).json()["data"]) == 1
    assert len((await client.get("/api/v3/contents?limit=100")).json()["data"]) == 34
    for bad in ("0", "101", "abc", "-1", "1.5", ""):
        error_of(await client.get("/api/v3/contents", params={"limit": bad}), 400, "BAD_REQUEST", "limit")


async def test_include_author_and_sparse_fieldsets(client: httpx.AsyncClient, live: list[Record]) -> None:
    r = await client.get("/api/v3/contents?include=author&limit=5&fields[authors]=name")
    doc = r.json()
    linked = {item["relationships"]["author"]["data"]["id"] for item in doc["data"] if "relationships" in item}
    assert {a["id"] for a in doc["included"]} == linked
    assert all(a["type"] == "authors" and a["attributes"] == {"name": a["attributes"]["name"]}
               for a in doc["included"])
    sparse = (await client.get("/api/v3/contents?fields[contents]=title,slug&limit=3")).json()
    assert all(set(item["attributes"]) == {"title", "slug"} and "relationships" not in item
               for item in sparse["data"])
    assert "included" not in sparse
    bodies = (await client.get("/api/v3/posts?fields[contents]=title,body&limit=2")).json()
    assert all(item["attributes"]["body"].startswith("<") for item in bodies["data"])
    error_of(await client.get("/api/v3/contents?include=comments"), 400, "BAD_REQUEST", "include")
    error_of(await client.get("/api/v3/contents?fields[contents]=secret"), 400, "BAD_REQUEST", "fields[contents]")
    error_of(await client.get("/api/v3/contents?fields[tags]=name"), 400, "BAD_REQUEST", "fields[tags]")


async def test_single_entries_agree_with_the_published_json(client: httpx.AsyncClient, live: list[Record]) -> None:
    """By id, by slug and as a post: the resource the build published as /…/index.json."""
    first = next(x for x in live if x["slug"] == "first-post")
    published = (await client.get("/blog/first-post/index.json")).json()
    r = await client.get(f"/api/v3/contents/{first['id']}?include=author")
    assert r.status_code == 200
    assert r.headers["content-type"] == JSONAPI
    doc = r.json()
    for member in ("type", "id", "attributes", "relationships"):
        assert doc["data"][member] == published["data"][member], member
    assert [a["attributes"] for a in doc["included"]] == [a["attributes"] for a in published["included"]]
    assert doc["links"]["self"] == f"/api/v3/contents/{first['id']}?include=author"  # as asked (JSON:API)
    assert "build" not in doc.get("meta", {})  # in X-Build only: an unchanged answer keeps its ETag across builds
    assert r.headers["x-build"]
    by_slug = (await client.get("/api/v3/contents/by-slug/first-post")).json()
    assert by_slug["data"] == doc["data"]
    typed = await client.get("/api/v3/contents/by-slug/first-post?contentType=blog&fields[contents]=title")
    assert typed.json()["data"]["attributes"] == {"title": "First Post"}
    assert (await client.get(f"/api/v3/posts/{first['id']}")).json()["data"] == doc["data"]
    docs_entry = next(x for x in live if x["contentType"] == "docs")
    error_of(await client.get(f"/api/v3/posts/{docs_entry['id']}"), 404, "NOT_FOUND")
    error_of(await client.get("/api/v3/contents/by-slug/first-post?contentType=docs"), 404, "NOT_FOUND")
    error_of(await client.get("/api/v3/contents/by-slug/first-post?bogus=1"), 400, "BAD_REQUEST", "bogus")


async def test_unpublished_entries_are_404_unless_editor(client: httpx.AsyncClient, published: Store) -> None:
    """Drafts, archived and scheduled entries: 404 (no right to know); the editor role sees them, uncached."""
    hidden = [r for r in records_of(published) if not r["live"]]
    assert {r["status"] for r in hidden} == {"draft", "archived", "published"}  # published: scheduled
    for record in hidden:
        r = await client.get(f"/api/v3/contents/{record['id']}")
        error_of(r, 404, "NOT_FOUND")
        assert r.headers["cache-control"] == CACHE_CONTROL  # publishing the entry purges api:<id>
        assert r.headers["surrogate-key"] == f"api:{record['id']}"
        assert r.headers["vary"] == "Accept, Content-Type, X-Flowcms-Role"
        assert "etag" in r.headers
        seen = await client.get(f"/api/v3/contents/{record['id']}", headers={"X-Flowcms-Role": "editor"})
        assert seen.status_code == 200
        assert seen.headers["cache-control"] == "no-store"
        assert seen.json()["data"]["attributes"]["status"] == record["status"]
    error_of(await client.get("/api/v3/contents/by-slug/not-yet"), 404, "NOT_FOUND")
    slug = await client.get("/api/v3/contents/by-slug/not-yet", headers={"X-Flowcms-Role": "admin"})
    assert slug.status_code == 200
    assert slug.headers["cache-control"] == "no-store"


async def test_drafts_listing_needs_the_editor_role(client: httpx.AsyncClient, published: Store) -> None:
    """Seed 002: anonymous (no credential) is a 401 with a Bearer challenge; a viewer's or a
    role-less token's identity is a 403; an editor lists them, uncached."""
    for status in ("draft", "archived", "DRAFT"):
        r = await client.get(f"/api/v3/contents?status={status}")
        error_of(r, 401, "UNAUTHENTICATED", "status")
        assert r.headers["www-authenticate"] == 'Bearer realm="flowcms"'
        assert r.headers["cache-control"] == "no-store"
        viewer = await client.get(f"/api/v3/contents?status={status}", headers={"X-Flowcms-Role": "viewer"})
        error_of(viewer, 403, "FORBIDDEN", "status")
        roleless = await client.get(f"/api/v3/contents?status={status}", headers={"X-Flowcms-Subject": "sam"})
        assert roleless.status_code == 403
        editor = await client.get(f"/api/v3/contents?status={status}", headers={"X-Flowcms-Role": "editor"})
        assert editor.status_code == 200
        assert editor.headers["cache-control"] == "no-store"
        expected = [x for x in records_of(published) if x["status"] == status.lower()]
        assert [item["id"] for item in editor.json()["data"]] == ordered(expected)


async def test_query_errors_name_the_parameter(client: httpx.AsyncClient) -> None:
    cases = [
        ("/api/v3/contents?bogus=1", "BAD_REQUEST", "bogus"),
        ("/api/v3/contents?tag=a&tag=b", "BAD_REQUEST", "tag"),
        ("/api/v3/contents?sort=random", "BAD_REQUEST", "sort"),
        ("/api/v3/contents?status=gone", "BAD_REQUEST", "status"),
        ("/api/v3/contents?dateFrom=yesterday", "BAD_REQUEST", "dateFrom"),
        ("/api/v3/contents?dateTo=2026-02-30", "BAD_REQUEST", "dateTo"),
        ("/api/v3/contents?contentType=", "BAD_REQUEST", "contentType"),
        ("/api/v3/contents?cursor=not-a-cursor", "BAD_CURSOR", "cursor"),
        ("/api/v3/posts?contentType=docs", "BAD_REQUEST", "contentType"),
        ("/api/v3/authors?limit=5", "BAD_REQUEST", "limit"),
        ("/api/v3/tags?x=1", "BAD_REQUEST", "x"),
        ("/api/v3/media?x=1", "BAD_REQUEST", "x"),
        ("/api/v3/contents?search=%ff", "BAD_REQUEST", "search"),  # not UTF-8: not searched for as "%FF"
        ("/api/v3/contents?limit=2&tag=caf%E9", "BAD_REQUEST", "tag"),
        ("/public/feed/x?cursor=%C3%28", "BAD_REQUEST", "cursor"),
    ]
    for url, code, parameter in cases:
        r = await client.get(url)
        error = error_of(r, 400, code, parameter)
        assert r.headers["cache-control"] == "no-store", url
        assert parameter in error["detail"] or code == "BAD_CURSOR", error
    assert (await client.get("/api/v3/contents?search=%25FF")).status_code == 200  # a literal "%FF" is fine
    page = (await client.get("/api/v3/contents?limit=2&sort=title")).json()
    cursor = page["links"]["next"].split("cursor=", 1)[1]
    other = await client.get(f"/api/v3/contents?limit=2&sort=-publishedAt&cursor={cursor}")
    assert "sort" in error_of(other, 400, "BAD_CURSOR", "cursor")["detail"]


async def test_methods_accept_and_unknown_routes(client: httpx.AsyncClient) -> None:
    for url in ("/api/v3/contents", "/api/v3/posts/x", "/api/v3/tags", "/api/v3/openapi.json", "/public/feed/x"):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            r = await client.request(method, url, content=b"{}")
            error_of(r, 405, "METHOD_NOT_ALLOWED")
            assert r.headers["allow"] == "GET, HEAD"
            assert r.headers["cache-control"] == "no-store"
    error_of(await client.get("/api/v3/contents", headers={"Accept": "text/html"}), 406, "NOT_ACCEPTABLE")
    error_of(await client.get("/api/v3/contents", headers={"Accept": "application/vnd.api+json;q=0"}),
             406, "NOT_ACCEPTABLE")
    error_of(await client.get("/api/v3/openapi.json", headers={"Accept": "application/xml"}), 406, "NOT_ACCEPTABLE")
    for accept in ("application/json", "application/vnd.api+json", "text/html, */*;q=0.1",
                   'application/vnd.api+json; profile="https://example.com/p"'):
        ok = await client.get("/api/v3/contents?limit=1", headers={"Accept": accept})
        assert ok.status_code == 200
        assert ok.headers["vary"] == "Accept, Content-Type, X-Flowcms-Role"  # the same URL may be a 406
    # JSON:API 1.1: its instances decide once named (even beside */*); no extensions are supported
    for accept in ("application/vnd.api+json; charset=utf-8, */*",
                   'application/vnd.api+json; ext="https://jsonapi.org/ext/atomic"'):
        error_of(await client.get("/api/v3/contents?limit=1", headers={"Accept": accept}), 406, "NOT_ACCEPTABLE")
    for content_type in ("application/vnd.api+json; charset=utf-8",
                         'application/vnd.api+json; ext="https://jsonapi.org/ext/atomic"'):
        r = await client.get("/api/v3/contents?limit=1", headers={"Content-Type": content_type})
        error_of(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert r.headers["cache-control"] == "no-store"
    assert (await client.get("/api/v3/tags")).headers["vary"] == "Accept, Content-Type"
    assert (await client.get("/public/feed/x")).headers["vary"] == "Accept, Content-Type"
    for url in ("/api/v3", "/api/v3/nothing", "/api/v3/contents/", "/api/v3/contents/a/b", "/api/v3/",
                "/api/v3//contents"):
        r = await client.get(url)
        error_of(r, 404, "NOT_FOUND")
        assert r.headers["content-type"] == JSONAPI
        assert r.headers["cache-control"] == SHORT_CACHE_CONTROL
    for url in ("/public/feed/", "/public/feed//blog", "/v1/flow/"):  # JSON, not the site's 404 page
        r = await client.get(url)
        assert (r.status_code, r.headers["content-type"]) == (404, "application/json"), url
        assert r.json()["errors"][0]["code"] == "NOT_FOUND"
    r = await client.get("/graphql/x")  # GraphQL's own error shape
    assert r.status_code == 404
    assert r.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND", "statusCode": 404, "path": None}


async def test_caching_headers_etag_304_head_and_surrogate_keys(client: httpx.AsyncClient, published: Store,
                                                                live: list[Record]) -> None:
    r = await client.get("/api/v3/posts?limit=5")
    assert r.headers["etag"] == f'"{blake3.blake3(r.content).hexdigest()[:32]}"'
    assert r.headers["cache-control"] == CACHE_CONTROL
    assert r.headers["x-build"] == published.live()
    assert r.headers["vary"] == "Accept, Content-Type, X-Flowcms-Role"
    ids = [item["id"] for item in r.json()["data"]]
    assert r.headers["surrogate-key"].split() == ["api:type:blog", *(f"api:{i}" for i in ids)]
    for inm in (r.headers["etag"], "W/" + r.headers["etag"], f'"nope", {r.headers["etag"]}'):
        nm = await client.get("/api/v3/posts?limit=5", headers={"If-None-Match": inm})
        assert nm.status_code == 304
        assert nm.content == b""
        assert nm.headers["etag"] == r.headers["etag"]
        assert nm.headers["surrogate-key"] == r.headers["surrogate-key"]
        assert "content-type" not in nm.headers
    assert (await client.get("/api/v3/posts?limit=5", headers={"If-None-Match": '"nope"'})).status_code == 200
    head = await client.head("/api/v3/posts?limit=5")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(r.content))
    assert head.headers["etag"] == r.headers["etag"]
    keyed = {
        "/api/v3/contents?tag=news&limit=2": ["api:tag:news"],
        "/api/v3/contents?authorId=ada&limit=2": ["api:author:ada"],
        "/api/v3/contents?search=zebra%20": ["api:contents"],
        "/api/v3/contents?dateFrom=2025-01-01&limit=2": ["api:contents"],
        "/api/v3/authors": ["api:authors"],
        "/api/v3/authors/ada": ["api:authors", "api:author:ada"],
        "/api/v3/tags": ["api:tags"],
        "/api/v3/media": ["api:media"],
    }
    for url, keys in keyed.items():
        answer = await client.get(url)
        assert answer.headers["cache-control"] == CACHE_CONTROL, url
        data = answer.json()["data"]
        shown = [f"api:{item['id']}" for item in data] if url.startswith("/api/v3/contents") else []
        assert answer.headers["surrogate-key"].split() == keys + shown, url
        again = await client.get(url, headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304, url
    one = await client.get(f"/api/v3/contents/{ids[0]}")
    assert one.headers["surrogate-key"] == f"api:{ids[0]}"
    assert (await client.head(f"/api/v3/contents/{ids[0]}")).headers["etag"] == one.headers["etag"]


async def test_authors_tags_and_media(client: httpx.AsyncClient, published: Store, live: list[Record]) -> None:
    authors = (await client.get("/api/v3/authors")).json()
    assert [a["id"] for a in authors["data"]] == ["ada", "bob"]
    assert authors["data"][0]["attributes"] == {"name": "Ada Lovelace", "bio": "First programmer.",
                                                "url": None, "avatar": None}
    assert authors["meta"]["total"] == 2
    ada = (await client.get("/api/v3/authors/ada?fields[authors]=name")).json()
    assert ada["data"]["attributes"] == {"name": "Ada Lovelace"}
    error_of(await client.get("/api/v3/authors/nobody"), 404, "NOT_FOUND")
    tags = (await client.get("/api/v3/tags")).json()
    expected: dict[str, int] = {}
    for record in live:
        for tag in record["tags"]:
            expected[tag] = expected.get(tag, 0) + 1
    assert {t["id"]: t["attributes"]["count"] for t in tags["data"]} == expected
    assert [t["id"] for t in tags["data"]] == sorted(expected)
    media = (await client.get("/api/v3/media")).json()
    manifest = published.manifest(published.live() or "")
    by_url = {m["attributes"]["url"]: m for m in media["data"]}
    assert set(by_url) == {p for p in manifest if p.startswith("/media/")} == {"/media/logo.svg", "/media/photo.png"}
    assert by_url["/media/photo.png"]["attributes"] == {
        "filename": "photo.png", "url": "/media/photo.png", "mimeType": "image/png",
        "size": manifest["/media/photo.png"].size, "width": 3, "height": 2}
    assert by_url["/media/logo.svg"]["attributes"]["width"] == 1
    assert by_url["/media/logo.svg"]["id"] == media_id("/media/logo.svg")
    one = await client.get(f"/api/v3/media/{media_id('/media/photo.png')}")
    assert one.json()["data"] == by_url["/media/photo.png"]
    missing = await client.get("/api/v3/media/med_000000000000")
    error_of(missing, 404, "NOT_FOUND")
    assert missing.headers["surrogate-key"] == "api:media"


async def test_no_live_build_is_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    base = await start_origin(nursery, Store(tmp_path / "empty"))
    async with httpx.AsyncClient(base_url=base) as http:
        for url in ("/api/v3/contents", "/api/v3/posts/x", "/api/v3/tags", "/public/feed/blog"):
            r = await http.get(url)
            error_of(r, 503, "NOT_PUBLISHED")
            assert r.headers["cache-control"] == "no-store"
        assert (await http.get("/api/v3/openapi.json")).status_code == 200  # needs no build


async def test_unexpected_failure_is_a_bare_500(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A bug answers 500 INTERNAL_ERROR with nothing of its cause, and logs the traceback."""
    import pipeline.origin.rest as rest

    def broken(*args: object) -> None:
        raise RuntimeError("secret /etc/passwd detail")

    monkeypatch.setattr(rest, "query_entries", broken)
    r = await client.get("/api/v3/contents")
    error_of(r, 500, "INTERNAL_ERROR")
    assert "secret" not in r.text
    assert "RuntimeError" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert any(rec.exc_info for rec in caplog.records if rec.name == "pipeline.origin.rest")


async def test_cursor_is_stable_while_entries_are_published(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A cursor from the old build continues on the new one: nothing repeated, nothing older skipped."""
    files = api_site_files(12)
    site = make_site(tmp_path / "site", files)
    store = Store(tmp_path / "state")
    first_build = build_and_publish(site, store)
    before = [r for r in records_of(store) if r["live"] and r["contentType"] == "blog"]
    base = await start_origin(nursery, store)
    async with httpx.AsyncClient(base_url=base) as http:
        page = (await http.get("/api/v3/posts?limit=5")).json()
        seen = [item["id"] for item in page["data"]]
        # a new newest post and a new old one (after the cursor), then rebuild and publish
        write_files(site, {
            "blog/breaking.md": "---\ntitle: Breaking\nstatus: published\nauthor: bob\n"
                                "publishedAt: 2026-05-01T00:00:00Z\n---\nNew.\n",
            "blog/backdated.md": "---\ntitle: Backdated\nstatus: published\nauthor: bob\n"
                                 "publishedAt: 2025-03-02T09:00:00Z\n---\nOld.\n"})
        git_commit(site)
        assert build_and_publish(site, store) != first_build
        after = {r["path"]: r["id"] for r in records_of(store)}
        rest, _ = await walk(http, page["links"]["next"])
        assert not set(seen) & set(rest)
        assert after["blog/breaking.md"] not in rest  # newer than the cursor: on a fresh first page
        assert after["blog/backdated.md"] in rest  # older than the cursor: shown in order
        assert set(seen) | set(rest) == {r["id"] for r in before} | {after["blog/backdated.md"]}
        fresh_answer = await http.get("/api/v3/posts?limit=5")
        fresh = fresh_answer.json()
        assert fresh["data"][0]["id"] == after["blog/breaking.md"]
        assert fresh_answer.headers["x-build"] != first_build


ANSWERS: list[tuple[str, str, dict[str, str]]] = [
    ("/api/v3/contents", "/api/v3/contents?include=author&limit=3", {}),
    ("/api/v3/contents", "/api/v3/contents?fields[contents]=title,body,toc,author&limit=2", {}),
    ("/api/v3/contents", "/api/v3/contents?status=draft", {"X-Flowcms-Role": "editor"}),
    ("/api/v3/contents", "/api/v3/contents?status=draft", {}),
    ("/api/v3/contents", "/api/v3/contents?limit=0", {}),
    ("/api/v3/contents", "/api/v3/contents", {"Accept": "text/html"}),
    ("/api/v3/contents", "/api/v3/contents", {"Accept": 'application/vnd.api+json; ext="https://x.test/e"'}),
    ("/api/v3/contents", "/api/v3/contents", {"Content-Type": "application/vnd.api+json; charset=utf-8"}),
    ("/api/v3/contents/{id}", "/api/v3/contents/{first}?include=author", {}),
    ("/api/v3/contents/{id}", "/api/v3/contents/nope", {}),
    ("/api/v3/contents/by-slug/{slug}", "/api/v3/contents/by-slug/second-post", {}),
    ("/api/v3/posts", "/api/v3/posts?status=published&limit=20", {}),
    ("/api/v3/posts/{id}", "/api/v3/posts/{first}", {}),
    ("/api/v3/authors", "/api/v3/authors", {}),
    ("/api/v3/authors/{key}", "/api/v3/authors/bob", {}),
    ("/api/v3/authors/{key}", "/api/v3/authors/zed", {}),
    ("/api/v3/tags", "/api/v3/tags", {}),
    ("/api/v3/media", "/api/v3/media", {}),
    ("/api/v3/media/{id}", "/api/v3/media/{media}", {}),
    ("/api/v3/openapi.json", "/api/v3/openapi.json", {}),
    ("/public/feed/{flowKey}", "/public/feed/none", {}),
]


async def test_openapi_describes_every_route_and_real_answers(client: httpx.AsyncClient, live: list[Record],
                                                              tmp_path: Path) -> None:
    r = await client.get("/api/v3/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc == openapi.document()
    routes = {rule.rule for rule in create_app(Store(tmp_path)).url_map.iter_rules()
              if rule.rule.startswith(("/api/v3/", "/public/feed/", "/v1/flow/")) and "<path:" not in rule.rule}
    templated = {openapi_path(rule) for rule in routes}
    assert templated == set(doc["paths"])
    assert_refs_resolve(doc, doc)
    first = next(x["id"] for x in live if x["slug"] == "first-post")
    for template, url, headers in ANSWERS:
        url = url.format(first=first, media=media_id("/media/logo.svg"))
        answer = await client.get(url, headers=headers)
        assert_matches_openapi(doc, template, answer)
        nm = await client.get(url, headers={**headers, "If-None-Match": answer.headers.get("etag", '"x"')})
        assert_matches_openapi(doc, template, nm)
    assert_matches_openapi(doc, "/api/v3/contents", await client.post("/api/v3/contents"), method_error=True)


@pytest.mark.parametrize(("status", "code"), [(401, "UNAUTHENTICATED"), (413, "PAYLOAD_TOO_LARGE"),
                                              (429, "RATE_LIMITED")])
def test_gateway_refusals_fit_the_openapi_error_document(status: int, code: str) -> None:
    """The edge gateway answers for every REST route (401, 429, 413): the document describes its
    refusals, and their bodies are the document's ErrorDocument."""
    from edgeproxy.gateway import Deny, Role, Route
    from edgeproxy.replies import denial_reply

    doc = openapi.document()
    for prefix, media_type in ((b"/api/v3", b"application/vnd.api+json"), (b"/public/feed", b"application/json")):
        reply = denial_reply(Deny(status, code, "refused"), Route(prefix=prefix, public=True,
                                                                  min_role=Role.VIEWER, graphql=False))
        assert openapi.validate(json.loads(reply.body), doc["components"]["schemas"]["ErrorDocument"], doc) == []
        assert (b"content-type", media_type) in reply.fields  # the media type of that API's own errors
    if status != 413:  # 413 is about request bodies, which these GET operations do not take
        assert all(str(status) in op["get"]["responses"] for op in doc["paths"].values())
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def openapi_path(rule: str) -> str:
    renamed = {"entry_id": "id", "media_id": "id", "flow_key": "flowKey"}
    for name in ("entry_id", "media_id", "flow_key", "slug", "key"):
        rule = rule.replace(f"<{name}>", "{" + renamed.get(name, name) + "}")
    return rule


def assert_refs_resolve(node: Any, doc: dict[str, Any]) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
        for value in node.values():
            assert_refs_resolve(value, doc)
    elif isinstance(node, list):
        for value in node:
            assert_refs_resolve(value, doc)


def assert_matches_openapi(doc: dict[str, Any], template: str, r: httpx.Response, *,
                           method_error: bool = False) -> None:
    """The answer's status is documented for the operation, and its body fits the schema."""
    responses = doc["paths"][template]["get"]["responses"]
    assert str(r.status_code) in responses, (template, r.status_code)
    if r.status_code == 304:
        assert r.content == b""
        return
    found = openapi.response_schema(doc, template, r.status_code)
    assert found is not None
    media_type, schema = found
    assert r.headers["content-type"] == media_type
    errors = openapi.validate(r.json(), schema, doc)
    assert not errors, (template, r.status_code, errors[:5])
    if r.status_code == 200:
        for name in responses["200"]["headers"]:
            assert name.lower() in r.headers or (name == "X-Build" and template.endswith("openapi.json")), name
    assert method_error is (r.status_code == 405)
