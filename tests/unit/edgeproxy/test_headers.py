"""edgeproxy.headers: field parsers and serializers, case by case from RFC 9110/9111/9211."""

from __future__ import annotations

import math

import pytest

from edgeproxy.headers import (
    DELTA_SECONDS_MAX,
    NO_DIRECTIVES,
    CacheDirectives,
    ETag,
    format_cache_status,
    format_delta_seconds,
    format_etag,
    format_http_date,
    get_all,
    get_header,
    is_pragma_no_cache,
    normalise_field_value,
    normalise_vary_values,
    parse_age,
    parse_cache_control,
    parse_delta_seconds,
    parse_etag,
    parse_http_date,
    parse_if_none_match,
    parse_surrogate_keys,
    parse_vary,
    strip_hop_by_hop,
    strong_match,
    vary_value,
    weak_match,
)

# RFC 9110 §5.6.7's example instant, Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE_TS = 784111777.0


# --- field access ----------------------------------------------------------------------------

def test_get_all_and_get_header_join_list_fields() -> None:
    """RFC 9110 §5.3: repeated lines of a list field combine as one comma-joined value."""
    headers = [(b"accept", b"a"), (b"x", b"1"), (b"accept", b"b")]
    assert get_all(headers, b"accept") == [b"a", b"b"]
    assert get_header(headers, b"accept") == b"a, b"
    assert get_header(headers, b"x") == b"1"
    assert get_header(headers, b"missing") is None
    assert get_all(headers, b"missing") == []


def test_get_header_takes_first_line_of_singleton_fields() -> None:
    """RFC 9110 §5.3: singleton fields (Date, Set-Cookie...) must not be joined."""
    headers = [(b"date", b"one"), (b"date", b"two"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    assert get_header(headers, b"date") == b"one"
    assert get_header(headers, b"set-cookie") == b"a=1"


def test_strip_hop_by_hop_removes_connection_and_named_fields() -> None:
    """RFC 9110 §7.6.1: Connection, the fields it names, and Keep-Alive/TE/... are removed."""
    headers = [(b"connection", b"close, X-Trace"), (b"x-trace", b"1"), (b"keep-alive", b"5"),
               (b"transfer-encoding", b"chunked"), (b"content-type", b"text/html")]
    assert strip_hop_by_hop(headers) == [(b"content-type", b"text/html")]
    assert strip_hop_by_hop([(b"upgrade", b"h2c"), (b"etag", b'"x"')]) == [(b"etag", b'"x"')]


# --- numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (b"0", 0), (b"60", 60), (b" 60\t", 60), (b"007", 7),
    (b"-1", None), (b"1.5", None), (b"", None), (b"+5", None), (b"sixty", None), (b"1 2", None),
])
def test_parse_delta_seconds(value: bytes, expected: int | None) -> None:
    """RFC 9111 §1.2.2: delta-seconds = 1*DIGIT, nothing else."""
    assert parse_delta_seconds(value) == expected


def test_parse_delta_seconds_clamps_to_two_to_the_31() -> None:
    """RFC 9111 §1.2.2: a value too large to represent is read as 2^31."""
    assert parse_delta_seconds(b"2147483648") == DELTA_SECONDS_MAX
    assert parse_delta_seconds(b"9999999999") == DELTA_SECONDS_MAX
    assert parse_delta_seconds(b"9" * 5000) == DELTA_SECONDS_MAX
    assert parse_delta_seconds(b"0" * 50 + b"12") == 12


def test_format_delta_seconds_floors_and_clamps() -> None:
    """RFC 9111 §5.1: Age is whole non-negative seconds."""
    assert format_delta_seconds(12.9) == b"12"
    assert format_delta_seconds(-3.0) == b"0"
    assert format_delta_seconds(1e20) == b"2147483648"


def test_parse_age_uses_first_member_and_ignores_invalid() -> None:
    """RFC 9111 §5.1: a list-valued Age uses its first member; an invalid Age is ignored."""
    assert parse_age(None) is None
    assert parse_age(b"10") == 10
    assert parse_age(b"10, 20") == 10
    assert parse_age(b"-5") is None
    assert parse_age(b"abc, 5") is None


# --- Cache-Control ---------------------------------------------------------------------------

def test_parse_cache_control_basic_response() -> None:
    """RFC 9111 §5.2.2: response directives, names compared case-insensitively."""
    cc = parse_cache_control(b"Public, MAX-AGE=60, s-maxage=120, must-revalidate, proxy-revalidate, "
                             b"stale-while-revalidate=30, stale-if-error=600, immutable, no-transform")
    assert cc == CacheDirectives(public=True, max_age=60, s_maxage=120, must_revalidate=True,
                                 proxy_revalidate=True, stale_while_revalidate=30, stale_if_error=600,
                                 immutable=True, no_transform=True)


def test_parse_cache_control_request_directives() -> None:
    """RFC 9111 §5.2.1: request directives share the grammar."""
    cc = parse_cache_control([b"max-age=0, min-fresh=5", b"max-stale=10, only-if-cached, no-store"])
    assert cc == CacheDirectives(max_age=0, min_fresh=5, max_stale=10, only_if_cached=True, no_store=True)


def test_parse_cache_control_empty_is_no_directives() -> None:
    """An empty field carries no directives."""
    assert parse_cache_control(b"") is NO_DIRECTIVES
    assert parse_cache_control([]) is NO_DIRECTIVES
    assert parse_cache_control(b" , ,") == NO_DIRECTIVES


def test_parse_cache_control_quoted_arguments() -> None:
    """RFC 9111 §5.2: arguments may be quoted-strings, which recipients must accept."""
    cc = parse_cache_control(b'max-age="60", s-maxage = "7"')
    assert (cc.max_age, cc.s_maxage) == (60, 7)


def test_parse_cache_control_qualified_no_cache_and_private() -> None:
    """RFC 9111 §5.2.2.4 and §5.2.2.7: quoted field-name lists, which may contain commas."""
    cc = parse_cache_control(b'no-cache="Set-Cookie, X-Foo", private="Authorization", max-age=5')
    assert cc.no_cache
    assert cc.no_cache_fields == (b"set-cookie", b"x-foo")
    assert cc.private
    assert cc.private_fields == (b"authorization",)
    assert cc.max_age == 5


def test_unqualified_no_cache_and_private_beat_field_lists() -> None:
    """An unqualified no-cache/private is stronger than any qualified one in the same field."""
    cc = parse_cache_control(b'no-cache="a", no-cache, private, private="b"')
    assert cc.no_cache
    assert cc.no_cache_fields == ()
    assert cc.private
    assert cc.private_fields == ()


def test_quoted_pair_is_unescaped() -> None:
    """RFC 9110 §5.6.4: a backslash quotes the next octet inside a quoted-string."""
    assert parse_cache_control(b'no-cache="a\\-b"').no_cache_fields == (b"a-b",)


def test_invalid_max_age_reads_as_stale() -> None:
    """RFC 9111 §4.2.1: invalid freshness information (non-integer max-age) means stale."""
    assert parse_cache_control(b"max-age=abc").max_age == 0
    assert parse_cache_control(b"max-age").max_age == 0
    assert parse_cache_control(b"s-maxage=-1").s_maxage == 0
    assert parse_cache_control(b"max-age=").max_age == 0


def test_invalid_permissive_arguments_are_ignored() -> None:
    """Invalid stale-* / max-stale / min-fresh arguments grant nothing."""
    cc = parse_cache_control(b"stale-while-revalidate=x, stale-if-error, min-fresh=1.5, max-stale=y")
    assert cc == CacheDirectives()


def test_duplicate_directives_first_wins() -> None:
    """RFC 9111 §4.2.1: with duplicates, the first occurrence is used."""
    assert parse_cache_control(b"max-age=10, max-age=20").max_age == 10
    assert parse_cache_control([b"max-age=bad", b"max-age=20"]).max_age == 0
    assert parse_cache_control(b"stale-if-error=5, stale-if-error=9").stale_if_error == 5


def test_max_stale_bare_and_valued() -> None:
    """RFC 9111 §5.2.1.2: bare max-stale accepts any staleness; the first occurrence wins."""
    assert parse_cache_control(b"max-stale") == CacheDirectives(max_stale_any=True)
    assert parse_cache_control(b"max-stale, max-stale=5") == CacheDirectives(max_stale_any=True)
    assert parse_cache_control(b"max-stale=5, max-stale") == CacheDirectives(max_stale=5)


def test_junk_and_unknown_directives_are_skipped() -> None:
    """RFC 9111 §5.2.3: unknown extensions are ignored; junk elements are tolerated."""
    cc = parse_cache_control(b'=5, max-age 5, "quoted", foo=bar, community="UCI", no-store')
    assert cc == CacheDirectives(no_store=True)


def test_must_understand_and_no_store() -> None:
    """RFC 9111 §5.2.2.3: must-understand is a plain flag."""
    expected = CacheDirectives(must_understand=True, no_store=True)
    assert parse_cache_control(b"must-understand, no-store") == expected


def test_unterminated_quote_never_raises() -> None:
    """Parsers never raise on bad input: an unterminated quote swallows the rest."""
    assert parse_cache_control(b'no-cache="abc, max-age=5').no_cache
    assert parse_cache_control(b'private="x\\').private


def test_pragma_no_cache() -> None:
    """RFC 9111 §5.4: Pragma: no-cache, possibly among other pragma directives."""
    assert is_pragma_no_cache(b"no-cache")
    assert is_pragma_no_cache(b"foo, No-Cache ")
    assert not is_pragma_no_cache(b"no-cache-please")
    assert not is_pragma_no_cache(None)


# --- dates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    b"Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
    b"Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
    b"Sun Nov  6 08:49:37 1994",  # ANSI C's asctime() format
    b"  sun, 06 nov 1994 08:49:37 gmt ",
])
def test_parse_http_date_three_formats(value: bytes) -> None:
    """RFC 9110 §5.6.7: recipients accept all three formats."""
    assert parse_http_date(value) == EXAMPLE_TS


@pytest.mark.parametrize("value", [
    b"", b"0", b"-1", b"yesterday", b"Sun, 06 Nov 1994 08:49:37",
    b"Sun, 31 Feb 1994 08:49:37 GMT", b"Sun, 06 Nov 1994 24:00:00 GMT", b"Sun, 06 Nov 1994 08:60:00 GMT",
    b"Sun, 06 Nov 1994 08:49:61 GMT", b"Sun, 00 Nov 1994 08:49:37 GMT", b"Sun, 06 Nov 0000 08:49:37 GMT",
    b"Sun, 06 Nov 1994 08:49:37 UTC", b"Sun, 6 Nov 1994 08:49:37 GMT",
])
def test_parse_http_date_invalid_is_none(value: bytes) -> None:
    """RFC 9110 §5.6.7: anything else is not an HTTP-date."""
    assert parse_http_date(value) is None


def test_parse_http_date_leap_year_and_leap_second() -> None:
    """Feb 29 exists in leap years; second 60 is a leap second (RFC 5322 §3.3)."""
    assert parse_http_date(b"Thu, 29 Feb 1996 00:00:00 GMT") is not None
    assert parse_http_date(b"Fri, 29 Feb 1995 00:00:00 GMT") is None
    next_minute = parse_http_date(b"Sun, 01 Jan 2017 00:00:00 GMT")
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT") == next_minute


def test_rfc850_two_digit_year_without_now() -> None:
    """Without a clock, two-digit years are read as 1970-2069."""
    assert parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
    year_2049 = parse_http_date(b"Fri, 01 Jan 2049 00:00:00 GMT")
    assert parse_http_date(b"Friday, 01-Jan-49 00:00:00 GMT") == year_2049


def test_rfc850_fifty_year_rule() -> None:
    """RFC 9110 §5.6.7: a date more than 50 years in the future is the last past year with those digits."""
    now = parse_http_date(b"Wed, 01 Jan 2025 00:00:00 GMT")
    assert parse_http_date(b"Friday, 01-Jan-49 00:00:00 GMT", now=now) == parse_http_date(
        b"Fri, 01 Jan 2049 00:00:00 GMT")
    assert parse_http_date(b"Monday, 01-Jan-80 00:00:00 GMT", now=now) == parse_http_date(
        b"Tue, 01 Jan 1980 00:00:00 GMT")


def test_format_http_date_is_imf_fixdate() -> None:
    """RFC 9110 §5.6.7: senders generate IMF-fixdate; fractions are floored."""
    assert format_http_date(EXAMPLE_TS + 0.9) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert parse_http_date(format_http_date(1_700_000_000)) == 1_700_000_000.0


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 1e20, -1e14])
def test_format_http_date_rejects_unrepresentable(ts: float) -> None:
    """Only years 1-9999 have an IMF-fixdate."""
    with pytest.raises(ValueError, match="not a representable HTTP-date"):
        format_http_date(ts)


# --- entity tags -----------------------------------------------------------------------------

def test_parse_etag() -> None:
    """RFC 9110 §8.8.3: entity-tag = [ W/ ] DQUOTE *etagc DQUOTE."""
    assert parse_etag(b'"xyzzy"') == ETag(weak=False, opaque=b"xyzzy")
    assert parse_etag(b' W/"xyzzy" ') == ETag(weak=True, opaque=b"xyzzy")
    assert parse_etag(b'""') == ETag(weak=False, opaque=b"")
    assert parse_etag(None) is None
    for bad in (b"xyzzy", b'w/"x"', b'"a"b"', b'"x', b'"a" "b"'):
        assert parse_etag(bad) is None


def test_format_etag_round_trip() -> None:
    """format_etag is parse_etag's inverse."""
    for value in (b'"x"', b'W/"x"', b'""'):
        tag = parse_etag(value)
        assert tag is not None
        assert format_etag(tag) == value


@pytest.mark.parametrize("opaque", [b'a"b', b"a b", b"\x7f", b"\n"])
def test_etag_rejects_non_etagc(opaque: bytes) -> None:
    """RFC 9110 §8.8.3: etagc excludes DQUOTE, space, controls and DEL; the value object refuses them."""
    with pytest.raises(ValueError, match="etagc"):
        ETag(weak=False, opaque=opaque)


@pytest.mark.parametrize(("a", "b", "strong", "weak"), [
    (b'W/"1"', b'W/"1"', False, True),
    (b'W/"1"', b'W/"2"', False, False),
    (b'W/"1"', b'"1"', False, True),
    (b'"1"', b'"1"', True, True),
])
def test_etag_comparison_table(a: bytes, b: bytes, strong: bool, weak: bool) -> None:
    """RFC 9110 §8.8.3.2: the comparison table, row by row."""
    tag_a, tag_b = parse_etag(a), parse_etag(b)
    assert tag_a is not None
    assert tag_b is not None
    assert strong_match(tag_a, tag_b) is strong
    assert weak_match(tag_a, tag_b) is weak


def test_parse_if_none_match() -> None:
    """RFC 9110 §13.1.2: If-None-Match = "*" / #entity-tag (empty list elements allowed)."""
    assert parse_if_none_match(b"*") == "*"
    assert parse_if_none_match(b" * ") == "*"
    assert parse_if_none_match(b'"xyzzy"') == [ETag(weak=False, opaque=b"xyzzy")]
    assert parse_if_none_match([b'W/"a", "b,c"', b' , "d"']) == [
        ETag(weak=True, opaque=b"a"), ETag(weak=False, opaque=b"b,c"), ETag(weak=False, opaque=b"d")]
    assert parse_if_none_match(b', "a" ,, ') == [ETag(weak=False, opaque=b"a")]


@pytest.mark.parametrize("value", [b"", b"xyzzy", b'"a" "b"', b'"a", *', b'"a", b', b'"unterminated'])
def test_parse_if_none_match_invalid(value: bytes) -> None:
    """An unparseable If-None-Match is reported as None, never raised."""
    assert parse_if_none_match(value) is None


# --- Vary, Surrogate-Key ---------------------------------------------------------------------

def test_parse_vary() -> None:
    """RFC 9110 §12.5.5: Vary lists field names (case-insensitive), or "*"."""
    vary = parse_vary(b"Accept-Encoding, accept-language, ACCEPT-ENCODING")
    assert vary == (b"accept-encoding", b"accept-language")
    assert parse_vary([b"accept", b" , cookie"]) == (b"accept", b"cookie")
    assert parse_vary(b"") == ()
    assert parse_vary([]) == ()
    assert parse_vary(b"accept, *") == "*"
    assert parse_vary(b"accept, bad name") == "*"


def test_normalise_field_value() -> None:
    """RFC 9111 §4.1: whitespace and list separators are normalised; case is kept."""
    assert normalise_field_value(b"  gzip ,br,\t Deflate  ") == b"gzip, br, Deflate"
    assert normalise_field_value(b"text/html;  q=0.9") == b"text/html; q=0.9"


def test_normalise_vary_values_absent_differs_from_empty() -> None:
    """RFC 9111 §4.1: an absent field matches only an absent field."""
    request = [(b"accept-encoding", b"gzip"), (b"accept-encoding", b"br"), (b"accept-language", b"")]
    assert normalise_vary_values((b"accept-encoding", b"accept-language", b"cookie"), request) == (
        b"gzip, br", b"", None)
    assert vary_value(request, b"accept-encoding") == b"gzip, br"
    assert vary_value(request, b"cookie") is None


def test_parse_surrogate_keys() -> None:
    """Surrogate-Key is a space-separated key list (Fastly); repeats collapse."""
    assert parse_surrogate_keys(b"post/1  tag/news post/1") == (b"post/1", b"tag/news")
    assert parse_surrogate_keys([b"a b", b"c a"]) == (b"a", b"b", b"c")
    assert parse_surrogate_keys([]) == ()


# --- Cache-Status ----------------------------------------------------------------------------

def test_format_cache_status_hit() -> None:
    """RFC 9211 §2.1, §2.5: a hit with its remaining freshness in whole seconds."""
    assert format_cache_status(hit=True, ttl=123.9) == b"edgeproxy; hit; ttl=123"
    assert format_cache_status(True, None, -0.5) == b"edgeproxy; hit; ttl=-1"


def test_format_cache_status_forwarded() -> None:
    """RFC 9211 §2.2-2.4, §2.6-2.7: fwd, fwd-status, stored, collapsed."""
    assert format_cache_status(fwd="miss", stored=True) == b"edgeproxy; fwd=miss; stored"
    assert format_cache_status(fwd="stale", fwd_status=304, ttl=30, collapsed=True) == (
        b"edgeproxy; fwd=stale; fwd-status=304; ttl=30; collapsed")
    assert format_cache_status() == b"edgeproxy"


def test_format_cache_status_detail() -> None:
    """RFC 9211 §2.8: detail is a token or a string."""
    assert format_cache_status(detail="stale-if-error") == b"edgeproxy; detail=stale-if-error"
    expected = b'edgeproxy; detail="origin \\"down\\" \\\\ ?"'
    assert format_cache_status(detail='origin "down" \\ é') == expected


def test_format_cache_status_rejects_bad_fwd() -> None:
    """fwd must be a token: anything else is a caller bug."""
    with pytest.raises(ValueError, match="token"):
        format_cache_status(fwd="two words")
