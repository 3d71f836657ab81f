"""Markdown to HTML with link resolution, heading anchors, TOC and plain text.

One configured ``MarkdownIt`` (CommonMark + tables + strikethrough + footnotes +
h2/h3 anchors) and one core rule per concern, after markdown-it-py's own style:
``resolve_links`` rewrites links to source files (``../docs/a.md``) into site URLs and
records them as dependencies; ``collect_outline`` gathers the TOC and the plain text
used for search and for the default excerpt.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.footnote import footnote_plugin

from pipeline import inline_dispatch

EXCERPT_CHARS = 200  # about two lines of a listing card
WORDS_PER_MINUTE = 220  # common reading-speed estimate used by Medium-style badges
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class LinkContext:
    """What link resolution needs to know about the rest of the site."""

    source_path: str  # the entry's file, e.g. "blog/hello.md"
    entry_urls: dict[str, str]  # source path of every entry -> its URL
    files: frozenset[str] | set[str]  # every path in the content tree


@dataclass(slots=True)
class Rendered:
    html: str
    text: str
    toc: list[dict[str, Any]]
    links: dict[str, str]  # linked entry source path -> URL used (a dependency)
    site_links: list[tuple[int, int, str]]  # (body line, column, path) to check later
    problems: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def reading_minutes(self) -> int:
        return max(1, -(-len(self.text.split()) // WORDS_PER_MINUTE))

    def excerpt(self) -> str:
        return make_excerpt(self.text)


def make_excerpt(text: str) -> str:
    # Normalise a window, not the whole body: collapsing whitespace only shrinks text, so
    # a window that still has more than EXCERPT_CHARS + 1 characters starts exactly like
    # the whole normalised text (the +1: a space at the edge is followed by a word).
    window = _SPACES.sub(" ", text[: EXCERPT_CHARS * 4]).lstrip()
    if len(window) <= EXCERPT_CHARS + 1:
        window = _SPACES.sub(" ", text).strip()
        if len(window) <= EXCERPT_CHARS:
            return window
    cut = window.rfind(" ", 0, EXCERPT_CHARS)
    return window[: cut if cut > 0 else EXCERPT_CHARS].rstrip(" ,;:.") + "…"


def build_markdown() -> MarkdownIt:
    md = (
        MarkdownIt("commonmark", {"html": True, "typographer": False})
        .enable(["table", "strikethrough"])
        .use(footnote_plugin)
        .use(anchors_plugin, min_level=2, max_level=3, permalink=True, permalinkSymbol="#")
    )
    md.core.ruler.push("resolve_links", resolve_links)
    md.core.ruler.push("collect_outline", collect_outline)
    inline_dispatch.install(md)
    return md


def render_markdown(md: MarkdownIt, body: str, ctx: LinkContext) -> Rendered:
    env: dict[str, Any] = {"ctx": ctx, "lines": body.splitlines(), "out": Rendered(
        html="", text="", toc=[], links={}, site_links=[])}
    tokens = md.parse(body, env)
    out: Rendered = env["out"]
    out.html = md.renderer.render(tokens, md.options, env)
    return out


def _column(lines: list[str], line: int, needle: str) -> int:
    if 0 <= line < len(lines):
        col = lines[line].find(needle)
        if col >= 0:
            return col + 1
    return 1


def resolve_links(state: StateCore) -> None:
    env = state.env
    ctx: LinkContext = env["ctx"]
    out: Rendered = env["out"]
    base = posixpath.dirname(ctx.source_path)
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        line = block.map[0] if block.map else 0
        for token in block.children:
            attr = "href" if token.type == "link_open" else "src" if token.type == "image" else None
            if attr is None:
                continue
            href = str(token.attrs.get(attr, ""))
            if not href or _EXTERNAL.match(href):
                continue
            path, sep, fragment = href.partition("#")
            path = path.split("?", 1)[0]
            if path.startswith("/"):
                target = posixpath.normpath(path.lstrip("/"))
            else:
                target = posixpath.normpath(posixpath.join(base, path))
            if path.endswith(".md"):
                url = ctx.entry_urls.get(target)
                if url is None:
                    column = _column(env["lines"], line, href)
                    out.problems.append((line, column, f"broken link {href!r}: no entry {target}"))
                    continue
                out.links[target] = url
                token.attrs[attr] = url + (sep + fragment if fragment else "")
            elif not path.startswith("/") and target in ctx.files:
                token.attrs[attr] = "/" + target + (sep + fragment if fragment else "")
                out.site_links.append((line, _column(env["lines"], line, href), "/" + target))
            elif path.startswith("/"):
                out.site_links.append((line, _column(env["lines"], line, href), path))
            else:
                column = _column(env["lines"], line, href)
                out.problems.append((line, column, f"broken link {href!r}: no file {target}"))


_OUTLINE_TEXT = frozenset({"text", "code_inline"})
_OUTLINE_KEEP = frozenset({"text", "code_inline", "softbreak", "hardbreak"})


def collect_outline(state: StateCore) -> None:
    out: Rendered = state.env["out"]
    words: list[str] = []
    tokens = state.tokens
    text_types, keep_types = _OUTLINE_TEXT, _OUTLINE_KEEP
    for i, token in enumerate(tokens):
        kind = token.type
        if kind == "inline":
            children = token.children
            if children:
                words.extend([c.content if c.type in text_types else " "
                              for c in children if c.type in keep_types])
                words.append(" ")
        elif kind == "heading_open" and token.tag in ("h2", "h3"):
            inline = tokens[i + 1]
            text = "".join(
                c.content for c in inline.children or () if c.type in text_types
            ).strip()
            out.toc.append({"level": int(token.tag[1]), "id": token.attrs.get("id", ""), "text": text})
    out.text = _SPACES.sub(" ", "".join(words)).strip()
