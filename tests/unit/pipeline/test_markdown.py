from __future__ import annotations

from pipeline.markdown import LinkContext, build_markdown, make_excerpt, render_markdown

URLS = {"docs/intro.md": "/docs/intro/", "blog/a.md": "/blog/a/"}
FILES = frozenset({"docs/intro.md", "blog/a.md", "media/x.svg"})


def render(body: str):  # type: ignore[no-untyped-def]
    return render_markdown(build_markdown(), body, LinkContext("blog/a.md", URLS, FILES))


def test_markdown_rewrites_source_links_to_urls_and_records_them() -> None:
    out = render("[rel](../docs/intro.md#setup) and [root](/docs/intro.md)\n")
    assert '<a href="/docs/intro/#setup">rel</a>' in out.html
    assert '<a href="/docs/intro/">root</a>' in out.html
    assert out.links == {"docs/intro.md": "/docs/intro/"}
    assert out.problems == []


def test_markdown_broken_source_link_has_line_and_column() -> None:
    out = render("Intro.\n\nSee [gone](../docs/missing.md) now.\n")
    assert out.problems == [(2, 12, "broken link '../docs/missing.md': no entry docs/missing.md")]


def test_markdown_media_relative_links_become_site_paths() -> None:
    out = render("![d](../media/x.svg)\n")
    assert 'src="/media/x.svg"' in out.html
    assert out.site_links == [(0, 6, "/media/x.svg")]


def test_markdown_external_links_untouched() -> None:
    out = render("[x](https://example.org/a.md) [y](#frag) [z](mailto:a@b.c)\n")
    assert 'href="https://example.org/a.md"' in out.html
    assert out.links == {}
    assert out.problems == []
    assert out.site_links == []


def test_markdown_tables_footnotes_anchors_and_toc() -> None:
    out = render("## Setup Steps\n\n### Deep\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nNote[^1].\n\n[^1]: Footnote.\n")
    assert '<h2 id="setup-steps">' in out.html
    assert "<table>" in out.html
    assert 'class="footnotes"' in out.html
    assert out.toc == [{"level": 2, "id": "setup-steps", "text": "Setup Steps"},
                       {"level": 3, "id": "deep", "text": "Deep"}]


def test_markdown_text_and_excerpt() -> None:
    out = render("Hello **bold** `code`.\n\n```\nnot text\n```\n")
    assert out.text == "Hello bold code."
    assert out.reading_minutes == 1
    long = " ".join(["word"] * 100)
    assert make_excerpt(long).endswith("…")
    assert len(make_excerpt(long)) <= 201
