"""The origin's per-build answer cache (pure): LRU bounds, generations, the per-request reply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.origin.answer_cache import (
    ENTRY_OVERHEAD_BYTES,
    AnswerCache,
    StoredAnswer,
    is_storable,
    reply,
)

ETAG = '"0123456789abcdef0123456789abcdef"'
HEADERS = ((b"content-length", b"5"), (b"etag", ETAG.encode()), (b"content-type", b"application/json"))
NOT_MODIFIED = ((b"etag", ETAG.encode()),)


def answer(body: bytes = b"hello", *, status: int = 200, etag: str | None = ETAG) -> StoredAnswer:
    return StoredAnswer(status=status, headers=HEADERS, body=body, etag=etag, not_modified_headers=NOT_MODIFIED)


def test_reply_is_the_stored_answer_for_a_plain_get() -> None:
    """Without If-None-Match a GET gets status, headers and body as stored."""
    assert reply(answer(), head=False, if_none_match=None) == (200, HEADERS, b"hello")


def test_reply_to_head_has_the_headers_and_no_body() -> None:
    """RFC 9110 §9.3.2: HEAD gets the GET answer's headers (Content-Length included), no content."""
    assert reply(answer(), head=True, if_none_match=None) == (200, HEADERS, b"")


@pytest.mark.parametrize("header", [ETAG, f'"x", {ETAG}', f"W/{ETAG}", "*"])
def test_reply_is_304_when_if_none_match_matches(header: str) -> None:
    """RFC 9110 §13.1.2: a matching If-None-Match (weak comparison, or *) turns the answer into a 304
    with the validators and caching headers only (§15.4.5)."""
    assert reply(answer(), head=False, if_none_match=header) == (304, NOT_MODIFIED, b"")
    assert reply(answer(), head=True, if_none_match=header) == (304, NOT_MODIFIED, b"")


def test_reply_is_never_304_without_a_stored_etag() -> None:
    """An answer stored without an ETag to match (an error) is sent whole whatever the client holds."""
    stored = answer(status=404, etag=None)
    assert reply(stored, head=False, if_none_match="*") == (404, HEADERS, b"hello")
    assert reply(answer(), head=False, if_none_match='"other"')[0] == 200


@pytest.mark.parametrize(("status", "storable"), [(200, True), (400, True), (404, True), (406, True), (422, True),
                                                  (304, False), (429, False), (500, False), (503, False)])
def test_is_storable_admits_200_and_deterministic_4xx(status: int, storable: bool) -> None:
    """200 and 4xx other than 429 depend on the build and the request only; 429, 5xx on the moment."""
    assert is_storable(status) is storable


def test_lookup_finds_what_was_stored_in_the_same_generation() -> None:
    """A stored answer is found by its key while the generation stays; hits and misses are counted."""
    cache = AnswerCache()
    assert cache.lookup("g1", "k") is None
    assert cache.store("g1", "k", answer())
    assert cache.lookup("g1", "k") == answer()
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.stores, stats.entries) == (1, 1, 1, 1)
    assert stats.bytes == answer().size + ENTRY_OVERHEAD_BYTES


def test_a_new_generation_drops_every_answer() -> None:
    """A publish (another generation) drops all answers of the previous build, counted once."""
    cache = AnswerCache()
    cache.store("g1", "a", answer())
    cache.store("g1", "b", answer())
    assert cache.lookup("g2", "a") is None
    stats = cache.statistics()
    assert (stats.entries, stats.bytes, stats.invalidations) == (0, 0, 1)
    cache.store("g2", "a", answer(b"new"))
    assert cache.lookup("g2", "a") == answer(b"new")
    assert cache.lookup("g1", "a") is None  # a rollback to g1 is a new generation change, not a resurrection
    assert cache.statistics().invalidations == 2


def test_storing_in_a_new_generation_drops_the_old_answers() -> None:
    """``store`` adopts the generation it is given (the caller checked it is current)."""
    cache = AnswerCache()
    cache.store("g1", "a", answer())
    cache.store("g2", "b", answer())
    assert cache.lookup("g2", "a") is None
    assert cache.lookup("g2", "b") is not None


def test_least_recently_used_answer_goes_first_past_max_entries() -> None:
    """At max_entries the least recently used (looked up or stored) answer is evicted."""
    cache = AnswerCache(max_entries=2)
    cache.store("g", "a", answer())
    cache.store("g", "b", answer())
    assert cache.lookup("g", "a") is not None  # a is now the most recent
    cache.store("g", "c", answer())
    assert cache.lookup("g", "b") is None
    assert cache.lookup("g", "a") is not None
    assert cache.lookup("g", "c") is not None
    assert cache.statistics().evictions == 1


def test_byte_budget_evicts_old_answers_and_refuses_one_too_large() -> None:
    """Bodies and headers count against max_bytes; one answer above max_entry_bytes is not kept."""
    one = answer(b"x" * 100).size + ENTRY_OVERHEAD_BYTES
    cache = AnswerCache(max_bytes=2 * one + 10, max_entry_bytes=one)
    cache.store("g", "a", answer(b"x" * 100))
    cache.store("g", "b", answer(b"y" * 100))
    cache.store("g", "c", answer(b"z" * 100))
    assert cache.lookup("g", "a") is None
    assert cache.statistics().bytes == 2 * one
    assert not cache.store("g", "big", answer(b"w" * 101))
    assert cache.lookup("g", "big") is None


def test_the_key_counts_against_the_byte_budget() -> None:
    """A long query string (the key) is charged like body bytes."""
    cache = AnswerCache()
    cache.store("g", "k" * 1000, answer(), key_bytes=1000)
    assert cache.statistics().bytes == answer().size + 1000 + ENTRY_OVERHEAD_BYTES


def test_storing_a_key_again_replaces_it_without_leaking_bytes() -> None:
    cache = AnswerCache()
    cache.store("g", "a", answer(b"x" * 100))
    cache.store("g", "a", answer(b"y"))
    assert cache.statistics().bytes == answer(b"y").size + ENTRY_OVERHEAD_BYTES
    assert cache.statistics().entries == 1


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AnswerCache(max_entries=0)
    with pytest.raises(ValueError, match="positive"):
        AnswerCache(max_bytes=0)
    assert "0/4096 entries" in repr(AnswerCache())


@given(st.lists(st.tuples(st.sampled_from("gh"), st.integers(0, 9), st.integers(0, 300)), max_size=60))
def test_budgets_always_hold(operations: list[tuple[str, int, int]]) -> None:
    """Whatever is stored, entries and bytes stay within their bounds and match what is held."""
    cache = AnswerCache(max_entries=4, max_bytes=1500, max_entry_bytes=700)
    for generation, key, size in operations:
        cache.store(generation, key, answer(b"b" * size))
        stats = cache.statistics()
        assert stats.entries <= 4
        assert stats.bytes <= 1500
