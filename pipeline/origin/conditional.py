"""If-None-Match evaluation for the origin (RFC 9110 §13.1.2, weak comparison)."""

from __future__ import annotations


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
