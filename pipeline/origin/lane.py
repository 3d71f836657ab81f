"""The ASGI fast lane: the read APIs answered without Quart's request machinery.

Theory of operation. ``FastLane`` wraps the Quart app's ``asgi_app`` (Quart's documented
middleware seam, so ``create_app`` still returns the QuartTrio app). For an ``http`` scope
with method GET or HEAD whose path is a route of ``rest.ROUTES`` or ``/graphql``, or a POST
to ``/graphql`` (what most GraphQL clients send), it reads path, query, body and the few
headers an answer depends on straight from the scope, then:

1. asks the per-build ``AnswerCache`` (when on) under the live build's ``generation``: a
   hit is one ``http.response.start`` and one ``http.response.body``;
2. otherwise runs the same code the Quart views run (``RestApi.dispatch``,
   ``GraphQLApi.answer``), encodes the answer the way Quart would send it (header order
   included), and stores it when it is deterministic and the live build did not move
   while it was computed;
3. decides the per-request parts itself (``answer_cache.reply``): If-None-Match → 304
   against the stored ETag, HEAD without a body.

Everything else goes to Quart unchanged: other methods (405s, OPTIONS /graphql), the
playground page (a browser's GET /graphql without a query), admin and preview routes, the
static site, paths Quart would route differently (``//``, a trailing slash, a root path)
and query strings that are not UTF-8 (Quart's own error).

Cache key: (kind, decoded path, raw query bytes, what the headers grant, the Accept
negotiation outcome); for a POST, the request's query, variables (canonical JSON) and
operation name instead of the query string. A POST answer is ``no-store`` for HTTP caches
and still one per build here: every operation the schema has is a query, so the same
request against the same build gets the same answer. REST answers depend on the role
``jsonapi.role_of`` derives from ``X-Flowcms-Role``; GraphQL answers on the whole identity (``viewer_from``: a
``currentUser`` answer names the subject). ``X-Request-Id`` and other headers never reach
a stored answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  # registers the "werkzeug.url_quote" decode error handler Quart's args use
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_options_header

from pipeline.documents import canonical_json
from pipeline.origin import jsonapi
from pipeline.origin.answer_cache import AnswerCache, CacheStatistics, StoredAnswer, is_storable, reply
from pipeline.origin.graphql_api import (
    MAX_BODY_BYTES,
    GraphQLApi,
    Reply,
    body_too_large,
    request_from_args,
    request_from_body,
    response_type,
    viewer_from,
    wants_html,
)
from pipeline.origin.graphql_schema import ApiError as GraphQLError
from pipeline.origin.jsonapi import JSONAPI_MEDIA_TYPE, ROLE_HEADER, SUBJECT_HEADER, Answer
from pipeline.origin.live import LiveIndex
from pipeline.origin.rest import ApiRequest, Handler, RestApi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Route = tuple[Handler, str, dict[str, str]]

GRAPHQL_PATH = "/graphql"
_ROLE = ROLE_HEADER.lower().encode()
_SUBJECT = SUBJECT_HEADER.lower().encode()
_DEFAULT_TYPE = "text/html; charset=utf-8"  # Quart's Response default, for an answer without one


@dataclass(frozen=True, slots=True)
class LaneStatistics:
    computed: int
    """Answers the lane computed (cache off, a miss, or not storable)."""
    passed: int
    """HTTP requests handed to the Quart app."""
    cache: CacheStatistics | None
    """None when the answer cache is off; its ``hits`` are the answers served from it."""


class FastLane:
    """An ASGI callable in front of the Quart app for GET/HEAD of the read API routes."""

    def __init__(self, app: ASGIApp, *, live: LiveIndex, rest: RestApi, graphql: GraphQLApi,
                 cache: AnswerCache | None) -> None:
        self.app = app
        self.live = live
        self.rest = rest
        self.graphql = graphql
        self.cache = cache
        self._exact, self._last_segment, self._slash_segment = _route_maps(rest.routes())
        self._computed = 0
        self._passed = 0

    def __repr__(self) -> str:
        return f"<FastLane [computed {self._computed}, passed {self._passed}, cache {self.cache!r}]>"

    def statistics(self) -> LaneStatistics:
        return LaneStatistics(computed=self._computed, passed=self._passed,
                              cache=self.cache.statistics() if self.cache is not None else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method in ("GET", "HEAD") and not scope.get("root_path"):
                path: str = scope["path"]
                if path == GRAPHQL_PATH:
                    if await self._graphql(scope, send):
                        return
                elif "//" not in path:
                    route = self.match(path)
                    if route is not None and await self._rest(scope, send, path, route):
                        return
            elif method == "POST" and scope["path"] == GRAPHQL_PATH and not scope.get("root_path"):
                await self._graphql_post(scope, receive, send)
                return
            self._passed += 1
        await self.app(scope, receive, send)

    def match(self, path: str) -> Route | None:
        """The REST route Quart's URL map would pick for ``path`` (no ``//``), or None."""
        found = self._exact.get(path)
        if found is not None:
            return found[0], found[1], {}
        head, _, last = path.rpartition("/")
        if last:
            variable = self._last_segment.get(head)
        else:  # a trailing slash: rules ending in "/<name>/"
            head, _, last = head.rpartition("/")
            variable = self._slash_segment.get(head) if last else None
        if variable is None:
            return None
        name, handler, media_type = variable
        return handler, media_type, {name: last}

    # -- REST ------------------------------------------------------------------------------

    async def _rest(self, scope: Scope, send: Send, path: str, route: Route) -> bool:
        handler, media_type, params = route
        query: bytes = scope["query_string"]
        headers = _first_values(scope["headers"])
        accept = _text(headers.get(b"accept"))
        role = _text(headers.get(_ROLE))
        if_none_match = _text(headers.get(b"if-none-match"))
        head = scope["method"] == "HEAD"
        content_type = _text(headers.get(b"content-type"))
        subject = _text(headers.get(_SUBJECT))
        generation, key, stored = self._lookup(lambda: (
            "rest", path, query, jsonapi.role_of(role), not (role or subject),
            jsonapi.is_acceptable(accept, jsonapi=media_type == JSONAPI_MEDIA_TYPE),
            content_type is not None and jsonapi.content_type_problem(content_type)))
        if stored is not None:
            await _send(send, *reply(stored, head=head, if_none_match=if_none_match))
            return True
        args = _args(query)
        if args is None:
            return False
        http = ApiRequest(method=scope["method"], path=path, args=args, accept=accept, content_type=content_type,
                          raw_query=query, role=role, subject=subject,
                          request_id=_text(headers.get(b"x-request-id")))
        answer = await self.rest.dispatch(handler, media_type, params, http)
        stored = rest_stored(answer)
        self._computed += 1
        # A HEAD's answer has no body to keep: only GET answers are stored.
        if key is not None and not head and is_storable(answer.status):
            self._store(generation, key, stored, len(path) + len(query))
        await _send(send, *reply(stored, head=head, if_none_match=if_none_match))
        return True

    # -- GraphQL ---------------------------------------------------------------------------

    async def _graphql(self, scope: Scope, send: Send) -> bool:
        query: bytes = scope["query_string"]
        headers = _first_values(scope["headers"])
        accept = _text(headers.get(b"accept"))
        args = None
        if wants_html(accept):  # a browser without a query gets the playground: Quart serves it
            args = _args(query)
            if args is None or all(name != "query" for name, _ in args):
                return False
        viewer = viewer_from(_HeaderView(headers))
        if_none_match = _text(headers.get(b"if-none-match"))
        head = scope["method"] == "HEAD"
        # Accept changes the Content-Type
        generation, key, stored = self._lookup(lambda: ("graphql", query, viewer, response_type(accept)))
        if stored is not None:
            await _send(send, *reply(stored, head=head, if_none_match=if_none_match))
            return True
        if args is None:
            args = _args(query)
            if args is None:
                return False
        try:
            gql = request_from_args(MultiDict(args))
        except GraphQLError as exc:  # no query, bad variables, too long: cheap, never stored
            answer = self.graphql.refusal(exc, accept)
        else:
            answer = await self.graphql.answer(gql, viewer, queries_only=True, accept=accept, path=GRAPHQL_PATH)
        stored = graphql_stored(answer)
        self._computed += 1
        # GET and HEAD execute alike (the body is dropped per request), so both may store.
        if key is not None and answer.deterministic and is_storable(answer.status):
            self._store(generation, key, stored, len(query))
        await _send(send, *reply(stored, head=head, if_none_match=if_none_match))
        return True

    async def _graphql_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /graphql as ``GraphQLApi.endpoint`` answers it, its answers kept per build."""
        headers = _first_values(scope["headers"])
        accept = _text(headers.get(b"accept"))
        try:
            body = await _read_body(receive, _text(headers.get(b"content-length")))
            if body is None:
                return  # the client went away: nobody to answer
            mimetype = parse_options_header(_text(headers.get(b"content-type")))[0].lower()
            gql = request_from_body(body, mimetype)
        except GraphQLError as exc:  # too large, not UTF-8 or JSON, wrong type: cheap, never stored
            self._computed += 1
            await _send(send, *reply(graphql_stored(self.graphql.refusal(exc, accept)), head=False,
                                     if_none_match=None))
            return
        viewer = viewer_from(_HeaderView(headers))
        generation, key, stored = self._lookup(lambda: (
            "graphql-post", gql.query, canonical_json(gql.variables), gql.operation_name, viewer,
            response_type(accept)))
        if stored is None:
            answer = await self.graphql.answer(gql, viewer, queries_only=False, accept=accept, path=GRAPHQL_PATH)
            stored = graphql_stored(answer)
            self._computed += 1
            if key is not None and answer.deterministic and is_storable(answer.status):
                self._store(generation, key, stored, len(body))
        await _send(send, *reply(stored, head=False, if_none_match=None))  # a POST answer has no ETag

    def _lookup(self, make_key: Callable[[], Hashable]) -> tuple[Hashable | None, Hashable | None,
                                                                  StoredAnswer | None]:
        """(generation, key, stored answer or None); (None, None, None) when there is nothing to
        ask: the cache is off or nothing is published (the answer computed then is not stored)."""
        if self.cache is None:
            return None, None, None
        generation = self.live.generation()
        if generation is None:
            return None, None, None
        key = make_key()
        return generation, key, self.cache.lookup(generation, key)

    def _store(self, generation: Hashable, key: Hashable, stored: StoredAnswer, key_bytes: int) -> None:
        """Keep ``stored`` unless the live build moved while it was computed (it may be the old one's)."""
        assert self.cache is not None
        if self.live.generation() == generation:
            self.cache.store(generation, key, stored, key_bytes=key_bytes)


def rest_stored(answer: Answer) -> StoredAnswer:
    """``answer`` as ``rest._response`` makes Quart send it: Content-Length first (Quart's own
    header, given the answer's value), then the answer's headers in order; its 304 form without
    content headers (RFC 9110 §15.4.5). ETag only on a 200 (``jsonapi.respond``: RFC 9110
    §13.2.1). ``answer`` is never a 304: the lane asks ``dispatch`` without If-None-Match."""
    assert answer.status != 304
    length = b"%d" % len(answer.body)
    others: list[tuple[bytes, bytes]] = []
    etag = None
    for name, value in answer.headers:
        if name == "Content-Length":
            length = value.encode()
            continue
        if name == "ETag" and answer.status == 200:
            etag = value
        others.append((name.lower().encode(), value.encode()))
    not_modified = tuple(h for h in others if h[0] != b"content-type")
    return StoredAnswer(status=answer.status, headers=((b"content-length", length), *others), body=answer.body,
                        etag=etag, not_modified_headers=not_modified)


def graphql_stored(answer: Reply) -> StoredAnswer:
    """``answer`` as ``graphql_api._response`` makes Quart send it: Content-Type, Content-Length,
    then the other headers in order; the 304 form without either (RFC 9110 §15.4.5)."""
    others = tuple((name.lower().encode(), value.encode()) for name, value in answer.headers.items()
                   if name != "Content-Type")
    content_type = answer.headers.get("Content-Type", _DEFAULT_TYPE).encode()
    headers = ((b"content-type", content_type), (b"content-length", b"%d" % len(answer.body)), *others)
    return StoredAnswer(status=answer.status, headers=headers, body=answer.body, etag=answer.headers.get("ETag"),
                        not_modified_headers=others)


def _route_maps(routes: Iterable[tuple[str, str, Handler, str]]) -> tuple[
        dict[str, tuple[Handler, str]], dict[str, tuple[str, Handler, str]], dict[str, tuple[str, Handler, str]]]:
    """Rules without variables by path; rules ending in one ``/<name>`` by the path before it;
    rules ending in ``/<name>/`` likewise, in a map of their own.

    Werkzeug's default converter matches one non-empty segment, so these dict lookups pick
    what Quart's URL map picks. A rule of any other shape is left to Quart.
    """
    exact: dict[str, tuple[Handler, str]] = {}
    last_segment: dict[str, tuple[str, Handler, str]] = {}
    slash_segment: dict[str, tuple[str, Handler, str]] = {}
    for rule, _name, handler, media_type in routes:
        if "<" not in rule:
            exact[rule] = (handler, media_type)
            continue
        target = slash_segment if rule.endswith("/") else last_segment
        head, _, last = rule.removesuffix("/").rpartition("/")
        if "<" not in head and last.startswith("<") and last.endswith(">") and ":" not in last:
            target[head] = (last[1:-1], handler, media_type)
    return exact, last_segment, slash_segment


def _first_values(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Header name → its first value, as ``request.headers.get`` reads them."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        found.setdefault(name.lower(), value)
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")  # as Quart decodes header values


class _HeaderView:
    """``headers.get(name)`` over the scope's first values, for ``viewer_from``."""

    __slots__ = ("_found",)

    def __init__(self, found: dict[bytes, bytes]) -> None:
        self._found = found

    def get(self, name: str) -> str | None:
        return _text(self._found.get(name.lower().encode()))


def _args(query: bytes) -> tuple[tuple[str, str], ...] | None:
    """The query pairs exactly as Quart's ``request.args`` has them; None when not UTF-8."""
    try:
        text = query.decode()
    except UnicodeDecodeError:
        return None
    return tuple(parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"))


async def _read_body(receive: Receive, content_length: str | None) -> bytes | None:
    """The request body as ``graphql_api._read_body`` reads it (413 past ``MAX_BODY_BYTES``, by
    Content-Length before reading), or None when the client disconnected."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise body_too_large()
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise body_too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
