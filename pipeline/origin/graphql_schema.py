"""The GraphQL delivery schema (seed 001's query side) and its synchronous resolvers.

Pure of HTTP: ``graphql_api`` parses, limits, validates and executes a request with
``SCHEMA`` and an ``Execution`` as the context, all inside one ``LiveIndex.read`` call,
so a request costs one thread hop (DEPS.md: graphql-core's async paths break under trio).

Index reads are batched per request: each root field runs its own query (a ``contents``
page is one keyset query plus its count), every author is loaded at once with
``list_authors`` on first need, and the media catalogue comes from the build's manifest
once per build. Resolvers raise ``ApiError`` (seed 001's codes) or the index's
``QueryError``; ``graphql_api`` maps them to ``extensions.code``/``statusCode``. The
``Execution`` also records what the answer depends on: the entries it shows (surrogate
keys) and whether the X-Flowcms-* identity headers changed it (then no cache may keep it).
"""

from __future__ import annotations

import enum
import functools
import html
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import blake3
from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    ValueNode,
    build_schema,
)
from graphql.language import StringValueNode

from pipeline.cursor import decode_cursor, encode_cursor
from pipeline.dates import DateParseError, normalise
from pipeline.errors import PipelineError, QueryError
from pipeline.index import (
    MAX_LIMIT,
    EntryQuery,
    Record,
    get_entry,
    get_entry_by_slug,
    list_authors,
    query_entries,
)
from pipeline.origin.live import Snapshot, body_html
from pipeline.store import Store

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "SCHEMA",
    "SDL",
    "ApiError",
    "ErrorCode",
    "Execution",
    "MediaCatalogue",
    "Viewer",
    "image_size",
    "media_id",
]

#: Relay page size when neither ``first`` nor ``last`` is given (seed 001: default 10).
DEFAULT_PAGE_SIZE = 10
#: Roles the gateway sets that may read drafts and scheduled entries.
EDITOR_ROLES = frozenset({"editor", "admin"})
#: seed 001 accepts "-createdAt": an entry is created when it is published here.
_SORT_ALIASES = {"createdAt": "publishedAt", "-createdAt": "-publishedAt"}
_SORTS = ("publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt")
_FEATURED_FIELDS = ("featuredImage", "image", "cover")


class ErrorCode(enum.StrEnum):
    """seed 001's error codes, each with its HTTP status."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_ERROR = "INTERNAL_ERROR"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.NOT_FOUND: 404,
    ErrorCode.VALIDATION_ERROR: 422, ErrorCode.RATE_LIMITED: 429, ErrorCode.INTERNAL_ERROR: 500,
}


class ApiError(PipelineError):
    """A client-visible failure of the API, with its code and (when not the code's) status."""

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = code.status if status is None else status


SDL = '''
"""An ISO 8601 instant in UTC with a Z designator, like 2026-11-02T09:30:00Z."""
scalar DateTime

"""Where an entry is in its life."""
enum ContentStatus {
  DRAFT
  PUBLISHED
  ARCHIVED
}

input ContentFilterInput {
  "Entries of this status; anything but PUBLISHED needs the editor or admin role."
  status: ContentStatus
  "Content type key, like blog or docs."
  contentType: String
  "Full-text search: plain words, all must match, the last one as a prefix."
  search: String
  tag: String
  "The author's key."
  authorId: ID
  "Published at or after (a date covers the whole day)."
  dateFrom: DateTime
  "Published at or before (a date covers the whole day)."
  dateTo: DateTime
}

type Query {
  """A page of entries (Relay connection). first (default 10, at most 100) with after,
  or last with before for backward pages. sort: publishedAt, title or updatedAt,
  with a leading - for descending (default -publishedAt; createdAt means publishedAt)."""
  contents(first: Int, after: String, last: Int, before: String,
           filter: ContentFilterInput, sort: String): ContentConnection!
  """One entry by its id. Non-null, as seed 001's error example has it: an unknown id is a
  NOT_FOUND error with "data": null (and HTTP 404), not a null field beside the others."""
  content(id: ID!): Content!
  "One entry by its slug (slugs are unique per content type); an unknown slug as content(id)."
  contentBySlug(slug: String!, contentType: String): Content!
  "One media file by its id; an unknown id as content(id)."
  media(id: ID!): MediaItem!
  "The authenticated user (set by the edge gateway)."
  currentUser: User
  "Every author of the site."
  authors: [User!]!
}

type ContentConnection {
  edges: [ContentEdge!]!
  pageInfo: PageInfo!
  "How many entries match the filter, on all pages."
  totalCount: Int!
}

type ContentEdge {
  cursor: String!
  node: Content!
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type Content {
  id: ID!
  title: String!
  slug: String!
  "The rendered body (HTML)."
  body: String!
  excerpt: String
  status: ContentStatus!
  tags: [String]
  author: User
  "Media files the body shows or links to."
  media: [MediaItem]
  createdAt: DateTime!
  updatedAt: DateTime!
  publishedAt: DateTime
  contentType: String!
  "The entry's page on the site."
  url: String!
  readingMinutes: Int
  "The front matter's featuredImage (or image, cover), else the first image of the body."
  featuredImage: MediaItem
}

type User {
  id: ID!
  name: String!
  email: String
  "admin, editor or viewer for people signed in; author for authors."
  role: String!
  avatar: String
  bio: String
  url: String
  organization: Organization
}

type Organization {
  id: ID!
  name: String!
  slug: String!
}

type MediaItem {
  id: ID!
  filename: String!
  url: String!
  mimeType: String!
  size: Int!
  width: Int
  height: Int
  alt: String
  uploadedAt: DateTime!
}
'''


# --------------------------------------------------------------------------- request values


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """Who is asking, as the edge gateway said after authenticating (X-Flowcms-* headers)."""

    subject: str | None = None
    role: str | None = None
    name: str | None = None
    email: str | None = None
    organization: str | None = None

    @property
    def can_see_drafts(self) -> bool:
        return self.role in EDITOR_ROLES


# --------------------------------------------------------------------------- media


def media_id(path: str) -> str:
    """A media file's id, from its site path (stable while the file stays): ``med_…``."""
    return "med_" + blake3.blake3(path.lstrip("/").encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class MediaFile:
    id: str
    path: str
    blob: str
    type: str
    size: int


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media file as one entry shows it (its alt text comes from that entry's body)."""

    file: MediaFile
    entry: Record | None = None


class MediaCatalogue:
    """The media files of one build (manifest paths under /media/), read once per build."""

    def __init__(self, build_id: str, files: list[MediaFile], as_of: str, store: Store) -> None:
        self.build_id = build_id
        self.by_path = {item.path: item for item in files}
        self.by_id = {item.id: item for item in files}
        self.as_of = as_of
        self.store = store
        self._sizes: dict[str, tuple[int, int] | None] = {}

    @classmethod
    def load(cls, store: Store, build_id: str) -> MediaCatalogue:
        manifest = store.manifest(build_id)
        files = [MediaFile(media_id(path), path, item.blob, item.type, item.size)
                 for path, item in sorted(manifest.items()) if path.startswith("/media/")]
        # A git-based site has no upload time: a file is as new as the build that holds it.
        return cls(build_id, files, store.info(build_id).as_of, store)

    def dimensions(self, item: MediaFile) -> tuple[int, int] | None:
        """(width, height) of an image, read from the head of its blob once per build."""
        if item.blob not in self._sizes:
            with open(self.store.blob_path(item.blob), "rb") as f:
                self._sizes[item.blob] = image_size(f.read(65536), item.type)
        return self._sizes[item.blob]


_SVG_TAG = re.compile(rb"<svg\b[^>]*>", re.IGNORECASE)
_SVG_ATTR = re.compile(rb'\b(width|height|viewBox)\s*=\s*["\']([^"\']*)["\']')


def image_size(head: bytes, mime: str) -> tuple[int, int] | None:
    """Pixel size from the first bytes of a PNG, GIF, JPEG or SVG; None when unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if mime.startswith("image/svg"):
        tag = _SVG_TAG.search(head)
        if tag is None:
            return None
        attrs = {name.decode(): value.decode(errors="replace") for name, value in _SVG_ATTR.findall(tag[0])}
        width, height = _svg_length(attrs.get("width")), _svg_length(attrs.get("height"))
        if width is None or height is None:
            box = attrs.get("viewBox", "").replace(",", " ").split()
            if len(box) == 4:
                width, height = _svg_length(box[2]), _svg_length(box[3])
        return (width, height) if width is not None and height is not None else None
    return None


def _svg_length(value: str | None) -> int | None:
    if value is None:
        return None
    number = value.strip().removesuffix("px")
    try:
        return round(float(number))
    except ValueError:
        return None  # percentages, em: no intrinsic pixel size


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        length = int.from_bytes(head[pos + 2: pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame
            return int.from_bytes(head[pos + 7: pos + 9], "big"), int.from_bytes(head[pos + 5: pos + 7], "big")
        pos += 2 + length
    return None


_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_HTML_ATTR = re.compile(r'\b(src|alt)\s*=\s*"([^"]*)"')


# --------------------------------------------------------------------------- execution context


class Execution:
    """What one request's resolvers share: the snapshot, the viewer and the batched loads."""

    def __init__(self, snapshot: Snapshot, viewer: Viewer, catalogue: MediaCatalogue) -> None:
        self.snapshot = snapshot
        self.viewer = viewer
        self.catalogue = catalogue
        self.keys: dict[str, None] = {"api:contents": None}
        self.uses_viewer = False
        self._authors: dict[str, Record] | None = None
        self._alts: dict[str, dict[str, str]] = {}

    def drafts_visible(self) -> bool:
        """Whether this viewer reads drafts too (an answer that then depends on the role)."""
        if self.viewer.can_see_drafts:
            self.uses_viewer = True
            return True
        return False

    def shown(self, records: list[Record]) -> list[Record]:
        for record in records:
            self.keys[f"api:{record['id']}"] = None
        return records

    def author(self, key: str | None) -> Record | None:
        """An author by key; every author is read in one query, on first need."""
        if self._authors is None:
            authors = self.snapshot.records.derive("authors", functools.partial(list_authors, self.snapshot.conn))
            self._authors = {author["key"]: author for author in authors}
        self.keys["api:authors"] = None
        return self._authors.get(key) if key is not None else None

    def all_authors(self) -> list[Record]:
        self.author(None)
        assert self._authors is not None
        return list(self._authors.values())

    def media_of(self, record: Record) -> list[MediaRef]:
        """Media files the entry's body shows or links to, in order of first use."""
        self.keys["api:media"] = None
        seen: dict[str, None] = {}
        for link in record.get("siteLinks") or ():
            path = link[2] if isinstance(link, list) and len(link) == 3 else None
            if isinstance(path, str) and path in self.catalogue.by_path:
                seen[path] = None
        return [MediaRef(self.catalogue.by_path[path], record) for path in seen]

    def featured_image(self, record: Record) -> MediaRef | None:
        fields = record.get("fields") or {}
        for name in _FEATURED_FIELDS:
            value = fields.get(name)
            if isinstance(value, str):
                path = "/" + posixpath.normpath(value.lstrip("/"))
                if path in self.catalogue.by_path:
                    self.keys["api:media"] = None
                    return MediaRef(self.catalogue.by_path[path], record)
        return next((ref for ref in self.media_of(record) if ref.file.type.startswith("image/")), None)

    def alt_text(self, ref: MediaRef) -> str | None:
        """The alt text the entry's body gives the image (its HTML is read once per entry)."""
        if ref.entry is None:
            return None
        entry_id = ref.entry["id"]
        if entry_id not in self._alts:
            alts: dict[str, str] = {}
            for tag in _IMG_TAG.findall(body_html(self.snapshot, ref.entry)):
                attrs = dict(_HTML_ATTR.findall(tag))
                if "src" in attrs and "alt" in attrs:
                    alts.setdefault(html.unescape(attrs["src"]).split("#")[0], html.unescape(attrs["alt"]))
            self._alts[entry_id] = alts
        return self._alts[entry_id].get(ref.file.path)


# --------------------------------------------------------------------------- resolvers


def _context(info: GraphQLResolveInfo) -> Execution:
    context = info.context
    assert isinstance(context, Execution)
    return context


def _contents(_root: None, info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    ctx = _context(info)
    sort = args.get("sort") or "-publishedAt"
    sort = _SORT_ALIASES.get(sort, sort)
    if sort not in _SORTS:
        raise QueryError(f"sort must be one of {', '.join(_SORTS)} (or createdAt, -createdAt)")
    first, after, last, before = args.get("first"), args.get("after"), args.get("last"), args.get("before")
    backward = last is not None or before is not None
    if backward and (first is not None or after is not None):
        raise QueryError("page with first/after or with last/before, not both")
    size = (last if backward else first)
    size = DEFAULT_PAGE_SIZE if size is None else size
    if not 1 <= size <= MAX_LIMIT:
        raise QueryError(f"{'last' if backward else 'first'} must be an integer from 1 to {MAX_LIMIT}")
    filters = args.get("filter") or {}
    status = filters.get("status")
    drafts = ctx.drafts_visible()
    if status not in (None, "PUBLISHED") and not drafts:
        ctx.uses_viewer = True  # 401 for nobody, 403 for someone without the role
        if ctx.viewer.subject is None and ctx.viewer.role is None:  # seed 001: no credential is UNAUTHENTICATED
            raise ApiError(ErrorCode.UNAUTHENTICATED, f"reading {status} entries needs a signed-in editor or "
                                                      "admin: send Authorization: Bearer <API key or token>")
        raise ApiError(ErrorCode.FORBIDDEN, f"reading {status} entries needs the editor or admin role")
    query_sort, cursor = sort, after
    if backward:
        query_sort = sort[1:] if sort.startswith("-") else "-" + sort
        # The client's cursor names a position in its order; the same position, searched
        # from the other end, is a cursor of the reversed order.
        cursor = encode_cursor(query_sort, decode_cursor(before, sort=sort)) if before is not None else None
    page = query_entries(ctx.snapshot.conn, EntryQuery(
        status=status.lower() if status else None,
        content_type=filters.get("contentType"),
        tag=filters.get("tag"),
        author_id=filters.get("authorId"),
        date_from=filters.get("dateFrom"),
        date_to=filters.get("dateTo"),
        search=filters.get("search"),
        sort=query_sort,
        limit=size,
        cursor=cursor,
        # seed 001: PUBLISHED is "live and publicly accessible", for editors too (an entry
        # scheduled for later is not, as in REST); with no status an editor sees every entry.
        live_only=status == "PUBLISHED" or not drafts,
    ), cache=ctx.snapshot.records)
    records = ctx.shown(page.entries[::-1] if backward else page.entries)
    edges = [_Edge(record, sort) for record in records]
    more = page.next_cursor is not None
    return {
        "edges": edges,
        "pageInfo": {
            "hasNextPage": before is not None if backward else more,
            "hasPreviousPage": more if backward else after is not None,
            "startCursor": edges[0].cursor if edges else None,
            "endCursor": edges[-1].cursor if edges else None,
        },
        "totalCount": page.total,
    }


class _Edge:
    """A ContentEdge whose cursor is made only when a query asks for it (the default
    resolver reads attributes): most queries ask for nodes only, and making every
    edge's cursor was a tenth of a 10-node page."""

    __slots__ = ("_sort", "node")

    def __init__(self, node: Record, sort: str) -> None:
        self.node = node
        self._sort = sort

    @property
    def cursor(self) -> str:
        return encode_cursor(self._sort, (_sort_value(self.node, self._sort), self.node["id"]))


def _sort_value(record: Record, sort: str) -> str:
    """The keyset value the index orders ``record`` by under ``sort`` (its *_key columns)."""
    name = sort.lstrip("-")
    if name == "title":
        return str(record["title"])
    if name == "publishedAt":
        return record["publishedAt"] or ""
    return record["updatedAt"] or record["publishedAt"] or ""


def _content(_root: None, info: GraphQLResolveInfo, id: str) -> Record:  # noqa: A002 (the schema's name)
    ctx = _context(info)
    record = get_entry(ctx.snapshot.conn, id, live_only=not ctx.drafts_visible(), cache=ctx.snapshot.records)
    if record is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Content with id '{id}' not found")
    return ctx.shown([record])[0]


def _content_by_slug(_root: None, info: GraphQLResolveInfo, slug: str, contentType: str | None = None) -> Record:
    ctx = _context(info)
    record = get_entry_by_slug(ctx.snapshot.conn, slug, content_type=contentType,
                               live_only=not ctx.drafts_visible(), cache=ctx.snapshot.records)
    if record is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Content with slug '{slug}' not found")
    return ctx.shown([record])[0]


def _media(_root: None, info: GraphQLResolveInfo, id: str) -> MediaRef:  # noqa: A002
    ctx = _context(info)
    item = ctx.catalogue.by_id.get(id)
    if item is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Media with id '{id}' not found")
    ctx.keys["api:media"] = None
    return MediaRef(item)


def _current_user(_root: None, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx = _context(info)
    viewer = ctx.viewer
    if viewer.subject is None:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "Authentication required: no signed-in user")
    ctx.uses_viewer = True
    author = ctx.author(viewer.subject) or {}  # a signed-in author: fill what the gateway left out
    user = _user(author) if author else {"id": viewer.subject, "name": viewer.subject, "email": None,
                                         "avatar": None, "bio": None, "url": None}
    user.update(id=viewer.subject, role=viewer.role or "viewer")
    if viewer.name:
        user["name"] = viewer.name
    if viewer.email:
        user["email"] = viewer.email
    if viewer.organization:
        user["organization"] = {"id": viewer.organization, "name": viewer.organization,
                                "slug": viewer.organization}
    return user


def _authors(_root: None, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [_user(author) for author in _context(info).all_authors()]


def _user(author: Record) -> dict[str, Any]:
    return {"id": author["key"], "name": author.get("name") or author["key"], "email": author.get("email"),
            "role": "author", "avatar": author.get("avatar"), "bio": author.get("bio"),
            "url": author.get("url"), "organization": None}


def _created_at(record: Record, ctx: Execution) -> str:
    """When the entry came to be: its first date, else (a draft with none) the build's."""
    return str(record["publishedAt"] or record.get("publishAt") or record["updatedAt"]
               or ctx.catalogue.as_of)


_CONTENT_RESOLVERS: dict[str, Callable[[Record, GraphQLResolveInfo], Any]] = {
    "status": lambda record, _info: str(record["status"]).upper(),
    "body": lambda record, info: body_html(_context(info).snapshot, record),
    "author": lambda record, info: _user_or_none(_context(info).author(record["author"])),
    "media": lambda record, info: _context(info).media_of(record),
    "featuredImage": lambda record, info: _context(info).featured_image(record),
    "createdAt": lambda record, info: _created_at(record, _context(info)),
    "updatedAt": lambda record, info: record["updatedAt"] or _created_at(record, _context(info)),
}


def _user_or_none(author: Record | None) -> dict[str, Any] | None:
    return _user(author) if author is not None else None


def _media_field(name: str) -> Callable[[MediaRef, GraphQLResolveInfo], Any]:
    def resolve(ref: MediaRef, info: GraphQLResolveInfo) -> Any:
        item = ref.file
        if name in ("width", "height"):
            size = _context(info).catalogue.dimensions(item)
            return None if size is None else size[0 if name == "width" else 1]
        return {
            "id": lambda: item.id,
            "filename": lambda: posixpath.basename(item.path),
            "url": lambda: item.path,
            "mimeType": lambda: item.type.split(";")[0].strip(),
            "size": lambda: item.size,
            "alt": lambda: _context(info).alt_text(ref),
            "uploadedAt": lambda: _context(info).catalogue.as_of,
        }[name]()

    return resolve


def _date_time_out(value: Any) -> str:
    try:
        return normalise(value)
    except DateParseError as exc:
        raise GraphQLError(f"DateTime cannot represent {value!r}") from exc


def _date_time_in(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime must be an ISO 8601 string, not {value!r}")
    try:
        return normalise(value)
    except DateParseError as exc:
        raise GraphQLError(f"DateTime must be ISO 8601, like 2026-11-02T09:30:00Z: {value!r}") from exc


def _date_time_literal(node: ValueNode) -> str:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("DateTime must be a string, like \"2026-11-02T09:30:00Z\"")
    return _date_time_in(node.value)


def _build() -> GraphQLSchema:
    schema = build_schema(SDL)
    date_time = schema.type_map["DateTime"]
    assert isinstance(date_time, GraphQLScalarType)
    date_time.coerce_output_value = _date_time_out
    date_time.coerce_input_value = _date_time_in
    date_time.coerce_input_literal = _date_time_literal
    resolvers: dict[str, Mapping[str, Callable[..., Any]]] = {
        "Query": {"contents": _contents, "content": _content, "contentBySlug": _content_by_slug,
                  "media": _media, "currentUser": _current_user, "authors": _authors},
        "Content": _CONTENT_RESOLVERS,
        "MediaItem": {name: _media_field(name) for name in
                      ("id", "filename", "url", "mimeType", "size", "width", "height", "alt", "uploadedAt")},
    }
    for type_name, fields in resolvers.items():
        object_type = schema.type_map[type_name]
        assert isinstance(object_type, GraphQLObjectType)
        for field_name, resolve in fields.items():
            object_type.fields[field_name].resolve = resolve
    return schema


SCHEMA = _build()
