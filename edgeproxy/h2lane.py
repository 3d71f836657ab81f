"""Fresh cache hits written straight to an HTTP/2 header block: the HTTP/2 lane for the common case.

Why: a hit through ``Exchange.try_hit`` builds a ``Reply`` with a list of extra fields (under a
gateway route ``gated_hit`` adds the X-RateLimit-* tuples), and ``H2Connection._block`` encodes
each of them per request. bench/api.py measured API hits over h2c at ~0.7x the requests/s of
static hits. The decision is ``plainhit.plain_hit`` (shared with the HTTP/1.1 lane); here its
outcome becomes the block: the cached object's encoded prefix (``CachedObject.h2_block``, once per
object), then the fields that change per request, each a literal without indexing (h2wire), the
ones that repeat (Cache-Status per ttl, X-RateLimit-Limit per tier, X-RateLimit-Reset per second)
encoded once. The block is byte for byte the one ``_block(try_hit(...))`` sends, fields in the
same order: X-Request-ID, Age, Cache-Status, then X-RateLimit-Limit, -Remaining, -Reset (the
stored Date is in the prefix: a cache does not change it, RFC 9111 §4).
"""

from __future__ import annotations

import functools

from edgeproxy.exchange import hit_status
from edgeproxy.h2wire import encode_field, name_part

_RID = b"x-request-id"
_AGE = name_part(b"age")
_REMAINING = name_part(b"x-ratelimit-remaining")


@functools.lru_cache(maxsize=4096)  # one per distinct ttl second, as exchange.hit_status
def _cache_status_field(ttl: int) -> bytes:
    return encode_field(b"cache-status", hit_status(ttl))


@functools.lru_cache(maxsize=64)  # one per tier
def _limit_field(limit: int) -> bytes:
    return encode_field(b"x-ratelimit-limit", b"%d" % limit)


@functools.lru_cache(maxsize=256)  # epoch seconds: a bucket is full again at most 61 s after now
def _reset_field(reset_s: int) -> bytes:
    return encode_field(b"x-ratelimit-reset", b"%d" % reset_s)


def hit_block(prefix: bytes, rid: bytes, age: int, ttl: int, limit: int, remaining: int, reset_s: int) -> bytes:
    """The response header block of a plain fresh hit (``plainhit.Hit``), without a table size update.

    Args:
        prefix: the cached object's encoded status and fields (``CachedObject.h2_block``), its
            stored Date included.
        limit: the identity's requests per minute under a gateway route, 0 outside every route
            (then no X-RateLimit-* fields).
    """
    # Age and X-RateLimit-Remaining are a few digits: a literal's length under 127 is one byte (the
    # ``%c``), so their fields are formatted here instead of by one encode_field call each.
    age_value = b"%d" % age
    if limit:
        left = b"%d" % remaining
        return b"%s%s%s%c%s%s%s%s%c%s%s" % (prefix, encode_field(_RID, rid), _AGE, len(age_value),
                                              age_value, _cache_status_field(ttl), _limit_field(limit), _REMAINING,
                                              len(left), left, _reset_field(reset_s))
    return b"%s%s%s%c%s%s" % (prefix, encode_field(_RID, rid), _AGE, len(age_value), age_value,
                                _cache_status_field(ttl))
