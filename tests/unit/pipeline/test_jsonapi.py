"""jsonapi: query validation, resource shapes, error documents and answers, without I/O."""

from __future__ import annotations

import ast
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.documents import canonical_json
from pipeline.errors import QueryError
from pipeline.index import MAX_LIMIT, SORTS, EntryQuery
from pipeline.origin import jsonapi
from pipeline.origin.jsonapi import (
    CACHE_CONTROL,
    JSONAPI_MEDIA_TYPE,
    NO_STORE,
    SHORT_CACHE_CONTROL,
    ApiError,
    parse_list_params,
    parse_single_params,
)
from pipeline.origin.static import PAGE_CACHE_CONTROL

ROOT = Path(__file__).resolve().parents[3]
PURE_MODULES = ("pipeline/origin/jsonapi.py", "pipeline/origin/feed.py", "pipeline/origin/openapi.py")
PURE_IMPORTS = {"pipeline.config", "pipeline.cursor", "pipeline.dates", "pipeline.documents", "pipeline.errors",
                "pipeline.origin.conditional", "pipeline.origin.jsonapi", "pipeline.origin.feed", "pipeline"}
FORBIDDEN = {"trio", "socket", "sqlite3", "os", "time", "pathlib", "shutil", "subprocess", "logging", "quart",
             "quart_trio", "hypercorn"}

RECORD = {
    "id": "cnt_1", "title": "Hello", "slug": "hello", "contentType": "blog", "status": "published",
    "excerpt": "Hi.", "tags": ["news"], "publishedAt": "2026-01-01T10:00:00Z", "updatedAt": None,
    "readingMinutes": 1, "url": "/blog/hello/", "fields": {"mood": "happy"}, "author": "ada",
    "toc": [{"id": "a", "title": "A", "level": 2}], "bodyBlob": "x", "live": True,
}
ADA = {"key": "ada", "name": "Ada", "bio": None, "url": None, "avatar": "/media/a.svg", "email": "a@x"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_api_core_modules_import_no_io(module: str) -> None:
    """The JSON:API, feed and OpenAPI cores are pure (STYLE.md 2.1): no I/O or framework imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    bad = {n for n in names if n.split(".")[0] in FORBIDDEN
           or (n.startswith("pipeline") and n not in PURE_IMPORTS)}
    assert not bad


def test_constants_agree_with_the_index_and_pages() -> None:
    """Limits, sorts and page caching are the index's and static.py's, copied to stay pure."""
    assert jsonapi.MAX_LIMIT == MAX_LIMIT
    assert set(jsonapi.SORTS) == set(SORTS)
    assert CACHE_CONTROL == PAGE_CACHE_CONTROL


def test_list_params_defaults_build_an_entry_query() -> None:
    """No parameters: live entries, newest first, 20 per page, keyed api:contents."""
    params = parse_list_params((), posts=False, role=None)
    query = EntryQuery(**params.query)
    assert (query.sort, query.limit, query.live_only, query.status) == ("-publishedAt", 20, True, None)
    assert params.keys == ("api:contents",)
    assert params.public
    assert not params.include_author
    assert not params.bodies


def test_list_params_map_every_filter() -> None:
    args = (("status", "PUBLISHED"), ("contentType", "docs"), ("tag", "news"), ("search", "cache"),
            ("authorId", "ada"), ("dateFrom", "2026-01-01"), ("dateTo", "2026-02-01T00:00:00Z"),
            ("sort", "title"), ("limit", "100"), ("include", "author"), ("fields[contents]", "title,body"))
    params = parse_list_params(args, posts=False, role=None)
    query = EntryQuery(**params.query)
    assert (query.status, query.content_type, query.tag, query.search, query.author_id) == (
        "published", "docs", "news", "cache", "ada")
    assert (query.date_from, query.date_to, query.sort, query.limit) == ("2026-01-01", "2026-02-01T00:00:00Z",
                                                                         "title", 100)
    assert params.keys == ("api:type:docs", "api:tag:news", "api:author:ada")
    assert params.include_author
    assert params.bodies
    assert params.args == args


def test_posts_are_blog_and_refuse_content_type() -> None:
    """/posts is contentType blog; a contentType parameter there is a 400 naming it."""
    params = parse_list_params((("status", "published"), ("limit", "20")), posts=True, role=None)
    assert params.query["content_type"] == "blog"
    assert params.keys == ("api:type:blog",)
    with pytest.raises(ApiError) as info:
        parse_list_params((("contentType", "blog"),), posts=True, role=None)
    assert (info.value.status, info.value.parameter) == (400, "contentType")


@pytest.mark.parametrize(("args", "parameter"), [
    ((("bogus", "1"),), "bogus"),
    ((("page[size]", "1"),), "page[size]"),
    ((("tag", "a"), ("tag", "b")), "tag"),
    ((("limit", "0"),), "limit"),
    ((("limit", "101"),), "limit"),
    ((("limit", "abc"),), "limit"),
    ((("limit", "-1"),), "limit"),
    ((("limit", "1.5"),), "limit"),
    ((("limit", "٣"),), "limit"),
    ((("sort", "random"),), "sort"),
    ((("status", "gone"),), "status"),
    ((("tag", " "),), "tag"),
    ((("include", "comments"),), "include"),
    ((("fields[contents]", "title,secret"),), "fields[contents]"),
    ((("fields[authors]", "email"),), "fields[authors]"),
])
def test_list_params_reject_with_the_parameter_named(args: tuple[tuple[str, str], ...], parameter: str) -> None:
    """Unknown parameters and bad values are 400s whose source.parameter names the culprit."""
    with pytest.raises(ApiError) as info:
        parse_list_params(args, posts=False, role=None)
    assert info.value.status == 400
    assert info.value.parameter == parameter
    assert info.value.to_json()["source"] == {"parameter": parameter}


def test_limit_bounds_are_inclusive() -> None:
    for limit in ("1", "100", " 7 "):
        assert parse_list_params((("limit", limit),), posts=False, role=None).query["limit"] == int(limit)


def test_drafts_need_the_editor_role() -> None:
    """status=draft/archived: 403 without the gateway's role; with it, not live-only and never stored."""
    for status in ("draft", "ARCHIVED"):
        with pytest.raises(ApiError) as info:
            parse_list_params((("status", status),), posts=False, role=None)
        assert (info.value.status, info.value.code) == (403, "FORBIDDEN")
        params = parse_list_params((("status", status),), posts=False, role="editor")
        assert params.query["live_only"] is False
        assert not params.public
    published = parse_list_params((("status", "published"),), posts=False, role="admin")
    assert published.query["live_only"] is True
    assert published.public


def test_role_of_accepts_only_editor_roles() -> None:
    assert jsonapi.role_of(" Editor ") == "editor"
    assert jsonapi.role_of("admin") == "admin"
    assert jsonapi.role_of("viewer") is None
    assert jsonapi.role_of(None) is None


def test_single_params() -> None:
    params = parse_single_params((("include", "author"), ("fields[authors]", "name")))
    assert params.include_author
    assert params.fields.authors == {"name"}
    assert parse_single_params((("contentType", "docs"),), by_slug=True).content_type == "docs"
    with pytest.raises(ApiError):
        parse_single_params((("contentType", "docs"),))


def test_query_error_names_the_api_parameter() -> None:
    """The index names EntryQuery fields; the API answer names query parameters."""
    with pytest.raises(QueryError) as info:
        EntryQuery(date_from="yesterday")
    error = jsonapi.query_error(info.value)
    assert (error.status, error.code, error.parameter) == (400, "BAD_REQUEST", "dateFrom")
    assert error.detail.startswith("dateFrom must be")
    with pytest.raises(QueryError) as info:
        EntryQuery(cursor="!!")
    assert jsonapi.query_error(info.value).code == "BAD_CURSOR"


@pytest.mark.parametrize(("accept", "jsonapi_ok", "json_ok"), [
    (None, True, True),
    ("", True, True),
    ("*/*", True, True),
    ("application/*", True, True),
    ("application/json", True, True),
    ("application/vnd.api+json", True, False),
    ("application/vnd.api+json; charset=utf-8", False, False),
    ('application/vnd.api+json; profile="https://example.com/p"', True, False),  # unknown profiles: ignored
    ('application/vnd.api+json; ext="https://jsonapi.org/ext/atomic"', False, False),  # no extensions here
    ('application/vnd.api+json; ext="https://x", application/vnd.api+json', True, False),
    # JSON:API 1.1: once its type is named, its instances decide, even beside application/json or */*
    ("application/vnd.api+json; foo=bar, application/json", False, True),
    ("application/vnd.api+json; foo=bar, */*", False, True),
    ("application/vnd.api+json;q=0, application/json", True, True),
    ("text/html", False, False),
    ("text/html, application/json;q=0", False, False),
    ("text/html;q=0.9, */*;q=0.1", True, True),
    ("application/json;q=bogus", False, False),
])
def test_is_acceptable(accept: str | None, jsonapi_ok: bool, json_ok: bool) -> None:
    """RFC 9110 §12.5.1 media ranges with q; JSON:API forbids its type with other parameters."""
    assert jsonapi.is_acceptable(accept, jsonapi=True) is jsonapi_ok
    assert jsonapi.is_acceptable(accept, jsonapi=False) is json_ok


@pytest.mark.parametrize(("raw", "name"), [
    (b"", None), (b"limit=2&search=caf%C3%A9", None), (b"search=%25FF", None), (b"search=+a+b", None),
    (b"search=%ff", "search"), (b"limit=2&tag=caf%E9", "tag"), (b"%ff=1", "\ufffd"),
    (b"fields%5Bcontents%5D=%C3%28", "fields[contents]"),
])
def test_undecodable_parameter(raw: bytes, name: str | None) -> None:
    """Percent-escapes that are not UTF-8 name their parameter (a 400), not other text."""
    assert jsonapi.undecodable_parameter(raw) == name


@pytest.mark.parametrize(("content_type", "refused"), [
    (None, False),
    ("application/json", False),
    ("application/vnd.api+json", False),
    ('application/vnd.api+json; profile="https://example.com/p"', False),
    ("application/vnd.api+json; charset=utf-8", True),
    ('application/vnd.api+json; ext="https://jsonapi.org/ext/atomic"', True),
    ("text/plain; charset=utf-8", False),  # not JSON:API's rule to judge
])
def test_content_type_problem(content_type: str | None, refused: bool) -> None:
    """JSON:API 1.1: its media type in Content-Type with foreign parameters or extensions is a 415."""
    assert (jsonapi.content_type_problem(content_type) is not None) is refused


def test_content_resource_shape_and_sparse_fields() -> None:
    """Lists: no body/toc; single answers: both; fields[contents] keeps only the named members."""
    listed = jsonapi.content_resource(RECORD, body=None, toc=False, fields=None)
    assert listed["type"] == "contents"
    assert listed["id"] == "cnt_1"
    assert set(listed["attributes"]) == set(jsonapi.CONTENT_ATTRIBUTES)
    assert listed["relationships"] == {"author": {"data": {"type": "authors", "id": "ada"}}}
    assert listed["links"] == {"self": "/api/v3/contents/cnt_1", "html": "/blog/hello/"}
    single = jsonapi.content_resource(RECORD, body="<p>x</p>", toc=True, fields=None)
    assert single["attributes"]["body"] == "<p>x</p>"
    assert single["attributes"]["toc"] == RECORD["toc"]
    sparse = jsonapi.content_resource(RECORD, body=None, toc=False, fields=frozenset({"title", "slug"}))
    assert sparse["attributes"] == {"title": "Hello", "slug": "hello"}
    assert "relationships" not in sparse
    with_author = jsonapi.content_resource(RECORD, body=None, toc=False, fields=frozenset({"author"}))
    assert with_author["attributes"] == {}
    assert "relationships" in with_author
    anonymous = jsonapi.content_resource({**RECORD, "author": None}, body=None, toc=False, fields=None)
    assert "relationships" not in anonymous


def test_author_resource_leaves_out_email() -> None:
    resource = jsonapi.author_resource(ADA)
    assert resource["attributes"] == {"name": "Ada", "bio": "", "url": None, "avatar": "/media/a.svg"}
    assert jsonapi.author_resource({**ADA, "name": None})["attributes"]["name"] == "ada"
    assert jsonapi.author_resource(ADA, fields=frozenset({"name"}))["attributes"] == {"name": "Ada"}


def test_list_and_single_documents() -> None:
    params = parse_list_params((("include", "author"), ("limit", "1")), posts=False, role=None)
    doc = jsonapi.list_document([RECORD], params, path="/api/v3/contents", bodies={}, authors={"ada": ADA},
                                total=5, next_cursor="abc", build_id="b1")
    assert doc["meta"] == {"total": 5}  # the build is in X-Build, not the body (ETags survive builds)
    assert [a["id"] for a in doc["included"]] == ["ada"]
    assert doc["links"] == {"self": "/api/v3/contents?include=author&limit=1",
                            "first": "/api/v3/contents?include=author&limit=1",
                            "next": "/api/v3/contents?include=author&limit=1&cursor=abc"}
    single = jsonapi.single_document(RECORD, parse_single_params(()), path="/p", body="<p/>", authors={},
                                     build_id="b1")
    assert single["data"]["attributes"]["body"] == "<p/>"
    assert "included" not in single
    sparse = jsonapi.single_document(RECORD, parse_single_params((("fields[contents]", "title"),)), path="/p",
                                     body="<p/>", authors={}, build_id="b1")
    assert sparse["data"]["attributes"] == {"title": "Hello"}


class Derived:
    """RecordCache.derive's contract (a value made once per key), counting the makes."""

    def __init__(self) -> None:
        self.values: dict[object, object] = {}
        self.made = 0

    def derive(self, key: object, make: Callable[[], object]) -> object:
        if key not in self.values:
            self.made += 1
            self.values[key] = make()
        return self.values[key]


@pytest.mark.parametrize("args", [(), (("limit", "1"),), (("include", "author"),), (("fields[contents]", "title"),),
                                  (("fields[contents]", "title,toc"),)])
def test_list_documents_with_derived_resources_are_the_same_bytes(args: tuple[tuple[str, str], ...]) -> None:
    """Serialised-once resources change nothing in the answer; only the plain shape is kept."""
    other = {**RECORD, "id": "cnt_2", "title": "Zweite Seite ü", "tags": ["a", "b"], "author": None}
    params = parse_list_params(args, posts=False, role=None)
    derived = Derived()
    kwargs = {"path": "/api/v3/contents", "bodies": {}, "authors": {"ada": ADA}, "total": 2,
              "next_cursor": None, "build_id": "b1"}
    plain = canonical_json(jsonapi.list_document([RECORD, other], params, **kwargs))
    for _ in range(2):
        assert canonical_json(jsonapi.list_document([RECORD, other], params, derive=derived.derive, **kwargs)) == plain
    assert derived.made == (2 if params.fields.contents is None else 0)


def test_page_links_replace_the_cursor_and_encode() -> None:
    links = jsonapi.page_links("/api/v3/posts", [("fields[contents]", "title,slug"), ("cursor", "old"),
                                                 ("search", "a b&c")], "new")
    assert links["self"] == "/api/v3/posts?fields%5Bcontents%5D=title,slug&cursor=old&search=a%20b%26c"
    assert links["first"] == "/api/v3/posts?fields%5Bcontents%5D=title,slug&search=a%20b%26c"
    assert links["next"] == "/api/v3/posts?fields%5Bcontents%5D=title,slug&search=a%20b%26c&cursor=new"
    assert jsonapi.page_links("/x", [], None) == {"self": "/x", "first": "/x", "next": None}


def test_header_keys_dedupe_and_fall_back_to_broader_keys() -> None:
    """A key that is no header token becomes the key purged whenever it would be."""
    keys = ["api:type:blog", "api:cnt_1", "api:cnt_1", "api:tag:café", "api:tag:two words", "api:author:é",
            "api:id with space"]
    assert jsonapi.header_keys(keys) == "api:type:blog api:cnt_1 api:tags api:authors api:contents"


def test_respond_etag_304_and_head() -> None:
    """ETag = blake3 of the canonical bytes; If-None-Match (weak comparison) gives 304; HEAD no body."""
    doc = {"data": [], "meta": {"total": 0}}
    full = jsonapi.respond(200, doc, method="GET", media_type=JSONAPI_MEDIA_TYPE, cache_control=CACHE_CONTROL,
                           keys=("api:contents",), build_id="b1", vary="X-Flowcms-Role")
    headers = dict(full.headers)
    assert full.body == b'{"data":[],"meta":{"total":0}}'
    assert headers["ETag"] == f'"{blake3.blake3(full.body).hexdigest()[:32]}"'
    assert headers["Content-Length"] == str(len(full.body))
    assert (headers["Surrogate-Key"], headers["X-Build"], headers["Vary"]) == ("api:contents", "b1",
                                                                               "X-Flowcms-Role")
    for inm in (headers["ETag"], "W/" + headers["ETag"], f'"other", {headers["ETag"]}', "*"):
        nm = jsonapi.respond(200, doc, method="GET", media_type=JSONAPI_MEDIA_TYPE,
                             cache_control=CACHE_CONTROL, if_none_match=inm)
        assert nm.status == 304
        assert nm.body == b""
        assert "Content-Type" not in dict(nm.headers)
        assert dict(nm.headers)["ETag"] == headers["ETag"]
    head = jsonapi.respond(200, doc, method="HEAD", media_type=JSONAPI_MEDIA_TYPE, cache_control=CACHE_CONTROL)
    assert head.body == b""
    assert dict(head.headers)["Content-Length"] == str(len(full.body))


def test_error_answers() -> None:
    """404 is cacheable (long with purge keys, briefly without); other errors are no-store, no ETag."""
    nf = jsonapi.error_answer(ApiError(404, "no entry", keys=("api:cnt_9",)), method="GET",
                              media_type=JSONAPI_MEDIA_TYPE)
    assert nf.status == 404
    assert dict(nf.headers)["Cache-Control"] == CACHE_CONTROL
    assert "ETag" in dict(nf.headers)
    assert dict(nf.headers)["Surrogate-Key"] == "api:cnt_9"
    brief = jsonapi.error_answer(ApiError(404, "no route"), method="GET", media_type=JSONAPI_MEDIA_TYPE)
    assert dict(brief.headers)["Cache-Control"] == SHORT_CACHE_CONTROL
    nm = jsonapi.error_answer(ApiError(404, "x", keys=("k",)), method="GET", media_type=JSONAPI_MEDIA_TYPE)
    assert nm.status == 404  # If-None-Match is not evaluated for errors (RFC 9110 §13.2.1)
    bad = jsonapi.error_answer(ApiError(405, "read-only", allow="GET, HEAD"), method="POST",
                               media_type=JSONAPI_MEDIA_TYPE)
    headers = dict(bad.headers)
    assert headers["Cache-Control"] == NO_STORE
    assert "ETag" not in headers
    assert headers["Allow"] == "GET, HEAD"
    assert bad.body == (b'{"errors":[{"code":"METHOD_NOT_ALLOWED","detail":"read-only","status":"405",'
                        b'"title":"Method not allowed"}]}')


@pytest.mark.parametrize(("status", "code"), [
    (400, "BAD_REQUEST"), (401, "UNAUTHENTICATED"), (403, "FORBIDDEN"), (404, "NOT_FOUND"),
    (405, "METHOD_NOT_ALLOWED"), (406, "NOT_ACCEPTABLE"), (409, "CONFLICT"), (413, "PAYLOAD_TOO_LARGE"),
    (415, "UNSUPPORTED_MEDIA_TYPE"), (422, "VALIDATION_ERROR"), (429, "RATE_LIMITED"),
    (500, "INTERNAL_ERROR"), (503, "NOT_PUBLISHED"),
])
def test_error_model_covers_the_seed_statuses(status: int, code: str) -> None:
    """Seed 002's statuses with seed 001's codes, as JSON:API error objects."""
    error = ApiError(status, "why")
    assert jsonapi.error_document(error) == {"errors": [{"status": str(status), "code": code,
                                                          "title": jsonapi.ERRORS[status][1], "detail": "why"}]}


def test_validation_errors_point_at_fields() -> None:
    error = ApiError(422, "slug has reserved characters", pointer="/data/attributes/slug")
    assert error.to_json()["source"] == {"pointer": "/data/attributes/slug"}
    with pytest.raises(ValueError, match="418"):
        ApiError(418, "teapot")


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


@pytest.mark.parametrize(("mime", "head", "size"), [
    ("image/png", _png(640, 480), (640, 480)),
    ("image/png", b"not a png at all, really not", (None, None)),
    ("image/gif", b"GIF89a" + struct.pack("<HH", 3, 5), (3, 5)),
    ("image/svg+xml", b'<?xml version="1.0"?><svg xmlns="x" width="128px" height="64">', (128, 64)),
    ("image/svg+xml", b"<svg viewBox='0 0 720 260.4'><g/></svg>", (720, 260)),
    ("image/svg+xml", b'<svg width="100%" height="50%">', (None, None)),
    ("image/svg+xml", b'<svg width="100%" viewBox="0 0 10 20">', (10, 20)),
    ("image/svg+xml", b"<html>", (None, None)),
    ("image/jpeg", b"\xff\xd8\xff", (None, None)),
])
def test_image_size(mime: str, head: bytes, size: tuple[int | None, int | None]) -> None:
    assert jsonapi.image_size(mime, head) == size


def test_media_ids_are_stable_and_match_graphql() -> None:
    """med_ + 12 hex of blake3 of the path without its leading slash (graphql_schema.media_id)."""
    item = jsonapi.media_item("/media/a/logo.svg", "image/svg+xml", 63, b'<svg width="1" height="2">')
    assert item.id == "med_" + blake3.blake3(b"media/a/logo.svg").hexdigest()[:12]
    assert (item.filename, item.width, item.height) == ("logo.svg", 1, 2)
    assert jsonapi.media_resource(item)["attributes"]["mimeType"] == "image/svg+xml"


@given(st.lists(st.tuples(st.sampled_from(["tag", "search", "fields[contents]", "x y"]),
                          st.text(max_size=12)), max_size=4), st.text(max_size=20) | st.none())
def test_page_links_next_keeps_every_other_parameter(args: list[tuple[str, str]], cursor: str | None) -> None:
    """links.next is links.first plus the cursor: paging never loses a filter."""
    links = jsonapi.page_links("/api/v3/contents", args, cursor)
    if cursor:
        assert links["next"] is not None
        assert links["next"].startswith(links["first"] or "")
    else:
        assert links["next"] is None
