"""Conditional requests at the origin (RFC 9110 §13): If-None-Match, then If-Modified-Since."""

from __future__ import annotations

import datetime as dt
import email.utils


def etag_for(blob: str) -> str:
    """Strong ETag from the blob hash: unchanged bytes keep their ETag across builds."""
    return f'"{blob[:32]}"'


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` matches ``etag`` (so the answer is 304)."""
    if not header:
        return False
    header = header.strip()
    if header == "*":
        return True
    opaque = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate == opaque:
            return True
    return False


def http_date(epoch_s: float) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return email.utils.formatdate(int(epoch_s), usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Epoch seconds of an HTTP-date in any of its three forms (RFC 9110 §5.6.7), else None."""
    try:
        when = email.utils.parsedate_to_datetime(value.strip())  # ValueError for a day 99 too
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # "-0000" and asctime: GMT by definition
    return int(when.timestamp())


def not_modified(if_none_match: str | None, if_modified_since: str | None, *, etag: str,
                 last_modified: int | None) -> bool:
    """Should a GET/HEAD get 304 (RFC 9110 §13.2.2)? If-None-Match decides when present;
    otherwise If-Modified-Since, when it is a valid date not before ``last_modified``."""
    if if_none_match is not None:
        return none_match(if_none_match, etag)
    if if_modified_since is None or last_modified is None:
        return False
    since = parse_http_date(if_modified_since)
    return since is not None and last_modified <= since
