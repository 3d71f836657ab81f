"""Canonical JSON bytes: identical values give identical bytes, so blob hashes are stable."""

from __future__ import annotations

import json
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8 (no ``\\u`` escapes of non-ASCII).

    orjson writes it (4-5x the stdlib encoder; a sixth of a cold build's rendering was
    JSON): the same bytes as ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` for everything but floats with an exponent (``1.5e-7``, not
    ``1.5e-07``) and NaN/Infinity (``null``: JSON has no NaN). What orjson refuses
    (integers beyond 64 bits, keys that are not strings) goes to the stdlib encoder. A
    ``Serialized`` value is written as the bytes it holds.
    """
    try:
        return orjson.dumps(value, default=_embedded, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_decoded).encode()


class Serialized:
    """A value as canonical JSON, made once and embedded as it is in the documents that
    hold it: an API answer built from the same resources again need not encode them again."""

    __slots__ = ("_fragment", "json")

    def __init__(self, value: Any) -> None:
        self.json = canonical_json(value)
        self._fragment = orjson.Fragment(self.json)


def _embedded(value: Any) -> orjson.Fragment:
    if isinstance(value, Serialized):
        return value._fragment
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decoded(value: Any) -> Any:
    if isinstance(value, Serialized):
        return json.loads(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
