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
        return _stdlib_json(value)


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_decoded).encode()


class Serialized:
    """A value as canonical JSON, made once and embedded as it is in the documents that
    hold it: an API answer built from the same resources again need not encode them again.

    A value only the stdlib encoder can write (an integer beyond 64 bits) sends every
    document holding it to that encoder too, so a document's bytes never depend on whether
    its parts were serialised apart (the encoders write exponent floats differently).
    """

    __slots__ = ("_fragment", "json")

    def __init__(self, value: Any) -> None:
        self._fragment: orjson.Fragment | None
        try:
            self.json = orjson.dumps(value, default=_embedded, option=orjson.OPT_SORT_KEYS)
            self._fragment = orjson.Fragment(self.json)
        except TypeError:
            self.json = _stdlib_json(value)
            self._fragment = None


def _embedded(value: Any) -> orjson.Fragment:
    if isinstance(value, Serialized) and value._fragment is not None:
        return value._fragment
    raise TypeError(f"{type(value).__name__} is not JSON serializable")  # the stdlib encoder takes over


def _decoded(value: Any) -> Any:
    if isinstance(value, Serialized):
        return json.loads(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
