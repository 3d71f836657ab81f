"""The origin's ASGI fast lane and its per-build answer cache.

In process, without sockets: each answer of the lane, with the cache off, on (a miss) and
on again (a hit), is the answer the Quart app alone gives: same status, same headers in the
same order, same body (HEAD: none), and the same 304 for a matching If-None-Match.

Over HTTP (hypercorn on 127.0.0.1:0): repeated requests are hits (the lane's statistics and
the admin /metrics count them), a publish drops them, 304 and HEAD come from a stored
answer, roles and identities get their own answers, GraphQL errors, load refusals (503) and
"nothing published" (503) are never stored, and the switch turns the cache off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from click.testing import CliRunner
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio
from support.asgi import Sent, call
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline import cli, origin
from pipeline.build import BuildOptions, build_site
from pipeline.origin import ANSWER_CACHE_ENV, LANE_EXTENSION, answer_cache_enabled, create_app
from pipeline.origin.answer_cache import CacheStatistics
from pipeline.origin.lane import FastLane, LaneStatistics, _route_maps
from pipeline.publish import publish
from pipeline.publisher import Publisher
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-06-01T00:00:00Z"
FEEDS = '[feeds.blog]\ntitle = "Blog"\ncontentType = "blog"\n'
LIST_QUERY = "{ contents(first: 2) { edges { node { id title } } } }"
Case = tuple[str, str, bytes, tuple[tuple[str, str], ...], str]


def build_and_publish(site: Path, store: Store) -> str:
    result = build_site(GitSource(site, "main"), store, previous=store.live(), options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return result.build_id


def site_files() -> dict[str, str]:
    return {**TINY_SITE, "flowcms.toml": TINY_SITE["flowcms.toml"] + FEEDS}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("lane")
    store = Store(root / "state")
    build_and_publish(make_site(root / "site", site_files()), store)
    return store


def lane_of(app: QuartTrio) -> FastLane:
    lane = app.extensions[LANE_EXTENSION]
    assert isinstance(lane, FastLane)
    return lane


def cache_of(app: QuartTrio) -> CacheStatistics:
    stats = lane_of(app).statistics().cache
    assert stats is not None
    return stats


def q(query: str, **more: str) -> bytes:
    return "&".join([f"query={quote(query, safe='')}", *(f"{k}={quote(v, safe='')}" for k, v in more.items())]).encode()


def cases(entry_id: str, media_id: str) -> list[Case]:
    """(method, path, query, headers, what the lane does the second time: hit | computed | quart)."""
    editor = (("X-Flowcms-Role", "Editor "),)
    return [
        ("GET", "/api/v3/contents", b"", (), "hit"),
        ("GET", "/api/v3/contents", b"limit=1", (), "hit"),
        ("HEAD", "/api/v3/contents", b"limit=1", (), "hit"),
        ("GET", "/api/v3/contents", b"limit=1&limit=2", (), "hit"),
        ("GET", "/api/v3/contents", b"status=draft", (), "hit"),
        ("GET", "/api/v3/contents", b"status=draft", editor, "hit"),
        ("GET", "/api/v3/contents", b"status=draft", (("X-Flowcms-Role", "viewer"),), "hit"),  # 403, not 401
        ("GET", "/api/v3/contents", b"status=draft", (("X-Flowcms-Subject", "sam"),), "hit"),  # 403: an identity
        ("GET", "/api/v3/posts", b"limit=abc", (), "hit"),
        ("GET", "/api/v3/posts", b"limit=", (), "hit"),
        ("GET", "/api/v3/posts", b"sort=title&limit=2&include=author&fields%5Bcontents%5D=title", (), "hit"),
        ("GET", f"/api/v3/contents/{entry_id}", b"", (("X-Request-Id", "req-1"),), "hit"),
        ("GET", f"/api/v3/posts/{entry_id}", b"", (("Accept", "application/json"),), "hit"),
        ("GET", f"/api/v3/posts/{entry_id}", b"", (("Accept", "text/html"),), "hit"),
        ("GET", "/api/v3/contents/nope", b"", (), "hit"),
        ("GET", "/api/v3/contents/caf\u00e9 au lait", b"", (), "hit"),
        ("GET", "/api/v3/contents/by-slug", b"", (), "hit"),
        ("GET", "/api/v3/contents/by-slug/first-post", b"", (), "hit"),
        ("GET", "/api/v3/contents/by-slug/not-yet", b"", (), "hit"),
        ("GET", "/api/v3/contents/by-slug/not-yet", b"", editor, "hit"),
        ("GET", "/api/v3/authors", b"", (), "hit"),
        ("GET", "/api/v3/authors/ada", b"fields%5Bauthors%5D=name", (), "hit"),
        ("GET", "/api/v3/authors/zed", b"", (), "hit"),
        ("HEAD", "/api/v3/tags", b"", (), "computed"),  # a HEAD miss stores nothing: no body to keep
        ("GET", "/api/v3/tags", b"x=1", (), "hit"),
        ("GET", "/api/v3/media", b"", (), "hit"),
        ("GET", f"/api/v3/media/{media_id}", b"", (), "hit"),
        ("GET", "/api/v3/media/med_nope", b"", (), "hit"),
        ("GET", "/api/v3/openapi.json", b"", (), "hit"),
        ("GET", "/public/feed/blog", b"", (), "hit"),
        ("GET", "/public/feed/blog", b"postsPerPage=1", (), "hit"),
        ("GET", "/public/feed/blog", b"cursor=garbage", (), "hit"),
        ("GET", "/public/feed/nope", b"", (), "hit"),
        ("GET", "/public/feed/blog/", b"postsPerPage=1", (), "hit"),  # seed 003's spellings of the feed
        ("GET", "/v1/flow/blog", b"", (), "hit"),
        ("GET", "/v1/flow/blog/", b"postsPerPage=2", (), "hit"),
        ("GET", "/v1/flow/nope/", b"", (), "hit"),
        ("GET", "/graphql", q(LIST_QUERY), (), "hit"),
        ("HEAD", "/graphql", q(LIST_QUERY), (), "hit"),
        ("GET", "/graphql", q(LIST_QUERY), (("Accept", "application/graphql-response+json"),), "hit"),
        ("GET", "/graphql", q(LIST_QUERY), (("Accept", "text/html"),), "hit"),
        ("GET", "/graphql", q("{ contents(filter: {status: DRAFT}) { totalCount } }"), (), "hit"),
        ("GET", "/graphql", q("{ contents(filter: {status: DRAFT}) { totalCount } }"), editor, "hit"),
        ("GET", "/graphql", q("{ contents(filter: {status: DRAFT}) { totalCount } }"),
         (("X-Flowcms-Subject", "sam"),), "hit"),
        ("GET", "/graphql", q("{ currentUser { id name } }"), (), "hit"),
        ("GET", "/graphql", q("{ currentUser { id name } }"), (("X-Flowcms-Subject", "ada"),), "hit"),
        ("GET", "/graphql", q("{ currentUser { id name } }"), (("X-Flowcms-Subject", "bob"),), "hit"),
        ("GET", "/graphql", q("{ contents("), (), "hit"),
        ("GET", "/graphql", q("{ contents { nope } }"), (), "hit"),
        ("GET", "/graphql", q('mutation { deleteContent(id: "x") }'), (), "hit"),
        ("GET", "/graphql", q("query A { authors { id } } query B { contents { totalCount } }",
                              operationName="B"), (), "hit"),
        ("GET", "/graphql", q("query($n: Int) { contents(first: $n) { totalCount } }", variables='{"n": 1}'),
         (), "hit"),
        ("GET", "/graphql", q("{ authors { id } }", variables="{not json"), (), "computed"),
        ("GET", "/graphql", b"", (), "computed"),
        ("GET", "/graphql", b"", (("Accept", "text/html"),), "quart"),  # the playground
        ("PUT", "/graphql", b"", (), "quart"),
        ("GET", "/graphql/", b"", (), "quart"),
        ("DELETE", "/api/v3/contents", b"", (), "quart"),
        ("GET", "/api/v3/contents/", b"", (), "quart"),
        ("GET", "/api/v3//contents", b"", (), "quart"),
        ("GET", "/api/v3", b"", (), "quart"),
        ("GET", "/api/v3/nothing/here", b"", (), "quart"),
        ("GET", "/public/feed", b"", (), "quart"),
        ("GET", "/v1/flow", b"", (), "quart"),
        ("GET", "/v1/flow/a/b/", b"", (), "quart"),
        ("GET", "/", b"", (), "quart"),
        ("GET", "/blog/", b"", (), "quart"),
    ]


def assert_same(expected: Sent, got: Sent, *, head: bool, what: str) -> None:
    assert got.status == expected.status, what
    assert got.headers == expected.headers, what
    # HEAD: hypercorn drops whatever body follows (RFC 9110 §9.3.2); the lane sends none
    assert got.body == (b"" if head else expected.body), what


async def assert_lane_answers(expected: Sent, plain: QuartTrio, cached: QuartTrio, expect: str, what: str,
                              *request: Any) -> None:
    """``request`` answers as Quart answered it (``expected``) through the lane with the cache off,
    on (first time) and on again, where the lane did ``expect`` (hit | computed | quart)."""
    head = request[0] == "HEAD"
    assert_same(expected, await call(plain, *request), head=head, what=what)
    assert_same(expected, await call(cached, *request), head=head, what=what)
    before = lane_of(cached).statistics()
    assert_same(expected, await call(cached, *request), head=head, what=what)
    after = lane_of(cached).statistics()
    assert before.cache is not None
    assert after.cache is not None
    done = {"hit": after.cache.hits - before.cache.hits, "computed": after.computed - before.computed,
            "quart": after.passed - before.passed}
    assert done == {kind: int(kind == expect) for kind in done}, what


async def test_lane_answers_exactly_as_quart_with_the_cache_off_missing_and_hitting(published: Store) -> None:
    """Every answer (status, ordered headers, body, 304) of the lane equals Quart's, cached or not."""
    plain, cached = create_app(published, answer_cache=False), create_app(published, answer_cache=True)
    quart = lane_of(plain).app
    listing = json.loads((await call(quart, "GET", "/api/v3/contents")).body)
    media = json.loads((await call(quart, "GET", "/api/v3/media")).body)
    statuses = []
    for method, path, query, headers, expect in cases(listing["data"][0]["id"], media["data"][0]["id"]):
        what = f"{method} {path}?{query!r} {headers}"
        expected = await call(quart, method, path, query, headers)
        statuses.append(expected.status)
        await assert_lane_answers(expected, plain, cached, expect, what, method, path, query, headers)
        etag = expected.header("etag")
        if etag is None:
            continue
        for if_none_match in (etag, f'"other", W/{etag}', '"other"'):
            conditional = (*headers, ("If-None-Match", if_none_match))
            expected = await call(quart, method, path, query, conditional)
            for app in (plain, cached):
                got = await call(app, method, path, query, conditional)
                assert_same(expected, got, head=method == "HEAD", what=f"{what} If-None-Match: {if_none_match}")
    assert set(statuses) == {200, 400, 401, 403, 404, 405, 406, 422}  # the cases cover every kind of answer


def post_cases() -> list[tuple[tuple[tuple[str, str], ...], list[bytes], str]]:
    """(headers, body chunks, what the lane does the second time) for POST /graphql."""
    as_json = (("Content-Type", "application/json"),)
    editor = (*as_json, ("X-Flowcms-Role", "editor"))

    def body(**fields: object) -> list[bytes]:
        return [json.dumps(fields).encode()]

    return [
        (as_json, body(query=LIST_QUERY), "hit"),
        ((("Content-Type", "Application/JSON; charset=utf-8"),), body(query=LIST_QUERY), "hit"),
        ((), body(query=LIST_QUERY), "computed"),  # no Content-Type: 415 (GraphQL over HTTP: SHOULD refuse)
        (as_json, [b'{"query": "{ contents(first: 2) ', b'{ totalCount } }"}'], "hit"),  # in two chunks
        ((*as_json, ("Accept", "application/graphql-response+json")), body(query=LIST_QUERY), "hit"),
        (as_json, body(query="query($n: Int) { contents(first: $n) { totalCount edges { node { id } } } }",
                       variables={"n": 1}), "hit"),
        (as_json, body(query="query($n: Int) { contents(first: $n) { totalCount edges { node { id } } } }",
                       variables={"n": 2}), "hit"),
        (as_json, body(query="query A { authors { id } } query B { contents { totalCount } }",
                       operationName="B"), "hit"),
        (as_json, body(query="{ contents(filter: {status: DRAFT}) { totalCount } }"), "hit"),
        (editor, body(query="{ contents(filter: {status: DRAFT}) { totalCount } }"), "hit"),
        ((*as_json, ("X-Flowcms-Subject", "sam")), body(query="{ contents(filter: {status: DRAFT}) { totalCount } }"),
         "hit"),
        ((*as_json, ("X-Flowcms-Subject", "ada")), body(query="{ currentUser { id name } }"), "hit"),
        (as_json, body(query="{ contents { nope } }"), "hit"),
        (as_json, body(query='mutation { deleteContent(id: "x") }'), "hit"),
        ((("Content-Type", "application/graphql"),), [b"{ authors { id } }"], "hit"),
        (as_json, [b"{not json"], "computed"),
        (as_json, [b"[]"], "computed"),
        (as_json, [b"\xff"], "computed"),
        (as_json, [], "computed"),
        (as_json, body(query=""), "computed"),
        (as_json, body(query=LIST_QUERY, variables=[1]), "computed"),
        ((("Content-Type", "text/plain"),), body(query=LIST_QUERY), "computed"),
        ((*as_json, ("Content-Length", str(10 * 1024 * 1024 + 1))), body(query=LIST_QUERY), "computed"),
        (as_json, [b" " * (5 * 1024 * 1024), b" " * (5 * 1024 * 1024 + 1)], "computed"),  # 413 while reading
    ]


async def test_lane_answers_graphql_posts_exactly_as_quart(published: Store) -> None:
    """POST /graphql from the lane equals Quart's endpoint, cached or not; a repeated request is
    a hit, a refusal (400, 413, 415) is computed every time."""
    plain, cached = create_app(published, answer_cache=False), create_app(published, answer_cache=True)
    quart = lane_of(plain).app
    statuses = []
    for headers, body, expect in post_cases():
        what = f"POST {headers} {body!r}"
        expected = await call(quart, "POST", "/graphql", b"", headers, body)
        statuses.append(expected.status)
        await assert_lane_answers(expected, plain, cached, expect, what, "POST", "/graphql", b"", headers, body)
    assert set(statuses) == {200, 400, 401, 403, 413, 415, 422}
    answers = {(await call(cached, "POST", "/graphql", b"", (("Content-Type", "application/json"),),
                           [json.dumps({"query": "query($n: Int) { contents(first: $n) { totalCount edges"
                                        " { node { id } } } }", "variables": {"n": n}}).encode()])).body
               for n in (1, 2)}
    assert len(answers) == 2  # variables are part of the key


async def test_a_query_string_that_is_not_utf8_is_left_to_quart(published: Store) -> None:
    """Quart fails on it (hypercorn then answers 500); the lane changes nothing about that."""
    app = create_app(published)
    for path in ("/api/v3/contents", "/graphql"):
        for target in (lane_of(app).app, app):
            with pytest.raises(ExceptionGroup) as failed:
                await call(target, "GET", path, b"query=\xff")
            assert failed.group_contains(UnicodeDecodeError)
    assert lane_of(app).statistics().passed == 2


def test_lane_routes_as_quart_url_map_does(published: Store) -> None:
    """Static rules by path, one trailing ``<name>`` segment by what precedes it; anything else is Quart's."""
    lane = lane_of(create_app(published, answer_cache=False))
    assert repr(lane) == "<FastLane [computed 0, passed 0, cache None]>"
    by_slug = lane.match("/api/v3/contents/by-slug/first-post")
    assert by_slug is not None
    assert by_slug[0] == lane.rest.content_by_slug
    assert by_slug[2] == {"slug": "first-post"}
    assert lane.match("/api/v3/contents/by-slug") == (lane.rest.content, "application/vnd.api+json",
                                                      {"entry_id": "by-slug"})
    for path in ("/public/feed/blog", "/public/feed/blog/", "/v1/flow/blog", "/v1/flow/blog/"):
        assert lane.match(path) == (lane.rest.feed, "application/json", {"flow_key": "blog"}), path
    for path in ("/api/v3/contents/", "/api/v3/contents/a/b", "/api/v3/publish/x", "/public/feed", "/api/v3",
                 "/v1/flow/", "/v1/flow/a/b/", "/public/feed/"):
        assert lane.match(path) is None, path
    exact, last, slash = _route_maps([("/a/<x>/b", "odd", lane.rest.tags, "application/json"),
                                      ("/c/<path:rest>", "rest", lane.rest.tags, "application/json"),
                                      ("/d/<path:rest>/", "rest", lane.rest.tags, "application/json")])
    assert exact == last == slash == {}


@asynccontextmanager
async def serving(app: QuartTrio, *, h2c: bool = False) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on hypercorn at 127.0.0.1:0; the client speaks HTTP/1.1, or h2c with prior knowledge."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        base = (await nursery.start(serve, app, config))[0]
        async with httpx.AsyncClient(base_url=base, timeout=30, http1=not h2c, http2=h2c) as client:
            yield client
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("h2c", [False, True], ids=["h1", "h2c"])
async def test_repeated_request_is_served_from_the_cache(published: Store, h2c: bool) -> None:
    """The second identical GET is a cache hit with the same answer; HEAD and 304 come from it too."""
    app = create_app(published)
    async with serving(app, h2c=h2c) as http:
        first = await http.get("/api/v3/posts?limit=2")
        assert (cache_of(app).hits, cache_of(app).stores) == (0, 1)
        second = await http.get("/api/v3/posts?limit=2", headers={"X-Request-Id": "another"})
        assert cache_of(app).hits == 1
        assert (second.status_code, second.content, second.headers) == (first.status_code, first.content,
                                                                          first.headers)
        head = await http.head("/api/v3/posts?limit=2")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(first.content))
        assert head.headers["etag"] == first.headers["etag"]
        not_modified = await http.get("/api/v3/posts?limit=2", headers={"If-None-Match": first.headers["etag"]})
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == first.headers["etag"]
        assert "content-type" not in not_modified.headers
        assert cache_of(app).hits == 3
        assert cache_of(app).stores == 1
        assert second.http_version == ("HTTP/2" if h2c else "HTTP/1.1")


@pytest.mark.parametrize("h2c", [False, True], ids=["h1", "h2c"])
async def test_repeated_graphql_post_is_served_from_the_cache(published: Store, h2c: bool) -> None:
    """Over hypercorn: the second identical POST is a hit with the same answer; another
    identity gets its own."""
    app = create_app(published)
    query = {"query": "query($n: Int) { contents(first: $n) { edges { node { id title } } } }", "variables": {"n": 2}}
    async with serving(app, h2c=h2c) as http:
        first = await http.post("/graphql", json=query)
        assert first.status_code == 200
        assert first.headers["cache-control"] == "no-store"
        assert len(first.json()["data"]["contents"]["edges"]) == 2
        second = await http.post("/graphql", json=query)
        assert (cache_of(app).hits, cache_of(app).stores) == (1, 1)
        assert (second.content, second.headers.get("x-build")) == (first.content, first.headers["x-build"])
        await http.post("/graphql", json=query, headers={"X-Flowcms-Subject": "ada"})
        assert (cache_of(app).hits, cache_of(app).stores) == (1, 2)
        assert second.http_version == ("HTTP/2" if h2c else "HTTP/1.1")


async def test_publish_drops_the_cached_answers(tmp_path: Path) -> None:
    """A publish moves LIVE: the next answer is computed from the new build (new X-Build, ETag)."""
    site = make_site(tmp_path / "site", site_files())
    store = Store(tmp_path / "state")
    first_build = build_and_publish(site, store)
    app = create_app(store)
    async with serving(app) as http:
        for target in ("/api/v3/posts", "/public/feed/blog", "/graphql?" + q(LIST_QUERY).decode()):
            await http.get(target)
        old = await http.get("/api/v3/posts")
        assert cache_of(app).hits == 1
        write_files(site, {"blog/fourth.md": "---\ntitle: Fourth Post\nstatus: published\nauthor: bob\n"
                                             "publishedAt: 2026-04-01T10:00:00Z\n---\nNew.\n"})
        git_commit(site)
        new_build = await trio.to_thread.run_sync(build_and_publish, site, store)
        assert new_build != first_build
        fresh = await http.get("/api/v3/posts")
        assert fresh.headers["x-build"] == new_build != old.headers["x-build"]
        assert fresh.headers["etag"] != old.headers["etag"]
        assert fresh.json()["data"][0]["attributes"]["title"] == "Fourth Post"
        feed = await http.get("/public/feed/blog")
        assert feed.json()["posts"][0]["title"] == "Fourth Post"
        graphql = await http.get("/graphql?" + q(LIST_QUERY).decode())
        assert graphql.headers["x-build"] == new_build
        stats = cache_of(app)
        assert (stats.hits, stats.invalidations, stats.entries) == (1, 1, 3)
        # the client's ETag of the old answer no longer matches: a full 200
        again = await http.get("/api/v3/posts", headers={"If-None-Match": old.headers["etag"]})
        assert again.status_code == 200


async def test_an_answer_computed_across_a_publish_is_not_stored(tmp_path: Path) -> None:
    """The live build moved while an answer was computed: it may be the old build's, so it is sent
    but not kept; the next request computes the new build's answer."""
    site = make_site(tmp_path / "site", site_files())
    store = Store(tmp_path / "state")
    first_build = build_and_publish(site, store)
    app = create_app(store)
    lane = lane_of(app)
    compute = lane.rest.dispatch

    async def dispatch_then_publish(*args: object) -> object:
        answer = await compute(*args)  # type: ignore[arg-type]
        write_files(site, {"blog/fourth.md": "---\ntitle: Fourth Post\nstatus: published\nauthor: bob\n"
                                             "publishedAt: 2026-04-01T10:00:00Z\n---\nNew.\n"})
        git_commit(site)
        await trio.to_thread.run_sync(build_and_publish, site, store)
        return answer

    lane.rest.dispatch = dispatch_then_publish  # type: ignore[method-assign]
    old = await call(app, "GET", "/api/v3/posts")
    lane.rest.dispatch = compute  # type: ignore[method-assign]
    assert old.header("x-build") == first_build
    assert cache_of(app).stores == 0
    new = await call(app, "GET", "/api/v3/posts")
    assert new.header("x-build") == store.live() != first_build
    assert cache_of(app).stores == 1


async def test_roles_and_identities_get_their_own_answers(published: Store) -> None:
    """The gateway's role (REST) and identity (GraphQL) headers are part of the key."""
    app = create_app(published)
    async with serving(app) as http:
        anonymous = [await http.get("/api/v3/contents/by-slug/not-yet") for _ in range(2)]
        editor = [await http.get("/api/v3/contents/by-slug/not-yet", headers={"X-Flowcms-Role": "editor"})
                  for _ in range(2)]
        viewer = await http.get("/api/v3/contents/by-slug/not-yet", headers={"X-Flowcms-Role": "viewer"})
        assert [r.status_code for r in anonymous + editor + [viewer]] == [404, 404, 200, 200, 404]
        assert viewer.content == anonymous[0].content  # viewer grants nothing more: the anonymous answer
        users = {}
        for subject in ("ada", "bob", "ada"):
            r = await http.get("/graphql?" + q("{ currentUser { id } }").decode(),
                               headers={"X-Flowcms-Subject": subject})
            users.setdefault(subject, r.json()["data"]["currentUser"]["id"])
        assert users == {"ada": "ada", "bob": "bob"}
        # anonymous, editor, ada: a viewer has its own key (an identity gets 403 where anonymous gets 401)
        assert cache_of(app).hits == 3


async def test_graphql_errors_are_stored_but_load_refusals_are_not(published: Store) -> None:
    """Deterministic GraphQL errors (400 syntax, 422) are kept per build; 503 (at capacity) never."""
    app = create_app(published)
    lane = lane_of(app)
    async with serving(app) as http:
        syntax = [await http.get("/graphql?" + q("{ contents(").decode()) for _ in range(2)]
        assert [r.status_code for r in syntax] == [400, 400]
        assert syntax[1].json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
        assert cache_of(app).hits == 1
        lane.graphql.max_in_flight = 0  # every execution is refused as overload
        busy = await http.get("/graphql?" + q(LIST_QUERY).decode())
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        lane.graphql.max_in_flight = 64
        ok = await http.get("/graphql?" + q(LIST_QUERY).decode())
        assert ok.status_code == 200
        assert cache_of(app).stores == 2  # the syntax error and the 200, never the 503


async def test_nothing_published_is_never_stored(tmp_path: Path) -> None:
    """503 "nothing is published yet" is not kept: the first request after a publish answers 200."""
    site = make_site(tmp_path / "site", site_files())
    store = Store(tmp_path / "state")
    app = create_app(store)
    async with serving(app) as http:
        assert (await http.get("/api/v3/posts")).status_code == 503
        assert (await http.get("/graphql?" + q(LIST_QUERY).decode())).status_code == 503
        await trio.to_thread.run_sync(build_and_publish, site, store)
        assert (await http.get("/api/v3/posts")).status_code == 200
        assert (await http.get("/graphql?" + q(LIST_QUERY).decode())).status_code == 200
        assert cache_of(app).hits == 0


async def test_switch_off_computes_every_answer(published: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """answer_cache=False (flowcms serve --no-answer-cache) or FLOWCMS_ANSWER_CACHE=0: no cache, the lane
    computes every answer."""
    monkeypatch.setenv(ANSWER_CACHE_ENV, "off")
    assert not answer_cache_enabled()
    assert answer_cache_enabled(True)
    app = create_app(published)
    async with serving(app) as http:
        answers = [await http.get("/api/v3/posts?limit=1") for _ in range(3)]
        assert len({(r.status_code, r.content) for r in answers}) == 1
        not_modified = await http.get("/api/v3/posts?limit=1", headers={"If-None-Match": answers[0].headers["etag"]})
        assert not_modified.status_code == 304
    assert lane_of(app).statistics() == LaneStatistics(computed=4, passed=0, cache=None)
    monkeypatch.delenv(ANSWER_CACHE_ENV)
    assert answer_cache_enabled()
    assert lane_of(create_app(published)).cache is not None
    assert lane_of(create_app(published, answer_cache=False)).cache is None


@pytest.mark.parametrize(("argv", "expected"), [([], None), (["--no-answer-cache"], False)])
def test_serve_passes_the_switch_to_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                            expected: bool | None) -> None:
    """`flowcms serve --no-answer-cache` builds the origin with the cache off; without it the
    environment decides (create_app's None)."""
    site = make_site(tmp_path / "site", site_files())
    build_and_publish(site, Store(site / ".flowcms"))
    made: list[bool | None] = []

    def fake_create_app(store: Store, *, answer_cache: bool | None = None) -> object:
        made.append(answer_cache)
        return object()

    monkeypatch.setattr(origin, "create_app", fake_create_app)
    monkeypatch.setattr(trio, "run", lambda *_args, **_kwargs: None)  # no server: only the wiring
    result = CliRunner().invoke(cli.main, ["--site", str(site), "serve", "--port", "0", *argv])
    assert result.exit_code == 0, result.output
    assert made == [expected]


async def test_admin_metrics_count_the_lane(published: Store, tmp_path: Path) -> None:
    """flowcms up's /metrics shows answers computed and served from the cache, and the cache's size."""
    app = create_app(published, publisher=Publisher(tmp_path, published, []), admin_token="secret")
    async with serving(app) as http:
        for _ in range(3):
            assert (await http.get("/api/v3/tags")).status_code == 200
        metrics = (await http.get("/metrics")).text.splitlines()
    assert 'flowcms_origin_api_answers_total{source="computed"} 1' in metrics
    assert 'flowcms_origin_api_answers_total{source="cache"} 2' in metrics
    assert "flowcms_origin_passed_requests_total 1" in metrics  # /metrics itself
    assert "flowcms_origin_answer_cache_entries 1" in metrics
    assert "flowcms_origin_answer_cache_enabled 1" in metrics
