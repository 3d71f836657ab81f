"""``h2wire.encode_field``: literal fields without indexing (RFC 7541 §6.2.2), with its memo of name parts."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeproxy import h2wire

names = st.one_of(st.sampled_from(sorted(h2wire.STATIC_NAME_INDEX)),
                  st.sampled_from([b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-request-id", b"cache-status"]),
                  st.binary(min_size=1, max_size=200).map(lambda b: bytes(97 + c % 26 for c in b)))
values = st.binary(max_size=300).map(lambda b: bytes(32 + c % 95 for c in b))


def reference(name: bytes, value: bytes) -> bytes:
    """RFC 7541 §6.2.2 spelled out: an indexed name (4-bit prefix) or a literal one, then the value."""
    index = h2wire.STATIC_NAME_INDEX.get(name)
    start = h2wire.encode_int(index, 4, 0) if index is not None else b"\x00" + h2wire.encode_int(len(name), 7, 0) + name
    return start + h2wire.encode_int(len(value), 7, 0) + value


@given(st.lists(st.tuples(names, values), min_size=1, max_size=8))
def test_encode_field_is_the_literal_encoding_and_decodes(fields: list[tuple[bytes, bytes]]) -> None:
    """Remembered name parts and short lengths change nothing: same bytes, and hpack reads them back."""
    block = b"".join(h2wire.encode_field(n, v) for n, v in fields)
    assert block == b"".join(reference(n, v) for n, v in fields)
    assert hpack.Decoder().decode(block, raw=True) == fields


def test_name_parts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past NAME_PARTS_MAX names, new names are encoded each time (and still correctly)."""
    monkeypatch.setattr(h2wire, "_NAME_PARTS", {})
    monkeypatch.setattr(h2wire, "NAME_PARTS_MAX", 3)
    for n in range(10):
        name = b"x-field-%d" % n
        assert h2wire.encode_field(name, b"v") == reference(name, b"v")
    assert len(h2wire._NAME_PARTS) == 3
