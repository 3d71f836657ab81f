"""The Flowbox feed (seed 003): ``GET /public/feed/{flowKey}?postsPerPage=29&cursor=…``. Pure.

Feeds are defined in the content repo (``[feeds.<flowKey>]`` in flowcms.toml, carried to
the origin in the build's build.json) as a selection of live entries: a content type, a
tag, an author, or all of them. A feed lists its entries newest first by (publishedAt, id).

The cursor is the seed's JSON object ``{"feedKey", "key", "publishedAt"}``: the flow, the
last entry shown and its publication date, URL-encoded into ``?cursor=``. It is a keyset
position, not an offset, so entries published between two requests never shift the next
page: the following page starts strictly after (publishedAt, key) and goes on through the
older entries. Decoding checks every part and says what is wrong (400 BAD_CURSOR).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from pipeline import dates
from pipeline.config import FeedSpec, parse_feeds
from pipeline.cursor import encode_cursor
from pipeline.documents import Serialized
from pipeline.origin.jsonapi import ApiError, Derive, bounded_int, single_values

DEFAULT_POSTS_PER_PAGE = 29  # seed 003: "by default 29 Content"
MAX_POSTS_PER_PAGE = 100  # the index's page bound (index.MAX_LIMIT)
#: A real cursor is under 200 characters; this bounds what a hostile one can cost.
MAX_CURSOR_CHARS = 2048
FEED_SORT = "-publishedAt"  # newest first; the index breaks ties by id, as the cursor does
FEED_PREFIX = "/public/feed/"
_PARAMETERS = ("postsPerPage", "cursor")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedCursor:
    feed_key: str
    key: str
    """The id of the last entry of the previous page."""
    published_at: str
    """Its publishedAt, canonical UTC (``2026-11-02T09:30:00Z``)."""

    def to_json(self) -> dict[str, str]:
        return {"feedKey": self.feed_key, "key": self.key, "publishedAt": self.published_at}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedRequest:
    posts_per_page: int
    cursor: FeedCursor | None


def feeds_from_info(info: Mapping[str, Any]) -> dict[str, FeedSpec]:
    """The feed definitions of a build (its build.json); none for builds made before feeds."""
    return parse_feeds(info.get("feeds") or {}, path="build.json")


def format_feed_cursor(cursor: FeedCursor) -> str:
    """The cursor's JSON text (compact), as a client sends it back after URL-decoding."""
    return json.dumps(cursor.to_json(), ensure_ascii=False, separators=(",", ":"))


def encode_feed_cursor(cursor: FeedCursor) -> str:
    """The URL-encoded JSON object for ``?cursor=`` (seed 003)."""
    return quote(format_feed_cursor(cursor), safe="")


def parse_feed_cursor(text: str, *, flow_key: str) -> FeedCursor:
    """The ``cursor`` parameter (already URL-decoded once by the server) → FeedCursor.

    A client that encoded twice is forgiven: text starting with ``%7B`` is decoded again.
    Raises ApiError(400, BAD_CURSOR) saying what is wrong.
    """
    if len(text) > MAX_CURSOR_CHARS:
        raise _bad(f"the cursor is longer than {MAX_CURSOR_CHARS} characters")
    if text[:3].upper() == "%7B":
        text = unquote(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad('the cursor is not JSON; send the URL-encoded "cursor" object of the previous '
                   'page, like {"feedKey":"…","key":"…","publishedAt":"2026-11-02T09:30:00Z"}') from None
    if not isinstance(data, dict):
        raise _bad('the cursor must be a JSON object with "feedKey", "key" and "publishedAt"')
    missing = [name for name in ("feedKey", "key", "publishedAt") if name not in data]
    if missing:
        raise _bad(f"the cursor lacks {', '.join(repr(name) for name in missing)}")
    for name in ("feedKey", "key", "publishedAt"):
        if not isinstance(data[name], str) or not data[name]:
            raise _bad(f"the cursor's {name!r} must be a non-empty string")
    if data["feedKey"] != flow_key:
        raise _bad(f"the cursor belongs to feed {data['feedKey'][:64]!r}, not {flow_key!r}; "
                   "start this feed without a cursor")
    try:
        moment = dates.to_utc(_midnight_24(data["publishedAt"]))
        between = bool(moment.microsecond)
        if between:
            # Between two whole seconds (the index keeps seconds): every entry of the earlier
            # second is older than the cursor, so the page starts after the next second, before
            # any key of it. (9999-12-31T23:59:59.5 has no next second: a bad cursor too.)
            moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise _bad(f"the cursor's 'publishedAt' {data['publishedAt'][:40]!r} is not an ISO 8601 "
                   "date-time like 2026-11-02T09:30:00Z") from None
    try:
        data["key"].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate smuggled in by a JSON escape: SQLite cannot bind it
        raise _bad("the cursor's 'key' is not valid Unicode") from None
    return FeedCursor(feed_key=flow_key, key="" if between else data["key"], published_at=dates.format_iso(moment))


def _midnight_24(text: str) -> str:
    """ISO 8601's end of day, ``…T24:00:00`` (seed 003 allows hour 24), as the next day's 00:00."""
    head, sep, rest = text.partition("T24:00")
    if not sep or rest.lstrip(":0.") not in ("", "Z", "z", "+00:00", "-00:00"):
        return text
    day = dt.date.fromisoformat(head) + dt.timedelta(days=1)
    return f"{day.isoformat()}T00:00:00{rest.lstrip(':0.')}"


def _bad(detail: str) -> ApiError:
    return ApiError(400, detail, code="BAD_CURSOR", parameter="cursor")


def parse_feed_request(args: Sequence[tuple[str, str]], *, flow_key: str) -> FeedRequest:
    values = single_values(args, _PARAMETERS)
    size = bounded_int(values.get("postsPerPage"), parameter="postsPerPage",
                       default=DEFAULT_POSTS_PER_PAGE, maximum=MAX_POSTS_PER_PAGE)
    raw = values.get("cursor")
    cursor = parse_feed_cursor(raw, flow_key=flow_key) if raw is not None else None
    return FeedRequest(posts_per_page=size, cursor=cursor)


def feed_query(spec: FeedSpec, request: FeedRequest) -> dict[str, Any]:
    """Keyword arguments of ``index.EntryQuery`` for one page of the feed."""
    cursor = None
    if request.cursor is not None:
        cursor = encode_cursor(FEED_SORT, (request.cursor.published_at, request.cursor.key))
    return {"content_type": spec.content_type, "tag": spec.tag, "author_id": spec.author,
            "sort": FEED_SORT, "limit": request.posts_per_page, "cursor": cursor, "live_only": True}


def selection_keys(spec: FeedSpec) -> tuple[str, ...]:
    """The surrogate keys a publish purges when the feed's membership may change."""
    keys = [f"api:type:{spec.content_type}" if spec.content_type else "",
            f"api:tag:{spec.tag}" if spec.tag else "",
            f"api:author:{spec.author}" if spec.author else ""]
    return (f"api:feed:{spec.key}", *([k for k in keys if k] or ["api:contents"]))


def post(record: Mapping[str, Any], author: Mapping[str, Any] | None) -> dict[str, Any]:
    """One entry of a feed page."""
    shown = None
    if author is not None:
        shown = {"key": author["key"], "name": author.get("name") or author["key"],
                 "avatar": author.get("avatar"), "url": author.get("url")}
    return {"key": record["id"], "title": record["title"], "url": record["url"],
            "excerpt": record["excerpt"], "publishedAt": record["publishedAt"], "tags": record["tags"],
            "author": shown, "contentType": record["contentType"]}


def _post_json(record: Mapping[str, Any], author: Mapping[str, Any] | None) -> Serialized:
    return Serialized(post(record, author))


def next_cursor(spec: FeedSpec, records: Sequence[Mapping[str, Any]], has_more: bool) -> FeedCursor | None:
    if not has_more or not records:
        return None
    last = records[-1]
    return FeedCursor(feed_key=spec.key, key=last["id"], published_at=last["publishedAt"])


def feed_document(spec: FeedSpec, records: Sequence[Mapping[str, Any]],
                  authors: Mapping[str, Mapping[str, Any]], *, has_more: bool,
                  derive: Derive | None = None) -> dict[str, Any]:
    """``{"flowKey", "title", "posts", "cursor", "hasMore"}``; ``cursor`` is null on the last page.

    With ``derive`` (the records' ``RecordCache.derive``) each post is serialised once per build.
    """
    cursor = next_cursor(spec, records, has_more)
    if derive is None:
        posts: list[Any] = [post(r, authors.get(r["author"] or "")) for r in records]
    else:
        posts = [derive(("feed:post", r["id"]), functools.partial(_post_json, r, authors.get(r["author"] or "")))
                 for r in records]
    return {"flowKey": spec.key, "title": spec.title,
            "posts": posts,
            "cursor": cursor.to_json() if cursor else None, "hasMore": cursor is not None}


def next_link(spec: FeedSpec, request: FeedRequest, cursor: FeedCursor) -> str:
    """The ``Link: <…>; rel="next"`` header value (RFC 8288)."""
    target = f"{FEED_PREFIX}{spec.key}?postsPerPage={request.posts_per_page}&cursor={encode_feed_cursor(cursor)}"
    return f'<{target}>; rel="next"'
