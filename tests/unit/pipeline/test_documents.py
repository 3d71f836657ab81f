"""Canonical JSON: orjson's bytes, equal to the stdlib encoder's where both are defined."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pipeline.documents import Serialized, canonical_json


def stdlib(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# What documents hold: strings (any code point), 64-bit ints, bools, None, lists, string-keyed maps.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_same_bytes_as_the_stdlib_encoder(value: object) -> None:
    assert canonical_json(value) == stdlib(value)


def test_keys_sorted_compact_and_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()


def test_what_orjson_refuses_goes_to_the_stdlib_encoder() -> None:
    assert canonical_json({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert canonical_json({1: "x"}) == b'{"1":"x"}'


def test_plain_floats_agree_and_nan_is_null() -> None:
    assert canonical_json([0.1, 4.5, -0.0, 1.0]) == stdlib([0.1, 4.5, -0.0, 1.0])
    assert canonical_json([float("nan")]) == b"[null]"


@given(JSON_VALUES, JSON_VALUES)
def test_a_serialized_value_is_embedded_as_the_value_would_be(inner: object, other: object) -> None:
    assert canonical_json({"b": Serialized(inner), "a": [other]}) == canonical_json({"b": inner, "a": [other]})


def test_serialized_values_survive_the_stdlib_fallback() -> None:
    assert canonical_json({"n": 2**70, "f": Serialized({"y": 1, "x": "é"})}) == (
        '{"f":{"x":"é","y":1},"n":1180591620717411303424}'.encode())


def test_a_part_only_the_stdlib_can_write_sends_its_document_there_too() -> None:
    """Exponent floats are written differently by the two encoders: a document's bytes must
    not depend on whether a big integer sat in a serialised part or in the document itself."""
    for part, rest in (({"big": 2**70}, {"f": 1e-7}), ({"f": 1e-7}, {"big": 2**70}), ({"f": 1e-7}, {"g": 2.5e-9})):
        assert canonical_json({"a": [Serialized(part)], "b": rest}) == canonical_json({"a": [part], "b": rest})
