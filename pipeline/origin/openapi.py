"""The OpenAPI 3.1 document of the REST (JSON:API) and feed endpoints, plus a small checker. Pure.

``document()`` is what ``GET /api/v3/openapi.json`` serves. ``validate`` checks a value
against one of its schemas: the subset of JSON Schema 2020-12 the document uses (``$ref``
within the document, type, properties, required, additionalProperties, items, enum,
const, anyOf, oneOf, minimum, maximum, minItems, pattern, format date-time). The tests
validate real answers with it, so the document cannot drift from what the API sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.origin.feed import DEFAULT_POSTS_PER_PAGE, MAX_POSTS_PER_PAGE
from pipeline.origin.jsonapi import (
    AUTHOR_FIELDS,
    CONTENT_FIELDS,
    DEFAULT_LIMIT,
    ERRORS,
    JSON_MEDIA_TYPE,
    JSONAPI_MEDIA_TYPE,
    MAX_LIMIT,
    SORTS,
    STATUSES,
)

Schema = dict[str, Any]

DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: Mapping[str, Schema], required: tuple[str, ...] = (), *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties), "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_DATE: Schema = {"type": "string", "format": "date-time"}
_NDATE: Schema = {"type": ["string", "null"], "format": "date-time"}
_LINKS: Schema = {"type": "object", "additionalProperties": {"type": ["string", "null"]}}

_SCHEMAS: dict[str, Schema] = {
    "ContentAttributes": _obj({
        "title": _STR, "slug": _STR, "contentType": _STR, "status": {"enum": list(STATUSES)},
        "excerpt": _STR, "tags": {"type": "array", "items": _STR}, "publishedAt": _NDATE,
        "updatedAt": _NDATE, "readingMinutes": {"type": "integer", "minimum": 0},
        "url": _STR, "fields": {"type": "object"},
        "body": {"type": "string", "description": "HTML; on single-entry answers, or when fields[contents] asks"},
        "toc": {"type": "array"},
    }),
    "Content": _obj({
        "type": {"const": "contents"}, "id": _STR, "attributes": _ref("ContentAttributes"),
        "relationships": _obj({"author": _obj({"data": _obj(
            {"type": {"const": "authors"}, "id": _STR}, ("type", "id"))}, ("data",))}),
        "links": _LINKS,
    }, ("type", "id", "attributes", "links")),
    "Author": _obj({
        "type": {"const": "authors"}, "id": _STR,
        "attributes": _obj({"name": _STR, "bio": _STR, "url": _NSTR, "avatar": _NSTR}),
        "links": _LINKS,
    }, ("type", "id", "attributes", "links")),
    "Tag": _obj({
        "type": {"const": "tags"}, "id": _STR,
        "attributes": _obj({"name": _STR, "count": {"type": "integer", "minimum": 1}}, ("name", "count")),
        "links": _LINKS,
    }, ("type", "id", "attributes", "links")),
    "Media": _obj({
        "type": {"const": "media"}, "id": {"type": "string", "pattern": "^med_[0-9a-f]{12}$"},
        "attributes": _obj({
            "filename": _STR, "url": _STR, "mimeType": _STR, "size": {"type": "integer", "minimum": 0},
            "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]},
        }, ("filename", "url", "mimeType", "size", "width", "height")),
        "links": _LINKS,
    }, ("type", "id", "attributes", "links")),
    "ListMeta": _obj({"total": {"type": "integer", "minimum": 0}}, ("total",)),
    "Meta": _obj({}, ()),
    "PageLinks": _obj({"self": _STR, "first": _STR, "next": _NSTR}, ("self", "first", "next")),
    "ContentList": _obj({
        "data": {"type": "array", "items": _ref("Content")},
        "included": {"type": "array", "items": _ref("Author")},
        "links": _ref("PageLinks"), "meta": _ref("ListMeta"),
    }, ("data", "links", "meta")),
    "ContentDocument": _obj({
        "data": _ref("Content"), "included": {"type": "array", "items": _ref("Author")},
        "links": _obj({"self": _STR}, ("self",)), "meta": _ref("Meta"),
    }, ("data", "links")),
    "AuthorList": _obj({"data": {"type": "array", "items": _ref("Author")},
                        "links": _obj({"self": _STR}, ("self",)), "meta": _ref("ListMeta")},
                       ("data", "links", "meta")),
    "AuthorDocument": _obj({"data": _ref("Author"), "links": _obj({"self": _STR}, ("self",)),
                            "meta": _ref("Meta")}, ("data", "links")),
    "TagList": _obj({"data": {"type": "array", "items": _ref("Tag")},
                     "links": _obj({"self": _STR}, ("self",)), "meta": _ref("ListMeta")},
                    ("data", "links", "meta")),
    "MediaList": _obj({"data": {"type": "array", "items": _ref("Media")},
                       "links": _obj({"self": _STR}, ("self",)), "meta": _ref("ListMeta")},
                      ("data", "links", "meta")),
    "MediaDocument": _obj({"data": _ref("Media"), "links": _obj({"self": _STR}, ("self",)),
                           "meta": _ref("Meta")}, ("data", "links")),
    "Error": _obj({
        "status": {"type": "string", "pattern": "^[45][0-9]{2}$"},
        "code": {"enum": sorted({code for code, _ in ERRORS.values()} | {"BAD_CURSOR"})},
        "title": _STR, "detail": _STR,
        "source": {"oneOf": [_obj({"parameter": _STR}, ("parameter",)), _obj({"pointer": _STR}, ("pointer",))]},
    }, ("status", "code", "title", "detail")),
    "ErrorDocument": _obj({"errors": {"type": "array", "items": _ref("Error"), "minItems": 1}}, ("errors",)),
    "FeedCursor": _obj({"feedKey": _STR, "key": _STR, "publishedAt": _DATE}, ("feedKey", "key", "publishedAt")),
    "FeedAuthor": _obj({"key": _STR, "name": _STR, "avatar": _NSTR, "url": _NSTR}, ("key", "name")),
    "FeedPost": _obj({
        "key": _STR, "title": _STR, "url": _STR, "excerpt": _STR, "publishedAt": _DATE,
        "tags": {"type": "array", "items": _STR}, "contentType": _STR,
        "author": {"anyOf": [_ref("FeedAuthor"), {"type": "null"}]},
    }, ("key", "title", "url", "excerpt", "publishedAt", "tags", "author", "contentType")),
    "Feed": _obj({
        "flowKey": _STR, "title": _STR, "posts": {"type": "array", "items": _ref("FeedPost")},
        "cursor": {"anyOf": [_ref("FeedCursor"), {"type": "null"}]}, "hasMore": {"type": "boolean"},
    }, ("flowKey", "title", "posts", "cursor", "hasMore")),
    "OpenApi": {"type": "object", "required": ["openapi", "info", "paths"]},
}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or _STR}


def _path(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _STR}


_PARAMETERS: dict[str, Schema] = {
    "status": _query("status", "published (any case); draft or archived need the editor role (else 403)",
                     {"type": "string"}),
    "contentType": _query("contentType", "only entries of this content type"),
    "tag": _query("tag", "only entries with this tag"),
    "search": _query("search", "full-text search (words; the last one is a prefix)"),
    "authorId": _query("authorId", "only entries by this author key"),
    "dateFrom": _query("dateFrom", "publishedAt ≥ this ISO 8601 date or date-time (inclusive)"),
    "dateTo": _query("dateTo", "publishedAt ≤ this ISO 8601 date or date-time (a plain date: the whole day)"),
    "sort": _query("sort", "order of the list; updatedAt orders an entry never updated (updatedAt null) by its publishedAt", {"enum": list(SORTS), "default": "-publishedAt"}),
    "limit": _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                           "default": DEFAULT_LIMIT}),
    "cursor": _query("cursor", "the opaque cursor of links.next (keyset: stable while entries are published)"),
    "include": _query("include", "related resources to add to `included`", {"enum": ["author"]}),
    "fieldsContents": _query("fields[contents]", "sparse fieldset: comma-separated names of "
                             + ", ".join(sorted(CONTENT_FIELDS))),
    "fieldsAuthors": _query("fields[authors]", "sparse fieldset: comma-separated names of "
                            + ", ".join(sorted(AUTHOR_FIELDS))),
    "slugContentType": _query("contentType", "the content type the slug belongs to (slugs are unique per type)"),
    "postsPerPage": _query("postsPerPage", "posts per page", {"type": "integer", "minimum": 1,
                                                               "maximum": MAX_POSTS_PER_PAGE,
                                                               "default": DEFAULT_POSTS_PER_PAGE}),
    "feedCursor": _query("cursor", 'URL-encoded JSON object {"feedKey", "key", "publishedAt"} from the '
                         "previous page's `cursor`"),
    "id": _path("id", "entry id"),
    "slug": _path("slug", "entry slug"),
    "key": _path("key", "author key"),
    "mediaId": _path("id", "media id (stable, from the file's path)"),
    "flowKey": _path("flowKey", "the feed key ([feeds.<flowKey>] in flowcms.toml)"),
}

_HEADERS: dict[str, Schema] = {
    "ETag": {"description": "strong validator: blake3 of the answer bytes", "schema": _STR},
    "Cache-Control": {"description": "public with a long s-maxage (publish purges), or no-store", "schema": _STR},
    "Surrogate-Key": {"description": "api:<entry id> per entry shown plus the listing's keys", "schema": _STR},
    "X-Build": {"description": "the live build that answered", "schema": _STR},
    "Vary": {"description": "Accept, Content-Type (the same URL may be a 406 or a 415), plus X-Flowcms-Role on "
                            "contents and posts",
             "schema": _STR},
}
#: Added by the edge gateway to every API answer it passes or refuses (not by the origin).
_GATEWAY_HEADERS: dict[str, Schema] = {
    **{name: {"description": f"{text} (added by the edge gateway, cache hits included)", "schema": schema}
       for name, text, schema in (
           ("X-RateLimit-Limit", "requests per minute of the caller's tier", {"type": "integer"}),
           ("X-RateLimit-Remaining", "requests left in the window", {"type": "integer"}),
           ("X-RateLimit-Reset", "when the window is full again, epoch seconds", {"type": "integer"}),
           ("X-Request-ID", "the client's request id when well-formed, else a generated one", _STR))},
}
#: What the edge gateway adds to its refusals (401, 429).
_REFUSAL_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": _STR}},
    429: {"Retry-After": {"description": "seconds until a request is admitted again", "schema": {"type": "integer"}},
          **{name: {"$ref": f"#/components/headers/{name}"}
             for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")}},
}

_ERROR_TEXT = {
    400: "malformed request: unknown parameter or bad value (source.parameter names it)",
    401: "unauthenticated: the edge gateway needs an API key or token here (a route that is not public), "
         "or the one given is unknown, expired or malformed",
    403: "forbidden: drafts need the editor role",
    404: "no such resource (also when it is not published)",
    405: "method not allowed (Allow: GET, HEAD)",
    406: "not acceptable: Accept excludes JSON, or names the JSON:API media type only with parameters "
         "other than ext/profile or with extensions (none are supported)",
    415: "unsupported media type: Content-Type is the JSON:API media type with parameters other than "
         "ext/profile, or with an extension",
    429: "rate limit of the caller's tier exceeded (the edge gateway; Retry-After says when to retry)",
    500: "internal error (no details)",
    503: "nothing is published yet",
}


def _responses(schema: str, media_type: str, *, statuses: tuple[int, ...]) -> Schema:
    def content(name: str) -> Schema:
        return {media_type: {"schema": _ref(name)}}

    ok_headers = {name: {"$ref": f"#/components/headers/{name}"} for name in _HEADERS}
    responses: Schema = {
        "200": {"description": "OK", "headers": ok_headers, "content": content(schema)},
        "304": {"description": "not modified (If-None-Match matched the ETag)"},
    }
    for status in sorted({*statuses, 401, 429}):  # every API route sits behind the gateway
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": content("ErrorDocument")}
        if status in _REFUSAL_HEADERS:
            responses[str(status)]["headers"] = _REFUSAL_HEADERS[status]
    return responses


#: The feed's URI and seed 003's other spellings of it ("Parameters: /?QUERYSTRING", /v1/flow/<FLOWKEY>/).
FEED_PATHS = (("/public/feed/{flowKey}", "getFeed"), ("/public/feed/{flowKey}/", "getFeedSlash"),
              ("/v1/flow/{flowKey}", "getFlow"), ("/v1/flow/{flowKey}/", "getFlowSlash"))


def _operation(operation_id: str, summary: str, schema: str, parameters: list[str], *,
               media_type: str = JSONAPI_MEDIA_TYPE, statuses: tuple[int, ...] = (400, 404, 405, 406, 500, 503),
               tags: tuple[str, ...] = ("contents",), note: str = "") -> Schema:
    if media_type == JSONAPI_MEDIA_TYPE:
        statuses = (*statuses, 415)
    return {"get": {
        "operationId": operation_id, "summary": summary, "tags": list(tags),
        "description": " ".join(filter(None, ("HEAD is answered too, with the headers of GET and no body.", note))),
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in parameters],
        "responses": _responses(schema, media_type, statuses=statuses),
    }}


_LIST = ["status", "contentType", "tag", "search", "authorId", "dateFrom", "dateTo", "sort", "limit", "cursor",
         "include", "fieldsContents", "fieldsAuthors"]
_SINGLE = ["include", "fieldsContents", "fieldsAuthors"]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict: callers may change it)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "FlowCMS delivery API", "version": "3",
                 "description": "Published entries as JSON:API documents, and the Flowbox feed. "
                                "Answers carry ETag (304 on If-None-Match), Cache-Control and "
                                "Surrogate-Key; errors are JSON:API error documents. Through the edge, "
                                "the gateway adds X-RateLimit-Limit, X-RateLimit-Remaining, "
                                "X-RateLimit-Reset and X-Request-ID to every answer (components.headers)."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        # Public routes take anonymous reads (rate-limited per client address); a key or token
        # raises the caller's tier and role. {} first: no credential is needed where a route is public.
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/v3/contents": _operation("listContents", "live entries, filtered, sorted, paginated",
                                           "ContentList", _LIST, statuses=(400, 403, 405, 406, 500, 503)),
            "/api/v3/contents/{id}": _operation("getContent", "one live entry by id", "ContentDocument",
                                                ["id", *_SINGLE]),
            "/api/v3/contents/by-slug/{slug}": _operation("getContentBySlug", "one live entry by slug",
                                                          "ContentDocument", ["slug", "slugContentType", *_SINGLE]),
            "/api/v3/posts": _operation("listPosts", "live entries of contentType blog (no contentType parameter)",
                                        "ContentList", [p for p in _LIST if p != "contentType"],
                                        statuses=(400, 403, 405, 406, 500, 503)),
            "/api/v3/posts/{id}": _operation("getPost", "one live blog entry by id", "ContentDocument",
                                             ["id", *_SINGLE]),
            "/api/v3/authors": _operation("listAuthors", "all authors", "AuthorList", ["fieldsAuthors"],
                                          statuses=(400, 405, 406, 500, 503), tags=("authors",)),
            "/api/v3/authors/{key}": _operation("getAuthor", "one author", "AuthorDocument",
                                                ["key", "fieldsAuthors"], tags=("authors",)),
            "/api/v3/tags": _operation("listTags", "tags in use by live entries, with counts", "TagList", [],
                                       statuses=(400, 405, 406, 500, 503), tags=("tags",)),
            "/api/v3/media": _operation("listMedia", "media files of the live build", "MediaList", [],
                                        statuses=(400, 405, 406, 500, 503), tags=("media",)),
            "/api/v3/media/{id}": _operation("getMedia", "one media file's metadata", "MediaDocument",
                                             ["mediaId"], tags=("media",)),
            "/api/v3/openapi.json": _operation("getOpenApi", "this document", "OpenApi", [],
                                               media_type=JSON_MEDIA_TYPE, statuses=(400, 405, 406, 500),
                                               tags=("meta",)),
            **{path: _operation(
                operation_id, "a Flowbox feed page (seed 003): newest first, cursor-paginated", "Feed",
                ["flowKey", "postsPerPage", "feedCursor"], media_type=JSON_MEDIA_TYPE, tags=("feed",),
                note="" if path == "/public/feed/{flowKey}" else
                "The same answer as /public/feed/{flowKey}: seed 003 also spells the feed's URI this way.")
               for path, operation_id in FEED_PATHS},
        },
        "components": {"schemas": _copy(_SCHEMAS), "parameters": _copy(_PARAMETERS),
                       "headers": _copy({**_HEADERS, **_GATEWAY_HEADERS}),
                       "securitySchemes": {"bearer": {
                           "type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer with an API key (fc_live_… / fc_test_…) or a "
                                          "JWT (HS256, or RS256 against the configured JWKS; issuer, audience "
                                          "and expiry checked), judged by the edge gateway before its cache"}}},
    }


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------- checking

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def validate(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (whose ``$ref``s point into ``root``), as messages."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return validate(value, target, root, path)
    errors: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            return [f"{path}: {type(value).__name__} is not {' or '.join(names)}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    for keyword, combine in (("anyOf", any), ("oneOf", lambda oks: sum(oks) == 1)):
        if keyword in schema:
            oks = [not validate(value, option, root, path) for option in schema[keyword]]
            if not combine(oks):
                errors.append(f"{path}: matches {sum(oks)} of the {keyword} options")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not DATE_TIME.fullmatch(value):
            errors.append(f"{path}: {value!r} is not a UTC date-time with Z")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        errors += [f"{path}: {name!r} is missing" for name in schema.get("required", ()) if name not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += validate(item, properties[name], root, f"{path}.{name}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, root, f"{path}.{name}")
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def response_schema(doc: Mapping[str, Any], path: str, status: int) -> tuple[str, Schema] | None:
    """(media type, schema) of the GET answer with ``status`` at the path template ``path``."""
    response = doc["paths"][path]["get"]["responses"].get(str(status))
    if response is None or "content" not in response:
        return None
    ((media_type, body),) = response["content"].items()
    return media_type, body["schema"]
