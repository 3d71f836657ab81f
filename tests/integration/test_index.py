from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cursor import encode_cursor
from pipeline.errors import PipelineError, QueryError
from pipeline.index import (
    SCHEMA_VERSION,
    SORTS,
    EntryPage,
    EntryQuery,
    IndexCorrupt,
    RecordCache,
    body_blobs,
    count_entries,
    get_author,
    get_entry,
    get_entry_by_slug,
    list_authors,
    list_tags,
    load_entry_records,
    open_index,
    query_entries,
    update_index,
    write_index,
)

AUTHORS: dict[str, dict[str, Any]] = {
    "ada": {"name": "Ada Lovelace", "bio": "Analyst", "url": "https://ada.example", "avatar": "/media/ada.png",
            "email": "ada@example.org"},
    "bob": {"name": "Bob"},  # missing values
}


def make(entry_id: str, **overrides: Any) -> dict[str, Any]:
    """A complete entry record with sensible defaults."""
    record: dict[str, Any] = {
        "id": entry_id,
        "path": f"blog/{entry_id}.md",
        "blob": f"blob-{entry_id}",
        "title": f"Title {entry_id}",
        "slug": entry_id,
        "status": "published",
        "contentType": "blog",
        "tags": [],
        "author": "ada",
        "publishedAt": "2026-01-01T00:00:00Z",
        "updatedAt": None,
        "publishAt": None,
        "unpublishAt": None,
        "excerpt": "",
        "bodyHtml": None,  # not stored: the HTML is the blob bodyBlob
        "bodyBlob": f"body-{entry_id}",
        "bodyText": "",
        "url": f"/blog/{entry_id}/",
        "fields": {},
        "live": True,
        "links": {},
        "readingMinutes": 1,
    }
    record.update(overrides)
    return record


RECORDS = [
    make("e01", title="Getting Started with GraphQL", tags=["graphql", "tutorial"],
         publishedAt="2026-11-02T09:30:00Z", updatedAt="2026-11-03T10:00:00Z",
         excerpt="One sentence shown in listings.", bodyText="Queries, mutations and a schema.",
         fields={"category": "engineering", "featured": True, "nested": {"a": [1, 2.5, None]}},
         links={"docs/intro.md": "/docs/intro/"}, readingMinutes=4),
    make("e02", title="Café au lait", tags=["food"], author="bob", publishedAt="2026-11-02T23:59:59Z",
         bodyText="Un café crème, s'il vous plaît.", fields={"emoji": "☕ ü 日本"}),
    make("e03", title="Release 2.0", contentType="changelog", tags=["release"], author=None,
         publishedAt="2026-11-01T12:00:00Z", bodyText="Faster builds and incremental indexes."),
    make("e04", title="Draft: GraphQL secrets", status="draft", live=False, publishedAt=None, tags=["graphql"],
         bodyText="secretword"),
    make("e05", title="Archived news", status="archived", live=False, publishedAt="2025-01-01T00:00:00Z",
         tags=["news"]),
    make("e06", title="Scheduled", live=False, publishedAt=None, publishAt="2030-01-01T00:00:00Z",
         tags=["news"]),
    make("e07", title="Intro", contentType="docs", slug="intro", author="bob",
         publishedAt="2026-10-01T00:00:00Z", updatedAt="2026-12-24T00:00:00Z", tags=["tutorial", "docs"],
         bodyText="Start here: install, configure and deploy."),
    make("e08", title="Getting Started with GraphQL", publishedAt="2026-11-02T09:30:00Z",  # ties with e01
         tags=["graphql"], bodyText="Another take on graph queries."),
    make("e09", title="intro", slug="intro", publishedAt="2026-09-15T08:00:00Z", tags=["Tutorial"],
         bodyText="lowercase title, same slug as the docs intro"),
    make("e10", title="Zebra", publishedAt="2024-02-29T00:00:00Z", unpublishAt="2030-01-01T00:00:00Z",
         tags=["news", "news"], bodyText="duplicate tag"),
]


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    path = tmp_path / "index.sqlite"
    write_index(path, reversed(RECORDS), AUTHORS)
    return path


@pytest.fixture
def conn(index_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_index(index_path)
    yield connection
    connection.close()


def ids(page: EntryPage) -> list[str]:
    return [entry["id"] for entry in page.entries]


def walk(conn: sqlite3.Connection, **query: Any) -> list[str]:
    """All ids of a listing, page by page; checks page invariants on the way."""
    first = query_entries(conn, EntryQuery(**query))
    seen, page = ids(first), first
    while page.next_cursor is not None:
        page = query_entries(conn, EntryQuery(**query, cursor=page.next_cursor))
        assert page.total == first.total
        assert page.entries, "a cursor never leads to an empty page"
        seen += ids(page)
        assert len(seen) <= first.total, "pages overlap"
    assert len(seen) == first.total
    return seen


def fts_integrity(path: Path) -> None:
    """FTS5's own check that the index matches the content table."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        connection.close()


# ----------------------------------------------------------------- write, open, load


def test_write_then_load_round_trips_records(index_path: Path, conn: sqlite3.Connection) -> None:
    loaded = load_entry_records(conn)
    assert list(loaded) == sorted(r["id"] for r in RECORDS)
    assert loaded == {r["id"]: r for r in RECORDS}
    assert type(loaded["e01"]["live"]) is bool
    assert not index_path.with_name("index.sqlite.tmp").exists()
    fts_integrity(index_path)


def test_extra_record_keys_round_trip(tmp_path: Path) -> None:
    """The build keeps its own keys (toc, schemaFp, …) in records; they come back whole."""
    record = make("x", toc=[{"level": 2, "id": "a", "text": "A"}], schemaFp="fp1", siteLinks=[[3, 1, "/x/"]])
    write_index(tmp_path / "i.sqlite", [record, make("y")], {})
    with closing(open_index(tmp_path / "i.sqlite")) as connection:
        assert load_entry_records(connection) == {"x": record, "y": make("y")}
        assert get_entry(connection, "x") == record


def test_write_is_deterministic(tmp_path: Path) -> None:
    write_index(tmp_path / "a.sqlite", RECORDS, AUTHORS)
    write_index(tmp_path / "b.sqlite", list(reversed(RECORDS)), dict(reversed(AUTHORS.items())))
    assert (tmp_path / "a.sqlite").read_bytes() == (tmp_path / "b.sqlite").read_bytes()


def test_write_replaces_an_existing_index_atomically(index_path: Path) -> None:
    old = open_index(index_path)
    write_index(index_path, [make("only")], {})
    try:
        assert list(load_entry_records(old)) == sorted(r["id"] for r in RECORDS)  # old file still readable
        with closing(open_index(index_path)) as new:
            assert list(load_entry_records(new)) == ["only"]
    finally:
        old.close()


def test_write_rejects_bad_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate entry id 'a'"):
        write_index(tmp_path / "i.sqlite", [make("a"), make("b"), make("a")], {})
    incomplete = make("a")
    del incomplete["bodyText"]
    with pytest.raises(ValueError, match="bodyText"):
        write_index(tmp_path / "i.sqlite", [incomplete], {})
    assert not (tmp_path / "i.sqlite").exists()
    assert not (tmp_path / "i.sqlite.tmp").exists()


def test_open_index_is_read_only(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM entries")
    row = conn.execute("SELECT key, name FROM authors WHERE key = 'ada'").fetchone()
    assert dict(row) == {"key": "ada", "name": "Ada Lovelace"}  # row_factory builds dicts


def test_open_index_rejects_what_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexCorrupt, match="not found"):
        open_index(tmp_path / "missing.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 300)
    with pytest.raises(IndexCorrupt):
        open_index(garbage)
    foreign = tmp_path / "foreign.sqlite"
    with closing(sqlite3.connect(foreign)) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(IndexCorrupt, match="not a FlowCMS index"):
        open_index(foreign)
    assert issubclass(IndexCorrupt, PipelineError)


def test_open_index_rejects_another_schema_version(index_path: Path) -> None:
    connection = sqlite3.connect(index_path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(IndexCorrupt, match="schema version"):
        open_index(index_path)


def test_damaged_file_raises_index_corrupt_on_read(index_path: Path) -> None:
    data = bytearray(index_path.read_bytes())
    page = 4096
    data[page : len(data)] = b"\xa5" * (len(data) - page)  # keep the header, wreck every page
    index_path.write_bytes(bytes(data))
    with closing(open_index(index_path)) as connection, pytest.raises(IndexCorrupt):
        query_entries(connection, EntryQuery())


# ----------------------------------------------------------------- lookups


def test_body_html_is_not_stored_only_its_blob(tmp_path: Path) -> None:
    record = make("x", bodyHtml="<p>big</p>", bodyBlob="b" * 64, bodyText="big")
    write_index(tmp_path / "i.sqlite", [record], AUTHORS)
    with closing(open_index(tmp_path / "i.sqlite")) as connection:
        loaded = get_entry(connection, "x")
        assert loaded == {**record, "bodyHtml": None}  # not in extra either
        assert body_blobs(connection) == {"b" * 64}


def test_get_entry(conn: sqlite3.Connection) -> None:
    assert get_entry(conn, "e01") == RECORDS[0]
    assert get_entry(conn, "e04") is None  # a draft is not live
    assert get_entry(conn, "e04", live_only=False) == RECORDS[3]
    assert get_entry(conn, "nope") is None


def test_get_entry_by_slug(conn: sqlite3.Connection) -> None:
    assert get_entry_by_slug(conn, "intro", content_type="docs")["id"] == "e07"  # type: ignore[index]
    assert get_entry_by_slug(conn, "intro", content_type="blog")["id"] == "e09"  # type: ignore[index]
    assert get_entry_by_slug(conn, "intro")["id"] == "e09"  # type: ignore[index]  # "blog" < "docs"
    assert get_entry_by_slug(conn, "e04") is None
    assert get_entry_by_slug(conn, "e04", live_only=False)["id"] == "e04"  # type: ignore[index]
    assert get_entry_by_slug(conn, "intro", content_type="changelog") is None


def without_body_text(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "bodyText": None}


@pytest.mark.parametrize("query", [
    {"limit": 3}, {"limit": 100, "live_only": False}, {"sort": "title", "limit": 4},
    {"search": "graph"}, {"tag": "news", "sort": "-updatedAt"},
])
def test_record_cache_answers_as_the_index_does(conn: sqlite3.Connection, query: dict[str, Any]) -> None:
    """Pages read through a cache equal direct reads (less bodyText, which the APIs never
    read), cursor included; a second read hands out the very records of the first."""
    cache = RecordCache()
    pages = [query_entries(conn, EntryQuery(**query), cache=cache) for _ in range(2)]
    direct = query_entries(conn, EntryQuery(**query))
    for page in pages:
        assert page.entries == [without_body_text(r) for r in direct.entries]
        assert (page.next_cursor, page.total) == (direct.next_cursor, direct.total)
    assert all(a is b for a, b in zip(pages[0].entries, pages[1].entries, strict=True))
    assert len(cache) == len(direct.entries)
    if direct.next_cursor is not None:  # the next page through the cache continues where the first ended
        following = query_entries(conn, EntryQuery(**query, cursor=direct.next_cursor), cache=cache)
        assert ids(following) == ids(query_entries(conn, EntryQuery(**query, cursor=direct.next_cursor)))


def test_record_cache_serves_single_entries_too(conn: sqlite3.Connection) -> None:
    cache = RecordCache()
    listed = query_entries(conn, EntryQuery(limit=100, live_only=False), cache=cache).entries
    by_id = {r["id"]: r for r in listed}
    assert get_entry(conn, "e01", cache=cache) is by_id["e01"]
    assert get_entry(conn, "e04", cache=cache) is None  # live_only still filters
    assert get_entry(conn, "e04", live_only=False, cache=cache) is by_id["e04"]
    assert get_entry_by_slug(conn, "intro", content_type="docs", cache=cache) is by_id["e07"]
    assert get_entry_by_slug(conn, "nope", cache=cache) is None
    assert get_entry(conn, "e01", cache=RecordCache()) == without_body_text(RECORDS[0])


def test_record_cache_is_bounded(conn: sqlite3.Connection) -> None:
    """Past its limit a cache keeps nothing more, and still answers every read right."""
    full = query_entries(conn, EntryQuery(limit=100, live_only=False)).entries
    for limit in (0, 3):
        cache = RecordCache(limit=limit)
        for _ in range(2):
            page = query_entries(conn, EntryQuery(limit=100, live_only=False), cache=cache)
            assert page.entries == [without_body_text(r) for r in full]
        assert len(cache) == limit


def test_record_cache_derives_each_value_once() -> None:
    """Values computed from a file's records are made once per key (None too), within the bound."""
    made: list[str] = []

    def make(key: str) -> str | None:
        made.append(key)
        return None if key == "none" else key.upper()

    cache = RecordCache(limit=2)
    for _ in range(2):
        assert [cache.derive(k, lambda k=k: make(k)) for k in ("a", "none")] == ["A", None]
    assert made == ["a", "none"]
    for _ in range(2):
        assert cache.derive("past-the-bound", lambda: make("c")) == "C"
    assert made == ["a", "none", "c", "c"]  # past the bound: made again on every call, still right


def test_authors(conn: sqlite3.Connection) -> None:
    assert list_authors(conn) == [
        {"key": "ada", **AUTHORS["ada"]},
        {"key": "bob", "name": "Bob", "bio": None, "url": None, "avatar": None, "email": None},
    ]
    assert get_author(conn, "bob") == list_authors(conn)[1]
    assert get_author(conn, "carol") is None


def test_list_tags(conn: sqlite3.Connection) -> None:
    assert list_tags(conn) == [
        ("Tutorial", 1), ("docs", 1), ("food", 1), ("graphql", 2), ("news", 1), ("release", 1), ("tutorial", 2),
    ]
    assert list_tags(conn, live_only=False) == [
        ("Tutorial", 1), ("docs", 1), ("food", 1), ("graphql", 3), ("news", 3), ("release", 1), ("tutorial", 2),
    ]


# ----------------------------------------------------------------- filters and sorts


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["e02", "e08", "e01", "e03", "e07", "e09", "e10"]),  # ties by id, descending too
        ({"live_only": False}, ["e02", "e08", "e01", "e03", "e07", "e09", "e05", "e10", "e06", "e04"]),
        ({"status": "draft"}, []),
        ({"status": "draft", "live_only": False}, ["e04"]),
        ({"status": "published", "live_only": False}, ["e02", "e08", "e01", "e03", "e07", "e09", "e10", "e06"]),
        ({"status": "archived", "live_only": False}, ["e05"]),
        ({"content_type": "docs"}, ["e07"]),
        ({"content_type": "changelog"}, ["e03"]),
        ({"tag": "graphql"}, ["e08", "e01"]),
        ({"tag": "tutorial"}, ["e01", "e07"]),  # case-sensitive: not e09's "Tutorial"
        ({"tag": "news", "live_only": False}, ["e05", "e10", "e06"]),
        ({"author_id": "bob"}, ["e02", "e07"]),
        ({"date_from": "2026-11-02"}, ["e02", "e08", "e01"]),
        ({"date_to": "2026-11-01"}, ["e03", "e07", "e09", "e10"]),  # whole day
        ({"date_from": "2026-11-02", "date_to": "2026-11-02"}, ["e02", "e08", "e01"]),
        ({"date_from": "2026-11-02T09:30:00Z", "date_to": "2026-11-02T09:30:00Z"}, ["e08", "e01"]),  # inclusive
        ({"date_from": "2026-11-02T10:30:00+01:00", "date_to": "2026-11-02T09:30:00.5Z"}, ["e08", "e01"]),
        ({"date_from": "2026-11-02T09:30:00.1Z"}, ["e02"]),
        ({"date_to": "2026-11-02T09:29:59"}, ["e03", "e07", "e09", "e10"]),  # zone-less = UTC
        ({"tag": "graphql", "author_id": "ada", "date_from": "2026-01-01", "content_type": "blog"}, ["e08", "e01"]),
    ],
)
def test_filters(conn: sqlite3.Connection, query: dict[str, Any], expected: list[str]) -> None:
    page = query_entries(conn, EntryQuery(**query, limit=100))
    assert ids(page) == expected
    assert page.total == len(expected) == count_entries(conn, EntryQuery(**query))
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-publishedAt", ["e02", "e08", "e01", "e03", "e07", "e09", "e10"]),
        ("publishedAt", ["e10", "e09", "e07", "e03", "e01", "e08", "e02"]),
        ("title", ["e02", "e01", "e08", "e07", "e03", "e10", "e09"]),  # code point order: "Z" < "i"
        ("-title", ["e09", "e10", "e03", "e07", "e08", "e01", "e02"]),
        # updatedAt falls back to publishedAt: e07 2026-12-24, e01 2026-11-03, e08/e02 2026-11-02, …
        ("-updatedAt", ["e07", "e01", "e02", "e08", "e03", "e09", "e10"]),
        ("updatedAt", ["e10", "e09", "e03", "e08", "e02", "e01", "e07"]),
    ],
)
def test_sorts(conn: sqlite3.Connection, sort: str, expected: list[str]) -> None:
    assert ids(query_entries(conn, EntryQuery(sort=sort))) == expected
    for limit in (1, 2, 3, 7):
        assert walk(conn, sort=sort, limit=limit) == expected


@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize("sort", SORTS)
def test_ties_are_broken_by_id_in_the_sort_direction(tmp_path: Path, sort: str, limit: int) -> None:
    same = {"title": "Same", "publishedAt": "2026-01-01T00:00:00Z"}
    records = [make(f"t{i}", **same) for i in (3, 1, 4, 0, 2)]
    records += [make("u1", title="Other", publishedAt="2026-06-01T00:00:00Z"), make("u2", title="Zzz")]
    write_index(tmp_path / "i.sqlite", records, {})
    with closing(open_index(tmp_path / "i.sqlite")) as connection:
        tied = ["t0", "t1", "t2", "t3", "t4"]
        got = walk(connection, sort=sort, limit=limit)
        assert got == model(records, {"sort": sort})
        start = got.index("t4" if sort.startswith("-") else "t0")
        assert got[start : start + 5] == (tied[::-1] if sort.startswith("-") else tied)


def test_sort_keys_of_missing_dates(conn: sqlite3.Connection) -> None:
    """No publishedAt sorts as '' (first ascending); updatedAt falls back to it, then to ''."""
    assert walk(conn, sort="publishedAt", live_only=False, limit=2)[:2] == ["e04", "e06"]
    assert walk(conn, sort="-updatedAt", live_only=False, limit=3)[-2:] == ["e06", "e04"]


def test_pages(conn: sqlite3.Connection) -> None:
    first = query_entries(conn, EntryQuery(limit=3))
    assert ids(first) == ["e02", "e08", "e01"]
    assert first.total == 7
    assert first.next_cursor is not None
    second = query_entries(conn, EntryQuery(limit=3, cursor=first.next_cursor))
    assert ids(second) == ["e03", "e07", "e09"]
    third = query_entries(conn, EntryQuery(limit=3, cursor=second.next_cursor))
    assert (ids(third), third.next_cursor, third.total) == (["e10"], None, 7)
    exact = query_entries(conn, EntryQuery(limit=7))
    assert len(exact.entries) == 7
    assert exact.next_cursor is None  # a full last page has no next page


def test_cursor_of_another_sort_is_rejected(conn: sqlite3.Connection) -> None:
    cursor = query_entries(conn, EntryQuery(limit=2, sort="title")).next_cursor
    assert cursor is not None
    with pytest.raises(QueryError) as info:
        EntryQuery(limit=2, sort="-title", cursor=cursor)
    assert info.value.parameter == "cursor"
    with pytest.raises(QueryError) as info:
        EntryQuery(cursor="not-a-cursor")
    assert info.value.parameter == "cursor"


def test_cursor_past_the_end_gives_an_empty_last_page(conn: sqlite3.Connection) -> None:
    page = query_entries(conn, EntryQuery(cursor=encode_cursor("-publishedAt", ("", ""))))
    assert (page.entries, page.next_cursor, page.total) == ([], None, 7)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit", 0), ("limit", 101), ("limit", -1), ("limit", True), ("limit", "5"), ("limit", 2.0),
        ("sort", "published"), ("sort", "-id"), ("sort", ""),
        ("status", "live"), ("status", ""),
        ("date_from", "yesterday"), ("date_from", ""), ("date_to", "2026-13-01"), ("date_to", "2026-11-02T25:00"),
        ("search", " ".join(["word"] * 33)), ("search", "\ud800"), ("tag", 5), ("content_type", ["blog"]),
        ("live_only", "yes"),
    ],
)
def test_invalid_queries_name_the_parameter(field: str, value: Any) -> None:
    with pytest.raises(QueryError) as info:
        EntryQuery(**{field: value})
    assert info.value.parameter == field


def test_limit_bounds_are_inclusive() -> None:
    assert EntryQuery(limit=1).limit == 1
    assert EntryQuery(limit=100).limit == 100
    assert EntryQuery().sort == "-publishedAt"
    assert EntryQuery().limit == 20


# ----------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("graphql", ["e01", "e08"]),  # title
        ("GRAPHQL", ["e01", "e08"]),
        ("listings", ["e01"]),  # excerpt
        ("mutations", ["e01"]),  # body text
        ("graphql schema", ["e01"]),  # all words
        ("graph", ["e01", "e08"]),  # the last word is a prefix …
        ("graph ", ["e08"]),  # … unless the user typed a space after it
        ("cafe", ["e02"]),  # diacritics folded
        ("crème", ["e02"]),
        ("secretword", []),  # not live
        ("install, configure", ["e07"]),
        ("faster-builds", ["e03"]),  # a phrase
        ("builds-faster", []),
        ("", ["e01", "e02", "e03", "e07", "e08", "e09", "e10"]),  # no words: no search filter
        ("  - * ", ["e01", "e02", "e03", "e07", "e08", "e09", "e10"]),
    ],
)
def test_search(conn: sqlite3.Connection, search: str, expected: list[str]) -> None:
    page = query_entries(conn, EntryQuery(search=search, limit=100))
    assert sorted(ids(page)) == expected
    assert page.total == len(expected)


def test_search_respects_filters_sort_and_pages(conn: sqlite3.Connection) -> None:
    assert walk(conn, search="graphql", sort="-publishedAt", limit=1) == ["e08", "e01"]
    assert walk(conn, search="graphql", sort="publishedAt", limit=1) == ["e01", "e08"]
    assert walk(conn, search="graphql", live_only=False, limit=1) == ["e08", "e01", "e04"]
    assert walk(conn, search="graphql", author_id="bob") == []


HOSTILE = [
    'foo" OR', '"', '""', '"""', "-", "--", "NEAR(", "NEAR(a b", "NEAR(graphql, 5)", "a OR b", "AND", "OR", "NOT",
    "NOT graphql", "*", "graph*", "^graphql", "title:graphql", "{title excerpt}: graphql", "(", ")", "()", "+",
    "a:b:c", "'; DROP TABLE entries; --", "\\", "\x00", "graph\x00ql", "\u200b", "日本語", "🙂", "x" * 5000,
    "e\u0301", "\t\n\r", "%", "_", "$", "[a]", "@@", "graphql\"", '"graphql', "col:", ":", "ß", "İ",
]


@pytest.mark.parametrize("search", HOSTILE)
def test_hostile_search_is_plain_words(conn: sqlite3.Connection, search: str) -> None:
    page = query_entries(conn, EntryQuery(search=search))
    assert page.total == len(page.entries)


def test_search_words_that_look_like_syntax_are_words(conn: sqlite3.Connection) -> None:
    assert ids(query_entries(conn, EntryQuery(search='graphql" OR'))) == []  # "or" is not in e01/e08
    assert sorted(ids(query_entries(conn, EntryQuery(search="^graphql*")))) == ["e01", "e08"]
    assert ids(query_entries(conn, EntryQuery(search="NOT graphql"))) == []  # both words must match


@pytest.fixture(scope="module")
def shared_conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = tmp_path_factory.mktemp("index") / "index.sqlite"
    write_index(path, RECORDS, AUTHORS)
    connection = open_index(path)
    yield connection
    connection.close()


@settings(max_examples=200, deadline=None)
@given(search=st.text(max_size=60))  # at most 30 words: under the limit
def test_any_search_text_is_safe(shared_conn: sqlite3.Connection, search: str) -> None:
    page = query_entries(shared_conn, EntryQuery(search=search))
    assert page.total >= len(page.entries)


# ----------------------------------------------------------------- incremental updates


def test_update_index_deletes_and_upserts(index_path: Path, tmp_path: Path) -> None:
    before = index_path.read_bytes()
    changed = make("e01", title="Getting Started with Rust", tags=["rust"], bodyText="ownership")
    added = make("e11", title="Brand new", tags=["graphql"], bodyText="freshword on graphql",
                 publishedAt="2026-12-01T00:00:00Z")
    new_authors = {"carol": {"name": "Carol"}}
    out = tmp_path / "next.sqlite"
    update_index(index_path, out, upserts=[added, changed], deletes=["e08", "e02", "unknown"], authors=new_authors)

    assert index_path.read_bytes() == before  # the previous build is untouched
    assert not out.with_name("next.sqlite.tmp").exists()
    fts_integrity(out)
    with closing(open_index(out)) as connection:
        expected = {r["id"]: r for r in RECORDS if r["id"] not in {"e02", "e08"}}
        expected.update(e01=changed, e11=added)
        assert load_entry_records(connection) == dict(sorted(expected.items()))
        assert sorted(ids(query_entries(connection, EntryQuery(search="graphql")))) == ["e11"]
        assert ids(query_entries(connection, EntryQuery(search="rust"))) == ["e01"]
        assert ids(query_entries(connection, EntryQuery(search="mutations"))) == []  # old body gone
        assert ids(query_entries(connection, EntryQuery(search="crème"))) == []  # deleted entry gone
        assert ids(query_entries(connection, EntryQuery(search="freshword"))) == ["e11"]
        assert ids(query_entries(connection, EntryQuery(tag="graphql", live_only=False))) == ["e11", "e04"]
        assert ("rust", 1) in list_tags(connection)
        assert "food" not in dict(list_tags(connection))
        assert list_authors(connection) == [
            {"key": "carol", "name": "Carol", "bio": None, "url": None, "avatar": None, "email": None}
        ]


def test_update_index_in_place_and_delete_plus_upsert(index_path: Path) -> None:
    """`previous` may be `path`; an id both deleted and upserted ends up upserted."""
    changed = make("e03", title="Release 2.1", bodyText="patch")
    update_index(index_path, index_path, upserts=[changed], deletes=["e03", "e10"], authors=AUTHORS)
    fts_integrity(index_path)
    with closing(open_index(index_path)) as connection:
        records = load_entry_records(connection)
        assert records["e03"] == changed
        assert "e10" not in records
        assert ids(query_entries(connection, EntryQuery(search="patch"))) == ["e03"]
        assert ids(query_entries(connection, EntryQuery(search="incremental"))) == []


def test_update_index_live_flip(index_path: Path) -> None:
    """Scheduled entries go live by an upsert with live=True; listings follow."""
    went_live = make("e06", title="Scheduled", live=True, publishedAt="2026-12-31T00:00:00Z", tags=["news"])
    update_index(index_path, index_path, upserts=[went_live], deletes=[], authors=AUTHORS)
    with closing(open_index(index_path)) as connection:
        assert ids(query_entries(connection, EntryQuery(limit=1))) == ["e06"]
        assert dict(list_tags(connection))["news"] == 2


def test_search_follows_even_a_direct_update(index_path: Path) -> None:
    """The triggers keep FTS consistent whoever writes, not only update_index."""
    with closing(sqlite3.connect(index_path)) as connection:
        connection.execute("UPDATE entries SET title = 'Zymurgy' WHERE id = 'e01'")
        connection.commit()
    fts_integrity(index_path)
    with closing(open_index(index_path)) as connection:
        assert ids(query_entries(connection, EntryQuery(search="zymurgy"))) == ["e01"]
        assert ids(query_entries(connection, EntryQuery(search="graphql"))) == ["e08"]


def test_update_index_needs_a_previous_index(tmp_path: Path) -> None:
    with pytest.raises(IndexCorrupt, match="not found"):
        update_index(tmp_path / "missing", tmp_path / "out", upserts=[], deletes=[], authors={})
    (tmp_path / "garbage").write_bytes(b"\x00" * 10_000)
    with pytest.raises(IndexCorrupt):
        update_index(tmp_path / "garbage", tmp_path / "out", upserts=[], deletes=[], authors={})
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.tmp").exists()


# Values that sort first under each sort, ahead of every entry of RECORDS.
FIRST_UNDER = {
    "-publishedAt": {"publishedAt": "2099-01-01T00:00:00Z"},
    "publishedAt": {"publishedAt": "1999-01-01T00:00:00Z"},
    "-title": {"title": "\uffff"},
    "title": {"title": ""},
    "-updatedAt": {"updatedAt": "2099-01-01T00:00:00Z"},
    "updatedAt": {"publishedAt": "1999-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("sort", SORTS)
def test_keyset_pages_are_stable_across_inserts_before_the_cursor(
    index_path: Path, tmp_path: Path, sort: str
) -> None:
    with closing(open_index(index_path)) as connection:
        everything = walk(connection, sort=sort)
        first = query_entries(connection, EntryQuery(sort=sort, limit=3))
    assert ids(first) == everything[:3]
    head = first.entries[0]
    first_of_all = make("e99", **FIRST_UNDER[sort])
    # Same sort key as the first row, and an id on the near side of it: a tie-break case.
    tie = make(head["id"] + "~" if sort.startswith("-") else "e00",
               title=head["title"], publishedAt=head["publishedAt"], updatedAt=head["updatedAt"])
    out = tmp_path / "next.sqlite"
    update_index(index_path, out, upserts=[first_of_all, tie], deletes=[], authors=AUTHORS)
    with closing(open_index(out)) as connection:
        assert walk_from(connection, sort, first.next_cursor) == everything[3:]
        assert walk(connection, sort=sort) == [first_of_all["id"], tie["id"], *everything]


def walk_from(conn: sqlite3.Connection, sort: str, cursor: str | None) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = query_entries(conn, EntryQuery(sort=sort, limit=3, cursor=cursor))
        seen += ids(page)
        assert len(seen) <= page.total, "pages overlap"
        cursor = page.next_cursor
    return seen


def test_keyset_pages_see_inserts_after_the_cursor(index_path: Path, tmp_path: Path) -> None:
    with closing(open_index(index_path)) as connection:
        first = query_entries(connection, EntryQuery(limit=3))
    oldest = make("e00", publishedAt="2000-01-01T00:00:00Z")
    update_index(index_path, tmp_path / "n.sqlite", upserts=[oldest], deletes=["e03"], authors=AUTHORS)
    with closing(open_index(tmp_path / "n.sqlite")) as connection:
        assert walk_from(connection, "-publishedAt", first.next_cursor) == ["e07", "e09", "e10", "e00"]


# ----------------------------------------------------------------- against a brute-force model

WORDS = ["alpha", "beta", "gamma", "graph", "graphql", "café"]
DATES = ["2025-01-01T00:00:00Z", "2025-01-01T12:00:00Z", "2025-06-30T23:59:59Z", "2026-11-02T09:30:00Z"]
DAYS = ["2025-01-01", "2025-06-30", "2026-11-02"]


@st.composite
def random_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    entry_ids = draw(st.lists(st.text(alphabet="abcAB_-9é", min_size=1, max_size=3), unique=True, max_size=14))
    text = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)
    records = []
    for entry_id in entry_ids:
        published = draw(st.sampled_from([None, *DATES]))
        records.append(make(
            entry_id,
            title=draw(st.sampled_from(["", "A", "B", "a", "Été", "alpha beta"])),
            status=draw(st.sampled_from(["draft", "published", "archived"])),
            contentType=draw(st.sampled_from(["blog", "docs"])),
            tags=draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=3)),
            author=draw(st.sampled_from([None, "ada", "bob"])),
            publishedAt=published,
            updatedAt=draw(st.sampled_from([None, *DATES])),
            excerpt=draw(text),
            bodyText=draw(text),
            live=draw(st.booleans()),
        ))
    return records


queries = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["draft", "published", "archived"]),
        "content_type": st.sampled_from(["blog", "docs", "none"]),
        "tag": st.sampled_from(["x", "y", "q"]),
        "author_id": st.sampled_from(["ada", "bob"]),
        "date_from": st.sampled_from(DATES + DAYS),
        "date_to": st.sampled_from(DATES + DAYS),
        "search": st.lists(st.sampled_from([*WORDS, "gra", "cafe", "-", "\"", "NEAR("]), max_size=3).map(" ".join)
        | st.sampled_from(["alpha ", "graph ", "", " "]),
        "sort": st.sampled_from(SORTS),
        "live_only": st.booleans(),
    },
)


def model(records: list[dict[str, Any]], q: dict[str, Any]) -> list[str]:
    """The specification of query_entries, in plain Python."""
    def bound(value: str, upper: bool) -> str:
        if len(value) == 10:
            return value + ("T23:59:59Z" if upper else "T00:00:00Z")
        return value

    def matches(r: dict[str, Any]) -> bool:
        if q.get("live_only", True) and not r["live"]:
            return False
        if "status" in q and r["status"] != q["status"]:
            return False
        if "content_type" in q and r["contentType"] != q["content_type"]:
            return False
        if "tag" in q and q["tag"] not in r["tags"]:
            return False
        if "author_id" in q and r["author"] != q["author_id"]:
            return False
        if "date_from" in q and (r["publishedAt"] is None or r["publishedAt"] < bound(q["date_from"], False)):
            return False
        if "date_to" in q and (r["publishedAt"] is None or r["publishedAt"] > bound(q["date_to"], True)):
            return False
        if "search" in q:
            # FTS5 unicode61: lower case, diacritics folded; each chunk here holds one word at most.
            text = f"{r['title']} {r['excerpt']} {r['bodyText']}".lower().replace("é", "e")
            tokens = set(re.findall(r"\w+", text))
            chunks = q["search"].lower().replace("é", "e").split()
            words = [re.findall(r"\w+", chunk)[0] for chunk in chunks if re.search(r"\w", chunk)]
            prefix = bool(chunks) and re.search(r"\w", chunks[-1]) and not q["search"][-1].isspace()
            for i, word in enumerate(words):
                last = prefix and i == len(words) - 1
                if not any(t.startswith(word) if last else t == word for t in tokens):
                    return False
        return True

    sort = q.get("sort", "-publishedAt")
    field = sort.lstrip("-")

    def key(r: dict[str, Any]) -> tuple[str, str]:
        if field == "title":
            value = r["title"]
        elif field == "updatedAt":
            value = r["updatedAt"] or r["publishedAt"] or ""
        else:
            value = r["publishedAt"] or ""
        return (value, r["id"])

    return [r["id"] for r in sorted(filter(matches, records), key=key, reverse=sort.startswith("-"))]


@settings(max_examples=75, deadline=None)
@given(records=random_records(), q=queries, limit=st.integers(1, 4))
def test_query_entries_matches_the_model(records: list[dict[str, Any]], q: dict[str, Any], limit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "index.sqlite"
        write_index(path, records, AUTHORS)
        with closing(open_index(path)) as connection:
            by_id = {r["id"]: r for r in records}
            expected = model(records, q)
            seen: list[str] = []
            cursor = None
            while True:
                page = query_entries(connection, EntryQuery(**q, limit=limit, cursor=cursor))
                assert page.total == len(expected)
                assert len(page.entries) <= limit
                assert all(entry == by_id[entry["id"]] for entry in page.entries)
                seen += ids(page)
                assert len(seen) <= len(expected), "pages overlap"
                if page.next_cursor is None:
                    break
                assert len(page.entries) == limit
                cursor = page.next_cursor
            assert seen == expected
