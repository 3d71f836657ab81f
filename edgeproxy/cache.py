"""The edge's in-memory object store: variants by Vary, purge indexes, byte-bounded eviction.

Theory of operation
-------------------
An ``Entry`` is one stored response variant. Its primary key (``b"GET https://host/p?q"``)
selects a short list of variants, newest first; a request picks the first variant whose
``vary`` fields have the request's values (RFC 9111 §4.1: of several matching responses
"the most recent" is used). Storing a variant removes every older variant of the same key
that it shadows -- one whose selecting (field, value) pairs include all of the new one's --
because the newest-first rule made those unreachable; an identical Vary list and values is
the common case (a refresh replacing its predecessor).

Every stored entry is in exactly one eviction queue and in three indexes, which is what keeps
each operation's cost proportional to what it touches:

========================  =========================================================================
``_by_key``               primary key -> variants (newest first): ``lookup``, ``store``, ``remove``
``_by_path``              path -> entries (every host, method and variant): ``purge_path``
``_paths``                the distinct paths in byte order (blocked sorted list): ``purge_prefix``
``_by_surrogate``         surrogate key -> entries: ``purge_key``
========================  =========================================================================

Costs (V variants of a key, F Vary fields, P distinct paths, S surrogate keys of an entry,
m entries touched, k entries evicted):

- ``lookup``: O(1) + O(V·F); no allocation besides what ``request_vary_getter`` returns.
- ``store``: O(V·F + S + log P) + O(k) evictions, amortized O(1) each (S3-FIFO reinserts an
  entry from the main queue at most 3 times per hit it got, each one clearing a frequency bit).
- ``remove``: O(V·(S + log P)); ``purge_path``/``purge_key``: O(m·(S + log P)) hard, O(m) soft;
  ``purge_prefix``: O(log P + matching paths + m·(S + log P)); ``statistics``: O(1).

Eviction is byte-weighted: after every call ``bytes_used <= max_bytes``. ``"lru"`` is an
``OrderedDict`` moved on each hit. ``"s3fifo"`` is S3-FIFO (Yang et al., "FIFO queues are
all you need for cache eviction", SOSP'23) as in libCacheSim's ``S3FIFO.c``: new entries go
into a small FIFO (10% of the bytes); on its way out of it an entry that was hit at least
``MOVE_TO_MAIN_THRESHOLD`` times moves to the main FIFO (90%), the others leave and their key
goes into a ghost FIFO; a key found in the ghost goes straight to main; main is a CLOCK with
a 2-bit counter per entry. A hit costs a few integer increments and no queue move, and
one-hit-wonders (crawler scans) leave through the small queue without flushing the main one.

Pure: no clock, logging or I/O (``stale`` is a flag for the policy); one store per worker thread.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

EVICTION_POLICIES = ("s3fifo", "lru")
# Bytes charged per entry on top of its value and strings, measured with tracemalloc over 100k
# stored entries (CPython 3.11): an entry with its own path and no tags costs ~650 B (Entry
# object, key dict slot and variant list, queue node, path set and sorted-path slot); each
# surrogate key adds ~50 B when shared with other entries and ~320 B when the entry is its only
# member (FlowCMS pages carry one own tag and a few shared ones: ~140 B a tag on average).
ENTRY_OVERHEAD_BYTES = 640
SURROGATE_KEY_OVERHEAD_BYTES = 128
SMALL_QUEUE_FRACTION = 0.10  # S3-FIFO paper §4.2: 10% for the small queue generalizes across traces
GHOST_FRACTION = 0.90  # libCacheSim S3FIFO.c ghost-size-ratio: the ghost remembers 0.9× the cache's bytes
MOVE_TO_MAIN_THRESHOLD = 2  # libCacheSim move-to-main-threshold (paper Algorithm 1: freq > 1)
MAX_FREQ = 3  # S3-FIFO's 2-bit saturating counter
# A Vary on User-Agent would make every hit scan thousands of variants; past this many the
# oldest variant of the key is evicted. (Fastly caps variants per object for the same reason.)
MAX_VARIANTS = 32
# What a request_vary_getter returns for a field the request did not send: absent and empty differ
# (RFC 9111 §4.1), and no valid field value holds a NUL (RFC 9110 §5.5), so it equals no value.
VARY_ABSENT = b"\x00"
_PATH_BLOCK = 512  # sorted-path block length: insert cost is a memmove of at most 2×512 pointers

_FREE, _SMALL, _MAIN = 0, 1, 2  # Entry._queue: not stored / small FIFO / main FIFO (LRU: main)


class Entry(Generic[V]):
    """One stored response variant.

    Only ``stale``, ``hits`` and the store's bookkeeping change after construction; the other
    attributes are read-only because the store's indexes are built from them.

    Args:
        key: the primary cache key, e.g. ``b"GET https://host/path?q"``.
        path: the URL path (and query) that ``purge_path`` and ``purge_prefix`` match.
        value: the stored response, opaque to the store.
        size: bytes of ``value`` as the caller counts them (head + body).
        vary: the response's Vary field names (lowercase), or None for no Vary.
        vary_values: the normalized request values of those fields, in the same order.
        surrogate_keys: the response's Surrogate-Key tags.
        stale: True once soft-purged; the policy must revalidate before serving it.
        invalid: True once invalidated (a stronger soft purge): not even a stale-while-revalidate
            window serves it before the origin has answered the revalidation.
    """

    __slots__ = ("__weakref__", "_freq", "_key", "_path", "_queue", "_size", "_surrogate_keys", "_value",
                 "_vary", "_vary_values", "hits", "invalid", "selector", "stale")

    def __init__(self, *, key: bytes, path: bytes, value: V, size: int,
                 vary: tuple[bytes, ...] | None = None, vary_values: tuple[bytes, ...] = (),
                 surrogate_keys: tuple[bytes, ...] = (), stale: bool = False) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if len(vary_values) != len(vary or ()):
            raise ValueError(f"vary has {len(vary or ())} fields but vary_values has {len(vary_values)}")
        surrogate_keys = tuple(dict.fromkeys(surrogate_keys))  # the index needs each tag once
        self._key = key
        self._path = path
        self._value = value
        self._vary = vary
        self._vary_values = tuple(vary_values)
        self._surrogate_keys = surrogate_keys
        self._size = (size + ENTRY_OVERHEAD_BYTES + len(key) + len(path) + sum(map(len, vary_values))
                      + sum(map(len, surrogate_keys)) + SURROGATE_KEY_OVERHEAD_BYTES * len(surrogate_keys))
        self.stale = stale
        self.invalid = False
        self.hits = 0  # lookups that returned this entry
        self._freq = 0  # S3-FIFO's 2-bit access counter
        self._queue = _FREE
        # What a caller derives once from this entry's Vary to match requests faster
        # (``variants.select``); the store never reads it. Vary and its values never change.
        self.selector: object = None

    @property
    def key(self) -> bytes:
        """The primary cache key."""
        return self._key

    @property
    def path(self) -> bytes:
        """The path that purges match against."""
        return self._path

    @property
    def value(self) -> V:
        """The stored response (opaque to the store)."""
        return self._value

    @property
    def vary(self) -> tuple[bytes, ...] | None:
        return self._vary

    @property
    def vary_values(self) -> tuple[bytes, ...]:
        return self._vary_values

    @property
    def surrogate_keys(self) -> tuple[bytes, ...]:
        return self._surrogate_keys

    @property
    def size(self) -> int:
        """Bytes charged against max_bytes: the caller's ``size`` plus the store's own overhead.

        That is ``ENTRY_OVERHEAD_BYTES``, the lengths of key, path, vary values and surrogate
        keys, and ``SURROGATE_KEY_OVERHEAD_BYTES`` per surrogate key.
        """
        return self._size

    @property
    def is_stored(self) -> bool:
        """True while the entry is in a store (not yet evicted, removed or hard-purged)."""
        return self._queue != _FREE

    def __repr__(self) -> str:
        vary = "" if self._vary is None else f" vary={dict(zip(self._vary, self._vary_values, strict=True))}"
        return f"<Entry {self._key!r}{vary} size={self._size} hits={self.hits}{' stale' if self.stale else ''}{' invalid' if self.invalid else ''}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStatistics:
    """A snapshot of a ``CacheStore`` (trio's ``statistics()`` convention)."""

    eviction: str
    objects: int
    bytes_used: int
    max_bytes: int
    hits: int
    misses: int
    stored: int  # entries admitted by store()
    refused: int  # store() calls refused: too large or Vary: *
    evictions: int  # entries evicted to make room (or past MAX_VARIANTS)
    purged: int  # entries removed or marked stale by purges
    small_objects: int  # S3-FIFO small queue (always 0 under LRU)
    small_bytes: int
    main_objects: int  # S3-FIFO main queue, or the whole LRU list
    main_bytes: int
    ghost_objects: int  # S3-FIFO ghost keys remembered (no data)


class CacheStore(Generic[V]):
    """A byte-bounded store of response variants with purge indexes.

    Args:
        max_bytes: the budget for the sum of ``Entry.size``; 0 stores nothing.
        eviction: ``"s3fifo"`` or ``"lru"``.

    Raises:
        ValueError: negative ``max_bytes`` or an unknown ``eviction``.
    """

    __slots__ = ("_by_key", "_by_path", "_by_surrogate", "_eviction", "_evictions", "_ghost",
                 "_ghost_bytes", "_ghost_target", "_has_evicted", "_hits", "_is_lru", "_main",
                 "_main_bytes", "_main_target", "_max_bytes", "_max_entry_bytes", "_misses",
                 "_paths", "_purged", "_refused", "_small", "_small_bytes", "_small_target", "_stored", "generation")

    # Default eviction: S3-FIFO, because it wins on both counts in bench/micro_cache.py (cache
    # = 10% of the working set): hit ratio 63.0/73.0/81.5% vs LRU's 55.2/67.0/77.0% on
    # Zipf(0.9/1.0/1.1); with crawler scans of one-hit-wonders mixed in, S3-FIFO's hit ratio on
    # the Zipf requests is unchanged while LRU's drops 1.5-1.7 points. A hit costs counter
    # increments instead of LRU's move_to_end: ~1.5-1.65x the lookups/s (5.2M vs 3.4M/s).
    def __init__(self, max_bytes: int, *, eviction: str = "s3fifo") -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(f"eviction must be one of {EVICTION_POLICIES}, got {eviction!r}")
        self._max_bytes = max_bytes
        self._eviction = eviction
        self._is_lru = eviction == "lru"
        self._small_target = int(max_bytes * SMALL_QUEUE_FRACTION)
        self._main_target = max_bytes - self._small_target
        self._ghost_target = int(max_bytes * GHOST_FRACTION)
        # Under both policies an entry must fit in S3-FIFO's small queue (libCacheSim
        # S3FIFO_can_insert), so switching policy never changes what can be stored.
        self._max_entry_bytes = self._small_target
        self._by_key: dict[bytes, list[Entry[V]]] = {}
        self._by_path: dict[bytes, set[Entry[V]]] = {}
        self._by_surrogate: dict[bytes, set[Entry[V]]] = {}
        self._paths = _SortedPaths()
        self._small: OrderedDict[Entry[V], None] = OrderedDict()
        self._main: OrderedDict[Entry[V], None] = OrderedDict()
        self._ghost: OrderedDict[int, int] = OrderedDict()  # hash(key) -> size; hashes, not keys, as in the paper
        self._small_bytes = self._main_bytes = self._ghost_bytes = 0
        self._has_evicted = False
        self._hits = self._misses = self._stored = self._refused = self._evictions = self._purged = 0
        # Bumped whenever an entry enters or leaves the store: a selection made at one generation
        # (``plainhit``'s memo per HTTP/2 request head) is the one a new lookup would make while
        # it is unchanged. Marking entries stale (soft purge) does not bump it: readers check that.
        self.generation = 0

    # -- the hit path --------------------------------------------------------------------------

    def lookup(self, key: bytes, request_vary_getter: Callable[[bytes], bytes]) -> Entry[V] | None:
        """Return the newest variant of ``key`` that matches the request, and count a hit.

        ``request_vary_getter(field)`` returns the request's normalized value of a Vary field;
        it is called for each field of each candidate variant, newest first (RFC 9111 §4.1).
        Stale (soft-purged) entries are returned too: freshness is the policy's business.
        Costs O(1) + O(variants × fields), and a hit is two integer increments (S3-FIFO) or an
        ``OrderedDict.move_to_end`` (LRU).
        """
        entry = self.peek(key, request_vary_getter)
        if entry is None:
            self._misses += 1
            return None
        self.record_hit(entry)
        return entry

    def peek(self, key: bytes, request_vary_getter: Callable[[bytes], bytes]) -> Entry[V] | None:
        """``lookup`` without counting anything. (The hit lanes select from ``peek_variants``
        with ``variants.select``, which reads the request's fields without a getter.)"""
        variants = self._by_key.get(key)
        if variants is None:
            return None
        for entry in variants:
            vary = entry._vary
            if vary is None:
                return entry
            values = entry._vary_values
            i = 0  # a hand-kept index: 2.5x faster than zip() here, and allocates nothing
            for field in vary:
                if request_vary_getter(field) != values[i]:
                    break
                i += 1  # noqa: SIM113
            else:
                return entry
        return None

    def peek_variants(self, key: bytes) -> list[Entry[V]] | None:
        """The stored variants of ``key``, newest first, for a caller that selects one itself (the hit
        lanes: ``variants.select``); None when there are none. The store's own list: never change it."""
        return self._by_key.get(key)

    def record_hit(self, entry: Entry[V]) -> None:
        """Count a hit on ``entry`` (statistics and the eviction policy's recency)."""
        self._hits += 1
        entry.hits += 1
        if self._is_lru:
            self._main.move_to_end(entry)
        elif entry._freq < MAX_FREQ:
            entry._freq += 1

    # -- storing and removing ------------------------------------------------------------------

    def store(self, entry: Entry[V]) -> list[Entry[V]] | None:
        """Store ``entry``, evicting as needed; return the entries that left the store.

        The returned list holds, in order, the older variants the new one shadows (see the
        module docstring) and the entries evicted to make room. A replacement keeps its
        predecessor's queue and access count, so refreshing a hot object keeps it hot.

        Returns:
            The removed entries (often empty), or None when the entry is refused and nothing
            changed: it is larger than ``max_entry_bytes``, or its Vary lists ``*`` (RFC 9111
            §4.1: such a response never matches). A refused entry does not remove an older
            variant; call ``remove`` when the old one must not be served any more.

        Raises:
            ValueError: ``entry`` is already in a store.
        """
        if entry._queue != _FREE:
            raise ValueError(f"{entry!r} is already stored")
        if entry._size > self._max_entry_bytes or (entry._vary is not None and b"*" in entry._vary):
            self._refused += 1
            return None
        key = entry._key
        removed: list[Entry[V]] = []
        queue = _FREE
        freq = 0
        variants = self._by_key.get(key)
        if variants is not None:
            for old in [old for old in variants if _shadows(entry, old)]:
                if queue == _FREE:
                    queue, freq = old._queue, old._freq
                self._unlink(old)
                removed.append(old)
            if len(variants) >= MAX_VARIANTS:
                removed.append(self._evict(variants[-1]))
        while self._small_bytes + self._main_bytes + entry._size > self._max_bytes:
            removed.append(self._evict_one())
        if queue == _FREE:
            queue = self._admit(key)
        self._link(entry, queue, freq)
        self._stored += 1
        return removed

    def remove(self, key: bytes) -> int:
        """Remove every variant of ``key`` (e.g. RFC 9111 §4.4 invalidation); return how many."""
        variants = self._by_key.get(key)
        if variants is None:
            return 0
        count = len(variants)
        for entry in list(variants):
            self._unlink(entry)
        return count

    def variants(self, key: bytes) -> tuple[Entry[V], ...]:
        """The stored variants of ``key``, newest first (no hit or miss is counted)."""
        return tuple(self._by_key.get(key, ()))

    # -- purges --------------------------------------------------------------------------------

    def purge_path(self, path: bytes, *, soft: bool, invalidate: bool = False) -> int:
        """Purge every entry stored under ``path`` (all hosts, methods and variants).

        Soft marks them stale and keeps them; invalidate marks them stale and invalid (never
        served stale while revalidating, ``purge.py``); hard removes them. Returns how many were
        affected. O(matches).
        """
        return self._purge(self._by_path.get(path, ()), soft, invalidate)

    def purge_key(self, surrogate_key: bytes, *, soft: bool, invalidate: bool = False) -> int:
        """Purge every entry tagged with ``surrogate_key``; returns how many. O(matches)."""
        return self._purge(self._by_surrogate.get(surrogate_key, ()), soft, invalidate)

    def purge_prefix(self, prefix: bytes, *, soft: bool, invalidate: bool = False) -> int:
        """Purge every entry whose path starts with ``prefix`` (bytewise; ``b""`` is everything).

        Returns how many were affected. O(log paths + matching paths + matches).
        """
        by_path = self._by_path
        return self._purge([e for path in self._paths.starting_with(prefix) for e in by_path[path]], soft,
                           invalidate)

    def _purge(self, matched: Iterable[Entry[V]], soft: bool, invalidate: bool = False) -> int:
        entries = list(matched)  # hard purges shrink the index sets being read
        if invalidate:
            for entry in entries:
                entry.stale = entry.invalid = True
        elif soft:
            for entry in entries:
                entry.stale = True
        else:
            for entry in entries:
                self._unlink(entry)
        self._purged += len(entries)
        return len(entries)

    # -- introspection -------------------------------------------------------------------------

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def max_entry_bytes(self) -> int:
        """The largest ``Entry.size`` that ``store`` accepts (S3-FIFO's small queue size)."""
        return self._max_entry_bytes

    @property
    def bytes_used(self) -> int:
        return self._small_bytes + self._main_bytes

    def __len__(self) -> int:
        return len(self._small) + len(self._main)

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            eviction=self._eviction, objects=len(self), bytes_used=self.bytes_used,
            max_bytes=self._max_bytes, hits=self._hits, misses=self._misses, stored=self._stored,
            refused=self._refused, evictions=self._evictions, purged=self._purged,
            small_objects=len(self._small), small_bytes=self._small_bytes,
            main_objects=len(self._main), main_bytes=self._main_bytes, ghost_objects=len(self._ghost))

    def __repr__(self) -> str:
        queues = "" if self._is_lru else (
            f", small: {len(self._small)}/{self._small_bytes}B, main: {len(self._main)}/{self._main_bytes}B"
            f", ghost: {len(self._ghost)}")
        return (f"<CacheStore [{self._eviction}, objects: {len(self)}, bytes: {self.bytes_used}/{self._max_bytes}"
                f"{queues}, hits: {self._hits}, misses: {self._misses}]>")

    # -- internals -----------------------------------------------------------------------------

    def _admit(self, key: bytes) -> int:
        """Which queue a new (not replacing) entry joins."""
        if self._is_lru:
            return _MAIN
        size = self._ghost.pop(hash(key), None) if self._ghost else None
        if size is not None:  # evicted from small recently and wanted again
            self._ghost_bytes -= size
            return _MAIN
        # libCacheSim S3FIFO.c: until the first eviction, once small is full new entries fill main.
        if not self._has_evicted and self._small_bytes >= self._small_target:
            return _MAIN
        return _SMALL

    def _link(self, entry: Entry[V], queue: int, freq: int) -> None:
        self.generation += 1
        entry._queue = queue
        entry._freq = freq
        if queue == _SMALL:
            self._small[entry] = None
            self._small_bytes += entry._size
        else:
            self._main[entry] = None
            self._main_bytes += entry._size
        variants = self._by_key.get(entry._key)
        if variants is None:
            self._by_key[entry._key] = [entry]
        else:
            variants.insert(0, entry)
        same_path = self._by_path.get(entry._path)
        if same_path is None:
            self._by_path[entry._path] = {entry}
            self._paths.add(entry._path)
        else:
            same_path.add(entry)
        for tag in entry._surrogate_keys:
            tagged = self._by_surrogate.get(tag)
            if tagged is None:
                self._by_surrogate[tag] = {entry}
            else:
                tagged.add(entry)

    def _unlink(self, entry: Entry[V]) -> None:
        """Take a stored entry out of its queue and every index."""
        self.generation += 1
        if entry._queue == _SMALL:
            del self._small[entry]
            self._small_bytes -= entry._size
        else:
            del self._main[entry]
            self._main_bytes -= entry._size
        entry._queue = _FREE
        variants = self._by_key[entry._key]
        variants.remove(entry)
        if not variants:
            del self._by_key[entry._key]
        same_path = self._by_path[entry._path]
        same_path.remove(entry)
        if not same_path:
            del self._by_path[entry._path]
            self._paths.remove(entry._path)
        for tag in entry._surrogate_keys:
            tagged = self._by_surrogate[tag]
            tagged.remove(entry)
            if not tagged:
                del self._by_surrogate[tag]

    def _evict(self, entry: Entry[V]) -> Entry[V]:
        self._unlink(entry)
        self._evictions += 1
        self._has_evicted = True
        return entry

    def _evict_one(self) -> Entry[V]:
        """Evict one entry by the configured policy; the store must not be empty."""
        main = self._main
        if self._is_lru:
            return self._evict(next(iter(main)))
        small = self._small
        # libCacheSim S3FIFO_evict: from main when it is over its share or small is empty.
        while small and (self._main_bytes <= self._main_target or not main):
            entry = next(iter(small))
            if entry._freq >= MOVE_TO_MAIN_THRESHOLD:  # hit in small: promote, access bits cleared
                del small[entry]
                self._small_bytes -= entry._size
                main[entry] = None
                self._main_bytes += entry._size
                entry._queue = _MAIN
                entry._freq = 0
                continue
            self._remember(entry)
            return self._evict(entry)
        while True:  # main is a CLOCK with a 2-bit counter: reinsert while bits remain
            entry = next(iter(main))
            if not entry._freq:
                return self._evict(entry)
            entry._freq -= 1
            main.move_to_end(entry)

    def _remember(self, entry: Entry[V]) -> None:
        """Put an entry leaving the small queue into the ghost FIFO, bounded in bytes."""
        ghost = self._ghost
        key_hash = hash(entry._key)
        previous = ghost.pop(key_hash, None)
        if previous is not None:
            self._ghost_bytes -= previous
        ghost[key_hash] = entry._size
        self._ghost_bytes += entry._size
        while self._ghost_bytes > self._ghost_target:
            self._ghost_bytes -= ghost.popitem(last=False)[1]

    def _check_invariants(self) -> None:
        """Assert the internal consistency of the queues and indexes (for tests)."""
        entries = list(self._small) + list(self._main)
        assert len(set(entries)) == len(entries)
        assert self._small_bytes == sum(e._size for e in self._small)
        assert self._main_bytes == sum(e._size for e in self._main)
        assert self.bytes_used <= self._max_bytes
        assert all(e._queue == _SMALL for e in self._small)
        assert all(e._queue == _MAIN for e in self._main)
        assert not (self._is_lru and self._small)
        assert sorted(map(id, entries)) == sorted(id(e) for vs in self._by_key.values() for e in vs)
        assert all(vs and all(e._key == k for e in vs) for k, vs in self._by_key.items())
        assert all(len(vs) <= MAX_VARIANTS for vs in self._by_key.values())
        assert {(p, id(e)) for p, es in self._by_path.items() for e in es} == {(e._path, id(e)) for e in entries}
        assert {(t, id(e)) for t, es in self._by_surrogate.items() for e in es} == {
            (t, id(e)) for e in entries for t in e._surrogate_keys}
        assert list(self._paths) == sorted(self._by_path)
        assert self._ghost_bytes == sum(self._ghost.values()) <= self._ghost_target


def _shadows(new: Entry[V], old: Entry[V]) -> bool:
    """True when every request that ``old`` matches also matches ``new`` (new ⊆ old pairs)."""
    if not new._vary:
        return True
    if not old._vary:
        return False
    old_pairs = dict(zip(old._vary, old._vary_values, strict=True))
    return all(old_pairs.get(field) == value for field, value in zip(new._vary, new._vary_values, strict=True))


class _SortedPaths:
    """The distinct paths in byte order, kept as a list of sorted blocks (sortedcontainers' layout).

    ``add``/``remove`` cost O(log P) comparisons plus a memmove within one block of at most
    2 × ``_PATH_BLOCK`` pointers, instead of a memmove of the whole list (about 140 µs at a
    million paths); ``starting_with`` costs O(log P + matches).
    """

    __slots__ = ("_blocks", "_maxes")

    def __init__(self) -> None:
        self._blocks: list[list[bytes]] = []
        self._maxes: list[bytes] = []  # the last path of each block

    def add(self, path: bytes) -> None:
        """Insert ``path``, which must not be present."""
        blocks, maxes = self._blocks, self._maxes
        if not maxes:
            blocks.append([path])
            maxes.append(path)
            return
        k = bisect_left(maxes, path)
        if k == len(maxes):
            k -= 1
            block = blocks[k]
            block.append(path)
            maxes[k] = path
        else:
            block = blocks[k]
            insort(block, path)
        if len(block) > 2 * _PATH_BLOCK:
            blocks.insert(k + 1, block[_PATH_BLOCK:])
            del block[_PATH_BLOCK:]
            maxes.insert(k, block[-1])

    def remove(self, path: bytes) -> None:
        """Remove ``path``, which must be present."""
        k = bisect_left(self._maxes, path)
        block = self._blocks[k]
        i = bisect_left(block, path)
        assert block[i] == path
        del block[i]
        if not block:
            del self._blocks[k]
            del self._maxes[k]
        elif i == len(block):
            self._maxes[k] = block[-1]

    def starting_with(self, prefix: bytes) -> list[bytes]:
        """The paths that start with ``prefix``, in order."""
        out: list[bytes] = []
        blocks = self._blocks
        k = bisect_left(self._maxes, prefix)
        if k == len(blocks):
            return out
        i = bisect_left(blocks[k], prefix)
        while k < len(blocks):
            block = blocks[k]
            while i < len(block):
                path = block[i]
                if not path.startswith(prefix):
                    return out
                out.append(path)
                i += 1
            k += 1
            i = 0
        return out

    def __iter__(self) -> Iterator[bytes]:
        return (path for block in self._blocks for path in block)
