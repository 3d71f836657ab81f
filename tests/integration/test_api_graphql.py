"""GraphQL at /graphql over real HTTP: the origin (hypercorn + quart-trio) on 127.0.0.1:0.

The queries are seed 001's, verbatim except for ids and slugs adapted to the sample site.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio
from support.sites import copy_sample

from pipeline.build import BuildOptions, build_site
from pipeline.index import EntryQuery, query_entries
from pipeline.origin import create_app, graphql_schema
from pipeline.origin.graphql_api import MAX_BODY_BYTES, METHODS, GraphQLApi
from pipeline.origin.graphql_schema import media_id
from pipeline.origin.live import LiveIndex, Snapshot
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-11-20T00:00:00Z"
CACHEABLE = "public, max-age=0, s-maxage=31536000, stale-while-revalidate=60, stale-if-error=86400"

SEED_FIRST_QUERY = """# Your first FlowCMS GraphQL query
{
contents(first: 5, filter: { status: PUBLISHED }) {
edges {
node {
id
title
slug
status
author {
name
avatar
}
}
}
pageInfo {
hasNextPage
endCursor
}
}
}"""

SEED_CONTENT = """{
content(id: "cnt_7f3k2m") {
id
title
slug
body
status
publishedAt
updatedAt
author {
id
name
email
}
media {
url
alt
}
}
}"""

SEED_CONTENT_BY_SLUG = """{
contentBySlug(slug: "etags-explained") {
id
title
slug
body
excerpt
featuredImage {
url
width
height
}
}
}"""

SEED_CONTENTS = """{
contents(
first: 10
filter: {
status: PUBLISHED
contentType: "blog"
search: "graphql"
}
sort: "-publishedAt"
) {
edges {
cursor
node {
id
title
slug
excerpt
status
publishedAt
tags
}
}
pageInfo {
hasNextPage
hasPreviousPage
startCursor
endCursor
}
}
}"""

SEED_MEDIA = """{
media(id: "MEDIA_ID") {
id
filename
url
mimeType
size
width
height
alt
uploadedAt
}
}"""

SEED_CURRENT_USER = """{
currentUser {
id
name
email
role
avatar
organization {
name
slug
}
}
}"""


def published_sample(tmp_path: Path) -> Store:
    source = copy_sample(tmp_path / "site")
    store = Store(tmp_path / "state")
    result = build_site(GitSource(source, "main"), store, previous=None, options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return store


@asynccontextmanager
async def serving(app: QuartTrio) -> AsyncIterator[httpx.AsyncClient]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        base = (await nursery.start(serve, app, config))[0]
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
        nursery.cancel_scope.cancel()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return published_sample(tmp_path)


def index_read(store: Store, fn: Callable[[Snapshot], Any]) -> Any:
    return LiveIndex(store).read_sync(fn)


def assert_seed_error(body: dict[str, Any], code: str, status: int, path: list[str] | None) -> None:
    """seed 001's error shape: message, path, extensions {code, statusCode, path}."""
    error = body["errors"][0]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["path"] == path
    assert error["extensions"] == {"code": code, "statusCode": status, "path": path}


async def test_seed_first_query_over_post(store: Store) -> None:
    """seed 001's first query, POSTed as JSON: five published entries with authors, no-store."""
    async with serving(create_app(store)) as client:
        r = await client.post("/graphql", json={"query": SEED_FIRST_QUERY})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-build"] == store.live()
    body = r.json()
    assert "errors" not in body
    edges = body["data"]["contents"]["edges"]
    expected = index_read(store, lambda s: query_entries(s.conn, EntryQuery(limit=5, status="published")))
    assert [edge["node"]["id"] for edge in edges] == [entry["id"] for entry in expected.entries]
    assert {edge["node"]["status"] for edge in edges} == {"PUBLISHED"}
    assert all(edge["node"]["author"]["name"] and edge["node"]["author"]["avatar"].startswith("/media/")
               for edge in edges)
    assert body["data"]["contents"]["pageInfo"] == {"hasNextPage": True, "endCursor": expected.next_cursor}


async def test_seed_item_queries(store: Store) -> None:
    """seed 001's content(id), contentBySlug, media and filtered contents queries."""
    path = "/media/diagrams/etag-revalidation.svg"
    async with serving(create_app(store)) as client:
        content = (await client.post("/graphql", json={"query": SEED_CONTENT})).json()["data"]["content"]
        by_slug = (await client.post("/graphql", json={"query": SEED_CONTENT_BY_SLUG})).json()
        media = (await client.post("/graphql", json={"query": SEED_MEDIA.replace("MEDIA_ID", media_id(path))}))
        contents = (await client.post("/graphql", json={"query": SEED_CONTENTS})).json()
    assert content["id"] == "cnt_7f3k2m"
    assert content["status"] == "PUBLISHED"
    assert content["publishedAt"] == "2025-04-02T09:00:00Z"
    assert content["updatedAt"] == "2025-06-03T08:00:00Z"
    assert content["author"] == {"id": "ken", "name": "Ken Matsuda", "email": "ken@flowcms.example"}
    assert content["media"] == [{"url": path, "alt": "A conditional request answered with 304 Not Modified"}]
    assert "<h2" in content["body"]
    assert by_slug["data"]["contentBySlug"]["id"] == "cnt_7f3k2m"
    assert by_slug["data"]["contentBySlug"]["excerpt"]
    assert by_slug["data"]["contentBySlug"]["featuredImage"] == {"url": path, "width": 640, "height": 300}
    assert media.status_code == 200
    assert media.json()["data"]["media"] == {
        "id": media_id(path), "filename": "etag-revalidation.svg", "url": path, "mimeType": "image/svg+xml",
        "size": store.manifest(store.live() or "")[path].size, "width": 640, "height": 300,
        "alt": None, "uploadedAt": AS_OF}
    edges = contents["data"]["contents"]["edges"]
    expected = index_read(store, lambda s: query_entries(s.conn, EntryQuery(
        limit=10, status="published", content_type="blog", search="graphql", sort="-publishedAt")))
    assert [edge["node"]["id"] for edge in edges] == [entry["id"] for entry in expected.entries]
    assert edges
    assert all(edge["cursor"] for edge in edges)
    assert contents["data"]["contents"]["pageInfo"]["hasPreviousPage"] is False


async def test_seed_current_user(store: Store) -> None:
    """seed 001's currentUser: UNAUTHENTICATED without the gateway's identity, the user with it."""
    async with serving(create_app(store)) as client:
        anonymous = await client.post("/graphql", json={"query": SEED_CURRENT_USER})
        signed_in = await client.post("/graphql", json={"query": SEED_CURRENT_USER}, headers={
            "X-Flowcms-Subject": "ada", "X-Flowcms-Role": "admin", "X-Flowcms-Org": "flowcms"})
    assert anonymous.status_code == 200  # data is present: {"currentUser": null}
    assert anonymous.json()["data"] == {"currentUser": None}
    assert_seed_error(anonymous.json(), "UNAUTHENTICATED", 401, ["currentUser"])
    assert signed_in.json()["data"]["currentUser"] == {
        "id": "ada", "name": "Ada Okafor", "email": "ada@flowcms.example", "role": "admin",
        "avatar": "/media/avatars/ada.svg", "organization": {"name": "flowcms", "slug": "flowcms"}}


async def test_every_error_code(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of seed 001's codes with its statusCode, path and HTTP status."""
    async with serving(create_app(store)) as client:
        async def post(query: str, **kwargs: Any) -> httpx.Response:
            return await client.post("/graphql", json={"query": query}, **kwargs)

        r = await post('{ contentBySlug(slug: "old-post") { id } }')
        assert r.status_code == 404
        assert r.json()["data"] is None  # seed 001's example as written
        assert r.json()["errors"][0]["message"] == "Content with slug 'old-post' not found"
        assert_seed_error(r.json(), "NOT_FOUND", 404, ["contentBySlug"])
        r = await post('{ media(id: "med_xyz789") { id } }')
        assert_seed_error(r.json(), "NOT_FOUND", 404, ["media"])

        r = await post("{ contents(filter: {status: DRAFT}) { totalCount } }")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="flowcms"'
        assert r.json()["data"] is None
        assert_seed_error(r.json(), "UNAUTHENTICATED", 401, ["contents"])
        r = await post("{ contents(filter: {status: DRAFT}) { totalCount } }", headers={"X-Flowcms-Role": "viewer"})
        assert r.status_code == 403
        assert_seed_error(r.json(), "FORBIDDEN", 403, ["contents"])
        r = await post("{ contents(filter: {status: DRAFT}) { totalCount } }", headers={"X-Flowcms-Role": "editor"})
        assert r.status_code == 200
        assert r.json()["data"]["contents"]["totalCount"] > 0

        r = await post("{ currentUser { id } }")
        assert_seed_error(r.json(), "UNAUTHENTICATED", 401, ["currentUser"])

        r = await post("{ contents(first: 101) { totalCount } }")
        assert r.status_code == 422
        assert_seed_error(r.json(), "VALIDATION_ERROR", 422, ["contents"])
        r = await post("{ contents { nope } }")
        assert r.status_code == 422
        assert_seed_error(r.json(), "VALIDATION_ERROR", 422, None)
        r = await post("{ contents(")
        assert r.status_code == 400
        assert_seed_error(r.json(), "VALIDATION_ERROR", 400, None)
        r = await post('mutation { deleteContent(id: "cnt_7f3k2m") }')
        assert r.status_code == 422
        assert "mutation" in r.json()["errors"][0]["message"]

        def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("a bug with secrets in its message")

        monkeypatch.setattr(graphql_schema, "query_entries", broken)
        r = await post("{ contents { totalCount } }")
        assert r.status_code == 500
        assert r.json()["errors"][0]["message"] == "internal error"
        assert_seed_error(r.json(), "INTERNAL_ERROR", 500, ["contents"])


async def test_at_capacity_when_too_many_requests_are_in_flight(store: Store) -> None:
    """Past the in-flight limit the origin answers 503 (INTERNAL_ERROR, seed 002's "capacity
    reached") with Retry-After at once, and serves again when the work drains."""

    class GatedLive:
        def __init__(self, live: LiveIndex) -> None:
            self.live = live
            self.entered = trio.Event()
            self.gate = trio.Event()

        async def read(self, fn: Callable[[Snapshot], Any]) -> Any:
            self.entered.set()
            await self.gate.wait()
            return await self.live.read(fn)

    gated = GatedLive(LiveIndex(store))
    app = QuartTrio("test")
    app.add_url_rule("/graphql", "graphql", GraphQLApi(gated, max_in_flight=1).endpoint,  # type: ignore[arg-type]
                     methods=METHODS)
    first: list[httpx.Response] = []
    async with serving(app) as client:
        async with trio.open_nursery() as nursery:
            async def slow() -> None:
                first.append(await client.post("/graphql", json={"query": "{ authors { id } }"}))

            nursery.start_soon(slow)
            await gated.entered.wait()
            r = await client.post("/graphql", json={"query": "{ authors { id } }"})
            assert r.status_code == 503  # seed 002: capacity reached (429 is a client's own rate limit)
            assert r.headers["retry-after"] == "1"
            assert r.headers["cache-control"] == "no-store"
            assert_seed_error(r.json(), "INTERNAL_ERROR", 503, None)
            assert "at capacity" in r.json()["errors"][0]["message"]
            gated.gate.set()
        assert first[0].status_code == 200
        assert (await client.post("/graphql", json={"query": "{ authors { id } }"})).status_code == 200


async def test_depth_and_cost_limits(store: Store) -> None:
    """Too deep or too costly: VALIDATION_ERROR 422 with a message naming the limit."""
    deep = ("{ contents { totalCount } __schema { types { fields { type { fields { type { fields { type { fields"
            " { type { name" + " }" * 11)
    flood = "{ " + " ".join(f"p{i}: contents(first: 100) {{ edges {{ node {{ id }} }} }}" for i in range(30)) + " }"
    async with serving(create_app(store)) as client:
        r = await client.post("/graphql", json={"query": deep})
        assert r.status_code == 422
        assert r.json()["errors"][0]["message"] == "query depth 11 exceeds the limit of 10"
        r = await client.post("/graphql", json={"query": flood})
        assert r.status_code == 422
        assert "exceeds the limit of 5000" in r.json()["errors"][0]["message"]
        assert_seed_error(r.json(), "VALIDATION_ERROR", 422, None)


@pytest.mark.parametrize("sort", ["-publishedAt", "title", "updatedAt"])
async def test_pagination_walks_forward_and_backward_in_index_order(store: Store, sort: str) -> None:
    """first/after and last/before walks over HTTP both list every entry once, in index order."""
    reference = index_read(store, lambda s: query_entries(s.conn, EntryQuery(limit=100, sort=sort)))
    expected = [entry["id"] for entry in reference.entries]
    query = ("query Page($first: Int, $after: String, $last: Int, $before: String, $sort: String) {"
             " contents(first: $first, after: $after, last: $last, before: $before, sort: $sort) {"
             " totalCount edges { node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }")
    async with serving(create_app(store)) as client:
        async def page(**variables: Any) -> dict[str, Any]:
            r = await client.post("/graphql", json={"query": query, "variables": {"sort": sort, **variables}})
            assert r.status_code == 200, r.text
            return r.json()["data"]["contents"]

        forward: list[str] = []
        after = None
        while True:
            connection = await page(first=9, after=after)
            forward += [edge["node"]["id"] for edge in connection["edges"]]
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]
        backward: list[str] = []
        before = None
        while True:
            connection = await page(last=9, before=before)
            backward = [edge["node"]["id"] for edge in connection["edges"]] + backward
            if not connection["pageInfo"]["hasPreviousPage"]:
                break
            before = connection["pageInfo"]["startCursor"]
    assert connection["totalCount"] == len(expected)
    assert forward == expected
    assert backward == expected


async def test_get_is_cacheable_with_etag_and_surrogate_keys(store: Store) -> None:
    """GET answers: ETag, 304 on If-None-Match, Surrogate-Key, X-Build, the page Cache-Control."""
    async with serving(create_app(store)) as client:
        r = await client.get("/graphql", params={"query": SEED_CONTENT})
        assert r.status_code == 200
        assert r.headers["cache-control"] == CACHEABLE
        assert r.headers["x-build"] == store.live()
        assert r.headers["etag"].startswith('"')
        assert set(r.headers["surrogate-key"].split()) == {"api:contents", "api:cnt_7f3k2m", "api:authors",
                                                           "api:media"}
        assert "X-Flowcms-Role" in r.headers["vary"]
        again = await client.get("/graphql", params={"query": SEED_CONTENT})
        assert again.headers["etag"] == r.headers["etag"]
        assert again.content == r.content
        nm = await client.get("/graphql", params={"query": SEED_CONTENT}, headers={"If-None-Match": r.headers["etag"]})
        assert nm.status_code == 304
        assert nm.content == b""
        assert nm.headers["etag"] == r.headers["etag"]
        assert nm.headers["surrogate-key"] == r.headers["surrogate-key"]
        assert "content-type" not in nm.headers
        # the same bytes as another media type are another representation: another strong ETag
        other = await client.get("/graphql", params={"query": SEED_CONTENT},
                                 headers={"Accept": "application/graphql-response+json"})
        assert other.content == r.content
        assert other.headers["etag"] != r.headers["etag"]
        crossed = await client.get("/graphql", params={"query": SEED_CONTENT}, headers={
            "Accept": "application/graphql-response+json", "If-None-Match": r.headers["etag"]})
        assert crossed.status_code == 200

        listing = await client.get("/graphql", params={
            "query": "query Page($n: Int) { contents(first: $n) { edges { node { id } } } }",
            "variables": json.dumps({"n": 3}), "operationName": "Page"})
        assert listing.status_code == 200
        ids = [edge["node"]["id"] for edge in listing.json()["data"]["contents"]["edges"]]
        assert set(listing.headers["surrogate-key"].split()) == {"api:contents", *(f"api:{i}" for i in ids)}
        authors = await client.get("/graphql", params={"query": "{ authors { id } }"})
        assert "api:authors" in authors.headers["surrogate-key"].split()

        # errors, or an answer that depends on the gateway's identity headers: never shared
        for params, headers in (({"query": '{ content(id: "nope") { id } }'}, {}),
                                ({"query": "{ currentUser { id } }"}, {"X-Flowcms-Subject": "ada"}),
                                ({"query": "{ contents { totalCount } }"}, {"X-Flowcms-Role": "editor"})):
            r = await client.get("/graphql", params=params, headers=headers)
            assert r.headers["cache-control"] == "no-store", params
        public = await client.get("/graphql", params={"query": "{ contents { totalCount } }"},
                                  headers={"X-Flowcms-Subject": "ada", "X-Flowcms-Role": "viewer"})
        assert public.headers["cache-control"] == CACHEABLE

        post = await client.post("/graphql", json={"query": "{ authors { id } }"})
        assert post.headers["cache-control"] == "no-store"
        assert "etag" not in post.headers


async def test_methods_media_types_and_bad_requests(store: Store) -> None:
    """405 for a GET mutation and other methods, 400 for bad JSON, 415, graphql-response+json."""
    async with serving(create_app(store)) as client:
        r = await client.get("/graphql", params={"query": 'mutation { deleteContent(id: "x") }'})
        assert r.status_code == 405
        assert "POST" in r.headers["allow"]
        assert_seed_error(r.json(), "VALIDATION_ERROR", 405, None)
        r = await client.put("/graphql", json={"query": "{ authors { id } }"})
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD, POST, OPTIONS"

        r = await client.post("/graphql", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert_seed_error(r.json(), "VALIDATION_ERROR", 400, None)
        r = await client.post("/graphql", json=[{"query": "{ authors { id } }"}])
        assert r.status_code == 400
        r = await client.post("/graphql", json={"query": "{ authors { id } }", "variables": [1]})
        assert r.status_code == 400
        r = await client.post("/graphql", content=b"query=x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = await client.post("/graphql", content=b'{"query": "{ authors { id } }"}')  # no Content-Type
        assert r.status_code == 415
        assert "data" not in r.json()  # refused before execution
        r = await client.get("/graphql")
        assert r.status_code == 400
        assert "query parameter" in r.json()["errors"][0]["message"]
        r = await client.get("/graphql", params={"query": "{ authors { id } }", "variables": "{"})
        assert r.status_code == 400

        r = await client.post("/graphql", content=b"{ authors { id } }", headers={"Content-Type": "application/graphql"})
        assert r.json()["data"]["authors"][0] == {"id": "ada"}
        r = await client.post("/graphql", json={"query": "{ authors { id } }"},
                              headers={"Accept": "application/graphql-response+json"})
        assert r.headers["content-type"] == "application/graphql-response+json; charset=utf-8"


async def test_too_large_query_and_body_are_413(store: Store) -> None:
    """A query past 20 KB is 413; a body declared past 10 MB is 413 before it is sent."""
    async with serving(create_app(store)) as client:
        padding = "#" + "x" * (20 * 1024) + "\n"
        r = await client.post("/graphql", json={"query": padding + "{ authors { id } }"})
        assert r.status_code == 413
        assert_seed_error(r.json(), "VALIDATION_ERROR", 413, None)
        port = int(str(client.base_url).rstrip("/").rsplit(":", 1)[1])

        # Raw HTTP/1.1: headers only, announcing 11 MB; the answer comes without any body sent.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(conn.send(h11.Request(method="POST", target="/graphql", headers=[
            ("Host", "127.0.0.1"), ("Content-Type", "application/json"),
            ("Content-Length", str(MAX_BODY_BYTES + 1))])))
        response = None
        body = b""
        with trio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        await stream.aclose()
        assert response is not None
        assert response.status_code == 413
        assert json.loads(body)["errors"][0]["extensions"]["statusCode"] == 413


async def test_nothing_published_is_503(tmp_path: Path) -> None:
    async with serving(create_app(Store(tmp_path / "empty"))) as client:
        r = await client.post("/graphql", json={"query": "{ authors { id } }"})
    assert r.status_code == 503
    assert r.json()["errors"][0]["message"] == "nothing is published yet"


async def test_playground_for_browsers(store: Store) -> None:
    """A browser's GET without a query gets the playground: self-contained, strict CSP, 304-able."""
    async with serving(create_app(store)) as client:
        r = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "connect-src 'self'" in r.headers["content-security-policy"]
        assert "http://" not in r.text
        assert "https://" not in r.text
        assert "contents(first: 5, filter: { status: PUBLISHED })" in r.text
        nm = await client.get("/graphql", headers={"Accept": "text/html", "If-None-Match": r.headers["etag"]})
        assert nm.status_code == 304
        # the same URL with a query is the API, even from a browser
        api = await client.get("/graphql", params={"query": "{ authors { id } }"}, headers={"Accept": "text/html"})
        assert api.headers["content-type"] == "application/json; charset=utf-8"
