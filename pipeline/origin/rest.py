"""The delivery API over HTTP: JSON:API routes under /api/v3 and the Flowbox feed.

Each request: method and ``Accept`` checks, query validation (``jsonapi``/``feed``, pure),
then every index read of the request in one ``LiveIndex.read`` hop, then a pure document
build and ``jsonapi.respond`` (ETag, 304, caching headers). Errors are mapped in one place,
``RestApi.dispatch``: ``ApiError`` as it is, the index's ``QueryError`` as 400, no live
build as 503, anything else as a logged 500 whose body says nothing about the cause.
GET and HEAD of ``ROUTES`` normally arrive from the ASGI fast lane (``lane.py``), which calls
``dispatch`` with an ``ApiRequest`` of its own; the Quart views serve everything else.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.config import FeedSpec
from pipeline.errors import QueryError
from pipeline.index import (
    EntryQuery,
    RecordCache,
    get_author,
    get_entry,
    get_entry_by_slug,
    list_authors,
    list_tags,
    query_entries,
)
from pipeline.origin import feed, jsonapi, openapi
from pipeline.origin.jsonapi import (
    ALLOW,
    CACHE_CONTROL,
    JSON_MEDIA_TYPE,
    JSONAPI_MEDIA_TYPE,
    NO_STORE,
    ROLE_HEADER,
    SHORT_CACHE_CONTROL,
    SUBJECT_HEADER,
    Answer,
    ApiError,
    MediaItem,
)
from pipeline.origin.live import LiveIndex, NoLiveBuild, Snapshot, body_html

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
#: Enough of a file to find a PNG/GIF header or an SVG root tag's width/height.
MEDIA_HEAD_BYTES = 16 * 1024
_SIZED_TYPES = ("image/png", "image/gif", "image/svg+xml")
#: Every API answer varies on Accept and Content-Type: the same URL may be a 406 or a 415 (JSON:API
#: 1.1 negotiation), and a cache must not hand a stored 200 to a request the origin would refuse.
_VARY = "Accept, Content-Type"
_CONTENT_VARY = f"{_VARY}, {ROLE_HEADER}"  # drafts answer differently with the gateway's editor role


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    args: tuple[tuple[str, str], ...]
    if_none_match: str | None
    role: str | None
    anonymous: bool = True  # no identity from the gateway: a 401 where an identity would get a 403


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    """The HTTP facts an API answer depends on, taken from a Quart request (``_view``) or
    straight from an ASGI scope (``lane.py``): both paths run the same ``RestApi.dispatch``."""

    method: str
    path: str
    """Decoded, as routed (``request.path``)."""
    args: tuple[tuple[str, str], ...]
    accept: str | None = None
    content_type: str | None = None
    """JSON:API 1.1: its media type with foreign parameters here is a 415, GET included."""
    subject: str | None = None
    """The gateway's X-Flowcms-Subject: with ``role``, whether the request is anonymous."""
    raw_query: bytes = b""
    """As received: a parameter that is not UTF-8 once decoded is a 400, not other text."""
    if_none_match: str | None = None
    role: str | None = None
    """The gateway's role header as received (``jsonapi.role_of`` decides what it grants)."""
    request_id: str | None = None
    """Only for the log line of a failure."""


#: (URL rule, endpoint name, RestApi method name, media type): the delivery API's routes.
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("/api/v3/contents", "contents", "contents", JSONAPI_MEDIA_TYPE),
    ("/api/v3/contents/by-slug/<slug>", "content_by_slug", "content_by_slug", JSONAPI_MEDIA_TYPE),
    ("/api/v3/contents/<entry_id>", "content", "content", JSONAPI_MEDIA_TYPE),
    ("/api/v3/posts", "posts", "posts", JSONAPI_MEDIA_TYPE),
    ("/api/v3/posts/<entry_id>", "post", "post", JSONAPI_MEDIA_TYPE),
    ("/api/v3/authors", "authors", "authors", JSONAPI_MEDIA_TYPE),
    ("/api/v3/authors/<key>", "author", "author", JSONAPI_MEDIA_TYPE),
    ("/api/v3/tags", "tags", "tags", JSONAPI_MEDIA_TYPE),
    ("/api/v3/media", "media_list", "media_list", JSONAPI_MEDIA_TYPE),
    ("/api/v3/media/<media_id>", "media_item", "media_item", JSONAPI_MEDIA_TYPE),
    ("/api/v3/openapi.json", "openapi", "openapi", JSON_MEDIA_TYPE),
    ("/public/feed/<flow_key>", "feed", "feed", JSON_MEDIA_TYPE),
    # Seed 003 builds URIs from units, "Parameters: /?QUERYSTRING", and shows
    # /v1/flow/<FLOWKEY>/?postsPerPage=15: the same feed under those spellings.
    ("/public/feed/<flow_key>/", "feed_slash", "feed", JSON_MEDIA_TYPE),
    ("/v1/flow/<flow_key>", "flow", "feed", JSON_MEDIA_TYPE),
    ("/v1/flow/<flow_key>/", "flow_slash", "feed", JSON_MEDIA_TYPE),
)
Handler = Callable[..., Awaitable[Answer]]


def register(app: QuartTrio, api: RestApi) -> None:
    """Add the API routes to ``app`` (before the live site's catch-all route)."""
    for rule, name, handler, media_type in api.routes():
        app.add_url_rule(rule, f"api_{name}", _view(api, handler, media_type), methods=ALL_METHODS)
    for rule, name, media_type in (("/api/v3", "unknown", JSONAPI_MEDIA_TYPE),
                                   ("/api/v3/<path:rest>", "unknown_rest", JSONAPI_MEDIA_TYPE),
                                   ("/public/feed", "unknown_feed", JSON_MEDIA_TYPE),
                                   ("/public/feed/<path:rest>", "unknown_feed_rest", JSON_MEDIA_TYPE),
                                   ("/v1/flow", "unknown_flow", JSON_MEDIA_TYPE),
                                   ("/v1/flow/<path:rest>", "unknown_flow_rest", JSON_MEDIA_TYPE)):
        app.add_url_rule(rule, f"api_{name}", _view(api, None, media_type), methods=ALL_METHODS)


#: Paths under an API that no route takes (``/api/v3/``, ``//`` inside) answer in that API's JSON
#: error model, not with the site's HTML 404 page (``/graphql/…``: ``graphql_api.unrouted``).
_API_SPACES = (("/api/v3/", JSONAPI_MEDIA_TYPE), ("/public/feed/", JSON_MEDIA_TYPE), ("/v1/flow/", JSON_MEDIA_TYPE))


def api_space(path: str) -> str | None:
    """The media type of the API whose space ``path`` is in, or None (a page of the site)."""
    for prefix, media_type in _API_SPACES:
        if path.startswith(prefix):
            return media_type
    return None


async def unrouted(api: RestApi, media_type: str) -> Response:
    """The current request, under an API but at no route of it: that API's 404 (or 405)."""
    return await _view(api, None, media_type)()


def _view(api: RestApi, handler: Handler | None, media_type: str) -> Callable[..., Awaitable[Response]]:
    async def view(**params: str) -> Response:
        headers = request.headers
        http = ApiRequest(method=request.method, path=request.path, args=tuple(request.args.items(multi=True)),
                          accept=headers.get("Accept"), content_type=headers.get("Content-Type"),
                          raw_query=request.query_string, subject=headers.get(SUBJECT_HEADER),
                          if_none_match=headers.get("If-None-Match"),
                          role=headers.get(ROLE_HEADER), request_id=headers.get("X-Request-Id"))
        return _response(await api.dispatch(handler, media_type, params, http))

    return view


def _response(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status)
    del response.headers["Content-Type"]
    for name, value in answer.headers:
        response.headers[name] = value
    if answer.status == 304:  # RFC 9110 §15.4.5: validators and caching headers, no content headers
        del response.headers["Content-Length"]
    return response


class RestApi:
    def __init__(self, live: LiveIndex) -> None:
        self.live = live
        self._lock = threading.Lock()  # guards the two per-build caches below (worker threads)
        self._media: tuple[str, list[MediaItem]] | None = None
        self._feeds: tuple[tuple[str, int, int], dict[str, FeedSpec]] | None = None
        self._openapi = openapi.document()

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        """(URL rule, endpoint name, bound handler, media type) for each route of ``ROUTES``."""
        return [(rule, name, getattr(self, method), media_type) for rule, name, method, media_type in ROUTES]

    async def dispatch(self, handler: Handler | None, media_type: str, params: Mapping[str, str],
                       http: ApiRequest) -> Answer:
        """The one place where failures become answers."""
        req = _Request(
            method=http.method, path=quote(http.path, safe="/"), args=http.args, if_none_match=http.if_none_match,
            role=jsonapi.role_of(http.role), anonymous=not (http.role or http.subject),
        )
        vary = _CONTENT_VARY if http.path.startswith(("/api/v3/contents", "/api/v3/posts")) else _VARY
        try:
            if handler is None:
                raise ApiError(404, f"no API resource at {req.path[:200]}")
            if req.method not in ("GET", "HEAD"):
                raise ApiError(405, f"{req.method} is not allowed here: the delivery API is read-only",
                               allow=ALLOW)
            undecodable = jsonapi.undecodable_parameter(http.raw_query)
            if undecodable is not None:
                raise ApiError(400, f"query parameter {undecodable!r} is not UTF-8 once percent-decoded",
                               parameter=undecodable)
            is_jsonapi = media_type == JSONAPI_MEDIA_TYPE
            problem = jsonapi.content_type_problem(http.content_type) if is_jsonapi else None
            if problem is not None:
                raise ApiError(415, problem)
            if not jsonapi.is_acceptable(http.accept, jsonapi=is_jsonapi):
                accepted = (f"{JSONAPI_MEDIA_TYPE} (without parameters but ext and profile, and without "
                            f"extensions) or {JSON_MEDIA_TYPE}") if is_jsonapi else JSON_MEDIA_TYPE
                raise ApiError(406, f"this resource is available as {accepted} only")
            return await handler(req, **params)
        except ApiError as error:
            return jsonapi.error_answer(error, method=req.method, media_type=media_type,
                                        build_id=self.live.build_id, vary=vary)
        except QueryError as error:
            return jsonapi.error_answer(jsonapi.query_error(error), method=req.method, media_type=media_type,
                                        vary=vary)
        except NoLiveBuild:
            error = ApiError(503, "nothing is published yet: publish a build first")
            return jsonapi.error_answer(error, method=req.method, media_type=media_type)
        except Exception:
            log.exception("API request failed: %s %s (request id %s)", req.method, req.path,
                          "-" if http.request_id is None else http.request_id)
            error = ApiError(500, "the server could not answer this request; it has been logged")
            return jsonapi.error_answer(error, method=req.method, media_type=media_type)

    def _ok(self, req: _Request, document: Mapping[str, Any], *, keys: list[str] | tuple[str, ...],
            build_id: str, public: bool = True, vary: str = _VARY,
            media_type: str = JSONAPI_MEDIA_TYPE, extra: tuple[tuple[str, str], ...] = ()) -> Answer:
        return jsonapi.respond(200, document, method=req.method, media_type=media_type,
                               cache_control=CACHE_CONTROL if public else NO_STORE, keys=keys,
                               build_id=build_id, if_none_match=req.if_none_match, vary=vary, extra=extra)

    # -- contents ------------------------------------------------------------

    async def contents(self, req: _Request) -> Answer:
        return await self._list(req, posts=False)

    async def posts(self, req: _Request) -> Answer:
        return await self._list(req, posts=True)

    async def _list(self, req: _Request, *, posts: bool) -> Answer:
        params = jsonapi.parse_list_params(req.args, posts=posts, role=req.role, anonymous=req.anonymous)
        query = EntryQuery(**params.query)

        def read(snap: Snapshot) -> tuple[str, Any, dict[str, str], dict[str, dict[str, Any]], RecordCache]:
            page = query_entries(snap.conn, query, cache=snap.records)
            bodies = {r["id"]: body_html(snap, r) for r in page.entries} if params.bodies else {}
            authors = _authors_of(snap, page.entries) if params.include_author else {}
            return snap.build_id, page, bodies, authors, snap.records

        build_id, page, bodies, authors, records = await self.live.read(read)
        doc = jsonapi.list_document(page.entries, params, path=req.path, bodies=bodies, authors=authors,
                                    total=page.total, next_cursor=page.next_cursor, build_id=build_id,
                                    derive=records.derive)
        keys = [*params.keys, *jsonapi.entry_keys(page.entries)]
        return self._ok(req, doc, keys=keys, build_id=build_id, public=params.public, vary=_CONTENT_VARY)

    async def content(self, req: _Request, entry_id: str) -> Answer:
        return await self._single(req, entry_id=entry_id)

    async def post(self, req: _Request, entry_id: str) -> Answer:
        return await self._single(req, entry_id=entry_id, content_type="blog")

    async def content_by_slug(self, req: _Request, slug: str) -> Answer:
        return await self._single(req, slug=slug)

    async def _single(self, req: _Request, *, entry_id: str | None = None, slug: str | None = None,
                      content_type: str | None = None) -> Answer:
        params = jsonapi.parse_single_params(req.args, by_slug=slug is not None)
        content_type = content_type or params.content_type
        editor = req.role is not None

        def read(snap: Snapshot) -> tuple[str, dict[str, Any] | None, str, dict[str, dict[str, Any]]]:
            if entry_id is not None:
                record = get_entry(snap.conn, entry_id, live_only=not editor, cache=snap.records)
            else:
                assert slug is not None
                record = get_entry_by_slug(snap.conn, slug, content_type=content_type, cache=snap.records)
                if record is None and editor:  # a live entry wins over a draft with the same slug
                    record = get_entry_by_slug(snap.conn, slug, content_type=content_type, live_only=False,
                                              cache=snap.records)
            if record is None or (content_type is not None and record["contentType"] != content_type):
                return snap.build_id, None, "", {}
            body = body_html(snap, record)
            authors = _authors_of(snap, [record]) if params.include_author else {}
            return snap.build_id, record, body, authors

        build_id, record, body, authors = await self.live.read(read)
        if record is None:
            # cacheable: publishing the entry purges api:<id> (by slug: api:contents)
            keys = (f"api:{entry_id}",) if entry_id is not None else ("api:contents",)
            what = f"id {entry_id!r}" if entry_id is not None else f"slug {slug!r}"
            raise ApiError(404, f"no published {content_type or 'entry'} with {what[:200]}", keys=keys)
        doc = jsonapi.single_document(record, params, path=jsonapi.self_link(req.path, req.args), body=body, authors=authors,
                                      build_id=build_id)
        keys = jsonapi.entry_keys([record]) + ([] if entry_id is not None else ["api:contents"])
        return self._ok(req, doc, keys=keys, build_id=build_id, public=bool(record["live"]), vary=_CONTENT_VARY)

    # -- authors, tags, media ------------------------------------------------

    async def authors(self, req: _Request) -> Answer:
        fields = jsonapi.parse_single_params(_only(req.args, "fields[authors]")).fields.authors
        build_id, rows = await self.live.read(lambda snap: (snap.build_id, list_authors(snap.conn)))
        doc = jsonapi.collection_document([jsonapi.author_resource(a, fields=fields) for a in rows],
                                          path=jsonapi.self_link(req.path, req.args), build_id=build_id)
        return self._ok(req, doc, keys=("api:authors",), build_id=build_id)

    async def author(self, req: _Request, key: str) -> Answer:
        fields = jsonapi.parse_single_params(_only(req.args, "fields[authors]")).fields.authors
        build_id, row = await self.live.read(lambda snap: (snap.build_id, get_author(snap.conn, key)))
        if row is None:
            raise ApiError(404, f"no author {key[:200]!r}", keys=("api:authors",))
        doc = jsonapi.resource_document(jsonapi.author_resource(row, fields=fields), path=jsonapi.self_link(req.path, req.args),
                                        build_id=build_id)
        return self._ok(req, doc, keys=("api:authors", f"api:author:{key}"), build_id=build_id)

    async def tags(self, req: _Request) -> Answer:
        jsonapi.single_values(req.args, ())
        build_id, rows = await self.live.read(lambda snap: (snap.build_id, list_tags(snap.conn)))
        doc = jsonapi.collection_document([jsonapi.tag_resource(t, n) for t, n in rows], path=jsonapi.self_link(req.path, req.args),
                                          build_id=build_id)
        return self._ok(req, doc, keys=("api:tags",), build_id=build_id)

    async def media_list(self, req: _Request) -> Answer:
        jsonapi.single_values(req.args, ())
        build_id, items = await self.live.read(lambda snap: (snap.build_id, self._media_items(snap)))
        doc = jsonapi.collection_document([jsonapi.media_resource(m) for m in items], path=jsonapi.self_link(req.path, req.args),
                                          build_id=build_id)
        return self._ok(req, doc, keys=("api:media",), build_id=build_id)

    async def media_item(self, req: _Request, media_id: str) -> Answer:
        jsonapi.single_values(req.args, ())
        build_id, items = await self.live.read(lambda snap: (snap.build_id, self._media_items(snap)))
        found = [m for m in items if m.id == media_id]
        if not found:
            raise ApiError(404, f"no media file with id {media_id[:200]!r}", keys=("api:media",))
        doc = jsonapi.resource_document(jsonapi.media_resource(found[0]), path=jsonapi.self_link(req.path, req.args), build_id=build_id)
        return self._ok(req, doc, keys=("api:media",), build_id=build_id)

    def _media_items(self, snap: Snapshot) -> list[MediaItem]:
        """The live build's files under /media/, measured once per build (worker thread)."""
        with self._lock:
            if self._media is not None and self._media[0] == snap.build_id:
                return self._media[1]
        manifest = snap.store.manifest(snap.build_id)
        items = []
        for url in sorted(p for p in manifest if p.startswith("/media/")):
            item = manifest[url]
            head = None
            if item.type in _SIZED_TYPES:
                with open(snap.store.blob_path(item.blob), "rb") as fh:
                    head = fh.read(MEDIA_HEAD_BYTES)
            items.append(jsonapi.media_item(url, item.type, item.size, head))
        with self._lock:
            self._media = (snap.build_id, items)
        return items

    # -- OpenAPI, feed -------------------------------------------------------

    async def openapi(self, req: _Request) -> Answer:
        jsonapi.single_values(req.args, ())
        return jsonapi.respond(200, self._openapi, method=req.method, media_type=JSON_MEDIA_TYPE,
                               cache_control=SHORT_CACHE_CONTROL, keys=("api:openapi",),
                               if_none_match=req.if_none_match, vary=_VARY)

    async def feed(self, req: _Request, flow_key: str) -> Answer:
        try:
            feed_request: feed.FeedRequest | ApiError = feed.parse_feed_request(req.args, flow_key=flow_key)
        except ApiError as error:
            feed_request = error  # an unknown feed is a 404 whatever its parameters

        def read(snap: Snapshot) -> tuple[str, FeedSpec | None, Any, dict[str, dict[str, Any]], RecordCache]:
            spec = self._feed_specs(snap).get(flow_key)
            if spec is None or isinstance(feed_request, ApiError):
                return snap.build_id, spec, None, {}, snap.records
            page = query_entries(snap.conn, EntryQuery(**feed.feed_query(spec, feed_request)), cache=snap.records)
            return snap.build_id, spec, page, _authors_of(snap, page.entries), snap.records

        build_id, spec, page, authors, records = await self.live.read(read)
        if spec is None:
            raise ApiError(404, f"no feed {flow_key[:100]!r}")
        if isinstance(feed_request, ApiError):
            raise feed_request
        has_more = page.next_cursor is not None
        doc = feed.feed_document(spec, page.entries, authors, has_more=has_more, derive=records.derive)
        cursor = feed.next_cursor(spec, page.entries, has_more)
        extra = (("Link", feed.next_link(spec, feed_request, cursor)),) if cursor else ()
        keys = [*feed.selection_keys(spec), *jsonapi.entry_keys(page.entries)]
        return self._ok(req, doc, keys=keys, build_id=build_id, media_type=JSON_MEDIA_TYPE, extra=extra)

    def _feed_specs(self, snap: Snapshot) -> dict[str, FeedSpec]:
        """The live build's feed definitions (build.json), re-read when the file changes:
        a rebuild with the same pages but other feeds keeps its build id and replaces it."""
        path = snap.store.build_dir(snap.build_id) / "build.json"
        st = os.stat(path)
        stamp = (snap.build_id, st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._feeds is not None and self._feeds[0] == stamp:
                return self._feeds[1]
        specs = feed.feeds_from_info(json.loads(path.read_bytes()))
        with self._lock:
            self._feeds = (stamp, specs)
        return specs


def _authors_of(snap: Snapshot, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for key in sorted({r["author"] for r in records if r["author"]}):
        author = snap.records.derive(("author", key), functools.partial(get_author, snap.conn, key))
        if author is not None:
            found[key] = author
    return found


def _only(args: tuple[tuple[str, str], ...], name: str) -> tuple[tuple[str, str], ...]:
    """Reject every parameter but ``name`` (parse_single_params also knows include and fields[contents])."""
    jsonapi.single_values(args, (name,))
    return args
