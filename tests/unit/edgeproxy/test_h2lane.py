"""``h2lane.hit_block``: the header block of a plain fresh hit, field for field what ``_block`` encodes.

``H2Connection._block`` appends X-Request-ID and the reply's extra fields (Age and Cache-Status
from ``fresh_hit``, then the gateway's X-RateLimit-*) to the cached prefix (which holds the stored
Date: a cache does not change it), each a
literal without indexing; the lane's block must be the same bytes (the integration test compares
live answers, this one the encoding, long request ids included: a length past the 7-bit prefix).
"""

from __future__ import annotations

import hpack
import pytest

from edgeproxy.exchange import hit_status
from edgeproxy.h2lane import hit_block
from edgeproxy.h2wire import encode_block, encode_field

PREFIX = encode_block(200, [(b"content-type", b"application/json"), (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"),
                            (b"content-length", b"11")])


@pytest.mark.parametrize("rid", [b"r1", b"a" * 126, b"b" * 127, b"c" * 200])
@pytest.mark.parametrize("limit", [0, 100, 10_000])
def test_hit_block_is_the_general_encoding(rid: bytes, limit: int) -> None:
    extra = [(b"age", b"3"), (b"cache-status", hit_status(597))]
    if limit:
        extra += [(b"x-ratelimit-limit", b"%d" % limit), (b"x-ratelimit-remaining", b"41"),
                  (b"x-ratelimit-reset", b"1767225660")]
    expected = PREFIX + encode_field(b"x-request-id", rid) + b"".join(encode_field(n, v) for n, v in extra)
    block = hit_block(PREFIX, rid, 3, 597, limit, 41, 1_767_225_660)
    assert block == expected
    decoded = hpack.Decoder().decode(block, raw=True)
    assert decoded[-len(extra):] == extra
    assert (b"x-request-id", rid) in decoded


@pytest.mark.parametrize("age", [0, 9, 10, 86_399, 2_147_483_648])
@pytest.mark.parametrize("remaining", [0, 7, 10_000])
def test_age_and_remaining_are_literals_of_their_own_length(age: int, remaining: int) -> None:
    """The one-byte lengths of the hand-formatted Age and X-RateLimit-Remaining decode as HPACK."""
    for limit in (0, 10_000):
        decoded = hpack.Decoder().decode(hit_block(PREFIX, b"r-1", age, 597, limit, remaining, 1_767_225_660),
                                         raw=True)
        assert (b"age", b"%d" % age) in decoded
        assert ((b"x-ratelimit-remaining", b"%d" % remaining) in decoded) == bool(limit)
