"""The Flowbox feed core: the seed's JSON cursor, page requests, selections and documents."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import FeedSpec, parse_config_text, parse_feeds
from pipeline.cursor import decode_cursor
from pipeline.documents import canonical_json
from pipeline.errors import ConfigError
from pipeline.index import EntryQuery
from pipeline.origin import feed
from pipeline.origin.feed import FeedCursor, FeedRequest
from pipeline.origin.jsonapi import ApiError

BLOG = FeedSpec(key="blog", title="Blog", content_type="blog")
RECORDS = [
    {"id": "cnt_b", "title": "B", "url": "/blog/b/", "excerpt": "b", "publishedAt": "2026-02-01T00:00:00Z",
     "tags": ["x"], "author": "ada", "contentType": "blog"},
    {"id": "cnt_a", "title": "A", "url": "/blog/a/", "excerpt": "a", "publishedAt": "2026-01-01T00:00:00Z",
     "tags": [], "author": None, "contentType": "blog"},
]
ADA = {"key": "ada", "name": "Ada", "bio": "b", "url": None, "avatar": "/media/ada.svg", "email": "e"}


@given(key=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
       moment=st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(9998, 1, 1)),
       flow_key=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True))
def test_feed_cursor_round_trips(key: str, moment: dt.datetime, flow_key: str) -> None:
    """encode (URL-encoded JSON) → the server's one URL-decode → parse gives the cursor back."""
    cursor = FeedCursor(feed_key=flow_key, key=key, published_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    encoded = feed.encode_feed_cursor(cursor)
    assert all(c not in encoded for c in '{}"&= ')
    assert feed.parse_feed_cursor(unquote(encoded), flow_key=flow_key) == cursor
    assert json.loads(unquote(encoded)) == {"feedKey": flow_key, "key": key, "publishedAt": cursor.published_at}


def test_feed_cursor_is_the_seed_object() -> None:
    cursor = FeedCursor(feed_key="abcdefg123456", key="654321gfedcba", published_at="2026-11-02T09:30:00Z")
    assert feed.format_feed_cursor(cursor) == (
        '{"feedKey":"abcdefg123456","key":"654321gfedcba","publishedAt":"2026-11-02T09:30:00Z"}')


def test_feed_cursor_dates_are_normalised_and_double_encoding_forgiven() -> None:
    text = '{"feedKey":"blog","key":"k","publishedAt":"2026-11-02T11:30:00+02:00"}'
    assert feed.parse_feed_cursor(text, flow_key="blog").published_at == "2026-11-02T09:30:00Z"
    twice = feed.encode_feed_cursor(FeedCursor(feed_key="blog", key="k", published_at="2026-01-01T00:00:00Z"))
    assert feed.parse_feed_cursor(twice, flow_key="blog").key == "k"


def test_feed_cursor_between_seconds_and_at_hour_24() -> None:
    """Seed 003's dates take fractions and hour 24; the index keeps seconds. A cursor between two
    seconds starts after the later one, so no entry of the earlier second is skipped."""
    def parsed(published_at: str) -> tuple[str, str]:
        text = f'{{"feedKey":"blog","key":"k","publishedAt":"{published_at}"}}'
        cursor = feed.parse_feed_cursor(text, flow_key="blog")
        return cursor.published_at, cursor.key

    assert parsed("2026-10-06T09:00:00.5Z") == ("2026-10-06T09:00:01Z", "")
    assert parsed("2026-10-06T09:00:00.000Z") == ("2026-10-06T09:00:00Z", "k")
    assert parsed("2026-10-06T24:00:00Z") == ("2026-10-07T00:00:00Z", "k")
    assert parsed("2026-12-31T24:00Z") == ("2027-01-01T00:00:00Z", "k")


@pytest.mark.parametrize(("text", "message"), [
    ('{"feedKey": "blog", "key": "k", "publishedAt": "2026-10-06T24:00:01Z"}', "not an ISO 8601"),
    ('{"feedKey": "blog", "key": "k", "publishedAt": "9999-12-31T23:59:59.5Z"}', "not an ISO 8601"),  # no next second
    ('{"feedKey": "blog", "key": "k", "publishedAt": "2026-02-30T24:00:00Z"}', "not an ISO 8601"),
    ("xx", "not JSON"),
    ("", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"feedKey": "blog"}', "lacks 'key', 'publishedAt'"),
    ('{"feedKey": "blog", "key": 5, "publishedAt": "2026-01-01T00:00:00Z"}', "'key' must be a non-empty string"),
    ('{"feedKey": "blog", "key": "", "publishedAt": "2026-01-01T00:00:00Z"}', "'key' must be a non-empty"),
    ('{"feedKey": "news", "key": "k", "publishedAt": "2026-01-01T00:00:00Z"}', "belongs to feed 'news'"),
    ('{"feedKey": "blog", "key": "k", "publishedAt": "last tuesday"}', "not an ISO 8601"),
    ('{"feedKey": "blog", "key": "k", "publishedAt": "2026-13-01T00:00:00Z"}', "not an ISO 8601"),
    ('{"feedKey": "blog", "key": "\\ud800", "publishedAt": "2026-01-01T00:00:00Z"}', "not valid Unicode"),
    ("[" * 100_000, "longer than"),
])
def test_bad_feed_cursors_are_400_bad_cursor_saying_why(text: str, message: str) -> None:
    with pytest.raises(ApiError) as info:
        feed.parse_feed_cursor(text, flow_key="blog")
    assert (info.value.status, info.value.code, info.value.parameter) == (400, "BAD_CURSOR", "cursor")
    assert message in info.value.detail


def test_feed_request_defaults_and_bounds() -> None:
    """29 posts by default (seed 003); postsPerPage 1..100 else 400; unknown parameters 400."""
    assert feed.parse_feed_request((), flow_key="blog") == FeedRequest(posts_per_page=29, cursor=None)
    assert feed.parse_feed_request((("postsPerPage", "100"),), flow_key="blog").posts_per_page == 100
    for bad in ("0", "101", "abc", ""):
        with pytest.raises(ApiError) as info:
            feed.parse_feed_request((("postsPerPage", bad),), flow_key="blog")
        assert info.value.parameter == "postsPerPage"
    with pytest.raises(ApiError) as info:
        feed.parse_feed_request((("limit", "5"),), flow_key="blog")
    assert info.value.parameter == "limit"


def test_feed_query_is_a_keyset_after_the_cursor() -> None:
    """Newest first; the cursor becomes the index's keyset position (publishedAt, id)."""
    request = FeedRequest(posts_per_page=5, cursor=FeedCursor(feed_key="blog", key="cnt_b",
                                                              published_at="2026-02-01T00:00:00Z"))
    kwargs = feed.feed_query(BLOG, request)
    query = EntryQuery(**kwargs)
    assert (query.content_type, query.sort, query.limit, query.live_only) == ("blog", "-publishedAt", 5, True)
    assert decode_cursor(query.cursor or "", sort="-publishedAt") == ("2026-02-01T00:00:00Z", "cnt_b")
    assert feed.feed_query(BLOG, FeedRequest(posts_per_page=29, cursor=None))["cursor"] is None


def test_selection_keys() -> None:
    assert feed.selection_keys(BLOG) == ("api:feed:blog", "api:type:blog")
    both = FeedSpec(key="k", title="K", tag="news", author="ada")
    assert feed.selection_keys(both) == ("api:feed:k", "api:tag:news", "api:author:ada")
    assert feed.selection_keys(FeedSpec(key="all", title="All")) == ("api:feed:all", "api:contents")


def test_feed_document_and_next_link() -> None:
    doc = feed.feed_document(BLOG, RECORDS, {"ada": ADA}, has_more=True)
    assert doc["flowKey"] == "blog"
    assert doc["hasMore"] is True
    assert doc["cursor"] == {"feedKey": "blog", "key": "cnt_a", "publishedAt": "2026-01-01T00:00:00Z"}
    assert doc["posts"][0] == {"key": "cnt_b", "title": "B", "url": "/blog/b/", "excerpt": "b",
                               "publishedAt": "2026-02-01T00:00:00Z", "tags": ["x"], "contentType": "blog",
                               "author": {"key": "ada", "name": "Ada", "avatar": "/media/ada.svg", "url": None}}
    assert doc["posts"][1]["author"] is None
    last = feed.feed_document(BLOG, RECORDS, {}, has_more=False)
    assert last["cursor"] is None
    assert last["hasMore"] is False
    cursor = feed.next_cursor(BLOG, RECORDS, True)
    assert cursor is not None
    link = feed.next_link(BLOG, FeedRequest(posts_per_page=2, cursor=None), cursor)
    assert link.startswith("</public/feed/blog?postsPerPage=2&cursor=%7B%22feedKey%22")
    assert link.endswith(
        '>; rel="next"')


def test_feed_documents_with_derived_posts_are_the_same_bytes() -> None:
    made: list[object] = []
    kept: dict[object, object] = {}

    def derive(key: object, make: Callable[[], object]) -> object:
        if key not in kept:
            made.append(key)
            kept[key] = make()
        return kept[key]

    plain = canonical_json(feed.feed_document(BLOG, RECORDS, {"ada": ADA}, has_more=True))
    for _ in range(2):
        assert canonical_json(feed.feed_document(BLOG, RECORDS, {"ada": ADA}, has_more=True, derive=derive)) == plain
    assert made == [("feed:post", "cnt_b"), ("feed:post", "cnt_a")]


def test_feeds_config_round_trip_through_build_info() -> None:
    """flowcms.toml [feeds.*] → SiteConfig.feeds → build.json data → the same FeedSpecs."""
    config = parse_config_text('[feeds.blog]\ntitle = "Blog"\ncontentType = "blog"\n'
                               '[feeds.all]\ntitle = "Everything"\n'
                               '[feeds.ada-news]\ntitle = "Ada"\ntag = "news"\nauthor = "ada"\n')
    assert config.feeds["blog"] == BLOG
    assert config.feeds["all"] == FeedSpec(key="all", title="Everything")
    data = json.loads(json.dumps({"feeds": config.feeds_json()}))
    assert feed.feeds_from_info(data) == dict(config.feeds)
    assert feed.feeds_from_info({}) == {}
    assert parse_config_text('[site]\ntitle = "X"\n').feeds == {}


@pytest.mark.parametrize(("text", "message"), [
    ('[feeds.blog]\ncontentType = "blog"\n', "feeds.blog.title must be a non-empty string"),
    ('[feeds.blog]\ntitle = 3\n', "feeds.blog.title must be a non-empty string"),
    ('[feeds.blog]\ntitle = "B"\ntype = "blog"\n', "unknown key feeds.blog.type"),
    ('[feeds.blog]\ntitle = "B"\ntag = ["a"]\n', "feeds.blog.tag must be a non-empty string"),
    ('[feeds.blog]\ntitle = "B"\nauthor = ""\n', "feeds.blog.author must be a non-empty string"),
    ('[feeds."bad key"]\ntitle = "B"\n', "feed key 'bad key'"),
    ('[feeds."-x"]\ntitle = "B"\n', "feed key '-x'"),
    ('feeds = 3\n', "[feeds] must be a table"),
    ('[feeds]\nblog = "x"\n', "feeds.blog must be a table"),
])
def test_bad_feed_definitions_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    assert message in str(info.value)
    assert str(info.value).startswith("flowcms.toml: ")


def test_parse_feeds_names_build_json() -> None:
    with pytest.raises(ConfigError, match=r"^build\.json: "):
        parse_feeds({"x": {}}, path="build.json")
