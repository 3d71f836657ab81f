"""CacheStore: variants by Vary, purges by path / surrogate key / prefix, byte-bounded LRU and S3-FIFO."""

from __future__ import annotations

import ast
import random
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from edgeproxy import cache as cache_module
from edgeproxy.cache import (
    ENTRY_OVERHEAD_BYTES,
    MAX_VARIANTS,
    SURROGATE_KEY_OVERHEAD_BYTES,
    CacheStatistics,
    CacheStore,
    Entry,
    _SortedPaths,
)

POLICIES = ["lru", "s3fifo"]
AE = b"accept-encoding"
AL = b"accept-language"


def entry(path: bytes, *, host: bytes = b"example.org", size: int = 0, vary: tuple[bytes, ...] | None = None,
          values: tuple[bytes, ...] = (), tags: tuple[bytes, ...] = (), value: object = None) -> Entry[object]:
    return Entry(key=b"GET https://" + host + path, path=path, value=value, size=size, vary=vary,
                 vary_values=values, surrogate_keys=tags)


def key(path: bytes, host: bytes = b"example.org") -> bytes:
    return b"GET https://" + host + path


def request(**fields: bytes) -> object:
    """A request_vary_getter over the given fields (underscores for dashes), b"" when absent."""
    values = {name.replace("_", "-").encode(): value for name, value in fields.items()}
    return lambda field: values.get(field, b"")


NO_VARY = request()
UNIT = entry(b"/p000").size  # every entry made by ``numbered`` has exactly this size


def numbered(i: int, **kwargs: object) -> Entry[object]:
    return entry(b"/p%03d" % i, **kwargs)  # type: ignore[arg-type]


def assert_empty(store: CacheStore[object]) -> None:
    store._check_invariants()
    assert len(store) == 0
    assert store.bytes_used == 0
    assert not store._by_key
    assert not store._by_path
    assert not store._by_surrogate
    assert list(store._paths) == []
    assert not store._small
    assert not store._main


# -- Entry ---------------------------------------------------------------------------------------


def test_entry_size_counts_value_strings_and_overhead() -> None:
    """The charged size is the caller's size plus key, path, vary values, tags and fixed overheads."""
    e = entry(b"/a", size=100, vary=(AE,), values=(b"gzip",), tags=(b"t1", b"tag2"))
    expected = (100 + ENTRY_OVERHEAD_BYTES + len(key(b"/a")) + len(b"/a") + 4 + 2 + 4
                + 2 * SURROGATE_KEY_OVERHEAD_BYTES)
    assert e.size == expected


def test_entry_deduplicates_surrogate_keys() -> None:
    """A tag listed twice is indexed once."""
    assert entry(b"/a", tags=(b"t", b"u", b"t")).surrogate_keys == (b"t", b"u")


def test_entry_rejects_vary_values_of_the_wrong_length() -> None:
    """vary_values must give one value per Vary field."""
    with pytest.raises(ValueError, match="vary has 1 fields"):
        entry(b"/a", vary=(AE,), values=())
    with pytest.raises(ValueError, match="vary has 0 fields"):
        entry(b"/a", values=(b"x",))
    with pytest.raises(ValueError, match="size"):
        entry(b"/a", size=-1)


def test_entry_indexed_fields_are_read_only_and_stale_is_mutable() -> None:
    """Fields the indexes depend on cannot be reassigned; stale and hits can."""
    e = entry(b"/a")
    with pytest.raises(AttributeError):
        e.key = b"other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        e.path = b"/b"  # type: ignore[misc]
    e.stale = True
    assert e.stale
    assert "stale" in repr(e)


# -- store and lookup ----------------------------------------------------------------------------


@pytest.mark.parametrize("eviction", POLICIES)
def test_store_then_lookup_hits_and_counts(eviction: str) -> None:
    """A stored entry is found by its key; unknown keys are misses."""
    store: CacheStore[object] = CacheStore(100_000, eviction=eviction)
    e = entry(b"/a", value="response")
    assert store.store(e) == []
    assert e.is_stored
    assert store.lookup(key(b"/a"), NO_VARY) is e
    assert store.lookup(key(b"/a"), NO_VARY) is e
    assert store.lookup(key(b"/b"), NO_VARY) is None
    assert e.hits == 2
    assert e.value == "response"
    stats = store.statistics()
    assert (stats.hits, stats.misses, stats.stored, stats.objects) == (2, 1, 1, 1)
    assert stats.bytes_used == e.size == store.bytes_used


def test_lookup_does_not_call_the_getter_without_vary() -> None:
    """The hit path of a response without Vary reads no request field."""
    store: CacheStore[object] = CacheStore(100_000)
    store.store(entry(b"/a"))

    def getter(field: bytes) -> bytes:
        raise AssertionError(field)

    assert store.lookup(key(b"/a"), getter) is not None


def test_lookup_selects_the_variant_matching_the_request() -> None:
    """RFC 9111 §4.1: a stored response is used only if the request's Vary fields match."""
    store: CacheStore[object] = CacheStore(100_000)
    gzip = entry(b"/a", vary=(AE,), values=(b"gzip",))
    br = entry(b"/a", vary=(AE,), values=(b"br",))
    store.store(gzip)
    store.store(br)
    assert store.lookup(key(b"/a"), request(accept_encoding=b"gzip")) is gzip
    assert store.lookup(key(b"/a"), request(accept_encoding=b"br")) is br
    assert store.lookup(key(b"/a"), request(accept_encoding=b"zstd")) is None
    assert store.lookup(key(b"/a"), request()) is None
    assert store.variants(key(b"/a")) == (br, gzip)


def test_lookup_matches_every_vary_field() -> None:
    """RFC 9111 §4.1: all the fields listed in Vary must match, not just one."""
    store: CacheStore[object] = CacheStore(100_000)
    e = entry(b"/a", vary=(AE, AL), values=(b"gzip", b"en"))
    store.store(e)
    assert store.lookup(key(b"/a"), request(accept_encoding=b"gzip", accept_language=b"en")) is e
    assert store.lookup(key(b"/a"), request(accept_encoding=b"gzip", accept_language=b"fr")) is None
    assert store.lookup(key(b"/a"), request(accept_encoding=b"br", accept_language=b"en")) is None


def test_lookup_prefers_the_newest_of_several_matching_variants() -> None:
    """RFC 9111 §4.1: when Vary lists differ and several responses match, the most recent is used."""
    store: CacheStore[object] = CacheStore(100_000)
    by_encoding = entry(b"/a", vary=(AE,), values=(b"gzip",))
    by_language = entry(b"/a", vary=(AL,), values=(b"en",))
    store.store(by_encoding)
    store.store(by_language)
    both = request(accept_encoding=b"gzip", accept_language=b"en")
    assert store.lookup(key(b"/a"), both) is by_language
    assert store.lookup(key(b"/a"), request(accept_encoding=b"gzip", accept_language=b"fr")) is by_encoding


def test_store_replaces_the_variant_with_identical_vary_values() -> None:
    """A refreshed response replaces its predecessor and store() reports the old one."""
    store: CacheStore[object] = CacheStore(100_000)
    old = entry(b"/a", vary=(AE,), values=(b"gzip",), tags=(b"t",))
    other = entry(b"/a", vary=(AE,), values=(b"br",))
    new = entry(b"/a", vary=(AE,), values=(b"gzip",), tags=(b"u",))
    store.store(old)
    store.store(other)
    assert store.store(new) == [old]
    assert not old.is_stored
    assert store.variants(key(b"/a")) == (new, other)
    assert store.purge_key(b"t", soft=False) == 0
    store._check_invariants()


def test_store_without_vary_shadows_every_older_variant() -> None:
    """A response without Vary matches every request, so older variants become unreachable and go."""
    store: CacheStore[object] = CacheStore(100_000)
    variants = [entry(b"/a", vary=(AE,), values=(v,)) for v in (b"gzip", b"br")]
    for v in variants:
        store.store(v)
    plain = entry(b"/a")
    assert set(store.store(plain) or []) == set(variants)
    assert store.variants(key(b"/a")) == (plain,)


def test_store_shadows_variants_whose_pairs_include_the_new_ones() -> None:
    """A variant on (AE=gzip) hides an older one on (AE=gzip, AL=en) but not one on (AE=br, AL=en)."""
    store: CacheStore[object] = CacheStore(100_000)
    hidden = entry(b"/a", vary=(AE, AL), values=(b"gzip", b"en"))
    kept = entry(b"/a", vary=(AE, AL), values=(b"br", b"en"))
    store.store(hidden)
    store.store(kept)
    assert store.store(entry(b"/a", vary=(AE,), values=(b"gzip",))) == [hidden]
    assert kept.is_stored


def test_store_refuses_entries_larger_than_max_entry_bytes() -> None:
    """An object bigger than S3-FIFO's small queue is refused: None, and nothing changes."""
    store: CacheStore[object] = CacheStore(100_000)
    assert store.max_entry_bytes == 10_000
    old = entry(b"/a", vary=(AE,), values=(b"gzip",))
    store.store(old)
    too_big = entry(b"/a", vary=(AE,), values=(b"gzip",), size=10_000)
    assert store.store(too_big) is None
    assert not too_big.is_stored
    assert store.variants(key(b"/a")) == (old,)
    fits = entry(b"/b", size=10_000 - entry(b"/b").size)
    assert fits.size == store.max_entry_bytes
    assert store.store(fits) == []
    assert store.statistics().refused == 1


def test_store_refuses_vary_star() -> None:
    """RFC 9111 §4.1: a response with Vary: * never matches, so it is not stored."""
    store: CacheStore[object] = CacheStore(100_000)
    assert store.store(entry(b"/a", vary=(b"*",), values=(b"",))) is None
    assert len(store) == 0


def test_store_the_same_entry_twice_is_an_error() -> None:
    """An Entry object lives in one place at a time."""
    store: CacheStore[object] = CacheStore(100_000)
    e = entry(b"/a")
    store.store(e)
    with pytest.raises(ValueError, match="already stored"):
        store.store(e)


def test_store_caps_variants_per_key() -> None:
    """Past MAX_VARIANTS the oldest variant of the key is evicted, bounding the hit path's scan."""
    store: CacheStore[object] = CacheStore(10_000_000)
    made = [entry(b"/a", vary=(b"user-agent",), values=(b"ua%d" % i,)) for i in range(MAX_VARIANTS + 1)]
    for e in made[:-1]:
        assert store.store(e) == []
    assert store.store(made[-1]) == [made[0]]
    assert len(store.variants(key(b"/a"))) == MAX_VARIANTS
    assert store.statistics().evictions == 1
    store._check_invariants()


def test_zero_max_bytes_stores_nothing() -> None:
    """cache_bytes = 0 is a valid configuration: every store is refused."""
    store: CacheStore[object] = CacheStore(0)
    assert store.store(entry(b"/a")) is None
    assert store.lookup(key(b"/a"), NO_VARY) is None
    assert_empty(store)


def test_constructor_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        CacheStore(-1)
    with pytest.raises(ValueError, match="eviction"):
        CacheStore(100, eviction="arc")


# -- remove and purges ---------------------------------------------------------------------------


@pytest.mark.parametrize("eviction", POLICIES)
def test_remove_drops_every_variant_of_a_key(eviction: str) -> None:
    """RFC 9111 §4.4 invalidation removes all stored responses for the target URI."""
    store: CacheStore[object] = CacheStore(100_000, eviction=eviction)
    store.store(entry(b"/a", vary=(AE,), values=(b"gzip",)))
    store.store(entry(b"/a", vary=(AE,), values=(b"br",)))
    store.store(entry(b"/b"))
    assert store.remove(key(b"/a")) == 2
    assert store.remove(key(b"/a")) == 0
    assert store.variants(key(b"/a")) == ()
    assert len(store) == 1
    store._check_invariants()


def populated(eviction: str = "s3fifo") -> tuple[CacheStore[object], dict[str, Entry[object]]]:
    store: CacheStore[object] = CacheStore(1_000_000, eviction=eviction)
    made = {
        "blog_gz": entry(b"/blog/a", vary=(AE,), values=(b"gzip",), tags=(b"post-a", b"blog")),
        "blog_br": entry(b"/blog/a", vary=(AE,), values=(b"br",), tags=(b"post-a", b"blog")),
        "blog_other_host": entry(b"/blog/a", host=b"other.org", tags=(b"post-a",)),
        "blog_b": entry(b"/blog/b", tags=(b"post-b", b"blog")),
        "blogroll": entry(b"/blogroll", tags=(b"nav",)),
        "docs": entry(b"/docs/x", tags=(b"docs",)),
        "root": entry(b"/"),
    }
    for e in made.values():
        store.store(e)
    return store, made


@pytest.mark.parametrize("eviction", POLICIES)
def test_purge_path_hard_removes_every_variant_and_host(eviction: str) -> None:
    """A path purge takes every variant under that path, on every host, and nothing else."""
    store, made = populated(eviction)
    assert store.purge_path(b"/blog/a", soft=False) == 3
    assert {n for n, e in made.items() if not e.is_stored} == {"blog_gz", "blog_br", "blog_other_host"}
    assert store.lookup(key(b"/blog/a"), request(accept_encoding=b"gzip")) is None
    assert store.purge_path(b"/blog/a", soft=False) == 0
    assert store.purge_path(b"/nowhere", soft=False) == 0
    assert store.statistics().purged == 3
    store._check_invariants()


def test_purge_path_soft_marks_stale_and_keeps_entries() -> None:
    """Soft purge: the entries stay (for stale-while-revalidate) but are marked stale."""
    store, made = populated()
    assert store.purge_path(b"/blog/a", soft=True) == 3
    assert all(made[n].stale and made[n].is_stored for n in ("blog_gz", "blog_br", "blog_other_host"))
    assert not made["blog_b"].stale
    hit = store.lookup(key(b"/blog/a"), request(accept_encoding=b"br"))
    assert hit is made["blog_br"]
    assert hit.stale
    assert len(store) == len(made)


def test_purge_key_hard_removes_exactly_the_tagged_entries() -> None:
    """A surrogate-key purge removes every entry with that tag and no other."""
    store, made = populated()
    assert store.purge_key(b"blog", soft=False) == 3
    assert {n for n, e in made.items() if not e.is_stored} == {"blog_gz", "blog_br", "blog_b"}
    assert store.purge_key(b"post-a", soft=False) == 1
    assert not made["blog_other_host"].is_stored
    assert store.purge_key(b"unknown", soft=False) == 0
    store._check_invariants()


def test_purge_key_soft_marks_exactly_the_tagged_entries() -> None:
    store, made = populated()
    assert store.purge_key(b"post-a", soft=True) == 3
    assert {n for n, e in made.items() if e.stale} == {"blog_gz", "blog_br", "blog_other_host"}
    assert len(store) == len(made)


def test_purge_prefix_is_a_bytewise_prefix_of_the_path() -> None:
    """b"/blog" matches /blog/a, /blog/b and /blogroll; b"/blog/" only the first two."""
    store, made = populated()
    assert store.purge_prefix(b"/blog/", soft=True) == 4
    assert {n for n, e in made.items() if e.stale} == {"blog_gz", "blog_br", "blog_other_host", "blog_b"}
    assert store.purge_prefix(b"/blog", soft=False) == 5
    assert {n for n, e in made.items() if e.is_stored} == {"docs", "root"}
    assert store.purge_prefix(b"/zzz", soft=False) == 0
    assert store.purge_prefix(b"/a", soft=False) == 0
    store._check_invariants()


@pytest.mark.parametrize("eviction", POLICIES)
def test_purge_prefix_empty_purges_everything_and_leaves_no_index(eviction: str) -> None:
    store, made = populated(eviction)
    assert store.purge_prefix(b"", soft=False) == len(made)
    assert_empty(store)


def test_purge_prefix_across_many_sorted_blocks() -> None:
    """Prefix purges stay exact when the sorted path index spans several blocks."""
    store: CacheStore[object] = CacheStore(100_000_000)
    for i in range(3000):
        store.store(entry(b"/%s/%05d" % (b"ab"[i % 2 : i % 2 + 1], i)))
    assert store.purge_prefix(b"/a/", soft=True) == 1500
    assert store.purge_prefix(b"/b/01", soft=False) == 500
    assert store.purge_prefix(b"/b/", soft=False) == 1000
    assert len(store) == 1500
    store._check_invariants()


# -- no leaks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eviction", POLICIES)
def test_indexes_are_empty_after_removing_everything(eviction: str) -> None:
    """remove, hard purges and eviction all clean every index: nothing leaks."""
    store: CacheStore[object] = CacheStore(20 * UNIT, eviction=eviction)
    rng = random.Random(7)
    for i in range(200):
        store.store(numbered(i % 60, vary=(AE,), values=(rng.choice([b"gzip", b"br"]),), tags=(b"t%d" % (i % 5),)))
        store._check_invariants()
    assert store.statistics().evictions > 0
    store.purge_key(b"t0", soft=False)
    store.purge_path(b"/p001", soft=False)
    store.purge_prefix(b"/p02", soft=False)
    for i in range(60):
        store.remove(key(b"/p%03d" % i))
    assert_empty(store)


# -- eviction ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eviction", POLICIES)
def test_byte_budget_holds_under_churn(eviction: str) -> None:
    """After every operation bytes_used <= max_bytes, with entries of mixed sizes."""
    store: CacheStore[object] = CacheStore(50_000, eviction=eviction)
    rng = random.Random(1)
    for _ in range(2000):
        e = entry(b"/%d" % rng.randrange(300), size=rng.randrange(5000), tags=(b"t%d" % rng.randrange(9),))
        result = store.store(e)
        assert store.bytes_used <= store.max_bytes
        if result is not None:
            assert all(not gone.is_stored for gone in result)
        store.lookup(key(b"/%d" % rng.randrange(300)), NO_VARY)
    store._check_invariants()


def test_lru_evicts_the_least_recently_used() -> None:
    """LRU: a lookup makes an entry the last to go."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="lru")
    made = [numbered(i) for i in range(10)]
    for e in made:
        assert store.store(e) == []
    assert store.lookup(made[0].key, NO_VARY) is made[0]
    assert store.store(numbered(10)) == [made[1]]
    assert store.store(numbered(11)) == [made[2]]
    assert made[0].is_stored
    assert store.statistics().evictions == 2


def test_lru_is_flushed_by_a_scan() -> None:
    """The weakness S3-FIFO fixes: one pass of one-hit-wonders evicts LRU's hot set."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="lru")
    hot = [numbered(i) for i in range(10)]
    for e in hot:
        store.store(e)
        store.lookup(e.key, NO_VARY)
    for i in range(100, 120):
        store.store(numbered(i))
    assert not any(e.is_stored for e in hot)


def test_s3fifo_scan_does_not_flush_the_main_queue() -> None:
    """S3-FIFO: one-hit-wonders enter the small queue and leave from it (Yang et al. §3)."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="s3fifo")
    hot = [numbered(i) for i in range(10)]
    for e in hot:
        store.store(e)
    stats = store.statistics()
    assert (stats.small_objects, stats.main_objects) == (1, 9)  # main fills once small is full
    for i in range(100, 150):
        store.store(numbered(i))
    assert all(e.is_stored for e in hot[1:])
    assert not hot[0].is_stored
    stats = store.statistics()
    assert (stats.small_objects, stats.main_objects, stats.evictions) == (1, 9, 50)
    assert stats.ghost_objects > 0


def test_s3fifo_ghost_hit_is_admitted_to_main() -> None:
    """A key evicted from the small queue and stored again goes straight to main."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="s3fifo")
    for i in range(10):
        store.store(numbered(i))
    store.store(numbered(10))  # evicts /p000 from small into the ghost
    assert store.statistics().main_objects == 9
    again = numbered(0)
    store.store(again)  # evicts /p010 from small, admits /p000 to main
    stats = store.statistics()
    assert (stats.small_objects, stats.main_objects) == (0, 10)
    assert again.is_stored


def test_s3fifo_ghost_remembers_a_key_once_for_all_its_variants() -> None:
    """The ghost holds primary keys: two evicted variants of one URL are one ghost entry."""
    unit = numbered(0, vary=(AE,), values=(b"aa",)).size
    store: CacheStore[object] = CacheStore(20 * unit, eviction="s3fifo")
    store.store(numbered(0, vary=(AE,), values=(b"aa",)))
    store.store(numbered(0, vary=(AE,), values=(b"bb",)))
    for i in range(1, 19):
        store.store(numbered(i, vary=(AE,), values=(b"aa",)))
    assert store.statistics().small_objects == 2
    store.store(numbered(50, vary=(AE,), values=(b"aa",)))
    store.store(numbered(51, vary=(AE,), values=(b"aa",)))
    stats = store.statistics()
    assert (stats.evictions, stats.ghost_objects) == (2, 1)
    assert store.variants(key(b"/p000")) == ()
    store._check_invariants()


def test_s3fifo_promotes_entries_hit_twice_in_small() -> None:
    """Leaving the small queue, an entry with freq >= 2 moves to main instead of being evicted."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="s3fifo")
    made = [numbered(i) for i in range(10)]
    for e in made:
        store.store(e)
    store.lookup(made[0].key, NO_VARY)
    store.lookup(made[0].key, NO_VARY)
    evicted = store.store(numbered(10))
    assert made[0].is_stored
    assert evicted == [made[1]]  # main is over its share after the promotion: its head goes


def test_s3fifo_main_reinserts_entries_that_were_hit() -> None:
    """Main is a CLOCK: an entry hit since its last pass survives it, one bit poorer."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction="s3fifo")
    made = [numbered(i) for i in range(10)]
    for e in made:
        store.store(e)
    store.lookup(made[1].key, NO_VARY)  # head of main
    again = numbered(0)
    store.store(numbered(10))  # /p000 small -> ghost
    store.store(again)  # /p010 evicted from small; /p000 admitted to main (over its share now)
    assert store.store(numbered(11)) == [made[2]]  # /p001 was hit: reinserted, /p002 goes
    assert made[1].is_stored


@pytest.mark.parametrize("eviction", POLICIES)
def test_replacement_keeps_queue_and_frequency(eviction: str) -> None:
    """A refreshed hot entry stays as protected as the one it replaces."""
    store: CacheStore[object] = CacheStore(10 * UNIT, eviction=eviction)
    made = [numbered(i) for i in range(10)]
    for e in made:
        store.store(e)
    for _ in range(3):
        store.lookup(made[1].key, NO_VARY)
    queue_before = made[1]._queue
    fresh = numbered(1)
    assert store.store(fresh) == [made[1]]
    assert fresh._queue == queue_before
    assert fresh._freq == (0 if eviction == "lru" else 3)
    for i in range(20, 27):
        store.store(numbered(i))
    assert fresh.is_stored


# -- introspection and purity --------------------------------------------------------------------


def test_statistics_is_a_frozen_snapshot() -> None:
    store: CacheStore[object] = CacheStore(100_000, eviction="lru")
    store.store(entry(b"/a"))
    stats = store.statistics()
    assert isinstance(stats, CacheStatistics)
    assert (stats.eviction, stats.objects, stats.main_objects, stats.small_objects) == ("lru", 1, 1, 0)
    with pytest.raises(FrozenInstanceError):
        stats.hits = 5  # type: ignore[misc]
    store.lookup(key(b"/a"), NO_VARY)
    assert stats.hits == 0


@pytest.mark.parametrize("eviction", POLICIES)
def test_repr_shows_state(eviction: str) -> None:
    store: CacheStore[object] = CacheStore(100_000, eviction=eviction)
    store.store(entry(b"/a"))
    store.lookup(key(b"/b"), NO_VARY)
    text = repr(store)
    assert text.startswith(f"<CacheStore [{eviction}, objects: 1, bytes: {store.bytes_used}/100000")
    assert "misses: 1" in text
    assert ("small:" in text) == (eviction == "s3fifo")


def test_sorted_paths_agrees_with_a_sorted_list() -> None:
    """The blocked sorted list behaves like sorted() under random adds, removes and prefix scans."""
    rng = random.Random(3)
    paths = _SortedPaths()
    model: set[bytes] = set()
    for _ in range(6000):
        p = b"/%d/%d" % (rng.randrange(20), rng.randrange(300))
        if p in model:
            paths.remove(p)
            model.discard(p)
        else:
            paths.add(p)
            model.add(p)
    assert list(paths) == sorted(model)
    for prefix in (b"", b"/1", b"/1/", b"/19/2", b"/9", b"/99", b"0", b"~"):
        assert paths.starting_with(prefix) == sorted(p for p in model if p.startswith(prefix))


def test_cache_module_is_pure() -> None:
    """cache.py is a (P) module: no I/O, clock, trio or policy imports (STYLE.md 2.1)."""
    tree = ast.parse(Path(cache_module.__file__).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    forbidden = {"trio", "socket", "time", "os", "logging", "edgeproxy"}
    assert not {n for n in names if n.split(".")[0] in forbidden}


@pytest.mark.parametrize("policy", POLICIES)
def test_generation_changes_whenever_an_entry_enters_or_leaves(policy: str) -> None:
    """``generation`` is what plainhit's per-head memo is checked against: every store, removal,
    hard purge and eviction changes it; marking entries stale (soft purge) does not."""
    store: CacheStore[object] = CacheStore(UNIT * 40, eviction=policy)
    seen = [store.generation]

    def changed() -> bool:
        seen.append(store.generation)
        return seen[-1] != seen[-2]

    store.store(numbered(1, tags=(b"t",)))
    assert changed()
    store.purge_key(b"t", soft=True)
    assert not changed()
    store.store(numbered(1))  # a replacement: the old variant leaves, the new one enters
    assert changed()
    store.purge_path(b"/p001", soft=False)
    assert changed()
    store.store(numbered(2))
    store.remove(key(b"/p002"))
    assert changed()
    for i in range(3, 200):  # past the budget: evictions
        store.store(numbered(i))
    before = store.generation
    store.store(numbered(200))
    assert store.generation >= before + 2  # one in, at least one evicted
    gen = store.generation
    assert store.lookup(key(b"/p200"), NO_VARY) is not None  # lookups and hits change nothing
    assert store.generation == gen
