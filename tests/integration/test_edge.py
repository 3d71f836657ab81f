"""The edge over real HTTP/1.1 sockets on 127.0.0.1: an origin stub behind it, raw clients in front.

Objects that must be stale at once are stored with an ``Age`` larger than their ``max-age``
(RFC 9111 §4.2.3 counts it), so expiry costs no wall-clock time.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from support.loopback import (
    Answer,
    Edge,
    H1Client,
    H2Client,
    OriginStub,
    Response,
    SeenRequest,
    fetch,
    get,
    read_responses,
    read_until_closed,
    start_edge,
    start_origin,
)

from edgeproxy.config import ProxyConfig

TOKEN = "s3cret-token"
AUTH = ("authorization", f"Bearer {TOKEN}")
BOUND_S = 5.0  # every test finishes well within this; a hang fails instead of blocking the run
LAST_MODIFIED = b"Mon, 02 Nov 2026 09:30:00 GMT"


def cached(body: bytes = b"hello", *, cc: str = "max-age=60", etag: bytes | None = b'"v1"',
           extra: tuple[tuple[bytes, bytes], ...] = (), delay: float = 0.0) -> Answer:
    headers = [(b"cache-control", cc.encode()), (b"content-type", b"text/plain")]
    if etag is not None:
        headers.append((b"etag", etag))
    return Answer(headers=(*headers, *extra), body=body, delay=delay)


def conditional(full: Answer, *, not_modified: tuple[tuple[bytes, bytes], ...] = (),
                delay: float = 0.0) -> Callable[[SeenRequest], Answer]:
    """Answer 304 when If-None-Match names the ETag of ``full`` (what a real origin does)."""
    etag = dict(full.headers)[b"etag"]

    def answer(request: SeenRequest) -> Answer:
        if request.header(b"if-none-match") == etag:
            return Answer(status=304, headers=((b"etag", etag), *not_modified), delay=delay)
        return full

    return answer


def cache_status(response: Response) -> str:
    return (response.header("cache-status") or b"").decode()


async def purge(port: int, body: str, *headers: tuple[str, str]) -> Response:
    return await fetch(port, "POST", "/.edge/purge", [("content-type", "application/json"), *headers],
                       body.encode())


async def stats(port: int) -> dict[str, int]:
    response = await get(port, "/.edge/stats")
    assert response.status == 200
    counters: dict[str, int] = response.json()["counters"]
    return counters


async def wait_for_counter(port: int, name: str, value: int) -> None:
    """Wait for background work (SWR revalidation) to show in /.edge/stats."""
    while (await stats(port))[name] < value:  # noqa: ASYNC110 - the edge is another "process": poll it
        await trio.sleep(0.01)


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    return await start_origin(nursery)


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    return await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token=TOKEN))


# --- hits and misses ----------------------------------------------------------------------------

async def test_edge_miss_then_hit(origin: OriginStub, edge: Edge) -> None:
    """A storable answer is fetched once, then served from the cache with Age and Cache-Status (RFC 9211)."""
    origin.route("/page", cached(extra=((b"surrogate-key", b"page-1 blog"),)))
    with trio.fail_after(BOUND_S):
        first = await get(edge.port, "/page")
        second = await get(edge.port, "/page", ("x-request-id", "req-42.a_b:c"))
    assert (first.status, first.body) == (200, b"hello")
    assert cache_status(first) == "edgeproxy; fwd=uri-miss; stored"
    assert first.header("age") is not None
    assert (second.status, second.body) == (200, b"hello")
    assert re.fullmatch(r"edgeproxy; hit; ttl=\d+", cache_status(second))
    assert second.header("age") is not None
    assert origin.count("/page") == 1
    # Surrogate-Key is for the edge only (Fastly/Varnish convention); a Date the origin did not send is added.
    assert first.header("surrogate-key") is None
    assert second.header("surrogate-key") is None
    assert first.header("date") is not None
    assert len(first.all(b"date")) == 1


async def test_edge_answers_from_the_cache_keep_the_stored_date(nursery: trio.Nursery, origin: OriginStub,
                                                                edge: Edge) -> None:
    """A cache does not change a stored Date (RFC 9111 §4; cache-tests.fyi other-date-update): hits
    over HTTP/1.1 and h2c, through the hit lanes and the general path (a precondition that fails, a
    304 for one that matches), carry the Date the origin sent. A response without Date gets the
    time it arrived (RFC 9110 §6.6.1), and keeps it; the edge's own answers carry the current time."""
    stamp = email.utils.formatdate(time.time() - 100, usegmt=True).encode()
    origin.route("/dated", cached(cc="max-age=3600", extra=((b"date", stamp),)))
    origin.route("/undated", cached(cc="max-age=3600"))
    origin.route("/bad-date", cached(cc="max-age=3600", extra=((b"date", b"0"),)))
    origin.route("/two-dates", cached(cc="max-age=3600", extra=((b"date", stamp), (b"date", stamp))))
    with trio.fail_after(BOUND_S):
        replaced = [await get(edge.port, path) for path in ("/bad-date", "/bad-date", "/two-dates", "/two-dates")]
        miss = await get(edge.port, "/dated")
        hit = await get(edge.port, "/dated")
        general = await get(edge.port, "/dated", ("if-none-match", '"other"'))
        not_modified = await get(edge.port, "/dated", ("if-none-match", '"v1"'))
        client = await H2Client.connect(nursery, edge.port)
        h2_hit = await client.request("GET", "/dated")
        h2_general = await client.request("GET", "/dated", [("if-none-match", '"other"')])
        await client.aclose()
        first = await get(edge.port, "/undated")
        await trio.sleep(1.1)  # the next second: a Date made per answer would differ
        later = await get(edge.port, "/undated")
        own = await get(edge.port, "/.edge/stats")
    answers = [hit, general, not_modified, h2_hit, h2_general]
    assert [a.status for a in answers] == [200, 200, 304, 200, 200]
    assert all("hit" in cache_status(a) for a in answers)
    assert [a.all(b"date") for a in [miss, *answers]] == [[stamp]] * 6
    assert int(hit.header("age") or b"0") >= 100  # the stored Date still counts for Age (RFC 9111 §4.2.3)
    assert "hit" in cache_status(later)
    assert later.all(b"date") == first.all(b"date")
    received = email.utils.parsedate_to_datetime((first.header("date") or b"").decode()).timestamp()
    assert abs(received - time.time()) < 5
    now = email.utils.parsedate_to_datetime((own.header("date") or b"").decode()).timestamp()
    assert abs(now - time.time()) < 2
    assert own.header("date") != first.header("date")
    assert (origin.count("/dated"), origin.count("/undated")) == (1, 1)
    # an invalid Date, or several lines of it, is replaced by the time of receipt, once (RFC 9110 §6.6.1)
    for answer in replaced:
        (value,) = answer.all(b"date")
        assert abs(email.utils.parsedate_to_datetime(value.decode()).timestamp() - time.time()) < 5
    assert replaced[0].all(b"date") == replaced[1].all(b"date")
    assert ["hit" in cache_status(a) for a in replaced] == [False, True, False, True]


async def test_edge_answers_byte_ranges_from_the_cache(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """RFC 9110 §14: a stored 200 answers one byte range with a 206 (Content-Range, its own length),
    over HTTP/1.1 and h2c, without asking the origin; past the end is a 416 naming the length;
    several ranges, a failed If-Range (a weak or other tag) and HEAD get the whole answer."""
    origin.route("/media", cached(b"0123456789", cc="max-age=3600",
                                  extra=((b"last-modified", LAST_MODIFIED),)))
    with trio.fail_after(BOUND_S):
        full = await get(edge.port, "/media")
        parts = {spec: await get(edge.port, "/media", ("range", spec))
                 for spec in ("bytes=2-5", "bytes=7-", "bytes=-3", "bytes=5-100", "bytes=0-0")}
        past = await get(edge.port, "/media", ("range", "bytes=10-"))
        several = await get(edge.port, "/media", ("range", "bytes=0-1,4-5"))
        tag_holds = await get(edge.port, "/media", ("range", "bytes=1-2"), ("if-range", '"v1"'))
        date_holds = await get(edge.port, "/media", ("range", "bytes=1-2"), ("if-range", LAST_MODIFIED.decode()))
        weak = await get(edge.port, "/media", ("range", "bytes=1-2"), ("if-range", 'W/"v1"'))
        other = await get(edge.port, "/media", ("range", "bytes=1-2"), ("if-range", '"v0"'))
        head = await fetch(edge.port, "HEAD", "/media", [("range", "bytes=1-2")])
        client = await H2Client.connect(nursery, edge.port)
        h2_part = await client.request("GET", "/media", [("range", "bytes=3-4")])
        await client.aclose()
    assert (full.status, full.body) == (200, b"0123456789")
    expected = {"bytes=2-5": (b"2345", b"bytes 2-5/10"), "bytes=7-": (b"789", b"bytes 7-9/10"),
                "bytes=-3": (b"789", b"bytes 7-9/10"), "bytes=5-100": (b"56789", b"bytes 5-9/10"),
                "bytes=0-0": (b"0", b"bytes 0-0/10")}
    for spec, (body, content_range) in expected.items():
        part = parts[spec]
        assert (part.status, part.body, part.header("content-range")) == (206, body, content_range), spec
        assert part.header("content-length") == b"%d" % len(body)
        assert part.all(b"content-type") == [b"text/plain"]
        assert part.header("etag") == b'"v1"'
        assert "hit" in cache_status(part)
    assert (past.status, past.body, past.header("content-range")) == (416, b"", b"bytes */10")
    for whole in (several, weak, other):
        assert (whole.status, whole.body, whole.header("content-range")) == (200, b"0123456789", None)
    assert (tag_holds.status, tag_holds.body) == (206, b"12")
    assert (date_holds.status, date_holds.body) == (206, b"12")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", b"10")
    assert (h2_part.status, h2_part.body, h2_part.header("content-range")) == (206, b"34", b"bytes 3-4/10")
    assert origin.count("/media") == 1


async def test_edge_passes_an_upstream_age_through(origin: OriginStub, edge: Edge) -> None:
    """An answer the edge does not store keeps the Age a cache upstream gave it (RFC 9111 §5.1); one
    it stores gets its own, which counts that Age (§4.2.3)."""
    origin.route("/pass-age", cached(cc="no-store", extra=((b"age", b"30"),)))
    origin.route("/kept-age", cached(cc="max-age=3600", extra=((b"age", b"30"),)))
    with trio.fail_after(BOUND_S):
        passed = await get(edge.port, "/pass-age")
        stored = [await get(edge.port, "/kept-age") for _ in range(2)]
    assert passed.all(b"age") == [b"30"]
    assert "fwd=" in cache_status(passed)
    assert "stored" not in cache_status(passed)
    assert [len(a.all(b"age")) for a in stored] == [1, 1]
    assert all(int(a.header("age") or b"0") >= 30 for a in stored)


async def test_edge_request_id_kept_or_generated(origin: OriginStub, edge: Edge) -> None:
    """A well-formed X-Request-ID is kept end to end; a malformed or missing one is replaced."""
    origin.route("/rid", cached(cc="no-store"))
    with trio.fail_after(BOUND_S):
        kept = await get(edge.port, "/rid", ("x-request-id", "abc-123"))
        bad = await get(edge.port, "/rid", ("x-request-id", "has spaces;and=junk"))
        none = await get(edge.port, "/rid")
    assert kept.all(b"x-request-id") == [b"abc-123"]
    assert origin.seen[0].header(b"x-request-id") == b"abc-123"
    for response, seen in ((bad, origin.seen[1]), (none, origin.seen[2])):
        rid = response.header("x-request-id")
        assert rid is not None
        assert re.fullmatch(rb"req_[0-9a-f]{16}-[0-9a-f]+", rid)
        assert seen.header(b"x-request-id") == rid  # the origin logs the same id
    assert bad.header("x-request-id") != none.header("x-request-id")


async def test_edge_if_none_match_weak_304_from_cache(origin: OriginStub, edge: Edge) -> None:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/"v1" matches "v1"; no origin trip."""
    origin.route("/inm", cached())
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/inm")
        weak = await get(edge.port, "/inm", ("if-none-match", 'W/"v1"'))
        listed = await get(edge.port, "/inm", ("if-none-match", '"x", "v1"'))
        other = await get(edge.port, "/inm", ("if-none-match", '"v2"'))
    assert (weak.status, weak.body, weak.header("etag")) == (304, b"", b'"v1"')
    assert weak.header("content-length") is None
    assert listed.status == 304
    assert (other.status, other.body) == (200, b"hello")
    assert origin.count("/inm") == 1


async def test_edge_if_modified_since_304_from_cache(origin: OriginStub, edge: Edge) -> None:
    """If-Modified-Since at or after Last-Modified gets 304 from the cache (RFC 9110 §13.1.3)."""
    origin.route("/ims", cached(etag=None, extra=((b"last-modified", LAST_MODIFIED),)))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/ims")
        same = await get(edge.port, "/ims", ("if-modified-since", LAST_MODIFIED.decode()))
        later = await get(edge.port, "/ims", ("if-modified-since", "Tue, 03 Nov 2026 00:00:00 GMT"))
        earlier = await get(edge.port, "/ims", ("if-modified-since", "Sun, 01 Nov 2026 00:00:00 GMT"))
    assert (same.status, later.status, earlier.status) == (304, 304, 200)
    assert earlier.body == b"hello"
    assert origin.count("/ims") == 1


async def test_edge_conditional_miss_fills_cache_then_answers_304(origin: OriginStub, edge: Edge) -> None:
    """On a miss the client's validators are not forwarded: the full answer is stored, the 304 is ours."""
    origin.route("/cm", cached())
    with trio.fail_after(BOUND_S):
        first = await get(edge.port, "/cm", ("if-none-match", '"v1"'))
        second = await get(edge.port, "/cm")
    assert first.status == 304
    assert origin.seen[0].header(b"if-none-match") is None
    assert (second.status, second.body) == (200, b"hello")
    assert "hit" in cache_status(second)
    assert origin.count("/cm") == 1


@pytest.mark.parametrize(("path", "answer", "headers"), [
    ("/no-store", cached(cc="no-store, max-age=60"), ()),
    ("/private", cached(cc="private, max-age=60"), ()),
    ("/cookie", cached(extra=((b"set-cookie", b"session=abc"),)), ()),
    ("/authorized", cached(), (("authorization", "Bearer user-token"),)),
])
async def test_edge_never_stores_personal_answers(origin: OriginStub, edge: Edge, path: str, answer: Answer,
                                                  headers: tuple[tuple[str, str], ...]) -> None:
    """no-store, private, Set-Cookie and answers to Authorization are not stored (RFC 9111 §3, §3.5)."""
    origin.route(path, answer)
    with trio.fail_after(BOUND_S):
        first = await get(edge.port, path, *headers)
        second = await get(edge.port, path, *headers)
    assert first.status == second.status == 200
    assert "stored" not in cache_status(first)
    assert "hit" not in cache_status(second)
    assert origin.count(path) == 2


async def test_edge_request_no_cache_revalidates(origin: OriginStub, edge: Edge) -> None:
    """Request Cache-Control: no-cache sends the stored validators to the origin (RFC 9111 §5.2.1.4)."""
    origin.route("/nc", conditional(cached()))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/nc")
        again = await get(edge.port, "/nc", ("cache-control", "no-cache"))
    assert (again.status, again.body) == (200, b"hello")
    assert origin.requests_for("/nc")[1].header(b"if-none-match") == b'"v1"'
    assert "fwd=request" in cache_status(again)


async def test_edge_only_if_cached(origin: OriginStub, edge: Edge) -> None:
    """only-if-cached with nothing stored is a 504 without an origin request (RFC 9111 §5.2.1.7)."""
    origin.route("/oic", cached())
    with trio.fail_after(BOUND_S):
        miss = await get(edge.port, "/oic", ("cache-control", "only-if-cached"))
        await get(edge.port, "/oic")
        hit = await get(edge.port, "/oic", ("cache-control", "only-if-cached"))
    assert miss.status == 504
    assert miss.json()["errors"][0]["code"] == "ONLY_IF_CACHED"
    assert (hit.status, hit.body) == (200, b"hello")
    assert origin.count("/oic") == 1


async def test_edge_must_revalidate_every_time_and_504_when_origin_is_down(origin: OriginStub, edge: Edge) -> None:
    """max-age=0, must-revalidate: each use is revalidated; unreachable origin → 504 (RFC 9111 §5.2.2.2)."""
    origin.route("/mr", conditional(cached(cc="max-age=0, must-revalidate, stale-if-error=600")))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/mr")
        again = await get(edge.port, "/mr")
        origin.stop()
        down = await get(edge.port, "/mr")
    assert (again.status, again.body) == (200, b"hello")
    assert origin.requests_for("/mr")[1].header(b"if-none-match") == b'"v1"'
    assert down.status == 504
    assert down.json()["errors"][0]["code"] == "GATEWAY_TIMEOUT"


async def test_edge_vary_keeps_one_variant_per_accept_encoding(origin: OriginStub, edge: Edge) -> None:
    """Vary: Accept-Encoding makes gzip and identity requests different variants (RFC 9111 §4.1)."""
    def negotiate(request: SeenRequest) -> Answer:
        gzip = b"gzip" in (request.header(b"accept-encoding") or b"")
        return Answer(headers=((b"cache-control", b"max-age=60"), (b"vary", b"Accept-Encoding"),
                               *(((b"content-encoding", b"gzip"),) if gzip else ())),
                      body=b"GZ" if gzip else b"plain")

    origin.route("/v", negotiate)
    with trio.fail_after(BOUND_S):
        gz1 = await get(edge.port, "/v", ("accept-encoding", "gzip"))
        id1 = await get(edge.port, "/v", ("accept-encoding", "identity"))
        gz2 = await get(edge.port, "/v", ("accept-encoding", "gzip"))
        id2 = await get(edge.port, "/v", ("accept-encoding", "identity"))
        none = await get(edge.port, "/v")
    assert (gz1.body, id1.body, gz2.body, id2.body, none.body) == (b"GZ", b"plain", b"GZ", b"plain", b"plain")
    assert "fwd=vary-miss" in cache_status(id1)
    assert "hit" in cache_status(gz2)
    assert "hit" in cache_status(id2)
    assert gz2.header("content-encoding") == b"gzip"
    assert id2.header("content-encoding") is None
    assert origin.count("/v") == 3  # gzip, identity, and no Accept-Encoding at all


# --- gzip ---------------------------------------------------------------------------------------

PAGE = b"<p>FlowCMS keeps a gzip copy of what it stores.</p>\n" * 80  # 4 KB of HTML


def html(body: bytes = PAGE, *, cc: str = "max-age=3600", extra: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    return Answer(headers=((b"cache-control", cc.encode()), (b"content-type", b"text/html; charset=utf-8"),
                           (b"etag", b'"p1"'), (b"last-modified", LAST_MODIFIED), *extra), body=body)


async def test_edge_sends_the_gzip_copy_to_clients_that_accept_it(nursery: trio.Nursery, origin: OriginStub,
                                                                  edge: Edge) -> None:
    """A stored HTML answer goes out gzip-coded to a request whose Accept-Encoding takes gzip, over
    HTTP/1.1 (the hit loop and the general path) and h2c, HEAD included; to the others as stored. Both
    say Vary: Accept-Encoding; the coded one has a weak ETag, which a precondition matches (a 304 that
    names it). A Range request gets its part of the identity answer, or the whole gzip answer when it
    accepts gzip (a part of the uncoded answer would share the copy's Last-Modified, a strong
    If-Range validator: nginx ignores Range there too). The origin is asked once."""
    origin.route("/page", html())
    with trio.fail_after(BOUND_S):
        miss = await get(edge.port, "/page", ("accept-encoding", "gzip, deflate, br"))
        coded = await get(edge.port, "/page", ("accept-encoding", "gzip"))
        plain = await get(edge.port, "/page")
        refused = await get(edge.port, "/page", ("accept-encoding", "gzip;q=0, identity"))
        general = await get(edge.port, "/page", ("accept-encoding", "gzip"), ("if-none-match", '"other"'))
        head = await fetch(edge.port, "HEAD", "/page", [("accept-encoding", "gzip")])
        weak_304 = await get(edge.port, "/page", ("accept-encoding", "gzip"), ("if-none-match", 'W/"p1"'))
        strong_304 = await get(edge.port, "/page", ("if-none-match", '"p1"'))
        part = await get(edge.port, "/page", ("range", "bytes=3-10"))
        whole = await get(edge.port, "/page", ("accept-encoding", "gzip"), ("range", "bytes=3-10"),
                          ("if-range", LAST_MODIFIED.decode()))
        untouched = await get(edge.port, "/page", ("accept-encoding", "gzip"), ("cache-control", "no-transform"))
        client = await H2Client.connect(nursery, edge.port)
        h2_coded = await client.request("GET", "/page", [("accept-encoding", "gzip, deflate")])
        h2_plain = await client.request("GET", "/page")
        await client.aclose()
    for answer in (miss, coded, general, h2_coded, whole):
        assert answer.status == 200
        assert answer.header("content-encoding") == b"gzip"
        assert gzip.decompress(answer.body) == PAGE
        assert answer.header("content-length") == b"%d" % len(answer.body)
        assert answer.header("etag") == b'W/"p1"'
        assert answer.header("vary") == b"Accept-Encoding"
        assert answer.header("content-range") is None
    assert len(coded.body) < len(PAGE) // 4
    assert {miss.body, coded.body, general.body, h2_coded.body, whole.body} == {coded.body}
    for answer in (plain, refused, h2_plain, untouched):  # no-transform asked: RFC 9111 §5.2.1.6
        assert (answer.status, answer.body, answer.header("content-encoding")) == (200, PAGE, None)
        assert answer.header("etag") == b'"p1"'
        assert answer.header("vary") == b"Accept-Encoding"
    assert (head.status, head.body, head.header("content-length")) == (200, b"", b"%d" % len(coded.body))
    assert head.header("content-encoding") == b"gzip"
    assert (weak_304.status, weak_304.header("etag"), weak_304.header("vary")) == (304, b'W/"p1"', b"Accept-Encoding")
    assert (strong_304.status, strong_304.header("etag")) == (304, b'"p1"')
    assert (part.status, part.body, part.header("content-encoding")) == (206, PAGE[3:11], None)
    assert part.header("etag") == b'"p1"'
    assert all("hit" in cache_status(a) for a in (coded, plain, general, head, weak_304, part, whole, h2_coded))
    assert origin.count("/page") == 1


@pytest.mark.parametrize(("path", "answer"), [
    ("/small", html(b"<p>short</p>")),  # under 1 KB: nothing to save
    ("/png", Answer(headers=((b"cache-control", b"max-age=60"), (b"content-type", b"image/png")), body=PAGE)),
    ("/no-transform", html(cc="max-age=60, no-transform")),  # RFC 9110 §7.7
    ("/coded", html(gzip.compress(PAGE), extra=((b"content-encoding", b"gzip"),))),  # already coded
    ("/negotiated", html(extra=((b"vary", b"Accept-Encoding"),))),  # the origin negotiates itself
    ("/uncached", html(cc="no-store")),  # passes through as the origin sent it
])
async def test_edge_leaves_other_answers_as_the_origin_sent_them(origin: OriginStub, edge: Edge, path: str,
                                                                  answer: Answer) -> None:
    origin.route(path, answer)
    with trio.fail_after(BOUND_S):
        first = await get(edge.port, path, ("accept-encoding", "gzip"))
        second = await get(edge.port, path, ("accept-encoding", "gzip"))
    for response in (first, second):
        assert response.status == 200
        assert response.body == answer.body
        assert response.all(b"content-encoding") == [v for n, v in answer.headers if n == b"content-encoding"]
        assert response.all(b"vary") == [v for n, v in answer.headers if n == b"vary"]
        assert response.header("etag") == dict(answer.headers).get(b"etag")


async def test_edge_refreshed_gzip_copy_carries_the_new_validators(origin: OriginStub, edge: Edge) -> None:
    """A 304 from the origin freshens the stored answer and its gzip copy alike (RFC 9111 §4.3.4)."""
    full = html(cc="max-age=0")
    origin.route("/page", conditional(full, not_modified=((b"etag", b'"p1"'), (b"x-refreshed", b"yes"))))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/page", ("accept-encoding", "gzip"))
        refreshed = await get(edge.port, "/page", ("accept-encoding", "gzip"))
        plain = await get(edge.port, "/page")
    assert origin.count("/page") == 3  # max-age=0: every request revalidates
    assert refreshed.header("x-refreshed") == b"yes"
    assert (refreshed.header("content-encoding"), refreshed.header("etag")) == (b"gzip", b'W/"p1"')
    assert gzip.decompress(refreshed.body) == PAGE
    assert (plain.body, plain.header("x-refreshed"), plain.header("etag")) == (PAGE, b"yes", b'"p1"')


async def test_edge_without_gzip_sends_answers_as_stored(nursery: trio.Nursery, origin: OriginStub) -> None:
    """``--no-gzip`` (config ``gzip = false``): no copy, no Vary added."""
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, gzip=False))
    origin.route("/page", html())
    with trio.fail_after(BOUND_S):
        answers = [await get(edge.port, "/page", ("accept-encoding", "gzip")) for _ in range(2)]
    assert [(a.body, a.header("content-encoding"), a.header("vary")) for a in answers] == [(PAGE, None, None)] * 2


async def test_edge_h2_repeated_requests_see_purges_and_new_answers(nursery: trio.Nursery, origin: OriginStub,
                                                                    edge: Edge) -> None:
    """HTTP/2 remembers the selection per request head (plainhit's memo): the same request on one
    connection must still see a hard purge (a miss that stores the new answer), a soft purge (the
    stale answer is revalidated, not served as a plain hit) and a new variant."""
    answers = iter([b"v1", b"v2", b"v3"])
    current = {"body": b"", "etag": b""}

    def answer(request: SeenRequest) -> Answer:
        if request.header(b"if-none-match") == current["etag"]:
            return Answer(status=304, headers=((b"etag", current["etag"]),))
        current["body"] = next(answers)
        current["etag"] = b'"%s"' % current["body"]
        return cached(current["body"], cc="max-age=3600", etag=current["etag"])

    origin.route("/page", answer)
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        first = [await client.request("GET", "/page") for _ in range(3)]
        assert (await purge(edge.port, '{"paths": ["/page"]}', AUTH)).status == 200
        after_hard = [await client.request("GET", "/page") for _ in range(3)]
        assert (await purge(edge.port, '{"paths": ["/page"], "soft": true}', AUTH)).status == 200
        after_soft = await client.request("GET", "/page")
        await client.aclose()
    assert [r.body for r in first] == [b"v1"] * 3
    assert ["hit" in cache_status(r) for r in first] == [False, True, True]
    assert [r.body for r in after_hard] == [b"v2"] * 3
    assert ["hit" in cache_status(r) for r in after_hard] == [False, True, True]
    assert after_soft.body == b"v2"
    assert "fwd=stale" in cache_status(after_soft)
    assert origin.count("/page") == 3  # v1, v2, and the soft purge's revalidation (a 304)


# --- collapsing ---------------------------------------------------------------------------------

async def test_edge_collapses_concurrent_misses_into_one_origin_request(origin: OriginStub, edge: Edge) -> None:
    """20 concurrent misses make 1 origin request, and every waiter is answered when it arrives (no polling)."""
    delay = 0.5
    origin.route("/slow", cached(b"slow body", delay=delay))
    responses: list[Response] = []

    async def one() -> None:
        responses.append(await get(edge.port, "/slow"))

    with trio.fail_after(BOUND_S):
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        elapsed = trio.current_time() - started
    assert origin.count("/slow") == 1
    assert [r.body for r in responses] == [b"slow body"] * 20
    assert sum("collapsed" in cache_status(r) for r in responses) == 19
    assert elapsed < delay + 0.3, f"waiters woke late: {elapsed:.3f} s for a {delay} s origin"


async def test_edge_collapsed_waiters_never_get_a_private_answer(origin: OriginStub, edge: Edge) -> None:
    """An answer that was not stored (private, Set-Cookie) is not handed to the requests that waited for it."""
    origin.route("/mine", cached(cc="private, max-age=60", delay=0.2))
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(get, edge.port, "/mine")
    assert origin.count("/mine") == 5


async def test_edge_collapsing_respects_vary(origin: OriginStub, edge: Edge) -> None:
    """A waiter whose Accept-Encoding selects another variant asks the origin itself (no cache poisoning)."""
    def negotiate(request: SeenRequest) -> Answer:
        gzip = b"gzip" in (request.header(b"accept-encoding") or b"")
        return Answer(headers=((b"cache-control", b"max-age=60"), (b"vary", b"accept-encoding")),
                      body=b"GZ" if gzip else b"plain", delay=0.2)

    origin.route("/vc", negotiate)
    bodies: dict[str, bytes] = {}

    async def one(encoding: str) -> None:
        bodies[encoding] = (await get(edge.port, "/vc", ("accept-encoding", encoding))).body

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "gzip")
            await trio.sleep(0.05)
            nursery.start_soon(one, "identity")
        again = await get(edge.port, "/vc", ("accept-encoding", "identity"))
    assert bodies == {"gzip": b"GZ", "identity": b"plain"}
    assert again.body == b"plain"
    assert origin.count("/vc") == 2


async def test_edge_purge_during_a_fetch_marks_its_answer_stale(origin: OriginStub, edge: Edge) -> None:
    """A purge that lands while the origin is answering may predate the publish: that answer is revalidated."""
    origin.route("/race", conditional(cached(b"maybe old", delay=0.2)))
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, edge.port, "/race")
            await trio.sleep(0.05)
            assert (await fetch(edge.port, "PURGE", "/race", [AUTH])).json()["purged"] == 0
        after = await get(edge.port, "/race")
    assert after.body == b"maybe old"
    assert "hit" not in cache_status(after)
    assert origin.requests_for("/race")[1].header(b"if-none-match") == b'"v1"'


# --- stale-while-revalidate, stale-if-error, origin failures -------------------------------------

async def test_edge_background_refresh_asks_for_the_whole_answer(origin: OriginStub, edge: Edge) -> None:
    """A Range request served stale under stale-while-revalidate gets the whole stored answer, and
    the background refresh it starts asks for the whole answer too: a 206 could not refresh (or
    replace) the stored 200."""
    swr = b"max-age=10, stale-while-revalidate=60"
    origin.route("/swr-range", conditional(cached(b"swr body", cc=swr.decode(), extra=((b"age", b"15"),)),
                                           not_modified=((b"cache-control", swr),)))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/swr-range")
        stale = await get(edge.port, "/swr-range", ("range", "bytes=0-2"))
        await wait_for_counter(edge.port, "revalidated_unchanged", 1)
        part = await get(edge.port, "/swr-range", ("range", "bytes=0-2"))
    assert (stale.status, stale.body) == (200, b"swr body")
    refresh = origin.requests_for("/swr-range")[1]
    assert refresh.header(b"if-none-match") == b'"v1"'
    assert refresh.header(b"range") is None
    assert (part.status, part.body) == (206, b"swr")
    assert origin.count("/swr-range") == 2


async def test_edge_stale_while_revalidate(origin: OriginStub, edge: Edge) -> None:
    """Inside the SWR window the stale object is served at once and refreshed by one background 304 (RFC 5861 §3)."""
    full = cached(b"swr body", cc="max-age=10, stale-while-revalidate=60", extra=((b"age", b"15"),))
    origin.route("/swr", conditional(full, not_modified=((b"cache-control", b"max-age=10, stale-while-revalidate=60"),),
                                     delay=0.5))
    with trio.fail_after(BOUND_S):
        first = await get(edge.port, "/swr")
        started = trio.current_time()
        stale = await get(edge.port, "/swr")
        stale_again = await get(edge.port, "/swr")
        served_in = trio.current_time() - started
        await wait_for_counter(edge.port, "revalidated_unchanged", 1)
        fresh = await get(edge.port, "/swr")
    assert first.header("age") == b"15"
    assert (stale.status, stale.body) == (200, b"swr body")
    assert "fwd=stale" in cache_status(stale)
    assert "detail=swr" in cache_status(stale)
    assert served_in < 0.4, "the stale answer waited for the revalidation"
    assert "fwd=stale" in cache_status(stale_again)
    requests = origin.requests_for("/swr")
    assert len(requests) == 2  # one background revalidation for both stale answers
    assert requests[1].header(b"if-none-match") == b'"v1"'
    assert re.fullmatch(r"edgeproxy; hit; ttl=\d+", cache_status(fresh))
    assert int(fresh.header("age") or b"99") < 5  # refreshed: Age starts again from the 304


@pytest.mark.parametrize("etag", [b'"v1"', None], ids=["revalidate", "refetch"])
async def test_edge_stale_if_error_when_origin_is_down(origin: OriginStub, edge: Edge, etag: bytes | None) -> None:
    """Connection refused inside the stale-if-error window serves the stale object (RFC 5861 §4)."""
    origin.route("/sie", cached(b"old", cc="max-age=10, stale-if-error=60", etag=etag, extra=((b"age", b"15"),)))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/sie")
        origin.stop()
        stale = await get(edge.port, "/sie")
    assert (stale.status, stale.body) == (200, b"old")
    assert "fwd=stale" in cache_status(stale)
    assert "detail=stale-if-error" in cache_status(stale)


async def test_edge_stale_if_error_on_5xx(origin: OriginStub, edge: Edge) -> None:
    """An origin 503 inside the window serves stale; past the window the origin's own 503 goes through."""
    origin.route("/sie5", cached(b"old", cc="max-age=10, stale-if-error=60", extra=((b"age", b"15"),)))
    origin.route("/late", cached(b"old", cc="max-age=10, stale-if-error=60", extra=((b"age", b"100"),)))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/sie5")
        await get(edge.port, "/late")
        unavailable = Answer(status=503, headers=((b"retry-after", b"5"),), body=b"maintenance")
        origin.route("/sie5", unavailable)
        origin.route("/late", unavailable)
        stale = await get(edge.port, "/sie5")
        late = await get(edge.port, "/late")
    assert (stale.status, stale.body) == (200, b"old")
    assert (late.status, late.body, late.header("retry-after")) == (503, b"maintenance", b"5")


async def test_edge_502_with_json_body_when_nothing_is_cached(origin: OriginStub, edge: Edge) -> None:
    """No origin and nothing stored: 502 with a JSON error that says so without internals (no
    origin address, no exception text: seed 002; the edge's log has them)."""
    origin.stop()
    with trio.fail_after(BOUND_S):
        response = await get(edge.port, "/anything")
    assert response.status == 502
    assert response.header("content-type") == b"application/json"
    error = response.json()["errors"][0]
    assert error["code"] == "BAD_GATEWAY"
    assert error["detail"] == "the origin is unavailable; retry shortly"
    assert str(origin.port) not in response.body.decode()


async def test_edge_504_on_origin_timeout(nursery: trio.Nursery, origin: OriginStub) -> None:
    """An origin slower than --read-timeout gets a 504, as soon as the timeout expires."""
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, read_timeout=0.2))
    origin.route("/hang", cached(delay=2.0))
    with trio.fail_after(BOUND_S):
        started = trio.current_time()
        response = await get(edge.port, "/hang")
        elapsed = trio.current_time() - started
    assert response.status == 504
    assert response.json()["errors"][0]["code"] == "GATEWAY_TIMEOUT"
    assert elapsed < 1.0


# --- purge --------------------------------------------------------------------------------------

async def test_edge_purge_method_needs_the_token(origin: OriginStub, edge: Edge) -> None:
    """PURGE /path: 401 without a token, 403 with a wrong one, then a hard purge makes the next GET a miss."""
    origin.route("/p", cached())
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/p")
        anonymous = await fetch(edge.port, "PURGE", "/p")
        wrong = await fetch(edge.port, "PURGE", "/p", [("authorization", "Bearer nope")])
        assert "hit" in cache_status(await get(edge.port, "/p"))
        done = await fetch(edge.port, "PURGE", "/p", [AUTH])
        after = await get(edge.port, "/p")
    assert anonymous.status == 401
    assert anonymous.header("www-authenticate") is not None
    assert wrong.status == 403
    assert (done.status, done.json()) == (200, {"purged": 1, "soft": False, "invalidate": False, "workers": 1})
    assert "fwd=uri-miss" in cache_status(after)
    assert origin.count("/p") == 2


async def test_edge_purge_endpoint_by_path_key_and_prefix(origin: OriginStub, edge: Edge) -> None:
    """POST /.edge/purge purges paths, surrogate keys and prefixes and says how many objects it hit."""
    for path, keys in (("/a", b"k1"), ("/b", b"k1 k2"), ("/blog/x", b""), ("/blog/y", b""), ("/c", b"")):
        origin.route(path, cached(extra=((b"surrogate-key", keys),) if keys else ()))
    with trio.fail_after(BOUND_S):
        for path in ("/a", "/b", "/blog/x", "/blog/y", "/c"):
            await get(edge.port, path)
        assert (await purge(edge.port, '{"keys": ["k1"]}')).status == 401
        assert (await purge(edge.port, '{"keys": ["k1"]}', ("authorization", "Bearer wrong"))).status == 403
        by_key = await purge(edge.port, '{"keys": ["k1"]}', AUTH)
        by_prefix = await purge(edge.port, '{"prefixes": ["/blog/"]}', AUTH)
        by_path = await purge(edge.port, '{"paths": ["/c", "/not-cached", "/caf\\u00e9"]}', AUTH)
        invalid = await purge(edge.port, '{"paths": "/c"}', AUTH)
        wrong_method = await get(edge.port, "/.edge/purge")
        statuses = [cache_status(await get(edge.port, p)) for p in ("/a", "/b", "/blog/x", "/c")]
    assert by_key.json() == {"purged": 2, "soft": False, "invalidate": False, "workers": 1}
    assert by_prefix.json() == {"purged": 2, "soft": False, "invalidate": False, "workers": 1}
    assert by_path.json() == {"purged": 1, "soft": False, "invalidate": False, "workers": 1}
    assert invalid.status == 400
    assert wrong_method.status == 405
    assert all("fwd=uri-miss" in s for s in statuses), statuses


async def test_edge_soft_purge_serves_stale_and_revalidates(origin: OriginStub, edge: Edge) -> None:
    """A soft purge keeps the object: the next request gets it stale while a conditional request refreshes it."""
    full = cached(b"soft", cc="max-age=600, stale-while-revalidate=60")
    origin.route("/soft", conditional(full, not_modified=((b"cache-control", b"max-age=600, stale-while-revalidate=60"),)))
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/soft")
        purged = await purge(edge.port, '{"paths": ["/soft"], "soft": true}', AUTH)
        stale = await get(edge.port, "/soft")
        await wait_for_counter(edge.port, "revalidated_unchanged", 1)
        fresh = await get(edge.port, "/soft")
    assert purged.json() == {"purged": 1, "soft": True, "invalidate": False, "workers": 1}
    assert (stale.status, stale.body) == (200, b"soft")
    assert "fwd=stale" in cache_status(stale)
    assert origin.requests_for("/soft")[1].header(b"if-none-match") == b'"v1"'
    assert re.fullmatch(r"edgeproxy; hit; ttl=\d+", cache_status(fresh))
    assert origin.count("/soft") == 2


async def test_edge_304_updates_every_answer_made_from_the_object(nursery: trio.Nursery, origin: OriginStub,
                                                                  edge: Edge) -> None:
    """RFC 9111 §3.2, §4.3.4: a 304's fields replace the stored ones (Content-Type too; not
    Content-Length), and every answer made from the object afterwards carries them: the HTTP/1.1
    head, the HTTP/2 header block and the prepared 304 were all encoded before the refresh."""
    updated = ((b"cache-control", b"max-age=600"), (b"content-type", b"text/html"), (b"x-new", b"1"),
               (b"set-cookie", b"session=alice"))  # for the one client whose request revalidated: never stored
    origin.route("/fr", conditional(cached(b"body", cc="max-age=600"), not_modified=updated))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        await get(edge.port, "/fr")
        before = [await get(edge.port, "/fr", ("if-none-match", '"v1"')), await client.request("GET", "/fr")]
        await purge(edge.port, '{"paths": ["/fr"], "invalidate": true}', AUTH)
        refreshed = await get(edge.port, "/fr")
        after = [await get(edge.port, "/fr"), await client.request("GET", "/fr"),
                 await get(edge.port, "/fr", ("if-none-match", '"v1"')),
                 await client.request("GET", "/fr", [("if-none-match", '"v1"')])]
        await client.aclose()
    assert [a.header("x-new") for a in before] == [None, None]
    assert origin.requests_for("/fr")[1].header(b"if-none-match") == b'"v1"'
    assert [a.status for a in [refreshed, *after]] == [200, 200, 200, 304, 304]
    for answer in (refreshed, *after):
        assert answer.header("x-new") == b"1"
        assert answer.all(b"etag") == [b'"v1"']
        assert answer.header("set-cookie") is None
    for full in (refreshed, *after[:2]):
        assert (full.body, full.all(b"content-type"), full.all(b"content-length")) == (b"body", [b"text/html"], [b"4"])
    assert "hit" in cache_status(after[1])
    assert origin.count("/fr") == 2


async def test_edge_invalidate_revalidates_before_answering(origin: OriginStub, edge: Edge) -> None:
    """An invalidation keeps the object for a conditional request, but even a stale-while-revalidate
    window does not serve it before the origin answered: unchanged -> the 304's refreshed copy,
    changed -> the new body at once (what a publish needs)."""
    swr = "max-age=600, stale-while-revalidate=600"
    origin.route("/same", conditional(cached(b"same", cc=swr), not_modified=((b"cache-control", swr.encode()),)))
    versions = [cached(b"old", cc=swr), cached(b"new", cc=swr, etag=b'"v2"')]
    origin.route("/changed", lambda r: versions[min(origin.count("/changed"), 2) - 1])
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/same")
        await get(edge.port, "/changed")
        purged = await purge(edge.port, '{"paths": ["/same", "/changed"], "invalidate": true}', AUTH)
        same = await get(edge.port, "/same")
        changed = await get(edge.port, "/changed")
        again = await get(edge.port, "/same")
    assert purged.json() == {"purged": 2, "soft": False, "invalidate": True, "workers": 1}
    assert (same.status, same.body) == (200, b"same")
    assert cache_status(same) == "edgeproxy; fwd=stale; stored"  # asked the origin first (a 304), no stale hit
    assert origin.requests_for("/same")[1].header(b"if-none-match") == b'"v1"'
    assert (changed.status, changed.body) == (200, b"new"), "an invalidated object was served stale"
    assert re.fullmatch(r"edgeproxy; hit; ttl=\d+", cache_status(again))
    assert origin.count("/same") == 2


async def test_edge_invalidated_object_still_answers_when_the_origin_fails(origin: OriginStub, edge: Edge) -> None:
    """Invalidation is not deletion: with the origin failing, stale-if-error still answers."""
    cc = "max-age=600, stale-while-revalidate=600, stale-if-error=600"
    answers = [cached(b"kept", cc=cc), Answer(status=503, body=b"down")]
    origin.route("/sie", lambda r: answers[min(origin.count("/sie"), 2) - 1])
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/sie")
        await purge(edge.port, '{"paths": ["/sie"], "invalidate": true}', AUTH)
        kept = await get(edge.port, "/sie")
    assert (kept.status, kept.body) == (200, b"kept")
    assert origin.count("/sie") == 2


async def test_edge_purge_body_rejects_a_non_boolean_invalidate(edge: Edge) -> None:
    bad = await purge(edge.port, '{"paths": ["/x"], "invalidate": "yes"}', AUTH)
    assert bad.status == 400
    assert b"invalidate must be true or false" in bad.body


async def test_edge_unsafe_method_is_forwarded_and_invalidates(origin: OriginStub, edge: Edge) -> None:
    """POST goes to the origin with its body, and its success invalidates the cached GET (RFC 9111 §4.4)."""
    origin.route("/doc", lambda r: Answer(status=201, body=b"created") if r.method == b"POST" else cached())
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/doc")
        assert "hit" in cache_status(await get(edge.port, "/doc"))
        posted = await fetch(edge.port, "POST", "/doc", [("content-type", "text/plain")], b"payload")
        after = await get(edge.port, "/doc")
    assert (posted.status, posted.body) == (201, b"created")
    assert "fwd=method" in cache_status(posted)
    post = [r for r in origin.requests_for("/doc") if r.method == b"POST"]
    assert [(r.body, r.header(b"content-length")) for r in post] == [(b"payload", b"7")]
    assert "fwd=uri-miss" in cache_status(after)


# --- HTTP/1.1 connection handling ----------------------------------------------------------------

async def test_edge_keep_alive_many_requests_on_one_connection(origin: OriginStub, edge: Edge) -> None:
    """One client connection carries 50 requests; the edge reuses one origin connection too."""
    origin.route("/k", cached(cc="no-store"))
    with trio.fail_after(BOUND_S):
        client = await H1Client.connect(edge.port)
        responses = [await client.request("GET", "/k") for _ in range(50)]
        await client.aclose()
        counters = await stats(edge.port)
    assert [r.status for r in responses] == [200] * 50
    assert not client.closed_by_server
    assert counters["connections_total"] == 2  # the client above and the stats request
    assert origin.connections == 1


async def test_edge_pipelined_requests_are_answered_in_order(origin: OriginStub, edge: Edge) -> None:
    """Three requests in one write get three responses in request order (RFC 9112 §9.3.2)."""
    origin.route("/1", cached(b"one", delay=0.2))
    origin.route("/2", cached(b"two"))
    with trio.fail_after(BOUND_S):
        stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
        await stream.send_all(b"GET /1 HTTP/1.1\r\nHost: e\r\n\r\n"
                              b"HEAD /2 HTTP/1.1\r\nHost: e\r\n\r\n"
                              b"GET /2 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
        data = await read_until_closed(stream)
        await stream.aclose()
    one, head, two = read_responses(data, ["GET", "HEAD", "GET"])
    assert (one.body, head.body, two.body) == (b"one", b"", b"two")
    assert head.header("content-length") == b"3"
    assert two.header("connection") == b"close"


async def test_edge_chunked_request_body_is_forwarded(origin: OriginStub, edge: Edge) -> None:
    """A chunked request body reaches the origin whole, with a Content-Length."""
    origin.route("/upload", Answer(status=204))
    body = bytes(range(256)) * 40
    with trio.fail_after(BOUND_S):
        client = await H1Client.connect(edge.port)
        response = await client.request("POST", "/upload", body=body, chunked=True)
        await client.aclose()
    assert response.status == 204
    assert response.header("content-length") is None
    seen = origin.requests_for("/upload")[0]
    assert (seen.body, seen.header(b"content-length")) == (body, b"%d" % len(body))
    assert seen.header(b"transfer-encoding") is None


async def test_edge_expect_100_continue(origin: OriginStub, edge: Edge) -> None:
    """Expect: 100-continue gets an interim 100 before the final answer (RFC 9110 §10.1.1)."""
    origin.route("/form", Answer(status=200, body=b"ok"))
    with trio.fail_after(BOUND_S):
        client = await H1Client.connect(edge.port)
        response = await client.request("POST", "/form", [("expect", "100-continue")], b"x=1")
        await client.aclose()
    assert response.informational == [100]
    assert (response.status, response.body) == (200, b"ok")
    assert origin.requests_for("/form")[0].header(b"expect") is None


async def test_edge_head_has_no_body(origin: OriginStub, edge: Edge) -> None:
    """HEAD gets the GET's fields (Content-Length included) and no content, hit or miss."""
    origin.route("/h", cached(b"twelve bytes"))
    with trio.fail_after(BOUND_S):
        client = await H1Client.connect(edge.port)
        miss = await client.request("HEAD", "/h")
        hit = await client.request("HEAD", "/h")
        full = await client.request("GET", "/h")
        await client.aclose()
    for response in (miss, hit):
        assert (response.status, response.body, response.header("content-length")) == (200, b"", b"12")
    assert full.body == b"twelve bytes"
    assert [r.method for r in origin.requests_for("/h")] == [b"GET"]  # HEAD miss fills with GET


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET / HTTP/1.1\r\nHost example\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 §3.2)
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX-Big: " + b"a" * 20000, 431),
])
async def test_edge_bad_requests_answered_then_closed(edge: Edge, raw: bytes, status: int) -> None:
    """Malformed input gets its 4xx with Connection: close, and the connection ends."""
    response = await answer_to_raw(edge, raw)
    assert response.status == status
    assert response.header("connection") == b"close"
    assert response.json()["errors"][0]["status"] == str(status)


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nX-Request-ID: req-abc123\r\n\r\n",  # no Host
    b"POST / HTTP/1.1\r\nHost: e\r\nX-Request-ID: req-abc123\r\nContent-Length: 1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: e\r\nX-Request-ID: req-abc123\r\nHost: f\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: e\r\nX-Request-ID: req-abc123\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # the body's fault
])
async def test_a_bad_request_keeps_the_clients_request_id(edge: Edge, raw: bytes) -> None:
    """X-Request-ID on every answer, kept when well-formed: a head refused after its fields were
    read answers with the client's id, so the client can find the 400 in its own logs."""
    response = await answer_to_raw(edge, raw)
    assert (response.status, response.header("x-request-id")) == (400, b"req-abc123")


async def answer_to_raw(edge: Edge, raw: bytes) -> Response:
    """The one answer to ``raw`` bytes sent on a new connection, read until the edge closes it."""
    with trio.fail_after(BOUND_S):
        stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
        await stream.send_all(raw)
        data = await read_until_closed(stream)
        await stream.aclose()
    (response,) = read_responses(data, ["GET"])
    return response


async def test_edge_error_answer_survives_a_client_still_sending(edge: Edge) -> None:
    """A 431 for a 400 KB head reaches the client although it is still sending (lingering close)."""
    with trio.fail_after(BOUND_S):
        for _ in range(5):
            stream = await trio.open_tcp_stream("127.0.0.1", edge.port)

            async def send(stream: trio.SocketStream = stream) -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: e\r\nX-Big: " + b"a" * 400_000)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                data = await read_until_closed(stream)
            await stream.aclose()
            (response,) = read_responses(data, ["GET"])
            assert response.status == 431


async def test_edge_http10_keep_alive(origin: OriginStub, edge: Edge) -> None:
    """An HTTP/1.0 client asking for keep-alive is told so (RFC 9112 §9.3); one without it is closed."""
    origin.route("/old", cached(b"old"))
    with trio.fail_after(BOUND_S):
        stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
        await stream.send_all(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                              b"GET /old HTTP/1.0\r\n\r\n")
        data = await read_until_closed(stream)
        await stream.aclose()
    kept, closed = read_responses(data, ["GET", "GET"])
    assert kept.header("connection") == b"keep-alive"
    assert closed.header("connection") == b"close"
    assert kept.body == closed.body == b"old"


async def test_edge_slow_head_gets_408_and_idle_connections_close(nursery: trio.Nursery, origin: OriginStub) -> None:
    """A head that stalls past header_timeout gets 408 (slowloris); an idle keep-alive just closes."""
    config = ProxyConfig(origin_port=origin.port, header_timeout=0.2, keepalive_timeout=0.2)
    edge = await start_edge(nursery, config)
    origin.route("/k", cached())
    with trio.fail_after(BOUND_S):
        slow = await trio.open_tcp_stream("127.0.0.1", edge.port)
        await slow.send_all(b"GET /k HTTP/1.1\r\nHost: e\r\n")
        (timed_out,) = read_responses(await read_until_closed(slow), ["GET"])
        await slow.aclose()
        idle = await H1Client.connect(edge.port)
        await idle.request("GET", "/k")
        leftover = await idle.stream.receive_some(100)
        await idle.aclose()
    assert timed_out.status == 408
    assert leftover == b""


async def test_edge_bug_in_one_request_answers_500_and_spares_the_server(origin: OriginStub, edge: Edge,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is a 500 for that request (and its connection), not a dead server."""
    origin.route("/ok", cached())
    exchange = edge.server.exchange
    assert exchange is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    with trio.fail_after(BOUND_S):
        monkeypatch.setattr(exchange, "handle", broken)
        failed = await get(edge.port, "/ok")
        monkeypatch.undo()
        fine = await get(edge.port, "/ok")
    assert failed.status == 500
    assert failed.header("connection") == b"close"
    assert failed.json()["errors"][0]["code"] == "INTERNAL_ERROR"
    assert fine.status == 200


async def test_edge_connection_close_is_honoured(origin: OriginStub, edge: Edge) -> None:
    """Connection: close from the client: the answer says close and the edge closes."""
    origin.route("/c", cached())
    with trio.fail_after(BOUND_S):
        client = await H1Client.connect(edge.port)
        response = await client.request("GET", "/c", [("connection", "close")])
        rest = await client.stream.receive_some(100)
        await client.aclose()
    assert response.header("connection") == b"close"
    assert rest == b""


async def test_edge_graceful_shutdown_finishes_requests_in_flight(origin: OriginStub) -> None:
    """shutdown() (what SIGTERM does) stops accepting, lets a running request finish, then returns."""
    origin.route("/slow", cached(delay=0.3))
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            origin_nursery_port = origin.port
            edge = await start_edge(nursery, ProxyConfig(origin_port=origin_nursery_port, grace=5.0))
            client = await H1Client.connect(edge.port)
            results: list[Response] = []

            async def request() -> None:
                results.append(await client.request("GET", "/slow"))

            nursery.start_soon(request)
            await trio.sleep(0.1)
            edge.server.shutdown()
        # the serve task has returned: the nursery exited
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", edge.port)
    (response,) = results
    assert (response.status, response.header("connection")) == (200, b"close")
    await client.aclose()


# --- introspection ------------------------------------------------------------------------------

async def test_edge_stats_and_metrics(origin: OriginStub, edge: Edge) -> None:
    """/.edge/stats (JSON) and /.edge/metrics (Prometheus text) count hits, misses and purges."""
    origin.route("/s", cached())
    with trio.fail_after(BOUND_S):
        await get(edge.port, "/s")
        await get(edge.port, "/s")
        await get(edge.port, "/s")
        await fetch(edge.port, "PURGE", "/s", [AUTH])
        response = await get(edge.port, "/.edge/stats")
        metrics = await get(edge.port, "/.edge/metrics")
    document = response.json()
    assert (document["counters"]["hits"], document["counters"]["misses"]) == (2, 1)
    assert (document["counters"]["purges"], document["counters"]["purged_objects"]) == (1, 1)
    assert document["cache"]["objects"] == 0
    assert (metrics.header("content-type") or b"").startswith(b"text/plain")
    text = metrics.body.decode()
    for line in ("edgeproxy_hits_total 2", "edgeproxy_misses_total 1", "edgeproxy_purges_total 1",
                 "# TYPE edgeproxy_hits_total counter", "edgeproxy_cache_objects 0",
                 "# TYPE edgeproxy_cache_objects gauge", "edgeproxy_cache_stored_total 1",
                 "# TYPE edgeproxy_cache_stored_total counter", "edgeproxy_connections_open 1"):
        assert line in text.splitlines(), line


# --- the command line ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
EDGEPROXY = [sys.executable, "-m", "edgeproxy"]
CLI_BOUND_S = 20.0  # a cold interpreter start plus imports, with room for a loaded CI machine


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(CLI_BOUND_S):
        return await trio.run_process([*EDGEPROXY, *args], cwd=ROOT, capture_stdout=True, capture_stderr=True,
                                      check=False)


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_cli_help() -> None:
    """--help lists the options and exits 0."""
    result = await run_cli("--help")
    assert result.returncode == 0
    for option in (b"--listen", b"--origin", b"--purge-token", b"--read-timeout", b"--tls-cert"):
        assert option in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--read-timeout", "soon"], b"'soon' is not a valid float"),
    (["--listen", "nowhere"], b"expected HOST:PORT"),
    (["--origin", "https://example.org"], b"https origins are not supported"),
    (["--eviction", "random"], b"'random' is not one of"),
])
async def test_cli_bad_option_exits_2(args: list[str], message: bytes) -> None:
    """A bad option value is a usage error: exit status 2 and a message naming the problem."""
    result = await run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


async def test_cli_port_in_use_exits_1() -> None:
    """A port that is taken gives one clear line and exit status 1, not a traceback."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    try:
        result = await run_cli("--listen", f"127.0.0.1:{port}", "--origin", f"http://127.0.0.1:{closed_port()}")
    finally:
        await listener.aclose()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}".encode() in result.stderr
    assert b"Traceback" not in result.stderr


async def test_cli_serves_without_origin_and_stops_on_sigterm() -> None:
    """An unreachable origin is not fatal: the edge starts, answers 502, and exits 0 on SIGTERM."""
    origin = f"http://127.0.0.1:{closed_port()}"
    process = await trio.lowlevel.open_process(
        [*EDGEPROXY, "--listen", "127.0.0.1:0", "--origin", origin, "--log-format", "text"],
        cwd=ROOT, stderr=subprocess.PIPE)
    try:
        with trio.fail_after(CLI_BOUND_S):
            assert process.stderr is not None
            output = b""
            while (match := re.search(rb"listening on 127\.0\.0\.1:(\d+)", output)) is None:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, f"edgeproxy exited early: {output!r}"
                output += chunk
            port = int(match.group(1))
            response = await get(port, "/page")
            process.send_signal(signal.SIGTERM)
            await process.wait()
            while chunk := await process.stderr.receive_some(4096):
                output += chunk
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert response.status == 502
    assert response.json()["errors"][0]["code"] == "BAD_GATEWAY"
    assert process.returncode == 0, output.decode()
    assert b"GET /page 502" in output  # the text access log
    assert b"SIGTERM" in output
