"""Entries: front matter → a validated ``EntryMeta`` → a record after Markdown.

Defaults follow DESIGN.md: the id derives from the path (stable while the file
stays), the slug from the title, the content type from the top folder. An entry is
*live* when it is published and its dates say so at the build's ``as_of`` instant.
A *record* is the dict form (camelCase, JSON-ready) kept in the index, reused by
incremental builds, and published as JSON.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import blake3

from pipeline.errors import ContentError
from pipeline.frontmatter import parse_front_matter
from pipeline.schema import SLUG_RE, STATUSES, ContentType, validate_fields

_NON_SLUG = re.compile(r"[^a-z0-9]+")
ENTRY_SUFFIX = ".md"


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", ascii_text.lower()).strip("-") or "entry"


def default_id(path: str) -> str:
    stem = path[: -len(ENTRY_SUFFIX)] if path.endswith(ENTRY_SUFFIX) else path
    return "cnt_" + blake3.blake3(stem.encode()).hexdigest()[:12]


def entry_type_of(path: str) -> str | None:
    """Entries live under a content-type folder: ``blog/x.md`` → ``blog``."""
    if not path.endswith(ENTRY_SUFFIX) or "/" not in path:
        return None
    return path.split("/", 1)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryMeta:
    """An entry after front matter, before Markdown."""

    id: str
    path: str
    blob: str
    title: str
    slug: str
    status: str
    content_type: str
    tags: tuple[str, ...]
    author: str | None
    published_at: str | None
    updated_at: str | None
    publish_at: str | None
    unpublish_at: str | None
    excerpt: str | None
    fields: dict[str, Any] = field(hash=False)
    body: str
    body_line: int
    key_lines: dict[str, int] = field(hash=False)

    @property
    def url(self) -> str:
        return f"/{self.content_type}/{self.slug}/"

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, 1)


def is_live(record: Mapping[str, Any], as_of: str) -> bool:
    """Published, due (publishedAt/publishAt ≤ as_of) and not yet withdrawn."""
    if record["status"] != "published":
        return False
    due = record.get("publishAt")
    if due and due > as_of:
        return False
    published = record.get("publishedAt")
    if not published or published > as_of:
        return False
    until = record.get("unpublishAt")
    return not (until and until <= as_of)


def parse_entry(
    path: str, blob: str, text: str, types: Mapping[str, ContentType],
    authors: Mapping[str, Any],
) -> tuple[EntryMeta | None, list[ContentError]]:
    """Every problem of one file; a meta only when the file is usable."""
    try:
        fm = parse_front_matter(path, text)
    except ContentError as exc:
        return None, [exc]
    folder = entry_type_of(path) or ""
    declared = fm.meta.get("contentType")
    errors: list[ContentError] = []
    ctype = types.get(folder)
    if ctype is None:
        known = ", ".join(sorted(types)) or "none"
        return None, [ContentError(
            path, 1, 1, "content-type",
            f"folder {folder!r} has no content type: add types/{folder}.yaml (known: {known})",
        )]
    if declared is not None and declared != folder:
        errors.append(ContentError(
            path, fm.line_of("contentType"), 1, "content-type",
            f"contentType {declared!r} does not match its folder {folder!r}",
        ))
    values, field_errors = validate_fields(path, fm, ctype)
    errors.extend(field_errors)
    title = values.get("title")
    if not title:
        if "title" in values or "title" not in fm.meta:
            errors.append(ContentError(path, fm.line_of("title"), 1, "required", "missing required field 'title'"))
        title = ""
    status = values.get("status", "draft")
    if status not in STATUSES:
        errors.append(ContentError(
            path, fm.line_of("status"), 1, "type",
            f"status: {status!r} is not one of: {', '.join(STATUSES)}",
        ))
    slug = values.get("slug") or slugify(title)
    if "slug" in values and not SLUG_RE.match(slug):
        errors.append(ContentError(
            path, fm.line_of("slug"), 1, "slug",
            f"slug {slug!r} must be lowercase letters, digits and single hyphens",
        ))
    author = values.get("author")
    if author is not None and author not in authors:
        errors.append(ContentError(
            path, fm.line_of("author"), 1, "unknown-author",
            f"unknown author {author!r} (not in authors.yaml)",
        ))
    published_at = values.get("publishedAt") or values.get("publishAt")
    if status == "published" and not published_at:
        errors.append(ContentError(
            path, 1, 1, "required", "published entry needs publishedAt (or publishAt to schedule it)"
        ))
    tags = tuple(dict.fromkeys(slugify(t) for t in values.get("tags", ())))
    extra = {k: v for k, v in values.items() if k in ctype.fields and k not in STANDARD_KEYS}
    meta = EntryMeta(
        id=str(values.get("id") or default_id(path)),
        path=path, blob=blob, title=title, slug=slug, status=status,
        content_type=folder, tags=tags, author=author,
        published_at=published_at, updated_at=values.get("updatedAt"),
        publish_at=values.get("publishAt"), unpublish_at=values.get("unpublishAt"),
        excerpt=values.get("excerpt"), fields=extra, body=fm.body, body_line=fm.body_line,
        key_lines=fm.key_lines,
    )
    return meta, errors


STANDARD_KEYS = frozenset({
    "id", "title", "slug", "status", "contentType", "tags", "author", "publishedAt",
    "updatedAt", "publishAt", "unpublishAt", "excerpt",
})


def make_record(
    meta: EntryMeta, *, html: str, text: str, toc: list[dict[str, Any]],
    links: dict[str, str], reading_minutes: int, excerpt: str,
) -> dict[str, Any]:
    """The persistent, JSON-ready form (same keys as the index)."""
    return {
        "id": meta.id,
        "path": meta.path,
        "blob": meta.blob,
        "title": meta.title,
        "slug": meta.slug,
        "status": meta.status,
        "contentType": meta.content_type,
        "tags": list(meta.tags),
        "author": meta.author,
        "publishedAt": meta.published_at,
        "updatedAt": meta.updated_at,
        "publishAt": meta.publish_at,
        "unpublishAt": meta.unpublish_at,
        "excerpt": meta.excerpt if meta.excerpt is not None else excerpt,
        "bodyHtml": html,
        "bodyText": text,
        "toc": toc,
        "url": meta.url,
        "fields": meta.fields,
        "links": links,
        "readingMinutes": reading_minutes,
        "live": False,
    }
