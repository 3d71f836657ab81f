"""Invariants of edgeproxy.policy and edgeproxy.headers under generated requests and responses.

STYLE.md 2.5: freshness never increases with age; no-store and private are never stored in
the shared cache; a 304 goes to the client only when a validator matches; stale responses are
served only inside an SWR/SIE window or a client's max-stale. Plus: parsers never raise, and
each parser/serializer pair round-trips.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edgeproxy.headers import (
    DELTA_SECONDS_MAX,
    ETag,
    format_delta_seconds,
    format_etag,
    format_http_date,
    normalise_field_value,
    parse_age,
    parse_cache_control,
    parse_delta_seconds,
    parse_etag,
    parse_http_date,
    parse_if_none_match,
    parse_vary,
    weak_match,
)
from edgeproxy.policy import (
    Serve,
    ServeStale,
    Stored,
    can_serve_stale_on_error,
    choose,
    current_age,
    effective_directives,
    freshness_lifetime,
    is_fresh,
    is_plain_request,
    is_storable,
    make_stored,
    mark_stale,
    not_modified,
    plain_age_ttl,
    request_directives,
    vary_matches,
)

T0 = 1_700_000_000
Headers = list[tuple[bytes, bytes]]

seconds = st.integers(0, 400)
offsets = st.integers(-400, 400)
response_flag = st.sampled_from([
    b"no-store", b"private", b"public", b"no-cache", b"must-revalidate", b"proxy-revalidate",
    b"must-understand", b"immutable", b'private="x-user"', b'no-cache="set-cookie"', b"max-age=x"])
response_delta = st.builds(lambda name, n: b"%s=%d" % (name, n), st.sampled_from(
    [b"max-age", b"s-maxage", b"stale-while-revalidate", b"stale-while-revalidate", b"stale-if-error"]), seconds)
# Deltas three times as likely as flags, so fresh and stale-but-allowed cases are common.
response_directive = st.one_of(response_delta, response_delta, response_delta, response_flag)
request_directive = st.one_of(
    st.sampled_from([b"no-cache", b"no-store", b"only-if-cached", b"max-stale"]),
    st.builds(lambda name, n: b"%s=%d" % (name, n),
              st.sampled_from([b"max-age", b"max-stale", b"min-fresh", b"stale-if-error"]), seconds),
)
etag_values = st.sampled_from([b'"a"', b'W/"a"', b'"b"', b'W/"b"'])


def field_value(directives: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(directives, max_size=4).map(b", ".join)


def optional(name: bytes, values: st.SearchStrategy[bytes], odds: int = 2) -> st.SearchStrategy[Headers]:
    """``[(name, value)]`` one time in ``odds``, else no field."""
    present = values.map(lambda value: [(name, value)])
    return st.integers(1, odds).flatmap(lambda roll: present if roll == 1 else st.just([]))


def date_at(offset: int) -> bytes:
    return format_http_date(T0 + offset)


@st.composite
def responses(draw: st.DrawFn) -> tuple[int, Headers]:
    status = draw(st.sampled_from([200, 200, 203, 204, 206, 299, 301, 302, 304, 404, 410, 500]))
    headers: Headers = []
    for name, values, odds in [
        (b"date", st.one_of(st.integers(-30, 30).map(date_at), st.just(b"garbage")), 2),
        (b"cache-control", field_value(response_directive), 1),
        (b"cdn-cache-control", field_value(response_directive), 5),
        (b"surrogate-control", field_value(response_directive), 5),
        (b"expires", st.one_of(offsets.map(date_at), st.just(b"0")), 3),
        (b"last-modified", st.integers(-10**6, 100).map(date_at), 2),
        (b"age", st.one_of(st.integers(0, 60).map(lambda n: b"%d" % n), st.just(b"-1")), 3),
        (b"etag", etag_values, 2),
        (b"set-cookie", st.just(b"s=1"), 5),
        (b"vary", st.sampled_from([b"accept-encoding", b"*", b"accept-encoding, accept-language"]), 3),
    ]:
        headers += draw(optional(name, values, odds))
    return status, headers


@st.composite
def requests(draw: st.DrawFn) -> Headers:
    headers: Headers = []
    headers += draw(optional(b"cache-control", field_value(request_directive), 3))
    headers += draw(optional(b"pragma", st.just(b"no-cache"), 5))
    headers += draw(optional(b"authorization", st.just(b"Bearer t"), 4))
    headers += draw(optional(b"accept-encoding", st.sampled_from([b"gzip", b"gzip, br", b"gzip,br", b""])))
    headers += draw(optional(b"if-none-match", st.lists(etag_values, min_size=1, max_size=2).map(b", ".join)
                             | st.sampled_from([b"*", b"junk"])))
    headers += draw(optional(b"if-modified-since", st.one_of(st.integers(-10**6, 400).map(date_at),
                                                             st.just(b"junk"))))
    return headers


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Stored, Headers]:
    """A stored response and a later request; half the time the request that stored it (so Vary matches)."""
    status, headers = draw(responses())
    request = draw(requests())
    delay = draw(st.integers(0, 5))
    s = make_stored(b"GET", request, status, headers, float(T0 - delay), float(T0))
    if draw(st.integers(0, 3)) == 0:
        s = mark_stale(s)
    return s, request if draw(st.booleans()) else draw(requests())


def stored_responses() -> st.SearchStrategy[Stored]:
    return exchanges().map(lambda pair: pair[0])


def staleness(s: Stored, now: float) -> float:
    excess = current_age(s, now) - freshness_lifetime(s)
    return max(0.0, excess)


# --- freshness never increases with age -------------------------------------------------------

@given(exchanges(), st.integers(0, 600), st.integers(0, 600))
def test_freshness_never_increases_with_age(exchange: tuple[Stored, Headers], a: int, b: int) -> None:
    """RFC 9111 §4.2: age grows with time at rate 1, so a response never becomes fresher."""
    s, request = exchange
    early, late = float(T0 + min(a, b)), float(T0 + max(a, b))
    assert current_age(s, late) - current_age(s, early) == late - early
    assert freshness_lifetime(s) >= 0
    if is_fresh(s, late):
        assert is_fresh(s, early)
    if isinstance(choose(b"GET", request, s, late), Serve):
        assert isinstance(choose(b"GET", request, s, early), Serve)


# --- storability ------------------------------------------------------------------------------

@given(responses(), requests())
def test_no_store_is_never_stored(response: tuple[int, Headers], request: Headers) -> None:
    """RFC 9111 §3, §5.2.1.5, §5.2.2.5: no-store (request or effective response) is not stored."""
    status, headers = response
    directives, _ = effective_directives(headers)
    if request_directives(request).no_store or (directives.no_store and not directives.must_understand):
        assert not is_storable(b"GET", request, status, headers)


@given(responses(), requests())
def test_private_is_never_stored(response: tuple[int, Headers], request: Headers) -> None:
    """RFC 9111 §5.2.2.7: a shared cache never stores a private response."""
    status, headers = response
    if effective_directives(headers)[0].private:
        assert not is_storable(b"GET", request, status, headers)


@given(responses(), requests(), st.sampled_from([b"HEAD", b"POST", b"PUT"]))
def test_only_get_and_never_set_cookie_or_partial(response: tuple[int, Headers], request: Headers,
                                                   method: bytes) -> None:
    """Only GET responses are stored; never 206, 304 or a response that sets a cookie."""
    status, headers = response
    assert not is_storable(method, request, status, headers)
    if status in (206, 304) or any(name == b"set-cookie" for name, _ in headers):
        assert not is_storable(b"GET", request, status, headers)


# --- 304 only on a matching validator ---------------------------------------------------------

@given(stored_responses(), requests(), st.sampled_from([b"GET", b"HEAD", b"POST"]))
def test_304_only_when_a_validator_matches(s: Stored, request: Headers, method: bytes) -> None:
    """RFC 9110 §13.2.2: not_modified implies If-None-Match matched, or (without it) If-Modified-Since."""
    if not not_modified(request, s, method=method):
        return
    assert method in (b"GET", b"HEAD")
    inm = [value for name, value in request if name == b"if-none-match"]
    if inm:
        tags = parse_if_none_match(inm)
        assert tags == "*" or (
            isinstance(tags, list) and s.etag is not None and any(weak_match(tag, s.etag) for tag in tags))
    else:
        since = parse_http_date(dict(request)[b"if-modified-since"])
        reference = s.last_modified if s.last_modified is not None else s.date_value
        assert since is not None
        assert reference <= since


# --- stale only inside a window ---------------------------------------------------------------

@given(exchanges(), st.integers(0, 600))
def test_stale_served_only_inside_a_window(exchange: tuple[Stored, Headers], elapsed: int) -> None:
    """RFC 9111 §4.2.4 and RFC 5861: stale needs SWR, SIE or max-stale, and never must-revalidate."""
    s, request = exchange
    now = float(T0 + elapsed)
    decision = choose(b"GET", request, s, now)
    directives, client = s.directives, request_directives(request)
    revalidate_only = directives.must_revalidate or directives.proxy_revalidate
    if isinstance(decision, Serve):
        assert is_fresh(s, now)
        assert not directives.no_cache
        assert not client.no_cache
    if isinstance(decision, ServeStale):
        assert not is_fresh(s, now)
        assert not revalidate_only
        assert not directives.no_cache
        if decision.reason == "swr":
            window = directives.stale_while_revalidate
            assert decision.revalidate_in_background
            assert window is not None
            assert staleness(s, now) <= window
        else:
            assert directives.s_maxage is None
            limit = client.max_stale
            assert client.max_stale_any or (limit is not None and staleness(s, now) <= limit)
    if can_serve_stale_on_error(s, request, now):
        windows = [w for w in (directives.stale_if_error, client.stale_if_error) if w is not None]
        assert not revalidate_only
        assert any(staleness(s, now) <= w for w in windows)


# --- parsers never raise; pairs round-trip ----------------------------------------------------

header_soup = st.lists(st.tuples(
    st.sampled_from([b"cache-control", b"pragma", b"vary", b"date", b"age", b"etag", b"expires",
                     b"if-none-match", b"if-modified-since", b"last-modified", b"cdn-cache-control",
                     b"surrogate-key", b"connection", b"accept-encoding"]),
    st.binary(max_size=40)), max_size=8)


@given(st.binary(max_size=80))
def test_parsers_never_raise(value: bytes) -> None:
    """Parsers read junk as absent; they never raise on peer input."""
    parse_cache_control(value)
    parse_http_date(value)
    parse_if_none_match(value)
    parse_vary(value)
    parse_etag(value)
    parse_age(value)
    parse_delta_seconds(value)


@given(header_soup, header_soup, st.integers(0, 10**6))
def test_policy_never_raises_on_header_soup(request: Headers, response: Headers, elapsed: int) -> None:
    """Arbitrary field values flow through storage, choice and validation without raising."""
    is_storable(b"GET", request, 200, response)
    s = make_stored(b"GET", request, 200, response, float(T0), float(T0))
    choose(b"GET", request, s, float(T0 + elapsed))
    not_modified(request, s)
    can_serve_stale_on_error(s, request, float(T0 + elapsed))


@given(st.lists(st.sampled_from([b" ", b"\t", b",", b"a", b"B", b";", b"="]), max_size=12).map(b"".join))
def test_vary_normalisation_matches_its_definition(value: bytes) -> None:
    """RFC 9111 §4.1 normalisation (with its fast path) equals the plain regex definition, idempotently."""
    collapsed = re.sub(rb"[ \t]*,[ \t]*", b", ", re.sub(rb"[ \t]+", b" ", value.strip(b" \t")))
    assert normalise_field_value(value) == collapsed
    assert normalise_field_value(collapsed) == collapsed


@given(st.integers(0, 253402300799))
def test_http_date_round_trip(ts: int) -> None:
    """format_http_date and parse_http_date are inverse over years 1970-9999."""
    assert parse_http_date(format_http_date(ts)) == ts


def is_etagc(octet: int) -> bool:
    return octet == 0x21 or 0x23 <= octet <= 0x7E or octet >= 0x80  # RFC 9110 §8.8.3


@given(st.booleans(), st.binary(max_size=20).map(lambda b: bytes(c for c in b if is_etagc(c))))
def test_etag_round_trip(weak: bool, opaque: bytes) -> None:
    """format_etag and parse_etag are inverse for every valid entity-tag."""
    tag = ETag(weak=weak, opaque=opaque)
    assert parse_etag(format_etag(tag)) == tag


@given(st.integers(0, 2 * DELTA_SECONDS_MAX))
def test_delta_seconds_round_trip(n: int) -> None:
    """delta-seconds round-trip up to the 2^31 clamp of RFC 9111 §1.2.2."""
    assert parse_delta_seconds(format_delta_seconds(n)) == min(n, DELTA_SECONDS_MAX)


@given(stored_responses(), st.integers(0, 800), st.sampled_from([b"GET", b"HEAD"]),
       st.lists(st.tuples(st.sampled_from([b"user-agent", b"accept", b"host", b"x-trace"]),
                          st.sampled_from([b"a", b"b", b"*/*"])), max_size=3))
def test_plain_short_cut_decides_as_choose(s: Stored, elapsed: int, method: bytes, request: Headers) -> None:
    """The hit path's short cut gives exactly choose()'s Serve, and never serves what choose would not
    (a no-cache response included: the short cut leaves it to choose, which revalidates, §5.2.2.4)."""
    if s.vary:
        return  # the lookup matches Vary first (the next test)
    now = s.response_time + elapsed
    full = choose(method, request, s, now)
    plain = plain_age_ttl(s, now)
    if plain is None:
        assert not isinstance(full, Serve)
    else:
        assert full == Serve(age=plain[0], ttl=plain[1])


@st.composite
def varied_exchanges(draw: st.DrawFn) -> tuple[Stored, Headers]:
    """A Vary'd stored response and a later plain request whose Vary values match it (the entry a
    cache lookup selects), Authorization and the gateway's role field among the request's fields."""
    status, headers = draw(responses())
    headers = [(n, v) for n, v in headers if n != b"vary"]
    headers.append((b"vary", draw(st.sampled_from([b"accept-encoding", b"X-Flowcms-Role",
                                                   b"accept-encoding, x-flowcms-role"]))))
    request = [(n, v) for n, v in draw(requests()) if is_plain_request([(n, v)])]
    request += draw(st.lists(st.tuples(st.sampled_from([b"user-agent", b"authorization", b"x-flowcms-role"]),
                                       st.sampled_from([b"a", b"Bearer k", b"viewer"])), max_size=3))
    delay = draw(st.integers(0, 5))
    s = make_stored(b"GET", request, status, headers, float(T0 - delay), float(T0))
    if draw(st.integers(0, 3)) == 0:
        s = mark_stale(s)
    return s, request


@given(varied_exchanges(), st.integers(0, 800), st.sampled_from([b"GET", b"HEAD"]))
def test_plain_short_cut_with_a_matched_vary_decides_as_choose(exchange: tuple[Stored, Headers], elapsed: int,
                                                              method: bytes) -> None:
    """Once the cache lookup has matched the Vary (RFC 9111 §4.1), the short cut is choose()'s Serve
    for a Vary'd response too, Authorization or not (RFC 9111 §3.5 is decided at storage)."""
    s, request = exchange
    assert vary_matches(s, request)
    assert is_plain_request(request)
    now = s.response_time + elapsed
    full = choose(method, request, s, now)
    plain = plain_age_ttl(s, now)
    if plain is None:
        assert not isinstance(full, Serve)
    else:
        assert full == Serve(age=plain[0], ttl=plain[1])
