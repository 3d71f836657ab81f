"""``ranges``: the one byte range a Range field asks of a stored answer, and If-Range (RFC 9110 §14, §13.1.5)."""

from __future__ import annotations

import pytest

from edgeproxy.headers import ETag, format_http_date
from edgeproxy.ranges import UNSATISFIABLE, byte_range, if_range_holds


@pytest.mark.parametrize(("value", "expected"), [
    (b"bytes=0-0", (0, 0)), (b"bytes=2-5", (2, 5)), (b"bytes=7-", (7, 9)), (b"bytes=5-100", (5, 9)),
    (b"bytes=-3", (7, 9)), (b"bytes=-100", (0, 9)), (b"BYTES=1-1", (1, 1)), (b" bytes= 3-4 ", (3, 4)),
    (b"bytes=9-9", (9, 9)),
    (b"bytes=10-", UNSATISFIABLE), (b"bytes=10-20", UNSATISFIABLE), (b"bytes=-0", UNSATISFIABLE),
    (b"bytes=5-2", None), (b"bytes=-", None), (b"bytes=1-2,4-5", None), (b"items=1-2", None),
    (b"bytes=a-b", None), (b"bytes 1-2", None), (b"", None), (b"bytes=1-2;x", None),
    (b"bytes=" + b"9" * 20 + b"-", None),  # past 19 digits: not read as a number at all
])
def test_byte_range_of_ten_bytes(value: bytes, expected: object) -> None:
    assert byte_range(value, 10) == expected


def test_byte_range_of_nothing() -> None:
    """§14.1.1: of an empty representation only a suffix range is satisfiable, and no 206 can carry
    no bytes: the whole (empty) answer goes out. A first position is unsatisfiable."""
    assert byte_range(b"bytes=0-", 0) == UNSATISFIABLE
    assert byte_range(b"bytes=-5", 0) is None
    assert byte_range(b"bytes=-0", 0) == UNSATISFIABLE


STORED = ETag(weak=False, opaque=b"v1")
MODIFIED = 1_790_000_000.0
SENT = MODIFIED + 60  # the stored Date


@pytest.mark.parametrize(("value", "etag", "holds"), [
    (b'"v1"', STORED, True), (b'"v2"', STORED, False), (b'W/"v1"', STORED, False),
    (b'"v1"', ETag(weak=True, opaque=b"v1"), False), (b'"v1"', None, False),
    (format_http_date(MODIFIED), STORED, True), (format_http_date(MODIFIED + 1), STORED, False),
    (b"junk", STORED, False),
])
def test_if_range_is_a_strong_match(value: bytes, etag: ETag | None, holds: bool) -> None:
    """An entity-tag matches by strong comparison only; a date only when it is Last-Modified exactly."""
    assert if_range_holds(value, etag, MODIFIED, SENT) is holds


def test_if_range_date_needs_a_strong_last_modified() -> None:
    """§13.1.5 with §8.8.2.2: Last-Modified is a strong validator only a second or more before Date."""
    assert if_range_holds(format_http_date(MODIFIED), None, MODIFIED, MODIFIED + 1) is True
    assert if_range_holds(format_http_date(MODIFIED), None, MODIFIED, MODIFIED + 0.5) is False
    assert if_range_holds(format_http_date(MODIFIED), None, None, SENT) is False
