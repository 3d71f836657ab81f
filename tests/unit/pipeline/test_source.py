from __future__ import annotations

from pipeline.source import diff_trees, git_blob_id


def test_diff_trees_by_blob_id() -> None:
    old = {"a.md": "1", "b.md": "2", "c.md": "3"}
    new = {"a.md": "1", "b.md": "9", "d.md": "4"}
    d = diff_trees(old, new)
    assert (d.added, d.changed, d.removed) == (("d.md",), ("b.md",), ("c.md",))
    assert d.touched == {"b.md", "c.md", "d.md"}
    assert not diff_trees(old, dict(old))


def test_git_blob_id_matches_git() -> None:
    """`git hash-object` of 'hello\\n' is ce0136…: directory and git sources agree on ids."""
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
