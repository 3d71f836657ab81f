"""The hand-written manifest encoder gives exactly canonical JSON, and parses back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.documents import canonical_json
from pipeline.store import ManifestItem, manifest_bytes, parse_manifest

items = st.builds(ManifestItem, st.text(max_size=8), st.text(max_size=12), st.integers(0, 10**12),
                  st.lists(st.text(max_size=6), max_size=4).map(tuple), st.text(max_size=8))


@given(st.dictionaries(st.text(max_size=10), items, max_size=6))
def test_manifest_bytes_is_canonical_json(manifest: dict[str, ManifestItem]) -> None:
    data = manifest_bytes(manifest)
    assert data == canonical_json({p: i.to_json() for p, i in manifest.items()})
    assert parse_manifest(data) == manifest
