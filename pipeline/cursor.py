"""Opaque keyset-pagination cursors.

A cursor is the sort key and id of the last entry of a page, wrapped in URL-safe
base64 of compact JSON so that clients treat it as a token rather than a value to edit.
It names the sort it was made for, because the same key means a different position
under another sort; using it there is a client error, not a silently wrong page.
Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

import orjson

from pipeline.errors import QueryError

__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor"]

#: Bounds the work a hostile token can cause; far above any real sort key (titles, dates).
MAX_CURSOR_LENGTH = 16_384
#: The index's date keys (``dates.format_iso``), or '' for an entry without the date.
_DATE_KEY = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_DATE_SORTS = ("publishedAt", "updatedAt")


def encode_cursor(sort: str, key: tuple[str, str]) -> str:
    """Token for "after (sort key, id) under `sort`"; compact, URL-safe, unpadded."""
    value, entry_id = key
    # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) does, at a
    # fifth of the cost (GraphQL makes a cursor per edge asked for). A lone surrogate
    # cannot come from the index, so orjson's refusal of one is a bug here.
    payload = orjson.dumps({"s": sort, "k": [value, entry_id]})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, *, sort: str) -> tuple[str, str]:
    """The (sort key, id) inside `token`; QueryError(parameter="cursor") if it is not ours."""
    if not isinstance(token, str):
        raise _bad("the cursor must be a string")
    if not token:
        raise _bad("the cursor is empty")
    if len(token) > MAX_CURSOR_LENGTH:
        raise _bad("the cursor is too long")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw.decode("utf-8"))
    # ValueError covers Unicode and JSON errors; RecursionError, JSON nested too deep.
    except (binascii.Error, ValueError, RecursionError):
        raise _bad("the cursor is not a valid cursor token") from None
    if (
        not isinstance(data, dict)
        or data.keys() != {"s", "k"}
        or not isinstance(data["s"], str)
        or not isinstance(data["k"], list)
        or len(data["k"]) != 2
        or not all(isinstance(part, str) for part in data["k"])
        or not _utf8_clean(data["s"], *data["k"])
    ):
        raise _bad("the cursor is not a valid cursor token")
    if data["s"] != sort:
        raise _bad(
            f"the cursor was made for sort {data['s'][:40]!r}, not {sort!r}; "
            "start again without a cursor"
        )
    value, entry_id = data["k"]
    if value and sort.lstrip("-") in _DATE_SORTS and not _DATE_KEY.fullmatch(value):
        raise _bad("the cursor is not a valid cursor token")  # edited: it would compare as text
    return (value, entry_id)


def _utf8_clean(*texts: str) -> bool:
    """False if JSON escapes smuggled in a lone surrogate, which SQLite cannot bind."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad(message: str) -> QueryError:
    return QueryError(message, parameter="cursor")
