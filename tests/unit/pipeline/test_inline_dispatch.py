"""The dispatching inline loop gives exactly markdown-it-py's own tokens and HTML."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from pipeline import inline_dispatch
from pipeline.markdown import LinkContext, LinkResolver, Rendered, build_markdown

CONTENT = Path(__file__).resolve().parents[3] / "content"
# Every character an inline rule reacts to, plus text, spaces and line breaks.
MARKUP = [*"*_~`[]()!<>&^\\#:-+=@{}$%\n ", "**", "~~", "```", "[^1]", "![a](b)", "<a href='x'>",
          "&amp;", "&#35;", "http://x.y", "\\*", "  \n", "1."]


def stock() -> MarkdownIt:
    md = build_markdown()
    del md.inline.tokenize  # back to ParserInline.tokenize, the library's own loop
    return md


def render(md: MarkdownIt, text: str) -> tuple[str, list[str]]:
    out = Rendered(html="", text="", toc=[], links={}, site_links=[])
    env = {"out": out, "links": LinkResolver(text, LinkContext("blog/x.md", {}, frozenset()), out)}
    tokens = md.parse(text, env)
    return md.renderer.render(tokens, md.options, env), [repr(t) for t in tokens]


def test_installed_on_the_site_configuration() -> None:
    md = build_markdown()
    assert "tokenize" in vars(md.inline)
    assert inline_dispatch.install(build_markdown())


def test_same_tokens_and_html_on_the_sample_site() -> None:
    fast, slow = build_markdown(), stock()
    bodies = [p.read_text() for p in sorted(CONTENT.rglob("*.md"))]
    assert len(bodies) >= 40
    for body in bodies:
        assert render(fast, body) == render(slow, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(MARKUP), st.text(alphabet="ab c", min_size=1, max_size=6)),
                max_size=60))
def test_same_tokens_and_html_on_generated_markup(parts: list[str]) -> None:
    text = "".join(parts)
    assert render(build_markdown(), text) == render(stock(), text)


def test_a_rule_it_does_not_know_keeps_the_library_loop() -> None:
    md = build_markdown()
    del md.inline.tokenize
    md.inline.ruler.push("mention", lambda state, silent: False)
    assert not inline_dispatch.install(md)
    assert "tokenize" not in vars(md.inline)


def test_a_wrong_table_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: a dispatch that forgets emphasis renders differently."""
    monkeypatch.setitem(inline_dispatch.FIRST_CHARS, "emphasis", "_")
    assert render(build_markdown(), "a *b* c") != render(stock(), "a *b* c")
