"""ISO 8601 in, UTC with ``Z`` out.

YAML hands us ``datetime``/``date`` objects or strings; output is always
``YYYY-MM-DDTHH:MM:SSZ`` so that string order is time order (the index and keyset
cursors rely on that).
"""

from __future__ import annotations

import datetime as dt
import functools

UTC = dt.UTC


class DateParseError(ValueError):
    """A value is not an ISO 8601 date or date-time."""


def to_utc(value: object) -> dt.datetime:
    """Normalise a YAML value to an aware UTC datetime (naive values are read as UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise DateParseError(
                f"{value!r} is not an ISO 8601 date (write 2026-11-02T09:30:00Z)"
            ) from None
    else:
        raise DateParseError(f"{value!r} is not a date (write 2026-11-02T09:30:00Z)")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_iso(moment: dt.datetime) -> str:
    """UTC, second precision, ``Z`` designator."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise(value: object) -> str:
    """Any accepted date value → canonical ISO string."""
    return format_iso(to_utc(value))


def from_epoch(seconds: float) -> str:
    return format_iso(dt.datetime.fromtimestamp(seconds, UTC))


def display(iso: str) -> str:
    """``2026-11-02T09:30:00Z`` → ``2 Nov 2026`` (templates' ``date`` filter)."""
    if len(iso) == 20 and iso[10] == "T" and iso[19] == "Z":  # normalised UTC: the day is all it shows
        return _display_day(iso[:10])
    return _display(iso)


@functools.lru_cache(maxsize=4096)  # listings show the same days again and again
def _display_day(day: str) -> str:
    return _display(day + "T00:00:00Z")


def _display(iso: str) -> str:
    moment = to_utc(iso)
    return f"{moment.day} {moment.strftime('%b %Y')}"
