"""Header-field parsers for the cache: bytes in, typed values out (pure core).

Theory of operation
-------------------
Headers are ``list[tuple[bytes, bytes]]`` with lowercase names, exactly as the protocol
adapters hand them over. Values stay ``bytes`` until a caller needs a number, a date or a
set of directives; then one function here turns them into a frozen value. Every pattern is
a regular expression compiled once at import from the ABNF it implements (RFC 9110 §5.6,
h11 ``_abnf.py`` style); nothing is tokenised character by character.

Parsers here *never raise on bad input*: what a peer sends is data, and the RFC says how to
read junk. Each parser's docstring states what junk becomes (usually ``None``, "absent").
The directive parser also memoises whole field values, because clients send the same few
``Cache-Control`` values (``max-age=0``, ``no-cache``) over and over.

Duplicate directives: the first occurrence wins (RFC 9111 §4.2.1 allows "first occurrence"
or "stale"); ``no-cache``/``private`` accumulate, and an unqualified one beats any field list.
Invalid arguments: ``max-age``/``s-maxage`` read as 0, i.e. stale (RFC 9111 §4.2.1 encourages
that); permissive or request-tuning directives (``max-stale=x``, ``min-fresh=x``,
``stale-while-revalidate=x``, ``stale-if-error=x``) are ignored, which is the restrictive
reading for each.

Targeted fields (``CDN-Cache-Control``, RFC 9213) are Structured Field Dictionaries, parsed by
``http_sf`` and not by the lenient Cache-Control reader: a field that does not parse is ignored
whole (as if absent), and a member of the wrong type (``max-age="60"``) is not used.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import http_sf

Headers = list[tuple[bytes, bytes]]

# RFC 9111 §1.2.2: a delta-seconds too large to represent is read as 2^31.
DELTA_SECONDS_MAX = 2**31
# More digits than this cannot be below DELTA_SECONDS_MAX; checked before int() so a hostile
# 10 kB number never reaches int() (and its 4300-digit limit, CVE-2020-10735).
_DELTA_DIGITS_MAX = 10
# Distinct Cache-Control values remembered by the parser memo; clients repeat a handful.
CACHE_CONTROL_MEMO_SIZE = 512
# Distinct Vary-nominated request values remembered (Accept-Encoding and friends repeat too).
VARY_MEMO_SIZE = 1024

# Fields that are singletons (RFC 9110 §5.3): never join repeated lines, take the first.
# Set-Cookie is here because joining it corrupts it (RFC 9110 §5.3 calls it out); use get_all.
SINGLETON_FIELDS = frozenset({
    b"age", b"authorization", b"content-length", b"content-location", b"content-range",
    b"content-type", b"date", b"etag", b"expires", b"host", b"if-modified-since", b"if-range",
    b"if-unmodified-since", b"last-modified", b"location", b"retry-after", b"set-cookie",
})
# Connection-specific fields an intermediary removes before forwarding (RFC 9110 §7.6.1, plus
# RFC 2616 §13.5.1's Trailer); fields named in Connection are removed as well.
HOP_BY_HOP_FIELDS = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade",
})

# --- ABNF (RFC 9110 §5.6) -------------------------------------------------------------------
_OWS = rb"[ \t]*"
_TCHAR = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"
_TOKEN = _TCHAR + rb"+"
_ETAGC = rb"[\x21\x23-\x7e\x80-\xff]"  # RFC 9110 §8.8.3
_ENTITY_TAG = rb'(W/)?"(' + _ETAGC + rb'*)"'

_TOKEN_RE = re.compile(_TOKEN)
_DIGITS_RE = re.compile(rb"[0-9]+")
# One list element of a #rule, with quoted-strings kept whole (they may contain commas).
_LIST_ELEMENT_RE = re.compile(rb'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+', re.S)
# cache-directive = token [ "=" ( token / quoted-string ) ]  (RFC 9111 §5.2); the argument is
# captured loosely so a malformed one is still attributed to its directive.
# (A greedy ``.*`` stripped afterwards: a lazy one before OWS is quadratic on long blank runs.)
_DIRECTIVE_RE = re.compile(_OWS + rb"(" + _TOKEN + rb")" + _OWS + rb"(?:=(.*))?", re.S)
_QUOTED_PAIR_RE = re.compile(rb"\\(.)", re.S)
_ETAG_RE = re.compile(_OWS + _ENTITY_TAG + _OWS)
_ETAGCS_RE = re.compile(_ETAGC + rb"*")
_ENTITY_TAG_RE = re.compile(_ENTITY_TAG)
# If-None-Match = "*" / #entity-tag  (RFC 9110 §13.1.2); empty list elements are allowed.
_ETAG_LIST_RE = re.compile(
    rb"(?:" + _OWS + rb",)*" + _OWS + _ENTITY_TAG
    + rb"(?:" + _OWS + rb"," + rb"(?:" + _OWS + rb",)*" + _OWS + _ENTITY_TAG + rb")*"
    + rb"(?:" + _OWS + rb",)*" + _OWS
)
_PRAGMA_NO_CACHE_RE = re.compile(rb"(?:^|,)" + _OWS + rb"no-cache" + _OWS + rb"(?:,|$)", re.I)
_WS_RUN_RE = re.compile(rb"[ \t]+")
_COMMA_OWS_RE = re.compile(_OWS + rb"," + _OWS)

# HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, obsolete RFC 850 and asctime forms.
_MONTHS = (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, start=1)}
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February grows in leap years
_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_LONG = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = rb"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# Day and month names are case-sensitive in the ABNF; we accept any case, as §5.6.7 asks
# recipients to be robust.
_IMF_FIXDATE_RE = re.compile(_DAY + rb", ([0-9]{2}) " + _MONTH + rb" ([0-9]{4}) " + _TIME + rb" GMT", re.I)
_RFC850_DATE_RE = re.compile(
    _DAY_LONG + rb", ([0-9]{2})-" + _MONTH + rb"-([0-9]{2}) " + _TIME + rb" GMT", re.I
)
_ASCTIME_DATE_RE = re.compile(_DAY + rb" " + _MONTH + rb" ([0-9]{2}| [0-9]) " + _TIME + rb" ([0-9]{4})", re.I)
_DAY_NAMES = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTH_NAMES = tuple(name.capitalize() for name in _MONTHS)
_EPOCH = dt.datetime(1970, 1, 1)
_SF_TOKEN_RE = re.compile(r"[A-Za-z*][-!#$%&'*+.^_`|~0-9A-Za-z:/]*")  # RFC 8941 §3.3.4

# Cache-Status cache name (RFC 9211 §2).
CACHE_NAME = b"edgeproxy"


# --- field access -----------------------------------------------------------------------------

def get_all(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every value of field ``name`` (lowercase), in order."""
    return [value for key, value in headers if key == name]


def get_header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of ``name``, or None when absent.

    Repeated lines of a list field are joined with ``b", "`` (RFC 9110 §5.3); for a
    singleton field (``SINGLETON_FIELDS``) the first line is returned.
    """
    values = [value for key, value in headers if key == name]
    if not values:
        return None
    if len(values) == 1 or name in SINGLETON_FIELDS:
        return values[0]
    return b", ".join(values)


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Drop Connection, the fields it names and the other hop-by-hop fields (RFC 9110 §7.6.1)."""
    fields = list(headers)
    connection = get_all(fields, b"connection")
    drop = HOP_BY_HOP_FIELDS
    if connection:
        drop = drop | {token.strip(b" \t").lower() for token in b",".join(connection).split(b",")}
    return [(key, value) for key, value in fields if key not in drop]


def _join(values: Sequence[bytes] | bytes) -> bytes:
    return values if isinstance(values, bytes) else b",".join(values)


# --- numbers ----------------------------------------------------------------------------------

def parse_delta_seconds(value: bytes) -> int | None:
    """``delta-seconds = 1*DIGIT`` (RFC 9111 §1.2.2), OWS allowed around it.

    Returns None for anything else (signs, decimals, empty); values past 2^31 read as 2^31.
    """
    value = value.strip(b" \t")
    if not _DIGITS_RE.fullmatch(value):
        return None
    if len(value.lstrip(b"0")) > _DELTA_DIGITS_MAX:
        return DELTA_SECONDS_MAX
    return min(int(value), DELTA_SECONDS_MAX)


def format_delta_seconds(seconds: float) -> bytes:
    """Whole non-negative seconds for ``Age`` (RFC 9111 §5.1): floored, clamped to [0, 2^31]."""
    return str(int(min(max(seconds, 0.0), DELTA_SECONDS_MAX))).encode()


def parse_age(value: bytes | None) -> int | None:
    """The ``Age`` field (RFC 9111 §5.1): the first list member; None when absent or invalid.

    §5.1: a list-valued Age uses its first member, and an invalid value is ignored.
    """
    if value is None:
        return None
    return parse_delta_seconds(value.split(b",", 1)[0])


# --- Cache-Control ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CacheDirectives:
    """Parsed ``Cache-Control`` (or a targeted field) of a request or a response.

    Integer fields are delta-seconds, None when the directive is absent (or, for permissive
    ones, invalid). Request-only and response-only directives share one type, as in hishel.
    """

    max_age: int | None = None
    s_maxage: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    min_fresh: int | None = None
    max_stale: int | None = None
    max_stale_any: bool = False
    """Bare ``max-stale``: any staleness is acceptable (RFC 9111 §5.2.1.2)."""
    no_cache: bool = False
    no_cache_fields: tuple[bytes, ...] = ()
    """Field names of a qualified ``no-cache="a, b"``; empty when unqualified or absent."""
    private: bool = False
    private_fields: tuple[bytes, ...] = ()
    no_store: bool = False
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    only_if_cached: bool = False
    immutable: bool = False
    no_transform: bool = False
    must_understand: bool = False


NO_DIRECTIVES = CacheDirectives()

_FLAG_DIRECTIVES = {
    b"no-store": "no_store", b"public": "public", b"must-revalidate": "must_revalidate",
    b"proxy-revalidate": "proxy_revalidate", b"only-if-cached": "only_if_cached",
    b"immutable": "immutable", b"no-transform": "no_transform", b"must-understand": "must_understand",
}
# Directives whose invalid argument reads as 0, i.e. stale (RFC 9111 §4.2.1).
_STRICT_DELTA_DIRECTIVES = {b"max-age": "max_age", b"s-maxage": "s_maxage"}
# Directives whose invalid argument is ignored.
_LOOSE_DELTA_DIRECTIVES = {
    b"stale-while-revalidate": "stale_while_revalidate", b"stale-if-error": "stale_if_error",
    b"min-fresh": "min_fresh", b"max-stale": "max_stale",
}


def parse_cache_control(values: Sequence[bytes] | bytes) -> CacheDirectives:
    """Parse ``Cache-Control`` field lines (RFC 9111 §5.2) into ``CacheDirectives``.

    Directive names are case-insensitive; arguments may be tokens or quoted-strings. Unknown
    directives and junk list elements are skipped. Never raises. See the module docstring
    for duplicates and invalid arguments.
    """
    return _parse_cache_control(_join(values))


def parse_targeted_cache_control(values: Sequence[bytes] | bytes) -> CacheDirectives | None:
    """A targeted field's lines (RFC 9213 §2.1) as ``CacheDirectives``, or None when they are not a
    valid Structured Field Dictionary: then the cache ignores the field, as if it were absent.

    Members take the directive's inferred type: the delta-seconds directives an Integer >= 0, the
    flags Boolean true, ``no-cache``/``private`` Boolean true or a String of field names. §2.1 says
    a value of another type SHOULD NOT be consumed, and a targeted field replaces Cache-Control
    whole, so such a value is read the restrictive way, as Cache-Control's invalid arguments are
    (module docstring): ``max-age``/``s-maxage`` as 0, a flag, ``no-cache`` or ``private`` as
    unqualified; the stale-* extensions are ignored. A flag that is Boolean false is absent.
    Unknown members and all parameters are ignored. Empty field lines are skipped. Never raises.
    """
    if isinstance(values, bytes):
        return _parse_targeted(values)
    return _parse_targeted(b", ".join(v for v in values if v.strip(b" \t")))


# RFC 9213 §2.1: response directives and the Structured Field type each takes.
_TARGETED_INTEGERS = {"max-age": "max_age", "s-maxage": "s_maxage",
                      "stale-while-revalidate": "stale_while_revalidate", "stale-if-error": "stale_if_error"}
_TARGETED_FLAGS = {"no-store": "no_store", "public": "public", "must-revalidate": "must_revalidate",
                   "proxy-revalidate": "proxy_revalidate", "immutable": "immutable",
                   "no-transform": "no_transform", "must-understand": "must_understand"}
_TARGETED_LISTS = {"no-cache": "no_cache", "private": "private"}


@functools.lru_cache(maxsize=CACHE_CONTROL_MEMO_SIZE)
def _parse_targeted(value: bytes) -> CacheDirectives | None:
    try:
        members = http_sf.parse(value, tltype="dictionary")
    except (http_sf.StructuredFieldError, ValueError):
        return None
    assert isinstance(members, dict)
    fields: dict[str, object] = {}
    for name, (item, _parameters) in members.items():
        if name in _TARGETED_INTEGERS:
            attribute = _TARGETED_INTEGERS[name]
            if type(item) is int and item >= 0:  # a bool is an int too: bare ``max-age`` is not one
                fields[attribute] = min(item, DELTA_SECONDS_MAX)
            elif attribute in ("max_age", "s_maxage"):
                fields[attribute] = 0  # stale, as an invalid max-age in Cache-Control
        elif name in _TARGETED_FLAGS:
            if item is not False:
                fields[_TARGETED_FLAGS[name]] = True
        elif name in _TARGETED_LISTS:
            attribute = _TARGETED_LISTS[name]
            if item is False:
                continue
            fields[attribute] = True
            names = _field_names(item.encode("ascii")) if type(item) is str else ()
            if names:
                fields[f"{attribute}_fields"] = names
    return CacheDirectives(**fields)  # type: ignore[arg-type]


def _unquote(argument: bytes) -> bytes:
    if len(argument) >= 2 and argument[0] == 0x22 and argument[-1] == 0x22:
        return _QUOTED_PAIR_RE.sub(rb"\1", argument[1:-1])
    return argument


def _field_names(argument: bytes) -> tuple[bytes, ...]:
    names = (name.strip(b" \t").lower() for name in argument.split(b","))
    return tuple(name for name in names if name)


@functools.lru_cache(maxsize=CACHE_CONTROL_MEMO_SIZE)
def _parse_cache_control(value: bytes) -> CacheDirectives:
    if not value:
        return NO_DIRECTIVES
    fields: dict[str, object] = {}
    no_cache_fields: list[bytes] = []
    private_fields: list[bytes] = []
    no_cache_unqualified = private_unqualified = False
    for element in _LIST_ELEMENT_RE.findall(value):
        match = _DIRECTIVE_RE.fullmatch(element)
        if match is None:
            continue  # junk element, e.g. '=5' or 'max-age 5'
        name = match[1].lower()
        raw = match[2]
        argument = None if raw is None else _unquote(raw.strip(b" \t"))
        if name in _FLAG_DIRECTIVES:
            fields[_FLAG_DIRECTIVES[name]] = True
        elif name in _STRICT_DELTA_DIRECTIVES:
            seconds = None if argument is None else parse_delta_seconds(argument)
            fields.setdefault(_STRICT_DELTA_DIRECTIVES[name], 0 if seconds is None else seconds)
        elif name == b"max-stale" and argument is None:
            if "max_stale" not in fields:  # a bare first occurrence means "any" (§5.2.1.2)
                fields["max_stale"] = None
                fields["max_stale_any"] = True
        elif name in _LOOSE_DELTA_DIRECTIVES:
            fields.setdefault(_LOOSE_DELTA_DIRECTIVES[name],
                              None if argument is None else parse_delta_seconds(argument))
        elif name == b"no-cache":
            if argument is None:
                no_cache_unqualified = True
            else:
                no_cache_fields.extend(_field_names(argument))
            fields["no_cache"] = True
        elif name == b"private":
            if argument is None:
                private_unqualified = True
            else:
                private_fields.extend(_field_names(argument))
            fields["private"] = True
    if no_cache_fields and not no_cache_unqualified:
        fields["no_cache_fields"] = tuple(dict.fromkeys(no_cache_fields))
    if private_fields and not private_unqualified:
        fields["private_fields"] = tuple(dict.fromkeys(private_fields))
    return CacheDirectives(**fields)  # type: ignore[arg-type]


def is_pragma_no_cache(value: bytes | None) -> bool:
    """True when a ``Pragma`` value holds ``no-cache`` (RFC 9111 §5.4)."""
    return value is not None and _PRAGMA_NO_CACHE_RE.search(value) is not None


# --- dates ------------------------------------------------------------------------------------

def parse_http_date(value: bytes, *, now: float | None = None) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as epoch seconds, or None when it is not one.

    Accepts IMF-fixdate, RFC 850 and asctime forms, case-insensitively, with surrounding OWS.
    RFC 850's two-digit year is resolved with the 50-year rule of §5.6.7 against ``now``;
    without ``now`` it is read as 1970–2069 (the POSIX ``%y`` pivot).
    """
    value = value.strip(b" \t")
    if match := _IMF_FIXDATE_RE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        full_year = int(year)
    elif match := _RFC850_DATE_RE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        full_year = _two_digit_year(int(year), now)
    elif match := _ASCTIME_DATE_RE.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
        full_year = int(year)
    else:
        return None
    return _timestamp(full_year, _MONTH_NUMBER[month.lower()], int(day), int(hour), int(minute), int(second))


def _two_digit_year(year: int, now: float | None) -> int:
    if now is None:
        return year + (1900 if year >= 70 else 2000)
    this_year = (_EPOCH + dt.timedelta(seconds=now)).year
    candidate = this_year - this_year % 100 + year
    # §5.6.7: more than 50 years in the future means the most recent past year with those digits.
    return candidate - 100 if candidate > this_year + 50 else candidate


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    days_in_month = _DAYS_IN_MONTH[month] + (month == 2 and calendar.isleap(year))
    # second 60 is a leap second (RFC 5322 §3.3); timegm carries it into the next minute.
    if year < 1 or not 1 <= day <= days_in_month or hour > 23 or minute > 59 or second > 60:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))


def format_http_date(ts: float) -> bytes:
    """IMF-fixdate for epoch seconds ``ts`` (floored), e.g. ``b"Sun, 06 Nov 1994 08:49:37 GMT"``.

    Raises:
        ValueError: ``ts`` is not finite or falls outside the years 1–9999.
    """
    try:
        moment = _EPOCH + dt.timedelta(seconds=int(ts // 1))
    except (OverflowError, ValueError):
        raise ValueError(f"{ts!r} is not a representable HTTP-date") from None
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAY_NAMES[moment.weekday()], moment.day, _MONTH_NAMES[moment.month - 1], moment.year,
        moment.hour, moment.minute, moment.second,
    )


# --- entity tags ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ETag:
    """An entity-tag (RFC 9110 §8.8.3); ``opaque`` is the text between the quotes."""

    weak: bool
    opaque: bytes

    def __post_init__(self) -> None:
        if not _ETAGCS_RE.fullmatch(self.opaque):
            raise ValueError(f"an entity-tag holds only etagc octets, not {self.opaque!r}")


def parse_etag(value: bytes | None) -> ETag | None:
    """``ETag`` field value → ``ETag``; None when absent or not a quoted entity-tag."""
    if value is None:
        return None
    match = _ETAG_RE.fullmatch(value)
    if match is None:
        return None
    return ETag(weak=match[1] is not None, opaque=match[2])


def format_etag(etag: ETag) -> bytes:
    """The inverse of ``parse_etag``: ``W/"x"`` or ``"x"``."""
    return b'%s"%s"' % (b"W/" if etag.weak else b"", etag.opaque)


def parse_if_none_match(values: Sequence[bytes] | bytes) -> list[ETag] | Literal["*"] | None:
    """``If-None-Match`` (RFC 9110 §13.1.2): ``"*"``, a list of tags, or None if unparseable."""
    value = _join(values)
    if value.strip(b" \t") == b"*":
        return "*"
    if not _ETAG_LIST_RE.fullmatch(value):
        return None
    return [ETag(weak=m[1] is not None, opaque=m[2]) for m in _ENTITY_TAG_RE.finditer(value)]


def weak_match(a: ETag, b: ETag) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): opaque tags equal, weakness ignored."""
    return a.opaque == b.opaque


def strong_match(a: ETag, b: ETag) -> bool:
    """Strong comparison (RFC 9110 §8.8.3.2): neither is weak and opaque tags are equal."""
    return not a.weak and not b.weak and a.opaque == b.opaque


# --- Vary, Surrogate-Key ----------------------------------------------------------------------

def parse_vary(values: Sequence[bytes] | bytes) -> tuple[bytes, ...] | Literal["*"]:
    """``Vary`` (RFC 9110 §12.5.5): lowercase field names, deduplicated, in order.

    ``"*"`` when any member is ``*`` or is not a field name: a Vary we cannot read must not
    let one variant answer for another, and ``*`` never matches (RFC 9111 §4.1).
    """
    names: dict[bytes, None] = {}
    for element in _join(values).split(b","):
        name = element.strip(b" \t").lower()
        if not name:
            continue
        if name == b"*" or not _TOKEN_RE.fullmatch(name):
            return "*"
        names[name] = None
    return tuple(names)


@functools.lru_cache(maxsize=VARY_MEMO_SIZE)
def normalise_field_value(value: bytes) -> bytes:
    """Collapse OWS runs to one space and list separators to ``", "``; case kept (RFC 9111 §4.1).

    Memoised: it runs on every hit of a Vary'd entry, and clients repeat a few values.
    """
    return _COMMA_OWS_RE.sub(b", ", _WS_RUN_RE.sub(b" ", value.strip(b" \t")))


def normalise_vary_values(
    fields: tuple[bytes, ...], request_headers: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes | None, ...]:
    """The request's normalised value of each Vary-nominated field; None marks an absent field.

    Absent and empty differ: RFC 9111 §4.1 lets an absent field match only an absent field.
    """
    return tuple([vary_value(request_headers, name) for name in fields])


def vary_value(request_headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """One field's normalised request value for Vary matching; None when the field is absent.

    This is the ``request_vary_getter`` cache lookups need: it must agree with
    ``normalise_vary_values``, which produced ``Stored.vary_values``.
    """
    found = None  # a loop, not a list and a join: most fields appear once or not at all (hit path)
    for key, value in request_headers:
        if key == name:
            found = value if found is None else found + b"," + value
    return None if found is None else normalise_field_value(found)


def parse_surrogate_keys(values: Sequence[bytes] | bytes) -> tuple[bytes, ...]:
    """``Surrogate-Key`` (space-separated keys, Fastly/Varnish xkey convention), deduplicated."""
    joined = values if isinstance(values, bytes) else b" ".join(values)
    return tuple(dict.fromkeys(joined.split()))


# --- Cache-Status -----------------------------------------------------------------------------

def format_cache_status(
    hit: bool = False,
    fwd: str | None = None,
    ttl: float | None = None,
    stored: bool = False,
    detail: str | None = None,
    *,
    fwd_status: int | None = None,
    collapsed: bool = False,
) -> bytes:
    """One RFC 9211 ``Cache-Status`` member for this cache, e.g. ``b"edgeproxy; hit; ttl=123"``.

    ``ttl`` is floored to whole seconds (it may be negative); ``detail`` is written as a token
    when it is one, otherwise as a string with non-ASCII characters replaced by ``?``.

    Raises:
        ValueError: ``fwd`` is not a token (a caller bug).
    """
    parts = [CACHE_NAME]
    if hit:
        parts.append(b"hit")
    if fwd is not None:
        if not _SF_TOKEN_RE.fullmatch(fwd):
            raise ValueError(f"Cache-Status fwd must be a token, not {fwd!r}")
        parts.append(b"fwd=" + fwd.encode())
    if fwd_status is not None:
        parts.append(b"fwd-status=%d" % fwd_status)
    if ttl is not None:
        parts.append(b"ttl=%d" % math.floor(ttl))
    if stored:
        parts.append(b"stored")
    if collapsed:
        parts.append(b"collapsed")
    if detail is not None:
        parts.append(b"detail=" + _sf_token_or_string(detail))
    return b"; ".join(parts)


def _sf_token_or_string(text: str) -> bytes:
    if _SF_TOKEN_RE.fullmatch(text):
        return text.encode()
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return b'"%s"' % printable.replace("\\", "\\\\").replace('"', '\\"').encode()
