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
from urllib.parse import unquote

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
        # text is whitespace-normalised (one space between words, none at the ends), so its
        # words are its spaces plus one: len(text.split()) without building the list
        words = self.text.count(" ") + 1 if self.text else 0
        return max(1, -(-words // WORDS_PER_MINUTE))

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
    """The reference engine: markdown-it-py, configured as the site renders."""
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
    body = normalise_body(body)
    out = Rendered(html="", text="", toc=[], links={}, site_links=[])
    env: dict[str, Any] = {"out": out, "links": LinkResolver(body, ctx, out)}
    tokens = md.parse(body, env)
    out.html = md.renderer.render(tokens, md.options, env)
    return out


def normalise_body(body: str) -> str:
    """What markdown-it reads, made explicit so both engines read the same: line breaks as
    ``\n`` and NUL as U+FFFD (markdown-it-py's own ``normalize`` rule), and the last line
    ended, so a code block left open at the end of a file ends with its line break whether
    the file does or not."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    if "\0" in body:
        body = body.replace("\0", "\ufffd")
    return body if not body or body.endswith("\n") else body + "\n"


class LinkResolver:
    """Rewrites the body's links in document order and records what they point at.

    Both engines hand it every link and image target in the order they appear, so both
    report the same links, problems and positions. A position is where the target's text
    is in the body, found by searching forward from the previous link: the line of the
    link itself, also inside a paragraph that spans several lines.
    """

    __slots__ = ("base", "body", "ctx", "cursor", "out")

    def __init__(self, body: str, ctx: LinkContext, out: Rendered) -> None:
        self.body = body
        self.ctx = ctx
        self.out = out
        self.base = posixpath.dirname(ctx.source_path)
        self.cursor = 0

    def resolve(self, href: str) -> str | None:
        """The site URL to write instead of ``href``, or None to leave it as it is."""
        if not href or _EXTERNAL.match(href):
            return None
        path, sep, fragment = href.partition("#")
        path = path.split("?", 1)[0]
        if path.startswith("/"):
            target = posixpath.normpath(path.lstrip("/"))
        else:
            target = posixpath.normpath(posixpath.join(self.base, path))
        out = self.out
        suffix = sep + fragment if fragment else ""
        if path.endswith(".md"):
            url = self.ctx.entry_urls.get(target)
            if url is None:
                out.problems.append((*self.locate(href), f"broken link {href!r}: no entry {target}"))
                return None
            out.links[target] = url
            self.locate(href)
            return url + suffix
        if not path.startswith("/") and target in self.ctx.files:
            out.site_links.append((*self.locate(href), "/" + target))
            return "/" + target + suffix
        if path.startswith("/"):
            out.site_links.append((*self.locate(href), path))
            return None
        out.problems.append((*self.locate(href), f"broken link {href!r}: no file {target}"))
        return None

    def locate(self, href: str) -> tuple[int, int]:
        """(0-based line, 1-based column) of ``href`` in the body, and move past it."""
        body = self.body
        at = -1
        for needle in (href, unquote(href)):
            for start in (self.cursor, 0):
                for prefix in ("](", "](<", ""):
                    i = body.find(prefix + needle, start)
                    if i >= 0:
                        at = i + len(prefix)
                        break
                if at >= 0:
                    break
            if at >= 0:
                break
        if at < 0:
            at = self.cursor
        self.cursor = at + 1
        line_start = body.rfind("\n", 0, at) + 1
        return body.count("\n", 0, at), at - line_start + 1


def resolve_links(state: StateCore) -> None:
    links: LinkResolver = state.env["links"]
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        for token in block.children:
            attr = "href" if token.type == "link_open" else "src" if token.type == "image" else None
            if attr is not None:
                url = links.resolve(str(token.attrs.get(attr, "")))
                if url is not None:
                    token.attrs[attr] = url


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
    out.text = " ".join("".join(words).split())  # = \s+ collapsed and stripped, in C
