from __future__ import annotations

import pytest

from pipeline.errors import ContentError
from pipeline.frontmatter import parse_front_matter


def test_frontmatter_splits_meta_and_body_with_lines() -> None:
    """The body starts after the closing fence and keys know their file lines."""
    fm = parse_front_matter("a.md", "---\ntitle: A\ntags: [x]\n---\nBody\n")
    assert fm.meta == {"title": "A", "tags": ["x"]}
    assert fm.body == "Body\n"
    assert fm.body_line == 5
    assert fm.key_lines == {"title": 2, "tags": 3}


def test_frontmatter_missing_opening_fence_is_reported_at_line_1() -> None:
    with pytest.raises(ContentError) as info:
        parse_front_matter("blog/a.md", "title: A\n")
    assert str(info.value).startswith("blog/a.md:1:1: file must start with a '---' line")


def test_frontmatter_unclosed_is_reported() -> None:
    with pytest.raises(ContentError, match="not closed"):
        parse_front_matter("a.md", "---\ntitle: A\n")


def test_frontmatter_bad_yaml_points_at_the_file_line() -> None:
    """YAML errors are located in the file, not in the YAML fragment."""
    with pytest.raises(ContentError) as info:
        parse_front_matter("blog/a.md", "---\ntitle: A\ntags: [x, y\nauthor: b\n---\n")
    err = info.value
    assert err.path == "blog/a.md"
    assert err.code == "yaml"
    assert err.line in (4, 5)
    assert "invalid YAML" in err.message


def test_frontmatter_must_be_a_mapping() -> None:
    with pytest.raises(ContentError, match="mapping"):
        parse_front_matter("a.md", "---\n- 1\n- 2\n---\n")


def test_frontmatter_empty_block_and_crlf() -> None:
    fm = parse_front_matter("a.md", "---\r\n---\r\nx")
    assert fm.meta == {}
    assert fm.body == "x"
