"""CacheStore against a trivial model: a list of the live entries in the order they were stored.

The model does not predict evictions (that is the policy's business); it checks that the store
only ever removes what it reports, removes what a new variant shadows, stays inside its byte
budget, and answers lookups and purges exactly as the model says.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from edgeproxy.cache import CacheStore, Entry

HOSTS = [b"a.example", b"b.example"]
PATHS = [b"/", b"/a", b"/a/b", b"/ab", b"/b", b"/b/c"]
PREFIXES = [*PATHS, b"", b"/a/", b"/c"]
FIELDS = [b"accept-encoding", b"accept-language"]
VALUES = [b"", b"gzip", b"br"]
TAGS = [b"t1", b"t2", b"t3"]
VARY = st.sampled_from([None, (), (FIELDS[0],), (FIELDS[1],), (FIELDS[0], FIELDS[1]), (FIELDS[1], FIELDS[0]),
                        (b"*",)])
REQUEST = st.fixed_dictionaries({f: st.sampled_from(VALUES) for f in FIELDS})


def cache_key(host: bytes, path: bytes) -> bytes:
    return b"GET https://" + host + path


def pairs(e: Entry[int]) -> dict[bytes, bytes]:
    return dict(zip(e.vary or (), e.vary_values, strict=True))


def matches(e: Entry[int], request: dict[bytes, bytes]) -> bool:
    return all(request[f] == v for f, v in pairs(e).items())


def shadows(new: Entry[int], old: Entry[int]) -> bool:
    """Every request matching ``old`` matches ``new``: new's (field, value) pairs are among old's."""
    old_pairs = pairs(old)
    return all(old_pairs.get(f) == v for f, v in pairs(new).items())


class CacheModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache: CacheStore[int] = CacheStore(0)
        self.model: list[Entry[int]] = []  # live entries, oldest first
        self.serial = 0

    @initialize(max_bytes=st.integers(8_000, 40_000), eviction=st.sampled_from(["lru", "s3fifo"]))
    def start(self, max_bytes: int, eviction: str) -> None:
        self.cache = CacheStore(max_bytes, eviction=eviction)

    def newest_first(self, key: bytes) -> list[Entry[int]]:
        return [e for e in reversed(self.model) if e.key == key]

    @rule(host=st.sampled_from(HOSTS), path=st.sampled_from(PATHS), vary=VARY, request=REQUEST,
          tags=st.lists(st.sampled_from(TAGS), max_size=3), size=st.integers(0, 3000))
    def store(self, host: bytes, path: bytes, vary: tuple[bytes, ...] | None, request: dict[bytes, bytes],
              tags: list[bytes], size: int) -> None:
        values = tuple(request.get(f, b"") for f in vary or ())
        self.serial += 1
        new = Entry(key=cache_key(host, path), path=path, value=self.serial, size=size, vary=vary,
                    vary_values=values, surrogate_keys=tuple(tags))
        removed = self.cache.store(new)
        if new.size > self.cache.max_entry_bytes or (vary is not None and b"*" in vary):
            assert removed is None
            return
        assert removed is not None
        shadowed = [e for e in self.newest_first(new.key) if shadows(new, e)]
        assert all(any(e is r for r in removed) for e in shadowed), "a shadowed variant survived"
        assert all(any(r is e for e in self.model) for r in removed), "reported an entry it did not hold"
        assert len({id(r) for r in removed}) == len(removed)
        kept = [e for e in self.model if not any(e is r for r in removed)]
        if sum(e.size for e in self.model if not any(e is s for s in shadowed)) + new.size <= self.cache.max_bytes:
            assert len(removed) == len(shadowed), "evicted although everything fitted"
        self.model = [*kept, new]

    @rule(host=st.sampled_from(HOSTS), path=st.sampled_from(PATHS), request=REQUEST)
    def lookup(self, host: bytes, path: bytes, request: dict[bytes, bytes]) -> None:
        key = cache_key(host, path)
        expected = next((e for e in self.newest_first(key) if matches(e, request)), None)
        getter: Callable[[bytes], bytes] = request.__getitem__
        assert self.cache.lookup(key, getter) is expected

    def check_purge(self, affected: list[Entry[int]], count: int, soft: bool) -> None:
        assert count == len(affected)
        if soft:
            assert all(e.stale and e.is_stored for e in affected)
        else:
            assert not any(e.is_stored for e in affected)
            self.model = [e for e in self.model if not any(e is a for a in affected)]

    @rule(tag=st.sampled_from(TAGS), soft=st.booleans())
    def purge_key(self, tag: bytes, soft: bool) -> None:
        affected = [e for e in self.model if tag in e.surrogate_keys]
        self.check_purge(affected, self.cache.purge_key(tag, soft=soft), soft)

    @rule(path=st.sampled_from(PATHS), soft=st.booleans())
    def purge_path(self, path: bytes, soft: bool) -> None:
        affected = [e for e in self.model if e.path == path]
        self.check_purge(affected, self.cache.purge_path(path, soft=soft), soft)

    @rule(prefix=st.sampled_from(PREFIXES), soft=st.booleans())
    def purge_prefix(self, prefix: bytes, soft: bool) -> None:
        affected = [e for e in self.model if e.path.startswith(prefix)]
        self.check_purge(affected, self.cache.purge_prefix(prefix, soft=soft), soft)

    @rule(host=st.sampled_from(HOSTS), path=st.sampled_from(PATHS))
    def remove(self, host: bytes, path: bytes) -> None:
        key = cache_key(host, path)
        gone = [e for e in self.model if e.key == key]
        assert self.cache.remove(key) == len(gone)
        assert not any(e.is_stored for e in gone)
        self.model = [e for e in self.model if e.key != key]

    @invariant()
    def agrees_with_model(self) -> None:
        cache = self.cache
        assert cache.bytes_used == sum(e.size for e in self.model) <= cache.max_bytes
        assert len(cache) == len(self.model) == cache.statistics().objects
        assert all(e.is_stored for e in self.model)
        for key in {e.key for e in self.model}:
            assert list(cache.variants(key)) == self.newest_first(key)
        cache._check_invariants()


CacheModel.TestCase.settings = settings(CacheModel.TestCase.settings, stateful_step_count=60)
TestCacheModel = CacheModel.TestCase
