"""The fast engine (markdown-it.rs + HTML passes) renders exactly what markdown-it-py renders.

Exactly: the HTML bytes, the plain text, the table of contents, the resolved links and the
problems with their positions. A build's blobs and build id must not depend on the engine.

The two fuzz tests run a fixed set of examples (``derandomize``), so CI is repeatable; random
ones with ``FLOWCMS_FUZZ=1`` (each difference found so far is pinned with ``@example``). A
longer hunt: ``FLOWCMS_FUZZ=1 FLOWCMS_FUZZ_EXAMPLES=20000 pytest -k "generated or soup"``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import markdown_fast
from pipeline.markdown import LinkContext, Rendered
from pipeline.markdown_fast import FastMarkdown, ReferenceMarkdown, make_renderer

CONTENT = Path(__file__).resolve().parents[3] / "content"
URLS = {"docs/intro.md": "/docs/intro/", "blog/a.md": "/blog/a/", "blog/b c.md": "/blog/b-c/"}
FILES = frozenset({*URLS, "media/x.svg", "blog/pic.png"})
CTX = LinkContext("blog/a.md", URLS, FILES)

FUZZ = os.environ.get("FLOWCMS_FUZZ") == "1"
FUZZ_EXAMPLES = int(os.environ.get("FLOWCMS_FUZZ_EXAMPLES", "0"))

pytestmark = pytest.mark.skipif(markdown_fast.markdown_it_pyrs is None, reason="markdown-it-pyrs not installed")


@pytest.fixture(scope="module")
def engines() -> tuple[ReferenceMarkdown, FastMarkdown]:
    return ReferenceMarkdown(), FastMarkdown()


def as_tuple(rendered: Rendered) -> tuple[object, ...]:
    return dataclasses.astuple(rendered)


def body_of(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split("\n---\n", 1)[1] if text.startswith("---") else text


def test_same_output_on_every_sample_site_entry(engines: tuple[ReferenceMarkdown, FastMarkdown]) -> None:
    reference, fast = engines
    sources = sorted(CONTENT.rglob("*.md"))
    assert len(sources) >= 40
    urls = {str(p.relative_to(CONTENT)): "/" + str(p.relative_to(CONTENT))[:-3] + "/" for p in sources}
    files = frozenset(str(p.relative_to(CONTENT)) for p in CONTENT.rglob("*") if p.is_file())
    for path in sources:
        ctx = LinkContext(str(path.relative_to(CONTENT)), urls, files)
        body = body_of(path)
        assert as_tuple(fast.render(body, ctx)) == as_tuple(reference.render(body, ctx)), path


# Blocks and inline pieces that exercise everything the HTML passes redo: headings (ATX and
# setext, repeated titles, code and emphasis in them), footnotes, links to entries, files,
# site paths and nowhere, images, code blocks, tables, lists, quotes, entities, escapes.
INLINE = ["word", "Ünïcode", " ", "*em*", "**strong**", "~~gone~~", "`code`", "`a < b`", "&amp;", "&copy;",
          "&lt;b&gt;", "\\*", "[rel](../docs/intro.md#setup)", "[root](/docs/intro.md)", "[gone](missing.md)",
          "[file](pic.png)", "[site](/blog/)", "[ext](https://example.org/a.md)", "[frag](#x)",
          "![alt *x*](pic.png \"t\")", "![m](../media/x.svg)", "[sp](<b c.md>)", "[enc](b%20c.md)",
          "[^1]", "[^n]", "<https://example.org>", "<a@b.c>", "\"q\"", "'", "  \n", "\n", "a_b_c", "#"]
BLOCKS = [
    "## {i}", "### {i}", "# {i}", "#### {i}", "{i}\n---", "{i}\n===", "## {i} {i}", "## Same", "### Same",
    "{i}", "{i}\n{i}", "> {i}", "- {i}\n- {i}", "1. {i}\n2. {i}", "- {i}\n\n  {i}",
    "| a | b |\n|:--|--:|\n| {i} | {i} |", "```py\ncode {i}\n```", "    indented {i}", "***",
    "[^1]: {i}", "[^n]: {i}\n\n    more {i}", "[ref]: ../docs/intro.md", "[x][ref] {i}",
]


@st.composite
def bodies(draw: st.DrawFn) -> str:
    blocks = []
    for template in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=8)):
        inline = "".join(draw(st.lists(st.sampled_from(INLINE), min_size=1, max_size=6))).strip() or "x"
        blocks.append(template.replace("{i}", inline))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return ("\n\n".join(blocks) + "\n").replace("\n", newline)


@settings(max_examples=FUZZ_EXAMPLES or 400, deadline=None, derandomize=not FUZZ, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
@example(body="[^n]: word  \n[^1]\n\n    more word  \n[^1]\n\n[^1]: word\n")  # citations inside a definition
def test_same_output_on_generated_markdown(engines: tuple[ReferenceMarkdown, FastMarkdown], body: str) -> None:
    reference, fast = engines
    assert as_tuple(fast.render(body, CTX)) == as_tuple(reference.render(body, CTX))


# Markup soup: the characters and pieces every block and inline rule reacts to, mixed.
SOUP = [*"*_~`[]()!<>&^\\#:-+=|.\n ", "a", "é", "[^1]", "[^1]:", "](x.md)", "## ", "\n---\n", "\n```\n",
        "&amp;", "  \n", "1. ", "    ", "> ", "- ", "\n\n", "|a|b|\n|-|-|\n", "[x]: y\n", "\t", "**", "__",
        "![a](b)", "[l](../docs/intro.md)", "\n===\n", "\r\n"]


@settings(max_examples=FUZZ_EXAMPLES or 500, deadline=None, derandomize=not FUZZ, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(st.sampled_from(SOUP), max_size=25).map("".join))
@example(body="<a[ `~[&amp; `    `(:```][x]: y\n")  # backticks that do not pair up in a link label
@example(body="*[x]: y\n\n[x]: y\n()")  # a reference definition with an empty title
def test_same_output_on_markup_soup(engines: tuple[ReferenceMarkdown, FastMarkdown], body: str) -> None:
    reference, fast = engines
    assert as_tuple(fast.render(body, CTX)) == as_tuple(reference.render(body, CTX))


def test_raw_html_and_inline_footnotes_take_the_reference_engine(
        engines: tuple[ReferenceMarkdown, FastMarkdown]) -> None:
    reference, fast = engines
    for body in ("<div>raw <b>html</b></div>\n\n## Title\n", "Inline <span>tag</span>.\n",
                 "A note.^[inline footnote]\n", "<!-- comment -->\n"):
        assert markdown_fast.needs_reference(body)
        assert as_tuple(fast.render(body, CTX)) == as_tuple(reference.render(body, CTX))
    for body in ("a < b and <https://x.org> and <a@b.c>\n", "x <- y\n"):
        assert not markdown_fast.needs_reference(body)


def test_a_difference_would_be_caught(engines: tuple[ReferenceMarkdown, FastMarkdown],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the footnote-item newline fix the engines differ, and the comparison says so."""
    reference, fast = engines
    body = "Text[^1].\n\n[^1]: The note.\n"
    assert as_tuple(fast.render(body, CTX)) == as_tuple(reference.render(body, CTX))
    monkeypatch.setattr(markdown_fast, "_FOOTNOTE_ITEM", markdown_fast.re.compile("(?!)()"))
    assert fast.render(body, CTX).html != reference.render(body, CTX).html


def test_positions_are_the_links_own_line(engines: tuple[ReferenceMarkdown, FastMarkdown]) -> None:
    body = "Intro.\n\nA paragraph that\nspans lines: [gone](../docs/missing.md)\nand [site](/nowhere/).\n"
    for engine in engines:
        out = engine.render(body, CTX)
        assert out.problems == [(3, 21, "broken link '../docs/missing.md': no entry docs/missing.md")]
        assert out.site_links == [(4, 12, "/nowhere/")]


def test_make_renderer_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(markdown_fast.ENGINE_ENV, raising=False)
    assert isinstance(make_renderer(), FastMarkdown)
    monkeypatch.setenv(markdown_fast.ENGINE_ENV, "python")
    assert isinstance(make_renderer(), ReferenceMarkdown)
    monkeypatch.setenv(markdown_fast.ENGINE_ENV, "perl")
    with pytest.raises(ValueError, match="expected 'rust' or 'python'"):
        make_renderer()
