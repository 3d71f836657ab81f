"""Canonical JSON bytes: identical values give identical bytes, so blob hashes are stable."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8 (no ``\\u`` escapes of non-ASCII)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
