"""JSON:API for the delivery API: query strings in, documents and answers out. Pure: no I/O.

Theory of operation. ``rest.py`` hands this module a request's query pairs, its ``Accept``
and the role the edge gateway vouched for (``X-Flowcms-Role``). ``parse_*`` validate them
into values, or raise ``ApiError``: the one error model of every API surface (seed 002's
statuses, JSON:API ``errors[]`` with ``code`` and ``source``). ``rest.py`` then does all
index reads of the request in one ``LiveIndex.read`` hop and gives the records back here:
the builders turn them into resource objects shaped like the build's published JSON
(``pipeline/render.py``), and ``respond`` serialises the document (canonical bytes, so the
ETag is a pure function of the answer), adds the caching headers and decides 304.

Caching: answers carry surrogate keys in the ``api:`` namespace that ``publish.purge_set``
purges: ``api:<entry id>`` for every entry shown, ``api:type:…``/``api:tag:…``/
``api:author:…`` for filtered lists, ``api:contents`` for lists no such key covers, and
``api:authors``/``api:tags``/``api:media`` for those lists. A key that cannot travel in a
header (spaces, non-ASCII) is replaced by the broader key that is purged with it.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import blake3

from pipeline.documents import Serialized, canonical_json
from pipeline.errors import PipelineError, QueryError
from pipeline.origin.conditional import etag_for, none_match

JSONAPI_MEDIA_TYPE = "application/vnd.api+json"
JSON_MEDIA_TYPE = "application/json"
API_PREFIX = "/api/v3"
#: ``RecordCache.derive``: a value computed once per key for one index file.
Derive = Callable[[Hashable, Callable[[], Any]], Any]
#: Same as pages (static.py): edges keep answers for a year because publish purges exactly
#: the keys below; browsers revalidate every time (ETag → 304). A publish *invalidates* those
#: keys (edges.py): the edge revalidates before answering (a cheap 304 when the answer did
#: not change) and never serves the pre-publish answer once more, although the answer allows
#: stale-while-revalidate (for an operator's soft purge). SWR and SIE per RFC 5861.
CACHE_CONTROL = "public, max-age=0, s-maxage=31536000, stale-while-revalidate=60, stale-if-error=86400"
#: For answers no publish purges (unknown routes and feeds, the OpenAPI document).
SHORT_CACHE_CONTROL = "public, max-age=0, s-maxage=60"
NO_STORE = "no-store"
ALLOW = "GET, HEAD"
ROLE_HEADER = "X-Flowcms-Role"
SUBJECT_HEADER = "X-Flowcms-Subject"  # who the gateway vouches for (absent with the role: anonymous)
#: Roles the gateway sets after authentication (it strips any client-sent copy).
EDITOR_ROLES = frozenset({"editor", "admin"})
DEFAULT_LIMIT = 20
MAX_LIMIT = 100  # index.MAX_LIMIT: a page never costs more than 100 rows
SORTS = ("publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt")
STATUSES = ("published", "draft", "archived")

#: status → (code, title): seed 002's statuses, seed 001's code names.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHENTICATED", "Authentication required"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    406: ("NOT_ACCEPTABLE", "Not acceptable"),
    409: ("CONFLICT", "Conflict"),
    413: ("PAYLOAD_TOO_LARGE", "Payload too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    422: ("VALIDATION_ERROR", "Validation failed"),
    429: ("RATE_LIMITED", "Too many requests"),
    500: ("INTERNAL_ERROR", "Internal server error"),
    503: ("NOT_PUBLISHED", "Service unavailable"),
}

CONTENT_ATTRIBUTES = ("title", "slug", "contentType", "status", "excerpt", "tags", "publishedAt",
                      "updatedAt", "readingMinutes", "url", "fields")
CONTENT_FIELDS = frozenset((*CONTENT_ATTRIBUTES, "body", "toc", "author"))
AUTHOR_FIELDS = frozenset(("name", "bio", "url", "avatar"))
_LIST_PARAMETERS = ("status", "contentType", "tag", "search", "authorId", "dateFrom", "dateTo", "sort",
                    "limit", "cursor", "include", "fields[contents]", "fields[authors]")
_SINGLE_PARAMETERS = ("include", "fields[contents]", "fields[authors]")
# index.EntryQuery field → API parameter, for the index's QueryError.parameter
_API_NAMES = {"content_type": "contentType", "author_id": "authorId", "date_from": "dateFrom",
              "date_to": "dateTo", "live_only": "status"}
_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII digits only (str.isdecimal admits any script)
_HEADER_TOKEN = re.compile(r"[!-~]+")  # visible ASCII: what a Surrogate-Key token may hold


class ApiError(PipelineError):
    """A client-visible failure: one JSON:API error object, one HTTP status.

    ``keys`` makes a 404 cacheable: the surrogate keys a publish purges when the answer
    would change (``api:<id>`` for an entry not live yet); without keys a 404 is kept
    only briefly. ``allow`` is the ``Allow`` header of a 405.
    """

    def __init__(self, status: int, detail: str, *, code: str | None = None, parameter: str | None = None,
                 pointer: str | None = None, keys: tuple[str, ...] = (), allow: str | None = None) -> None:
        super().__init__(detail)
        if status not in ERRORS:
            raise ValueError(f"no error code for HTTP status {status}")
        self.status = status
        self.code = code or ERRORS[status][0]
        self.title = ERRORS[status][1]
        self.detail = detail
        self.parameter = parameter
        self.pointer = pointer
        self.keys = keys
        self.allow = allow

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": str(self.status), "code": self.code, "title": self.title,
                                 "detail": self.detail}
        if self.parameter is not None:
            error["source"] = {"parameter": self.parameter}
        elif self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        return error


def error_document(*errors: ApiError) -> dict[str, Any]:
    return {"errors": [error.to_json() for error in errors]}


def query_error(exc: QueryError) -> ApiError:
    """The index's QueryError (named by EntryQuery field) as a 400 naming the API parameter."""
    field = exc.parameter or ""
    name = _API_NAMES.get(field, field) or None
    detail = exc.message
    if field and name and detail.startswith(field):
        detail = name + detail[len(field):]
    return ApiError(400, detail, parameter=name, code="BAD_CURSOR" if name == "cursor" else None)


def _shown(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


# --------------------------------------------------------------------------- requests


def role_of(header: str | None) -> str | None:
    """The editor role the gateway set, or None (anonymous, or a role without draft rights)."""
    role = (header or "").strip().lower()
    return role if role in EDITOR_ROLES else None


#: JSON:API extensions this server applies: none, so any ``ext`` URI is unsupported.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()


def _media_range(part: str) -> tuple[str, float, dict[str, str]]:
    """One element of Accept or Content-Type: (type lowercased, q, other parameters by name)."""
    media, *params = part.split(";")
    q = 1.0
    others: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        name = name.strip().lower()
        if name == "q":
            try:
                q = float(value.strip())
            except ValueError:
                q = 0.0
        elif name:
            others[name] = value.strip()
    return media.strip().lower(), q, others


def _unsupported_extensions(params: Mapping[str, str]) -> list[str]:
    """The ``ext`` parameter's URIs (space-separated, usually quoted) that this server lacks."""
    return [uri for uri in params.get("ext", "").strip('"').split() if uri not in SUPPORTED_EXTENSIONS]


def _usable_jsonapi(params: Mapping[str, str]) -> bool:
    """A JSON:API media type this server can honour: no parameter but ``ext`` and ``profile``
    (profiles a server does not know are ignored), and no extension it lacks."""
    return all(name in ("ext", "profile") for name in params) and not _unsupported_extensions(params)


def is_acceptable(accept: str | None, *, jsonapi: bool) -> bool:
    """Whether ``Accept`` admits our JSON answer (RFC 9110 §12.5.1; q=0 excludes).

    JSON:API 1.1 §content-negotiation: once ``Accept`` names the JSON:API media type, those
    instances decide: 406 when every one has a parameter other than ``ext``/``profile`` or
    an extension we lack, even beside ``*/*``. Otherwise ``application/json`` and the
    wildcards admit the answer (a JSON:API document is JSON).
    """
    if accept is None or not accept.strip():
        return True
    named_jsonapi = usable_jsonapi = wildcard_or_json = False
    for part in accept.split(","):
        media, q, params = _media_range(part)
        if q <= 0:
            continue
        if jsonapi and media == JSONAPI_MEDIA_TYPE:
            named_jsonapi = True
            usable_jsonapi = usable_jsonapi or _usable_jsonapi(params)
        elif media in ("*/*", "application/*", JSON_MEDIA_TYPE):
            wildcard_or_json = True
    return usable_jsonapi if named_jsonapi else wildcard_or_json


def content_type_problem(content_type: str | None) -> str | None:
    """JSON:API 1.1: a request whose ``Content-Type`` is the JSON:API media type with a
    parameter other than ``ext``/``profile``, or an extension we lack, is a 415 (GET too:
    the rule is about the header, not the body). The 415's detail, or None."""
    if not content_type:
        return None
    media, _, params = _media_range(content_type)
    if media != JSONAPI_MEDIA_TYPE:
        return None
    others = sorted(name for name in params if name not in ("ext", "profile"))
    if others:
        return (f"Content-Type {JSONAPI_MEDIA_TYPE} may carry no parameters but ext and profile "
                f"(got {', '.join(_shown(n) for n in others[:5])})")
    lacking = _unsupported_extensions(params)
    if lacking:
        return f"this server supports no JSON:API extensions (got ext {_shown(lacking[0])})"
    return None


def undecodable_parameter(raw_query: bytes) -> str | None:
    """The name of the first query parameter whose name or value is not UTF-8 once percent-decoded
    (``search=%ff``), or None. Servers decode such bytes into other text (Werkzeug re-quotes them:
    ``%FF``), which would search for something the client never sent: a 400 instead."""
    if b"%" not in raw_query and raw_query.isascii():
        return None  # the common case, cheaply: nothing to decode
    for pair in raw_query.split(b"&"):
        name, _, value = pair.partition(b"=")
        try:
            unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return unquote(name.decode("latin-1"), errors="replace")[:100]
    return None


def single_values(args: Iterable[tuple[str, str]], allowed: Sequence[str]) -> dict[str, str]:
    """The query pairs as a dict; 400 for a parameter this endpoint does not take or a repeat."""
    values: dict[str, str] = {}
    for name, value in args:
        if name not in allowed:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no query parameters"
            raise ApiError(400, f"unknown query parameter {_shown(name)}; {takes}", parameter=name[:100])
        if name in values:
            raise ApiError(400, f"query parameter {name!r} is given more than once", parameter=name)
        values[name] = value
    return values


@dataclass(frozen=True, slots=True, kw_only=True)
class Fieldsets:
    """Sparse fieldsets (``fields[contents]``, ``fields[authors]``); None means every field."""

    contents: frozenset[str] | None = None
    authors: frozenset[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListParams:
    query: Mapping[str, Any]
    """Keyword arguments of ``index.EntryQuery`` (which validates dates, search and cursor)."""
    include_author: bool
    fields: Fieldsets
    keys: tuple[str, ...]
    """The listing's surrogate keys (the shown entries' keys are added to them)."""
    public: bool
    """False when the answer depends on the editor role (drafts): never stored by a cache."""
    args: tuple[tuple[str, str], ...]
    """The query pairs as given, for ``links``."""

    @property
    def bodies(self) -> bool:
        """Lists carry HTML bodies only when ``fields[contents]`` asks for them."""
        return self.fields.contents is not None and "body" in self.fields.contents


@dataclass(frozen=True, slots=True, kw_only=True)
class SingleParams:
    include_author: bool
    fields: Fieldsets
    content_type: str | None = None


def parse_list_params(args: Sequence[tuple[str, str]], *, posts: bool, role: str | None,
                      anonymous: bool = False) -> ListParams:
    """``GET /api/v3/contents`` (or ``/posts``, fixed to contentType blog) query → ListParams."""
    if posts and any(name == "contentType" for name, _ in args):
        raise ApiError(400, "/api/v3/posts lists contentType blog only; use /api/v3/contents?contentType=…",
                       parameter="contentType")
    values = single_values(args, [p for p in _LIST_PARAMETERS if not (posts and p == "contentType")])
    status = values.get("status")
    live_only = True
    if status is not None:
        status = status.strip().lower()
        if status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}", parameter="status")
        if status != "published":
            if role is None and anonymous:  # seed 002: a missing credential is a 401, not a 403
                raise ApiError(401, f"{status} entries are not public: send Authorization: Bearer with an "
                                    "editor's API key or token", parameter="status")
            if role is None:
                raise ApiError(403, f"{status} entries need an editor token (drafts are not public)",
                               parameter="status")
            live_only = False
    texts = {name: _text(values, name) for name in ("contentType", "tag", "authorId", "dateFrom", "dateTo")}
    content_type = "blog" if posts else texts["contentType"]
    sort = values.get("sort", "-publishedAt")
    if sort not in SORTS:
        raise ApiError(400, f"sort must be one of {', '.join(SORTS)}", parameter="sort")
    keys = []
    if content_type is not None:
        keys.append(f"api:type:{content_type}")
    if texts["tag"] is not None:
        keys.append(f"api:tag:{texts['tag']}")
    if texts["authorId"] is not None:
        keys.append(f"api:author:{texts['authorId']}")
    query = {
        "status": status, "content_type": content_type, "tag": texts["tag"], "author_id": texts["authorId"],
        "date_from": texts["dateFrom"], "date_to": texts["dateTo"], "search": values.get("search"),
        "sort": sort, "limit": bounded_int(values.get("limit"), parameter="limit", default=DEFAULT_LIMIT),
        "cursor": values.get("cursor"), "live_only": live_only,
    }
    return ListParams(query=query, include_author=_include(values), fields=_fieldsets(values),
                      keys=tuple(keys) or ("api:contents",), public=live_only, args=tuple(args))


def parse_single_params(args: Sequence[tuple[str, str]], *, by_slug: bool = False) -> SingleParams:
    values = single_values(args, (*_SINGLE_PARAMETERS, "contentType") if by_slug else _SINGLE_PARAMETERS)
    return SingleParams(include_author=_include(values), fields=_fieldsets(values),
                        content_type=_text(values, "contentType"))


def _text(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    if value is not None and not value.strip():
        raise ApiError(400, f"{name} must not be empty", parameter=name)
    return value


def bounded_int(value: str | None, *, parameter: str, default: int, maximum: int = MAX_LIMIT) -> int:
    """A page size: absent → ``default``; else ASCII digits from 1 to ``maximum`` or 400."""
    if value is None:
        return default
    text = value.strip()
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= maximum:
        raise ApiError(400, f"{parameter} must be an integer from 1 to {maximum}, not {_shown(value)}",
                       parameter=parameter)
    return int(text)


def _include(values: Mapping[str, str]) -> bool:
    paths = [p.strip() for p in values.get("include", "").split(",") if p.strip()]
    for path in paths:
        if path != "author":
            raise ApiError(400, f"cannot include {_shown(path)}: the only relationship is 'author'",
                           parameter="include")
    return bool(paths)


def _fieldsets(values: Mapping[str, str]) -> Fieldsets:
    chosen: dict[str, frozenset[str] | None] = {}
    for kind, known in (("contents", CONTENT_FIELDS), ("authors", AUTHOR_FIELDS)):
        parameter = f"fields[{kind}]"
        raw = values.get(parameter)
        if raw is None:
            chosen[kind] = None
            continue
        names = frozenset(n.strip() for n in raw.split(",") if n.strip())
        unknown = sorted(names - known)
        if unknown:
            raise ApiError(400, f"{kind} have no field {_shown(unknown[0])}; "
                                f"they have {', '.join(sorted(known))}", parameter=parameter)
        chosen[kind] = names
    return Fieldsets(contents=chosen["contents"], authors=chosen["authors"])


# --------------------------------------------------------------------------- documents


def content_resource(record: Mapping[str, Any], *, body: str | None, toc: bool,
                     fields: frozenset[str] | None) -> dict[str, Any]:
    """An entry as a ``contents`` resource: render.Renderer.resource's shape, API links."""
    attributes = {name: record[name] for name in CONTENT_ATTRIBUTES}
    if body is not None:
        attributes["body"] = body
    if toc:
        attributes["toc"] = record.get("toc") or []
    if fields is not None:
        attributes = {name: value for name, value in attributes.items() if name in fields}
    resource: dict[str, Any] = {
        "type": "contents", "id": record["id"], "attributes": attributes,
        "links": {"self": f"{API_PREFIX}/contents/{quote(record['id'], safe='')}", "html": record["url"]},
    }
    if record["author"] and (fields is None or "author" in fields):
        resource["relationships"] = {"author": {"data": {"type": "authors", "id": record["author"]}}}
    return resource


def _plain_resource(record: Mapping[str, Any]) -> Serialized:
    return Serialized(content_resource(record, body=None, toc=False, fields=None))


def author_resource(author: Mapping[str, Any], *, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """An author (index.list_authors record) as render.Renderer.author_resource shapes it."""
    key = author["key"]
    attributes = {"name": author.get("name") or key, "bio": author.get("bio") or "",
                  "url": author.get("url"), "avatar": author.get("avatar")}
    if fields is not None:
        attributes = {name: value for name, value in attributes.items() if name in fields}
    quoted = quote(key, safe="")
    return {"type": "authors", "id": key, "attributes": attributes,
            "links": {"self": f"{API_PREFIX}/authors/{quoted}",
                      "related": f"{API_PREFIX}/contents?authorId={quoted}"}}


def tag_resource(tag: str, count: int) -> dict[str, Any]:
    return {"type": "tags", "id": tag, "attributes": {"name": tag, "count": count},
            "links": {"html": f"/tags/{tag}/", "related": f"{API_PREFIX}/contents?tag={quote(tag, safe='')}"}}


def list_document(records: Sequence[Mapping[str, Any]], params: ListParams, *, path: str,
                  bodies: Mapping[str, str], authors: Mapping[str, Mapping[str, Any]],
                  total: int, next_cursor: str | None, build_id: str, derive: Derive | None = None) -> dict[str, Any]:
    """A page of entries: data, included (when asked), links (self, first, next), meta.

    With ``derive`` (``RecordCache.derive`` of the index the records came from), a resource
    in its plain shape (all fields, no body) is serialised once per build and embedded as
    it is: most of a page's cost was building and encoding the same 20 resources again.
    """
    fields = params.fields.contents
    if derive is not None and fields is None and not bodies:
        data: list[Any] = [derive(("jsonapi:contents", r["id"]), functools.partial(_plain_resource, r))
                           for r in records]
    else:
        data = [content_resource(r, body=bodies.get(r["id"]), toc=fields is not None and "toc" in fields,
                                 fields=fields) for r in records]
    doc: dict[str, Any] = {
        "data": data,
        "links": page_links(path, params.args, next_cursor),
        "meta": {"total": total},
    }
    if params.include_author:
        doc["included"] = _included(records, authors, params.fields)
    return doc


def single_document(record: Mapping[str, Any], params: SingleParams, *, path: str, body: str,
                    authors: Mapping[str, Mapping[str, Any]], build_id: str) -> dict[str, Any]:
    """One entry with its HTML body (unless ``fields[contents]`` leaves it out)."""
    fields = params.fields.contents
    wants = (lambda name: True) if fields is None else fields.__contains__
    doc: dict[str, Any] = {
        "data": content_resource(record, body=body if wants("body") else None, toc=wants("toc"), fields=fields),
        "links": {"self": path},
    }
    if params.include_author:
        doc["included"] = _included([record], authors, params.fields)
    return doc


def collection_document(resources: list[dict[str, Any]], *, path: str, build_id: str) -> dict[str, Any]:
    """An unpaginated collection (authors, tags, media)."""
    return {"data": resources, "links": {"self": path}, "meta": {"total": len(resources)}}


def resource_document(resource: dict[str, Any], *, path: str, build_id: str) -> dict[str, Any]:
    return {"data": resource, "links": {"self": path}}


def _included(records: Iterable[Mapping[str, Any]], authors: Mapping[str, Mapping[str, Any]],
              fields: Fieldsets) -> list[dict[str, Any]]:
    keys = sorted({r["author"] for r in records if r["author"] in authors})
    return [author_resource(authors[key], fields=fields.authors) for key in keys]


def self_link(path: str, args: Sequence[tuple[str, str]]) -> str:
    """JSON:API ``links.self``: the link that produced this document, its query included."""
    return path + _query(args)


def page_links(path: str, args: Sequence[tuple[str, str]], next_cursor: str | None) -> dict[str, str | None]:
    """self (as asked), first (no cursor) and next (the opaque cursor), relative to the host."""
    rest = [(name, value) for name, value in args if name != "cursor"]
    return {"self": path + _query(args), "first": path + _query(rest),
            "next": path + _query([*rest, ("cursor", next_cursor)]) if next_cursor else None}


def _query(args: Sequence[tuple[str, str]]) -> str:
    if not args:
        return ""
    return "?" + "&".join(f"{quote(name, safe='')}={quote(value, safe=',:')}" for name, value in args)


# --------------------------------------------------------------------------- media


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaItem:
    id: str
    url: str
    filename: str
    mime_type: str
    size: int
    width: int | None
    height: int | None


def media_id(url: str) -> str:
    """A stable id from the URL path: the same file keeps its id across builds.

    The same formula as the GraphQL API's (``graphql_schema.media_id``), so both name a
    file alike: ``med_`` + 12 hex of blake3 of the path without its leading slash.
    """
    return "med_" + blake3.blake3(url.lstrip("/").encode()).hexdigest()[:12]


def media_item(url: str, mime_type: str, size: int, head: bytes | None) -> MediaItem:
    width, height = image_size(mime_type, head or b"")
    return MediaItem(id=media_id(url), url=url, filename=url.rsplit("/", 1)[-1], mime_type=mime_type,
                     size=size, width=width, height=height)


def media_resource(item: MediaItem) -> dict[str, Any]:
    return {"type": "media", "id": item.id,
            "attributes": {"filename": item.filename, "url": item.url, "mimeType": item.mime_type,
                           "size": item.size, "width": item.width, "height": item.height},
            "links": {"self": f"{API_PREFIX}/media/{item.id}", "html": item.url}}


_SVG_TAG = re.compile(rb"<svg\b[^>]*>", re.IGNORECASE)
_SVG_LENGTH = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:px)?\s*")


def image_size(mime_type: str, head: bytes) -> tuple[int | None, int | None]:
    """(width, height) from the first bytes of a PNG, GIF or SVG; (None, None) otherwise."""
    if mime_type == "image/png" and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if mime_type == "image/gif" and head[:4] == b"GIF8" and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    if mime_type == "image/svg+xml":
        match = _SVG_TAG.search(head)
        if match is None:
            return None, None
        tag = match.group().decode("utf-8", "replace")
        width, height = _svg_attribute(tag, "width"), _svg_attribute(tag, "height")
        if width is None or height is None:
            box = re.search(r'\sviewBox\s*=\s*["\']([^"\']*)["\']', tag)
            parts = box.group(1).replace(",", " ").split() if box else []
            if len(parts) == 4 and all(_SVG_LENGTH.fullmatch(p) for p in parts[2:]):
                return round(float(parts[2])), round(float(parts[3]))
            return None, None
        return width, height
    return None, None


def _svg_attribute(tag: str, name: str) -> int | None:
    match = re.search(rf'\s{name}\s*=\s*["\']([^"\']*)["\']', tag)
    if match is None:
        return None
    length = _SVG_LENGTH.fullmatch(match.group(1))  # "100%" or "10em" have no pixel size
    return round(float(length.group(1))) if length else None


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Answer:
    """What the HTTP layer sends: status, headers in order, body (empty for HEAD and 304)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def entry_keys(records: Iterable[Mapping[str, Any]]) -> list[str]:
    return [f"api:{r['id']}" for r in records]


def header_keys(keys: Iterable[str]) -> str:
    """The Surrogate-Key value: unique tokens in order; one that cannot be a header token
    becomes the broader key that is purged whenever it would be (publish.purge_set)."""
    out: dict[str, None] = {}
    for key in keys:
        if not _HEADER_TOKEN.fullmatch(key):
            key = ("api:tags" if key.startswith("api:tag:") else
                   "api:authors" if key.startswith("api:author:") else "api:contents")
        out[key] = None
    return " ".join(out)


def respond(status: int, document: Mapping[str, Any], *, method: str, media_type: str, cache_control: str,
            keys: Iterable[str] = (), build_id: str | None = None, if_none_match: str | None = None,
            vary: str | None = None, extra: Iterable[tuple[str, str]] = ()) -> Answer:
    """Serialise ``document`` and add validators and caching headers; 304 on a match.

    The ETag is the blake3 of the canonical bytes (strong: byte-identical answers only),
    sent on 200s and on cacheable errors. RFC 9110 §13.2.1: If-None-Match is evaluated
    only when the answer would be 2xx.
    """
    body = canonical_json(document)
    headers: list[tuple[str, str]] = [("Cache-Control", cache_control)]
    etag = None
    if status == 200 or cache_control != NO_STORE:
        etag = etag_for(blake3.blake3(body).hexdigest())
        headers.append(("ETag", etag))
    surrogate = header_keys(keys)
    if surrogate:
        headers.append(("Surrogate-Key", surrogate))
    if build_id:
        headers.append(("X-Build", build_id))
    if vary:
        headers.append(("Vary", vary))
    headers.extend(extra)
    if status == 200 and etag is not None and none_match(if_none_match, etag):
        return Answer(304, tuple(headers), b"")
    headers += [("Content-Type", media_type), ("Content-Length", str(len(body)))]
    return Answer(status, tuple(headers), b"" if method == "HEAD" else body)


def error_answer(error: ApiError, *, method: str, media_type: str, build_id: str | None = None,
                 vary: str | None = None) -> Answer:
    """The error document; a 404 is cacheable (long with purge keys, briefly without)."""
    if error.status == 404:
        cache_control = CACHE_CONTROL if error.keys else SHORT_CACHE_CONTROL
    else:
        cache_control = NO_STORE
    extra = [("Allow", error.allow)] if error.allow else []
    if error.status == 401:  # RFC 9110 §15.5.2: a 401 names its challenge
        extra.append(("WWW-Authenticate", 'Bearer realm="flowcms"'))
    return respond(error.status, error_document(error), method=method, media_type=media_type,
                   cache_control=cache_control, keys=error.keys, build_id=build_id, vary=vary, extra=extra)
