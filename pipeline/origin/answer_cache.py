"""The origin's per-build answer cache: finished API answers memoized for the live build. Pure.

Theory of operation. A live build is immutable, so a read-API answer is a pure function of
(build, request facts that shape it): the method class (GET and HEAD share an answer, HEAD
without its body), the normalized path and query, the gateway's role (or identity) headers
and the Accept negotiation outcome. The caller (``lane.py``) names those facts in a hashable
``key`` and the build in a ``generation`` token; this module keeps the finished answers in
one LRU bounded in entries and bytes, and drops all of them when the generation changes (a
publish or a rollback moved LIVE, or the build's folder changed under the same id).

What is per request is never stored: ``reply`` decides If-None-Match → 304 against the
stored ETag (RFC 9110 §13.1.2) and HEAD (RFC 9110 §9.3.2) on every request, and request ids
never reach a stored answer. What may be stored is the caller's decision (``is_storable``
gives the status rule: 200 and deterministic 4xx, never 429 or 5xx).

Synchronous and single-threaded: the lane runs it on trio's thread only, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from pipeline.origin.conditional import none_match

Headers = tuple[tuple[bytes, bytes], ...]

#: Distinct answers kept: the sample site's whole API surface is a few hundred; 4096
#: covers a large site's hot set without letting a crawler of query strings grow it.
MAX_ENTRIES = 4096
#: Bytes of bodies and headers kept (a REST page of 100 entries with bodies is ~1 MB).
MAX_BYTES = 64 * 1024 * 1024
#: Bookkeeping per entry (key tuple, OrderedDict node, dataclass): counted so that many
#: tiny answers cannot exceed the budget unseen.
ENTRY_OVERHEAD_BYTES = 256


def is_storable(status: int) -> bool:
    """200 and the deterministic 4xx (400, 404, 406, …); never 429 (load) nor 5xx (faults, 503)."""
    return status == 200 or (400 <= status < 500 and status != 429)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAnswer:
    """A finished answer as the app would send it to a GET, plus its 304 form."""

    status: int
    headers: Headers
    """ASGI response headers (lowercase names), in the order the app sends them."""
    body: bytes
    etag: str | None
    """If-None-Match is evaluated against this; None: the answer is never turned into a 304."""
    not_modified_headers: Headers = ()
    """The headers of the 304 form (validators and caching headers, no content headers)."""

    @property
    def size(self) -> int:
        """Bytes this answer holds (body and headers)."""
        return len(self.body) + sum(len(n) + len(v) for n, v in (*self.headers, *self.not_modified_headers))


def reply(answer: StoredAnswer, *, head: bool, if_none_match: str | None) -> tuple[int, Headers, bytes]:
    """The per-request part: (status, headers, body) of ``answer`` for this request."""
    if answer.etag is not None and if_none_match and none_match(if_none_match, answer.etag):
        return 304, answer.not_modified_headers, b""
    return answer.status, answer.headers, b"" if head else answer.body


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    hits: int
    misses: int
    stores: int
    evictions: int
    invalidations: int
    """Times every answer was dropped because the generation (the live build) changed."""
    entries: int
    bytes: int


class AnswerCache:
    """A byte- and entry-bounded LRU of ``StoredAnswer`` for one generation at a time."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES,
                 max_entry_bytes: int | None = None) -> None:
        """``max_entry_bytes`` (default a 16th of ``max_bytes``): one answer may take this much at
        most, so a single huge page cannot flush the hot set."""
        if max_entries < 1 or max_bytes < 1 or (max_entry_bytes is not None and max_entry_bytes < 1):
            raise ValueError("the bounds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes or max(1, max_bytes // 16)
        self._entries: OrderedDict[Hashable, tuple[StoredAnswer, int]] = OrderedDict()
        self._generation: Hashable = None
        self._bytes = 0
        self._hits = self._misses = self._stores = self._evictions = self._invalidations = 0

    def __repr__(self) -> str:
        return (f"<AnswerCache [{len(self._entries)}/{self.max_entries} entries, "
                f"{self._bytes}/{self.max_bytes} bytes, hits {self._hits}, misses {self._misses}]>")

    def _adopt(self, generation: Hashable) -> None:
        """``generation`` is the current one: drop answers of any other."""
        if generation != self._generation:
            if self._entries:
                self._invalidations += 1
            self._entries.clear()
            self._bytes = 0
            self._generation = generation

    def lookup(self, generation: Hashable, key: Hashable) -> StoredAnswer | None:
        """The answer stored for ``key`` in ``generation`` (the current one), or None (a miss)."""
        self._adopt(generation)
        found = self._entries.get(key)
        if found is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return found[0]

    def store(self, generation: Hashable, key: Hashable, answer: StoredAnswer, *, key_bytes: int = 0) -> bool:
        """Keep ``answer`` for ``key``; False when it is larger than one entry may be.

        ``generation`` must be current when the answer was computed *and* now (the caller
        checks both): storing adopts it, dropping the answers of an older one. ``key_bytes``:
        what the key itself holds (a long query string counts against the budget too).
        """
        self._adopt(generation)
        cost = answer.size + key_bytes + ENTRY_OVERHEAD_BYTES
        if cost > self.max_entry_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (answer, cost)
        self._bytes += cost
        self._stores += 1
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
            self._evictions += 1
        return True

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(hits=self._hits, misses=self._misses, stores=self._stores,
                               evictions=self._evictions, invalidations=self._invalidations,
                               entries=len(self._entries), bytes=self._bytes)
