"""The per-build SQLite index: every entry of one build, queryable without the site.

One file per build, written once and then only read. A full build writes it fresh
(`write_index`); an incremental build copies the previous build's file and applies
only the change (`update_index`), so its cost follows the change, not the site.
Readers open it read-only (`open_index`) and use the pure query functions below;
every sqlite3 error is turned into a pipeline error here, so callers never see one.

Entry records are the dicts of the published JSON (camelCase keys): the standard keys
become columns, any further keys (the build's own bookkeeping) are kept whole as JSON.
`load_entry_records` gives them back in the same shape, so an incremental build can
reuse unchanged entries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.cursor import decode_cursor, encode_cursor
from pipeline.errors import PipelineError, QueryError

__all__ = [
    "MAX_LIMIT",
    "MAX_SEARCH_WORDS",
    "SCHEMA_VERSION",
    "SORTS",
    "STATUSES",
    "EntryPage",
    "EntryQuery",
    "IndexCorrupt",
    "IndexWriteError",
    "Record",
    "RecordCache",
    "body_blobs",
    "count_entries",
    "get_author",
    "get_entry",
    "get_entry_by_slug",
    "list_authors",
    "list_tags",
    "load_entry_records",
    "open_index",
    "query_entries",
    "update_index",
    "write_index",
]

#: Bumped on any change of tables, columns or their meaning; readers refuse other versions.
SCHEMA_VERSION = 2
#: Marks the file as a FlowCMS index ("FlCx"), so a random SQLite file is not mistaken for one.
APPLICATION_ID = 0x466C4378

#: An entry record (camelCase keys, JSON-ready) and a raw result row.
Record = dict[str, Any]
_Row = tuple[Any, ...]

SORTS = ("publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt")
STATUSES = ("draft", "published", "archived")
MAX_LIMIT = 100
#: Bounds the FTS query a single request can build.
MAX_SEARCH_WORDS = 32
_MMAP_SIZE = 1 << 28


class IndexCorrupt(PipelineError):
    """The index file is missing, not an index, of another schema version, or damaged.

    Nothing in it can be trusted; the remedy is a full rebuild (`write_index`).
    """


class IndexWriteError(PipelineError):
    """Writing the index failed (disk full, I/O error); the previous file is untouched."""


# --------------------------------------------------------------------------- schema

# (record key, column) in the order of `_row` and the INSERT.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("path", "path"),
    ("blob", "blob"),
    ("title", "title"),
    ("slug", "slug"),
    ("status", "status"),
    ("contentType", "content_type"),
    ("tags", "tags"),
    ("author", "author"),
    ("publishedAt", "published_at"),
    ("updatedAt", "updated_at"),
    ("publishAt", "publish_at"),
    ("unpublishAt", "unpublish_at"),
    ("excerpt", "excerpt"),
    ("bodyBlob", "body_blob"),
    ("bodyText", "body_text"),
    ("url", "url"),
    ("fields", "fields"),
    ("live", "live"),
    ("links", "links"),
    ("readingMinutes", "reading_minutes"),
)
_RECORD_KEYS = frozenset(key for key, _ in _FIELDS)
#: Keys a record has that the index does not store: the body HTML lives in the blob store
#: (``bodyBlob`` names it), which keeps a 10k-entry index at a third of its size, and an
#: incremental build copies the index whole.
_UNSTORED_KEYS = frozenset({"bodyHtml"})
_KNOWN_KEYS = _RECORD_KEYS | _UNSTORED_KEYS
# What every entry SELECT reads, in the order `_record` unpacks. The JSON columns arrive
# as one array: one json.loads per row instead of four (a third of the load time).
_RECORD_COLUMNS = (
    'id, path, "blob", title, slug, status, content_type, author, published_at, updated_at,'
    " publish_at, unpublish_at, excerpt, body_blob, body_text, url, live, reading_minutes,"
    " '[' || tags || ',' || fields || ',' || links || ',' || extra || ']'"
)
_JSON_PARTS = "'[' || tags || ',' || fields || ',' || links || ',' || extra || ']'"
_RECORD_COLUMNS_NO_BODIES = _RECORD_COLUMNS.replace("body_text,", "NULL,")
_EMPTY_JSON_PARTS = "[[],{},{},{}]"
_ABSENT = object()
T = TypeVar("T")
_MAX_BOUND = 500  # rids per `IN (...)`: below SQLite's smallest limit on bound parameters
_AUTHOR_FIELDS = ("name", "bio", "url", "avatar", "email")

# `rid` is an explicit INTEGER PRIMARY KEY because the FTS table refers to it:
# an implicit rowid may be renumbered by VACUUM, which would silently break search.
# Filter columns come first and the bodies last, so filtering reads the start of a row.
# `extra` holds, as a JSON object, any record keys beyond the standard ones (the build
# keeps its own bookkeeping there, e.g. toc, schemaFp), so records round-trip whole.
# The *_key columns are the keyset sort keys; being columns, they are indexed and
# selected under one name, so the cursor always holds exactly what the index orders.
_SCHEMA = f"""
CREATE TABLE entries (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    live INTEGER NOT NULL CHECK (live IN (0, 1)),
    status TEXT NOT NULL,
    content_type TEXT NOT NULL,
    author TEXT,
    published_at TEXT,
    updated_at TEXT,
    publish_at TEXT,
    unpublish_at TEXT,
    title TEXT NOT NULL,
    slug TEXT NOT NULL,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    "blob" TEXT NOT NULL,
    reading_minutes INTEGER NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    links TEXT NOT NULL,
    extra TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    body_blob TEXT NOT NULL,
    body_text TEXT NOT NULL,
    published_key TEXT GENERATED ALWAYS AS (COALESCE(published_at, '')) VIRTUAL,
    updated_key TEXT GENERATED ALWAYS AS (COALESCE(updated_at, published_at, '')) VIRTUAL
) STRICT;

CREATE TABLE entry_tags (
    entry_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (entry_id, tag)
) STRICT, WITHOUT ROWID;

CREATE TABLE authors (
    key TEXT PRIMARY KEY,
    name TEXT,
    bio TEXT,
    url TEXT,
    avatar TEXT,
    email TEXT
) STRICT, WITHOUT ROWID;

CREATE VIRTUAL TABLE entries_fts USING fts5(
    title, excerpt, body_text,
    content='entries', content_rowid='rid',
    tokenize='unicode61 remove_diacritics 2'
);

-- The triggers keep the external-content FTS table and the tags in step with
-- entries, whoever writes: a delete or update can never leave stale search terms.
CREATE TRIGGER entries_after_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, title, excerpt, body_text)
    VALUES (new.rid, new.title, new.excerpt, new.body_text);
END;
CREATE TRIGGER entries_after_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, excerpt, body_text)
    VALUES ('delete', old.rid, old.title, old.excerpt, old.body_text);
    DELETE FROM entry_tags WHERE entry_id = old.id;
END;
CREATE TRIGGER entries_after_update AFTER UPDATE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, excerpt, body_text)
    VALUES ('delete', old.rid, old.title, old.excerpt, old.body_text);
    INSERT INTO entries_fts (rowid, title, excerpt, body_text)
    VALUES (new.rid, new.title, new.excerpt, new.body_text);
END;

PRAGMA user_version = {SCHEMA_VERSION};
PRAGMA application_id = {APPLICATION_ID};
"""

# Created after the bulk insert of a full build (cheaper than maintaining them row by row).
_INDEXES = (
    "CREATE INDEX entries_by_published ON entries (published_key, id)",
    "CREATE INDEX entries_by_updated ON entries (updated_key, id)",
    "CREATE INDEX entries_by_title ON entries (title, id)",
    "CREATE INDEX entries_by_type ON entries (content_type, published_key, id)",
    "CREATE INDEX entries_by_author ON entries (author, published_key, id)",
    "CREATE INDEX entries_by_slug ON entries (slug, content_type)",
    # Covering indexes: totals and tag counts never read the (large) table rows.
    "CREATE INDEX entries_filter ON entries (live, content_type, author, status, published_at)",
    "CREATE INDEX entries_by_id_filter"
    " ON entries (id, live, content_type, author, status, published_at)",
    "CREATE INDEX entry_tags_by_tag ON entry_tags (tag, entry_id)",
)

_INSERT_ENTRY = "INSERT INTO entries ({}, extra) VALUES ({}, ?)".format(
    ", ".join(f'"{column}"' for _, column in _FIELDS), ", ".join("?" for _ in _FIELDS)
)
_INSERT_TAG = "INSERT OR IGNORE INTO entry_tags (entry_id, tag) VALUES (?, ?)"
_INSERT_AUTHOR = "INSERT INTO authors (key, name, bio, url, avatar, email) VALUES (?, ?, ?, ?, ?, ?)"

# sort -> (key column, descending)
_SORT_KEYS: dict[str, tuple[str, bool]] = {
    "publishedAt": ("published_key", False),
    "-publishedAt": ("published_key", True),
    "title": ("title", False),
    "-title": ("title", True),
    "updatedAt": ("updated_key", False),
    "-updatedAt": ("updated_key", True),
}


# --------------------------------------------------------------------------- writing


def write_index(path: Path, entries: Iterable[Record], authors: Mapping[str, Record]) -> None:
    """Write a fresh index of `entries` to `path`, atomically (tmp file, then os.replace).

    Rows go in sorted by id, so the same input gives the same file.
    """
    records = _sorted_records(entries)
    tmp = _tmp_path(path)
    _unlink(tmp)
    try:
        with _writing(tmp, "write the index") as conn:
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            _insert_entries(conn, records)
            _insert_authors(conn, authors)
            for statement in _INDEXES:
                conn.execute(statement)
            # One b-tree per FTS index instead of the segments of a row-by-row insert.
            conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('optimize')")
            conn.execute("ANALYZE")
            conn.execute("COMMIT")
        _publish(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def update_index(
    previous: Path,
    path: Path,
    *,
    upserts: Iterable[Record],
    deletes: Iterable[str],
    authors: Mapping[str, Record],
    live: Mapping[str, bool] | None = None,
) -> None:
    """Write to `path` a copy of the `previous` index with the change applied.

    Deletes `deletes`, inserts or replaces `upserts` (an id in both ends up upserted)
    and replaces the authors; ``live`` flips the live flag of entries that did not
    otherwise change (a scheduled entry's time came). Costs a file copy plus O(change)
    row work; the triggers
    keep search and tags consistent. `previous` may equal `path`.
    Raises IndexCorrupt when `previous` is missing or not of this schema version:
    the caller should then fall back to `write_index`.
    """
    records = _sorted_records(upserts)
    gone = sorted(set(deletes).union(record["id"] for record in records))
    tmp = _tmp_path(path)
    _unlink(tmp)
    try:
        try:
            shutil.copyfile(previous, tmp)
        except FileNotFoundError:
            raise IndexCorrupt(f"{previous}: previous index not found") from None
        except OSError as error:
            raise IndexWriteError(f"{tmp}: cannot copy the previous index: {error}") from error
        with _writing(tmp, "update the index", copy_of=previous) as conn:
            conn.execute("BEGIN")
            conn.executemany("DELETE FROM entries WHERE id = ?", ((entry_id,) for entry_id in gone))
            _insert_entries(conn, records)
            conn.executemany(
                "UPDATE entries SET live = ? WHERE id = ?",
                ((1 if flag else 0, entry_id) for entry_id, flag in sorted((live or {}).items())),
            )
            conn.execute("DELETE FROM authors")
            _insert_authors(conn, authors)
            conn.execute("COMMIT")
        _publish(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _sorted_records(entries: Iterable[Record]) -> list[Record]:
    records = sorted(entries, key=lambda record: record["id"])
    for record in records:
        if not record.keys() >= _RECORD_KEYS:
            missing = sorted(_RECORD_KEYS - record.keys())
            raise ValueError(f"entry record {record.get('id')!r} lacks keys {missing}")
    for before, after in itertools.pairwise(records):
        if before["id"] == after["id"]:
            raise ValueError(f"duplicate entry id {after['id']!r}")
    return records


def _insert_entries(conn: sqlite3.Connection, records: list[Record]) -> None:
    conn.executemany(_INSERT_ENTRY, map(_row, records))
    conn.executemany(
        _INSERT_TAG, ((record["id"], tag) for record in records for tag in record["tags"])
    )


def _row(record: Record) -> _Row:
    return (
        record["id"],
        record["path"],
        record["blob"],
        record["title"],
        record["slug"],
        record["status"],
        record["contentType"],
        _dumps(record["tags"]),
        record["author"],
        record["publishedAt"],
        record["updatedAt"],
        record["publishAt"],
        record["unpublishAt"],
        record["excerpt"],
        record["bodyBlob"],
        record["bodyText"],
        record["url"],
        _dumps(record["fields"]),
        1 if record["live"] else 0,
        _dumps(record["links"]),
        record["readingMinutes"],
        _dumps(
            {key: value for key, value in record.items() if key not in _KNOWN_KEYS}
            if not record.keys() <= _KNOWN_KEYS
            else {}
        ),
    )


def _insert_authors(conn: sqlite3.Connection, authors: Mapping[str, Record]) -> None:
    conn.executemany(
        _INSERT_AUTHOR,
        (
            (key, *((authors[key] or {}).get(name) for name in _AUTHOR_FIELDS))
            for key in sorted(authors)
        ),
    )


def _dumps(value: object) -> str:
    # Key order is kept (not sorted) so records come back exactly as they went in.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def _writing(
    tmp: Path, action: str, *, copy_of: Path | None = None
) -> Iterator[sqlite3.Connection]:
    """A connection on the unpublished tmp file; sqlite3 errors become IndexWriteError.

    No journal and no syncs: a crash leaves only a tmp file that is never published.
    `copy_of` names the index tmp was copied from, whose schema must be ours.
    """
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        if copy_of is not None:
            _check_schema(conn, copy_of)
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        yield conn
    except sqlite3.IntegrityError as error:
        raise IndexWriteError(f"{tmp}: cannot {action}: invalid entry record: {error}") from error
    except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise  # a bug in this module or its caller, not a failed write
    except sqlite3.Error as error:
        raise IndexWriteError(f"{tmp}: cannot {action}: {error}") from error
    finally:
        if conn is not None:
            conn.close()


def _publish(tmp: Path, path: Path) -> None:
    """Make the finished file visible under its name in one step.

    No fsync here: the index lives in a build directory that only becomes reachable
    when a publish moves the live pointer, and ``Store.set_live`` syncs the file
    system before it does (one sync per publish, not one per file).
    """
    try:
        os.replace(tmp, path)
    except OSError as error:
        raise IndexWriteError(f"{path}: cannot publish the index: {error}") from error


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --------------------------------------------------------------------------- reading


def open_index(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open a published index read-only; IndexCorrupt if it is missing or not ours.

    Rows come as sqlite3.Row (`dict(row)` works). Pass check_same_thread=False to
    share the connection between threads that take turns (it is read-only).
    """
    if not path.is_file():
        raise IndexCorrupt(f"{path}: index not found")
    # immutable: a published index never changes in place (writers os.replace a new
    # file), so SQLite may skip locking and change detection on every query.
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=check_same_thread)
    except sqlite3.Error as error:
        raise IndexCorrupt(f"{path}: cannot open the index: {error}") from error
    try:
        _check_schema(conn, path)
        # Reads straight from the OS page cache (no copy into SQLite's): about 15% off
        # a full load, half off list_tags. Safe: the file is never truncated in place.
        conn.execute(f"PRAGMA mmap_size = {_MMAP_SIZE}")
    except sqlite3.Error as error:
        conn.close()
        raise IndexCorrupt(f"{path}: cannot read the index: {error}") from error
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise IndexCorrupt(f"{path}: not an index: {error}") from error
    if application_id != APPLICATION_ID:
        raise IndexCorrupt(f"{path}: not a FlowCMS index")
    if version != SCHEMA_VERSION:
        raise IndexCorrupt(
            f"{path}: index schema version {version}, this code reads {SCHEMA_VERSION}"
        )


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Turn a failed read into IndexCorrupt; misuse of the connection stays a bug."""
    try:
        yield
    except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except sqlite3.Error as error:
        raise IndexCorrupt(f"cannot read the index: {error}") from error


def _select(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[_Row]:
    """Plain tuples whatever the connection's row_factory: `_record` indexes positions."""
    cursor = conn.cursor()
    cursor.row_factory = None
    with _reading():
        return cursor.execute(sql, tuple(params)).fetchall()


def _record(row: _Row, parsed: list[Any] | None = None) -> Record:
    (
        entry_id, path, blob, title, slug, status, content_type, author, published_at,
        updated_at, publish_at, unpublish_at, excerpt, body_blob, body_text, url, live,
        reading_minutes, json_parts,
    ) = row[:19]  # fmt: skip
    if parsed is not None:
        tags, fields, links, extra = parsed
    elif json_parts == _EMPTY_JSON_PARTS:
        tags, fields, links, extra = [], {}, {}, None
    else:
        tags, fields, links, extra = json.loads(json_parts)
    record: Record = {
        "id": entry_id,
        "path": path,
        "blob": blob,
        "title": title,
        "slug": slug,
        "status": status,
        "contentType": content_type,
        "tags": tags,
        "author": author,
        "publishedAt": published_at,
        "updatedAt": updated_at,
        "publishAt": publish_at,
        "unpublishAt": unpublish_at,
        "excerpt": excerpt,
        "bodyHtml": None,  # in the blob store: read it by bodyBlob when a page needs it
        "bodyBlob": body_blob,
        "bodyText": body_text,
        "url": url,
        "fields": fields,
        "live": live == 1,
        "links": links,
        "readingMinutes": reading_minutes,
    }
    if extra:
        record.update(extra)
    return record


def load_entry_records(conn: sqlite3.Connection, *, bodies: bool = True) -> dict[str, Record]:
    """Every entry (live or not) as its input record, keyed by id, in id order.

    ``bodyHtml`` is always None (the HTML is the blob ``bodyBlob``); with
    ``bodies=False`` ``bodyText`` is None too: an incremental build of a 10k-entry site
    reads a fraction of the file.
    """
    columns = _RECORD_COLUMNS if bodies else _RECORD_COLUMNS_NO_BODIES
    # The JSON columns of every row are concatenated by SQLite into one array and parsed
    # with one json.loads: a third of the cost of 10k small parses. Both queries walk the
    # table in id order, so row i of one is row i of the other.
    columns = columns.replace(_JSON_PARTS, "NULL")
    rows = _select(conn, f"SELECT {columns} FROM entries ORDER BY id")
    joined = _select(conn, "SELECT '[' || coalesce(group_concat(parts, ','), '') || ']' FROM "
                           f"(SELECT {_JSON_PARTS} AS parts FROM entries ORDER BY id)")[0][0]
    parsed = json.loads(joined)
    if len(parsed) != len(rows):
        raise IndexCorrupt("entries changed while they were read")
    return {row[0]: _record(row, parts) for row, parts in zip(rows, parsed, strict=True)}


def body_blobs(conn: sqlite3.Connection) -> set[str]:
    """Every body blob the index refers to (what ``flowcms gc`` must keep)."""
    return {row[0] for row in _select(conn, "SELECT body_blob FROM entries")}


def _first(row: _Row) -> Any:
    return row[0]


class RecordCache:
    """Decoded entry records of one index file, by rowid, for readers that come back.

    Why: a committed build's index file is never written again (a rebuild replaces the
    file), and decoding rows, their JSON columns above all, was most of an API read
    (a 20-entry page: 200 of 230 µs in reading and decoding rows). Records kept here have
    ``bodyText`` None: the APIs never read it, and it is most of a row. Reader threads share
    one cache and its records, so callers must treat records as read-only. Bounded: past
    ``limit`` records, further ones are decoded for each read and not kept.
    """

    # ~3 KB a record, and as many derived values (~1 KB): about 80 MB at most per file. A
    # file's cache lives while LiveIndex keeps it (the newest two) or a thread still reads it.
    def __init__(self, limit: int = 20_000) -> None:
        self._by_rid: dict[int, Record] = {}
        self._derived: dict[Hashable, Any] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._by_rid)

    def derive(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per ``key`` for this file, for values computed from its records
        alone (an API's serialised resource): they live exactly as long as the records."""
        value = self._derived.get(key, _ABSENT)
        if value is _ABSENT:
            value = make()
            if len(self._derived) < self._limit:
                self._derived[key] = value
        return value  # type: ignore[no-any-return]

    def fetch(self, conn: sqlite3.Connection, rids: list[int]) -> list[Record]:
        by_rid = self._by_rid
        missing = [rid for rid in rids if rid not in by_rid]
        if not missing:
            return [by_rid[rid] for rid in rids]
        fresh = _records_by_rid(conn, missing, _RECORD_COLUMNS_NO_BODIES)
        room = self._limit - len(by_rid)
        if room > 0:  # a racing thread stores equal records: harmless
            by_rid.update(itertools.islice(fresh.items(), room))
        return [by_rid.get(rid) or fresh[rid] for rid in rids]


def _records_by_rid(conn: sqlite3.Connection, rids: list[int], columns: str) -> dict[int, Record]:
    found: dict[int, Record] = {}
    for start in range(0, len(rids), _MAX_BOUND):  # SQLite's bound-parameter limit
        chunk = rids[start : start + _MAX_BOUND]
        marks = ",".join("?" * len(chunk))
        for row in _select(conn, f"SELECT {columns}, rid FROM entries WHERE rid IN ({marks})", chunk):
            found[row[-1]] = _record(row)
    missing = [rid for rid in rids if rid not in found]
    if missing:
        raise IndexCorrupt(f"entries changed while they were read (rows {missing[:5]} are gone)")
    return found


def _entries(conn: sqlite3.Connection, rids: list[int], cache: RecordCache | None) -> list[Record]:
    """The records of ``rids``, in that order: from ``cache`` when given, else read whole."""
    if cache is not None:
        return cache.fetch(conn, rids)
    found = _records_by_rid(conn, rids, _RECORD_COLUMNS)
    return [found[rid] for rid in rids]


def get_entry(conn: sqlite3.Connection, entry_id: str, *, live_only: bool = True,
              cache: RecordCache | None = None) -> Record | None:
    """One entry by id, or None (also when it is not live and `live_only`)."""
    live = " AND live = 1" if live_only else ""
    rows = _select(conn, f"SELECT rid FROM entries WHERE id = ?{live}", (entry_id,))
    return _entries(conn, [rows[0][0]], cache)[0] if rows else None


def get_entry_by_slug(
    conn: sqlite3.Connection,
    slug: str,
    *,
    content_type: str | None = None,
    live_only: bool = True,
    cache: RecordCache | None = None,
) -> Record | None:
    """One entry by slug; slugs are unique per content type only, so without
    `content_type` the first match by (content type, id) wins, deterministically."""
    sql = "SELECT rid FROM entries WHERE slug = ?"
    params: list[Any] = [slug]
    if content_type is not None:
        sql += " AND content_type = ?"
        params.append(content_type)
    if live_only:
        sql += " AND live = 1"
    rows = _select(conn, sql + " ORDER BY content_type, id LIMIT 1", params)
    return _entries(conn, [rows[0][0]], cache)[0] if rows else None


def list_authors(conn: sqlite3.Connection) -> list[Record]:
    """All authors as {key, name, bio, url, avatar, email}, sorted by key."""
    rows = _select(conn, "SELECT key, name, bio, url, avatar, email FROM authors ORDER BY key")
    return [_author(row) for row in rows]


def get_author(conn: sqlite3.Connection, key: str) -> Record | None:
    """One author by key, or None."""
    rows = _select(
        conn, "SELECT key, name, bio, url, avatar, email FROM authors WHERE key = ?", (key,)
    )
    return _author(rows[0]) if rows else None


def _author(row: _Row) -> Record:
    return dict(zip(("key", *_AUTHOR_FIELDS), row, strict=True))


def list_tags(conn: sqlite3.Connection, *, live_only: bool = True) -> list[tuple[str, int]]:
    """(tag, number of entries) for every tag in use, sorted by tag."""
    if live_only:
        sql = (
            "SELECT t.tag, count(*) FROM entry_tags AS t JOIN entries AS e ON e.id = t.entry_id"
            " WHERE e.live = 1 GROUP BY t.tag ORDER BY t.tag"
        )
    else:
        sql = "SELECT tag, count(*) FROM entry_tags GROUP BY tag ORDER BY tag"
    return [(tag, count) for tag, count in _select(conn, sql)]


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryQuery:
    """A validated entry listing request; bad values raise QueryError at construction,
    with `parameter` naming the field, so the HTTP layer can answer 400 at once.

    Dates are inclusive bounds on publishedAt: ISO 8601 (zone-less means UTC) or a
    plain date, where `date_to` then covers the whole day. `search` is plain words
    (never FTS syntax); all must match, the last one as a prefix unless followed by
    a space; a search without any word filters nothing.
    """

    status: str | None = None
    content_type: str | None = None
    tag: str | None = None
    author_id: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    search: str | None = None
    sort: str = "-publishedAt"
    limit: int = 20
    cursor: str | None = None
    live_only: bool = True

    def __post_init__(self) -> None:
        for name in (
            "status", "content_type", "tag", "author_id", "date_from", "date_to", "search", "cursor",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not _is_text(value):
                raise QueryError(f"{name} must be a string of valid Unicode", parameter=name)
        if self.status is not None and self.status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)}", parameter="status")
        if self.sort not in _SORT_KEYS:
            raise QueryError(f"sort must be one of {', '.join(SORTS)}", parameter="sort")
        if type(self.limit) is not int or not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(
                f"limit must be an integer from 1 to {MAX_LIMIT}", parameter="limit"
            )
        if not isinstance(self.live_only, bool):
            raise QueryError("live_only must be a boolean", parameter="live_only")
        if self.date_from is not None:
            _date_bound(self.date_from, "date_from", upper=False)
        if self.date_to is not None:
            _date_bound(self.date_to, "date_to", upper=True)
        if self.search is not None:
            _match_expression(self.search)
        if self.cursor is not None:
            decode_cursor(self.cursor, sort=self.sort)


def _is_text(value: object) -> bool:
    """A str SQLite can bind: lone surrogates (e.g. from surrogateescape) cannot."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class EntryPage:
    """One page of a listing; `total` counts all matches, whatever the cursor."""

    entries: list[Record]
    next_cursor: str | None
    total: int


def query_entries(conn: sqlite3.Connection, q: EntryQuery, *, cache: RecordCache | None = None) -> EntryPage:
    """One page of the entries matching `q`, by keyset pagination on (sort key, id).

    The cursor holds the last (sort key, id) seen, so entries added or removed before
    it never shift the following pages.
    """
    where, params = _filters(q)
    column, descending = _SORT_KEYS[q.sort]
    total = _count(conn, where, params)
    if q.cursor is not None:
        after = decode_cursor(q.cursor, sort=q.sort)
        where = [*where, f"({column}, id) {'<' if descending else '>'} (?, ?)"]
        params = [*params, *after]
    order = "DESC" if descending else "ASC"
    # Choose the page on the narrow columns first, then read the (large) rows of that
    # page only: sorting whole rows would drag every candidate's body through the sorter.
    rows = _select(
        conn,
        f"SELECT rid, {column}, id FROM entries"
        f" WHERE {_conjunction(where)} ORDER BY {column} {order}, id {order} LIMIT ?",
        [*params, q.limit + 1],
    )
    next_cursor = None
    if len(rows) > q.limit:
        del rows[q.limit :]
        _, sort_key, entry_id = rows[-1]
        next_cursor = encode_cursor(q.sort, (sort_key, entry_id))
    entries = _entries(conn, [row[0] for row in rows], cache)
    return EntryPage(entries=entries, next_cursor=next_cursor, total=total)


def count_entries(conn: sqlite3.Connection, q: EntryQuery) -> int:
    """How many entries match the filters of `q` (sort, limit and cursor play no part)."""
    where, params = _filters(q)
    return _count(conn, where, params)


def _count(conn: sqlite3.Connection, where: list[str], params: list[Any]) -> int:
    return int(_select(conn, f"SELECT count(*) FROM entries WHERE {_conjunction(where)}", params)[0][0])


def _conjunction(where: list[str]) -> str:
    return " AND ".join(where) if where else "1"


def _filters(q: EntryQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if q.live_only:
        where.append("live = 1")
    for column, value in (
        ("status", q.status),
        ("content_type", q.content_type),
        ("author", q.author_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.tag is not None:
        where.append("id IN (SELECT entry_id FROM entry_tags WHERE tag = ?)")
        params.append(q.tag)
    if q.date_from is not None:
        operator, bound = _date_bound(q.date_from, "date_from", upper=False)
        where.append(f"published_at {operator} ?")
        params.append(bound)
    if q.date_to is not None:
        operator, bound = _date_bound(q.date_to, "date_to", upper=True)
        where.append(f"published_at {operator} ?")
        params.append(bound)
    if q.search is not None:
        expression = _match_expression(q.search)
        if expression is not None:
            where.append("rid IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?)")
            params.append(expression)
    return where, params


def _date_bound(value: str, parameter: str, *, upper: bool) -> tuple[str, str]:
    """(operator, stored-format bound) for an inclusive bound on publishedAt.

    Stored dates are `YYYY-MM-DDTHH:MM:SSZ`, which order as text; the bound is brought
    to that form so the comparison is exact whatever zone or precision the client used.
    """
    text = value.strip()
    try:
        if len(text) <= 10:  # a plain date: the whole day
            day = dt.date.fromisoformat(text).isoformat()
            return ("<=", f"{day}T23:59:59Z") if upper else (">=", f"{day}T00:00:00Z")
        moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        if moment.microsecond:
            # Stored dates have whole seconds: a lower bound rounds up, an upper one down.
            moment = moment.replace(microsecond=0)
            if not upper:
                moment += dt.timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise QueryError(
            f"{parameter} must be an ISO 8601 date or date-time, like 2026-11-02T09:30:00Z",
            parameter=parameter,
        ) from None
    return ("<=" if upper else ">=", moment.isoformat(timespec="seconds") + "Z")


# Control characters (NUL ends an FTS5 string early) become separators.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")


def _match_expression(search: str) -> str | None:
    """The FTS5 expression for user text: each word a quoted string, so no input is
    ever FTS syntax; None when there is no word to search for.

    Quoted strings go through the same tokenizer as the indexed text, so `foo-bar`
    is the phrase "foo bar" and punctuation-only chunks are dropped (FTS would ignore
    them anyway).
    """
    text = search.translate(_CONTROLS)
    chunks = text.split()
    words = [chunk for chunk in chunks if any(char.isalnum() for char in chunk)]
    if len(words) > MAX_SEARCH_WORDS:
        raise QueryError(
            f"search may have at most {MAX_SEARCH_WORDS} words", parameter="search"
        )
    if not words:
        return None
    terms = ['"' + word.replace('"', '""') + '"' for word in words]
    if chunks[-1] is words[-1] and not text[-1].isspace():
        terms[-1] += "*"  # still being typed
    return " ".join(terms)
