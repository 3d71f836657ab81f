"""encoding.py: who gets the gzip copy, which answers have one, and its fields."""

from __future__ import annotations

import gzip
import random
import time

import pytest
import trio

from edgeproxy import encoding, policy
from edgeproxy.config import ProxyConfig
from edgeproxy.encoding import accepts_gzip, compressible, gzip_copy, gzip_fields, identity_fields
from edgeproxy.exchange import Exchange
from edgeproxy.replies import CachedObject
from edgeproxy.upstream import UpstreamResponse

HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"etag", b'"abc"'), (b"cache-control", b"max-age=60")]
BODY = b"<p>FlowCMS compresses what it stores.</p>\n" * 64  # 2.7 KB, compressible


@pytest.mark.parametrize(("value", "expected"), [
    (b"gzip", True),
    (b"gzip, deflate", True),  # h2load, python-requests
    (b"gzip, deflate, br, zstd", True),  # Chrome
    (b"GZIP", True),
    (b"x-gzip", True),  # RFC 9110 §8.4.1.3: an alias
    (b"br;q=1.0, gzip;q=0.8, *;q=0.1", True),
    (b"gzip;q=0.001", True),
    (b"gzip ; q=0.5", True),
    (b"deflate", False),
    (b"br", False),
    (b"identity", False),
    (b"", False),  # only identity is acceptable (RFC 9110 §12.5.3)
    (b"gzip;q=0", False),
    (b"gzip;q=0.000", False),
    (b"gzip;q=0, *", False),  # named with q=0: the wildcard does not bring it back
    (b"*;q=0, gzip", True),
    (b"*", True),
    (b"*;q=0", False),
    (b"gzip;q=2", False),  # not a qvalue: accepts nothing
    (b"gzip;q=abc", False),
    (b"gzip;q=0, gzip;q=1", True),  # the higher weight of a repeated coding
])
def test_accepts_gzip_reads_accept_encoding_as_rfc_9110(value: bytes, expected: bool) -> None:
    assert accepts_gzip(value) is expected
    assert accepts_gzip(value) is expected  # remembered: the same answer again


def test_accepts_gzip_memo_stays_bounded() -> None:
    for i in range(encoding._ACCEPTS_MAX + 10):
        accepts_gzip(b"gzip;q=0.%03d" % (i % 1000))
    assert len(encoding._ACCEPTS) <= encoding._ACCEPTS_MAX
    long_value = b"identity, " * 100 + b"gzip"  # 1 KB: parsed, not remembered
    assert accepts_gzip(long_value)
    assert long_value not in encoding._ACCEPTS


@pytest.mark.parametrize("media", [b"text/html", b"text/css", b"text/plain; charset=utf-8", b"application/json",
                                   b"application/vnd.api+json", b"application/graphql-response+json",
                                   b"application/javascript", b"image/svg+xml", b"application/atom+xml",
                                   b"TEXT/HTML"])
def test_text_like_answers_are_compressible(media: bytes) -> None:
    assert compressible(200, [(b"content-type", media)])


@pytest.mark.parametrize(("status", "fields"), [
    (206, HTML),  # a part: its bytes are of the identity answer
    (404, HTML),
    (304, HTML),
    (200, [(b"content-type", b"image/png")]),
    (200, [(b"content-type", b"application/octet-stream")]),
    (200, [(b"content-type", b"application/zip")]),
    (200, []),  # no media type: nobody knows what it is
    (200, [*HTML, (b"content-encoding", b"br")]),  # already coded
    (200, [*HTML, (b"cache-control", b"public, no-transform")]),  # RFC 9110 §7.7
    (200, [*HTML, (b"vary", b"Accept, Accept-Encoding")]),  # the origin negotiates codings itself
    (200, [*HTML, (b"vary", b"*")]),
])
def test_other_answers_are_not_compressible(status: int, fields: list[tuple[bytes, bytes]]) -> None:
    assert not compressible(status, fields)


def test_gzip_copy_is_the_body_gzipped_and_the_same_every_time() -> None:
    coded = gzip_copy(200, HTML, BODY)
    assert coded is not None
    assert gzip.decompress(coded) == BODY
    assert len(coded) < len(BODY) // 4
    assert gzip_copy(200, HTML, BODY) == coded  # mtime 0: no time in the header


def test_gzip_copy_skips_small_large_and_incompressible_bodies() -> None:
    assert gzip_copy(200, HTML, BODY[: encoding.MIN_BYTES - 1]) is None
    assert gzip_copy(200, HTML, b"x" * encoding.MIN_BYTES) is not None
    assert gzip_copy(200, HTML, b"x" * (encoding.MAX_BYTES + 1)) is None
    noise = gzip.compress(BODY * 40)[:4000]  # already compressed bytes: gzip saves nothing
    assert gzip_copy(200, HTML, noise) is None
    assert gzip_copy(200, [(b"content-type", b"image/png")], BODY) is None


def test_identity_fields_add_accept_encoding_to_vary() -> None:
    assert identity_fields(HTML) == [*HTML, (b"vary", b"Accept-Encoding")]
    assert identity_fields([*HTML, (b"vary", b"Accept, X-Flowcms-Role")])[-1] == (
        b"vary", b"Accept, X-Flowcms-Role, Accept-Encoding")
    assert identity_fields([(b"vary", b"")]) == [(b"vary", b"Accept-Encoding")]
    assert identity_fields(HTML) is not HTML  # the caller's list is not changed


def test_gzip_fields_code_the_answer_and_weaken_its_etag() -> None:
    fields = identity_fields([*HTML, (b"content-length", b"2752"), (b"content-digest", b"sha-256=:x:"),
                              (b"accept-ranges", b"bytes"), (b"last-modified", b"Mon, 02 Nov 2026 09:30:00 GMT")])
    coded = gzip_fields(fields, 123)
    assert dict(coded)[b"etag"] == b'W/"abc"'
    assert dict(coded)[b"content-encoding"] == b"gzip"
    assert [v for n, v in coded if n == b"content-length"] == [b"123"]
    assert b"content-digest" not in dict(coded)
    assert b"accept-ranges" not in dict(coded)  # the copy is always sent whole
    assert dict(coded)[b"vary"] == b"Accept-Encoding"
    assert dict(coded)[b"last-modified"] == b"Mon, 02 Nov 2026 09:30:00 GMT"
    assert dict(gzip_fields([(b"etag", b'W/"weak"')], 1))[b"etag"] == b'W/"weak"'  # already weak


def _stored(fields: list[tuple[bytes, bytes]]) -> policy.Stored:
    return policy.make_stored(b"GET", [], 200, fields, 1000.0, 1000.0)


def test_cached_object_keeps_a_gzip_copy_and_chooses_per_request() -> None:
    fields = [*HTML, (b"content-length", b"%d" % len(BODY))]
    obj = CachedObject.made(_stored(fields), 200, fields, BODY)
    assert obj.gz is not None
    assert dict(obj.fields)[b"vary"] == b"Accept-Encoding"
    assert gzip.decompress(obj.gz.body) == BODY
    assert obj.for_request([(b"accept-encoding", b"gzip, deflate")]) is obj.gz
    assert obj.for_request([(b"accept-encoding", b"br"), (b"accept-encoding", b"gzip")]) is obj.gz  # two lines
    assert obj.for_request([(b"accept-encoding", b"identity")]) is obj
    assert obj.for_request([]) is obj
    assert obj.coded_for(None) is obj
    reply = obj.for_request([(b"accept-encoding", b"gzip")]).reply([])
    assert (dict(reply.fields)[b"content-encoding"], reply.body) == (b"gzip", obj.gz.body)
    assert CachedObject.made(_stored(fields), 200, fields, BODY, gzip=False).gz is None


def test_cached_object_remakes_its_copy_fields_when_a_304_updates_its_own() -> None:
    fields = [*HTML, (b"content-length", b"%d" % len(BODY))]
    obj = CachedObject.made(_stored(fields), 200, fields, BODY)
    assert obj.gz is not None
    coded = obj.gz
    head = coded.h1_head()
    obj.update_fields([(n, b'"def"' if n == b"etag" else v) for n, v in obj.fields])
    assert dict(coded.fields)[b"etag"] == b'W/"def"'
    assert coded.h1_head() != head  # the heads encoded from the old fields are gone
    assert b'W/"def"' in coded.h1_head()
    obj.update_fields([*obj.fields, (b"cache-control", b"no-transform")])  # now forbidden (RFC 9110 §7.7)
    assert obj.gz is None


async def test_a_copy_that_would_not_fit_leaves_the_answer_uncoded(nursery: trio.Nursery) -> None:
    """An answer that fits the cache's largest entry alone, but not with its gzip copy, is stored
    uncoded rather than not at all."""
    exchange = Exchange(ProxyConfig(cache_bytes=60_000), nursery)  # the largest entry: 6,000 bytes
    limit = exchange.cache.max_entry_bytes
    rng = random.Random(7)
    body = bytes(rng.choice(b"abcdefghij") for _ in range(limit - 1000))  # gzip: ~45% of it
    headers = [(b"content-type", b"text/plain"), (b"cache-control", b"max-age=60")]
    now = time.time()
    stored = exchange.store_response(b"h/big", b"/big", [], UpstreamResponse(200, headers, body), now, now)
    assert stored is not None
    assert stored.gz is None
    assert b"vary" not in dict(stored.fields)
    small = body[: limit // 3]
    coded = exchange.store_response(b"h/small", b"/small", [], UpstreamResponse(200, headers, small), now, now)
    assert coded is not None
    assert coded.gz is not None
