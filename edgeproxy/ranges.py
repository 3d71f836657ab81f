"""Byte ranges of a stored answer (RFC 9110 §14): which part of a complete cached 200 a Range
request asks for, and whether its If-Range still holds. Pure.

Why: a seek into cached media, or a resumed download, should be answered from the stored copy
with a 206, as nginx's range filter and Varnish do, not forwarded to the origin every time.

What is served: one byte range (``bytes=first-last``, ``bytes=first-``, ``bytes=-suffix``),
case-insensitive unit. Several ranges, another unit or a malformed value return None: the whole
representation goes out as a 200, which RFC 9110 §14.2 allows ("a server MAY ignore the Range
header field"). A range that starts past the end is unsatisfiable (416, §15.5.17).
"""

from __future__ import annotations

import re
from typing import Final, Literal

from edgeproxy.headers import ETag, Headers, get_header, parse_etag, parse_http_date
from edgeproxy.policy import Stored

UNSATISFIABLE: Final = "unsatisfiable"
# RFC 9110 §14.1.2: ranges-specifier = range-unit "=" range-set; one int-range or suffix-range here.
# Nineteen digits at most: a position is below 2^63 and never reaches int() as a 10 kB number.
_BYTE_RANGE_RE = re.compile(rb"[ \t]*bytes=[ \t]*(\d{0,19})-(\d{0,19})[ \t]*", re.IGNORECASE)


def asked_part(request_headers: Headers, stored: Stored, length: int) -> tuple[int, int] | Literal[
        "unsatisfiable"] | None:
    """The part of a stored 200 of ``length`` bytes that the request's Range asks for, when its
    If-Range (if any) holds: ``byte_range``'s answer, or None for the whole answer."""
    asked = get_header(request_headers, b"range")
    if asked is None:
        return None
    condition = get_header(request_headers, b"if-range")
    if condition is not None and not if_range_holds(condition, stored.etag, stored.last_modified, stored.date_value):
        return None
    return byte_range(asked, length)


def byte_range(value: bytes, length: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The one range ``value`` asks of a representation of ``length`` bytes, as (first, last),
    both inclusive; ``UNSATISFIABLE``; or None when it is not a single byte range we serve."""
    match = _BYTE_RANGE_RE.fullmatch(value)
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first:
        if not last:
            return None  # "bytes=-": neither a first position nor a suffix length
        suffix = int(last)  # §14.1.2: the final suffix bytes, all of them when it is longer
        if not suffix:
            return UNSATISFIABLE
        # §14.1.1: satisfiable even when the representation is empty, but no 206 can say "no bytes":
        # the whole (empty) 200 answers.
        return (max(0, length - suffix), length - 1) if length else None
    start = int(first)
    if last and int(last) < start:
        return None  # §14.1.1: an invalid range-spec; the field is ignored
    if start >= length:
        return UNSATISFIABLE
    end = min(int(last), length - 1) if last else length - 1  # a last position past the end: to the end
    return start, end


def if_range_holds(value: bytes, etag: ETag | None, last_modified: float | None, date: float) -> bool:
    """RFC 9110 §13.1.5: an entity-tag matches by strong comparison (a weak tag never does), a date
    only when it is exactly the stored Last-Modified and that is a strong validator: at least a
    second before the stored Date (§8.8.2.2; within the same second the file may have changed
    twice). When it does not hold, Range is ignored."""
    given = parse_etag(value)
    if given is not None:
        return etag is not None and not given.weak and not etag.weak and given.opaque == etag.opaque
    when = parse_http_date(value)
    return when is not None and when == last_modified and date - when >= 1
