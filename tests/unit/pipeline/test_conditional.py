"""The origin's conditional requests (RFC 9110 §13), without sockets."""

from __future__ import annotations

import pytest

from pipeline.origin.conditional import http_date, not_modified, parse_http_date

EPOCH = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110 §5.6.7's example
ETAG = '"abc"'


@pytest.mark.parametrize("value", ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Sun Nov  6 08:49:37 1994"])
def test_http_date_in_its_three_forms(value: str) -> None:
    assert parse_http_date(value) == EPOCH


@pytest.mark.parametrize("value", ["", "garbage", "Sun, 99 Nov 1994 08:49:37 GMT"])
def test_not_a_date_is_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(EPOCH) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(("inm", "ims", "expected"), [
    (None, "Sun, 06 Nov 1994 08:49:37 GMT", True),  # not modified since exactly then
    (None, "Sun, 06 Nov 1994 08:49:38 GMT", True),
    (None, "Sun, 06 Nov 1994 08:49:36 GMT", False),  # modified one second later
    (None, "not a date", False),  # an invalid date is ignored (§13.1.3)
    (None, None, False),
    ('"abc"', None, True),
    ('"other"', "Sun, 06 Nov 1994 08:49:38 GMT", False),  # If-None-Match decides alone (§13.2.2)
    ('"abc"', "Sun, 06 Nov 1994 08:49:36 GMT", True),
])
def test_if_none_match_first_then_if_modified_since(inm: str | None, ims: str | None, expected: bool) -> None:
    assert not_modified(inm, ims, etag=ETAG, last_modified=EPOCH) is expected


def test_no_last_modified_never_matches_a_date() -> None:
    assert not not_modified(None, "Sun, 06 Nov 1994 08:49:37 GMT", etag=ETAG, last_modified=None)
