"""The same Markdown as ``pipeline.markdown``, parsed and rendered by markdown-it.rs.

Why: markdown-it-py was two thirds of a cold build's CPU time (12.6 of 21 CPU-s at 10k
entries). ``markdown-it-pyrs`` is the Rust port of the same markdown-it parser, from the same
project (executablebooks), about ten times faster. With the options the site uses it writes
the HTML markdown-it-py writes, byte for byte, on every body of the 10k bench corpus and of
the sample site, once one newline in each footnote item and in an empty quote is removed.

What the reference engine does in token rules is done here on the HTML, where it is exact:
heading anchors and the table of contents (markdown-it-py's anchors plugin, same slugs),
link resolution (the shared ``LinkResolver``, so both engines report the same problems at the
same positions) and the plain text for search and excerpts.

markdown-it-py stays the definition of the output. Bodies where the two ports part ways go
to it: raw HTML (author HTML can't be told from ours in the output) and the corner cases a
fuzzer found, each named at ``needs_reference``, plus the few the Rust output itself shows
(``FastMarkdown.render``) and any body the Rust side fails on. Tests hold the engines equal
on the sample site, structured generated Markdown and random markup.
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol

from markdown_it import MarkdownIt

from pipeline.markdown import (
    LinkContext,
    LinkResolver,
    Rendered,
    build_markdown,
    normalise_body,
    render_markdown,
)

try:  # an optional accelerator: without it every body takes the reference engine
    import markdown_it_pyrs
except ImportError:  # pragma: no cover - the wheel is a declared dependency
    markdown_it_pyrs = None

# Patterns for ``needs_reference``. They run on every body, so each starts with a literal
# (sre then skips to that character) and none backtracks over a line more than once: a line
# start is written ``\n`` and the body searched is "\n" + body.
_RAW_HTML = re.compile(r"<(?:[A-Za-z][A-Za-z0-9-]*(?:[\s/>]|\Z)|/[A-Za-z]|[!?])")
_NOTE_DEF_LINE = re.compile(r"\n[ \t>]*\[\^[^\]\n]*\]:")
_NOTE_LABEL = re.compile(r"\[\^([^\]\n]*)\]:")  # anywhere, not only at a line start: conservative
_ODD_NOTE_TEXT = re.compile(
    r"\]:(?:[ \t]{4}|[ ]*\t"  # text four spaces in (a code block or not), or after a tab
    r"|[^\n]*\[\^"  # a citation on the definition's first line (conservative)
    r"|[ \t:]*(?:\n|\Z))")  # empty
_INDENTED_NOTE = re.compile(r"\n[ \t]+\[\^[^\]\n]*\]:")
_LAZY_QUOTE = re.compile(r"\n[ \t]*(?:(?:[-*+]|\d+[.)])[ \t]+)?>[^\n]*\n(?![ \t]*>|[ \t]*(?:\n|\Z))")
_QUOTE_TAB = re.compile(r"> *\t")
_UNDERLINE = re.compile(r"\n[ \t]*(?:-+|=+)[ \t]*(?=\n|\Z)")
_DELIMITER_ROW = re.compile(r"\n(?=[ \t|:-]*\|)(?=[ \t|:-]*-)[ \t|:-]+(?=\n|\Z)")
_COLON_DELIMITER = re.compile(r"\n[ \t]*(?::-+:?|-+:)[ \t]*(?=\n|\Z)")
_ODD_IMAGE = re.compile(r"!\[[^\]]*?(?:\n|!\[|\\|&)")
_LABEL_TOKENS = re.compile(r"`+|\[")
_LABEL_TICK = re.compile(r"\[[^\]\n`]*`")  # a backtick after a "[" on its line, before any "]"


def needs_reference(body: str) -> bool:
    """Whether the body holds something the two ports render differently (or may).

    Each case was found by fuzzing the engines against each other; all are conservative
    (a tag-like string in a code span also counts as raw HTML):
    - raw HTML: author HTML can't be told from the parser's in the output;
    - inline footnotes (``^[…]``), which markdown-it.rs lacks;
    - runs of three or more tildes, whose strikethrough pairing the ports resolve apart;
    - footnote definitions: right under a line of text that is not another definition
      (markdown-it-py lets it end the paragraph, markdown-it.rs reads it as more of it),
      defined twice, indented, cited inside a link's text or inside a definition, or shaped
      oddly (``_ODD_NOTE_TEXT``);
    - a quoted line followed by an unquoted, non-blank one (lazy continuation), where the
      ports end a quoted paragraph at different lines;
    - table edges: where a table ends, "a | b" over "---", escaped pipes, a delimiter row
      with a colon and no pipe, or with a pipe under a line without one;
    - an image whose description spans lines or holds an image, a backslash or an entity;
    - a tab after a quote marker (the ports expand it to different columns);
    - backticks that do not pair up inside a link label (``_odd_label_code``);
    - a link reference definition with an empty title (``_empty_title``).
    """
    if "<" in body and _RAW_HTML.search(body):
        return True
    if "^[" in body or "~~~" in body or "\\|" in body:
        return True
    text = "\n" + body
    if "[^" in body and "]:" in body and _odd_notes(text):
        return True
    if ">" in body and (_LAZY_QUOTE.search(text) or ("\t" in body and _QUOTE_TAB.search(body))):
        return True
    if "|" in body and _odd_table_edges(text):
        return True
    if ("-:" in body or ":-" in body) and _COLON_DELIMITER.search(text):
        return True
    if "[" in body and "`" in body and _odd_label_code(body):
        return True
    if "]:" in body and ('""' in body or "''" in body or "()" in body) and _empty_title(body):
        return True
    return "![" in body and _ODD_IMAGE.search(body) is not None


def _odd_label_code(body: str) -> bool:
    """Backticks that do not pair up after a "[" on its line (up to its "]"): the ports' link-label
    scans skip such code spans apart ("[` ` `:``"). "[`code`](x)" pairs up and is not odd.
    Linear: each line once, each piece between two "]" walked once from its end."""
    line_start = -1
    for match in _LABEL_TICK.finditer(body):
        start = body.rfind("\n", 0, match.start()) + 1
        if start == line_start:
            continue  # this line was looked at
        line_start = start
        end = body.find("\n", match.end())
        for piece in body[start:len(body) if end < 0 else end].split("]"):
            if "[" in piece and "`" in piece and _odd_piece(piece):
                return True
    return False


def _odd_piece(piece: str) -> bool:
    """Some "[" in ``piece`` (text up to a "]") is followed by backtick runs of a length that
    occurs an odd number of times: walked from the end, counting runs per length."""
    counts: dict[int, int] = {}
    odd = 0  # lengths seen an odd number of times so far
    for token in reversed(_LABEL_TOKENS.findall(piece)):
        if token == "[":
            if odd:
                return True
            continue
        seen = counts.get(len(token), 0) + 1
        counts[len(token)] = seen
        odd += 1 if seen % 2 else -1
    return False


def _empty_title(body: str) -> bool:
    """An empty title ("", '' or ()) on the line of a "]:" or the next one (conservative: any "]:"
    may be a reference definition). One port writes title="", the other no title. Linear: each
    "]:" looks at two lines with ``str.find``, no regex backtracking over long lines."""
    at = body.find("]:")
    while at >= 0:
        end = body.find("\n", at)
        end = body.find("\n", end + 1) if end >= 0 else -1
        span = body[at:len(body) if end < 0 else end]
        if '""' in span or "''" in span or "()" in span:
            return True
        at = body.find("]:", at + 2)
    return False


def _line_above(text: str, newline: int) -> str:
    return text[text.rfind("\n", 0, newline) + 1:newline]


def _odd_table_edges(text: str) -> bool:
    """A table whose header or a row lacks a pipe (where it ends, the ports disagree), or a
    piped line over a setext underline ("a | b" over "---": a table or a heading?)."""
    for match in _DELIMITER_ROW.finditer(text):
        if "|" not in _line_above(text, match.start()):
            return True
        start = match.end()
        while start < len(text):  # the rows: every line up to a blank one
            end = text.find("\n", start + 1)
            end = len(text) if end < 0 else end
            row = text[start + 1:end]
            if not row.strip():
                break
            if "|" not in row:
                return True
            start = end
    return any("|" in _line_above(text, m.start()) for m in _UNDERLINE.finditer(text))


def _odd_notes(text: str) -> bool:
    for match in _NOTE_DEF_LINE.finditer(text):
        above = _line_above(text, match.start())
        if above.strip() and not _NOTE_DEF_LINE.match("\n" + above):
            return True
    labels = _NOTE_LABEL.findall(text)
    if len(labels) != len(set(labels)):
        return True
    if _ODD_NOTE_TEXT.search(text) or _INDENTED_NOTE.search(text):
        return True
    if any(_cites_inside(text, m.end()) for m in _NOTE_DEF_LINE.finditer(text)):
        return True
    at = text.find("[^")
    while at >= 0:  # a citation inside a link's text: an unclosed "[" before it on its line
        before = text[text.rfind("\n", 0, at) + 1:at]
        if before.rfind("[") > before.rfind("]"):
            return True
        at = text.find("[^", at + 2)
    return False


def _cites_inside(text: str, start: int) -> bool:
    """A citation in the body of the footnote definition whose label ends at ``start``: on its
    first line, the lines that follow it up to a blank one, or the indented lines after that
    (the ports number citations inside a definition apart). Over-inclusive: a line that would
    interrupt the paragraph, or one indented too little to continue it, still counts."""
    end = text.find("\n", start)
    if "[^" in text[start:len(text) if end < 0 else end]:
        return True
    blank = False
    while end >= 0:
        nxt = text.find("\n", end + 1)
        line = text[end + 1:len(text) if nxt < 0 else nxt]
        end = nxt
        if not line.strip():
            blank = True
            continue
        if blank and line[0] not in " \t":  # any indent counts as more of it (conservative)
            return False  # the definition ended at the blank line
        if not blank and _NOTE_DEF_LINE.match("\n" + line):
            return False  # the next definition
        if "[^" in line:
            return True
    return False


_BLANK_CODE_SPAN = re.compile(r"<code>[ \n]*</code>")
_FOOTNOTE_ITEM = re.compile(r'(<li id="fn\d+" class="footnote-item">)\n')
_FOOTNOTE_REF = re.compile(r'<sup class="footnote-ref"><a href="#fn(\d+)" id="fnref(\d+)"')
_HEADING = re.compile(r"<h([23])>(.*?)</h\1>", re.S)
_LINK_TARGET = re.compile(r'(<a href="|<img src=")([^"]*)"')
_CODE_BLOCK = re.compile(r"<pre>.*?</pre>", re.S)
_FOOTNOTE_MARKS = re.compile(
    r'<sup class="footnote-ref">.*?</sup>|<a href="#fnref[^"]*" class="footnote-backref">.*?</a>', re.S)
_TAG = re.compile(r"<[^>]*>")
_SLUG_DROP = re.compile(r"[^\w\u4e00-\u9fff\- ]")  # mdit_py_plugins.anchors.slugify


def _unescape(text: str) -> str:
    """Undo markdown-it's ``escapeHtml`` (it escapes exactly these four)."""
    if "&" not in text:
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _plain(html: str) -> str:
    """Text of inline HTML as markdown-it-py's text and code tokens hold it (marks removed)."""
    return _unescape(_TAG.sub("", _FOOTNOTE_MARKS.sub("", html)))


ENGINE_ENV = "FLOWCMS_MARKDOWN"  # "rust" (the default) or "python": the reference for everything


class MarkdownRenderer(Protocol):
    def render(self, body: str, ctx: LinkContext) -> Rendered: ...


class ReferenceMarkdown:
    """markdown-it-py alone: the definition of the output, and the way to check the fast one."""

    def __init__(self) -> None:
        self.md = build_markdown()

    def render(self, body: str, ctx: LinkContext) -> Rendered:
        return render_markdown(self.md, body, ctx)


def make_renderer(engine: str | None = None) -> MarkdownRenderer:
    """The engine ``FLOWCMS_MARKDOWN`` names; both write the same bytes (tested)."""
    engine = engine or os.environ.get(ENGINE_ENV) or "rust"
    if engine == "python":
        return ReferenceMarkdown()
    if engine == "rust":
        return FastMarkdown()
    raise ValueError(f"{ENGINE_ENV}={engine!r}: expected 'rust' or 'python'")


class FastMarkdown:
    """Renders a body as ``render_markdown(build_markdown(), …)`` does, faster."""

    def __init__(self) -> None:
        self.reference: MarkdownIt = build_markdown()
        self.rust: Any = None
        if markdown_it_pyrs is not None:
            self.rust = markdown_it_pyrs.MarkdownIt("commonmark").enable_many(
                ["table", "strikethrough", "footnote"])

    def render(self, body: str, ctx: LinkContext) -> Rendered:
        body = normalise_body(body)
        if self.rust is None or needs_reference(body):
            return render_markdown(self.reference, body, ctx)
        try:
            html = self.rust.render(body)
        except BaseException as exc:  # a Rust panic arrives as pyo3's PanicException(BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return render_markdown(self.reference, body, ctx)
        if 'class="footnote-ref"' in html:
            # markdown-it-py names a note's first citation fnref<n> and later ones fnref<n>:<k>;
            # markdown-it.rs counts citations. Equal only while each note is cited once.
            refs = _FOOTNOTE_REF.findall(html)
            if any(note != ref for note, ref in refs) or len({note for note, _ in refs}) != len(refs):
                return render_markdown(self.reference, body, ctx)
        if ("<code> " in html or "<code></code>" in html) and _BLANK_CODE_SPAN.search(html):
            # a code span of spaces only, which markdown-it.rs trims
            return render_markdown(self.reference, body, ctx)
        if 'class="footnote-item"' in html:
            html = _FOOTNOTE_ITEM.sub(r"\1", html)
        if "<blockquote>\n</blockquote>" in html:  # markdown-it-py puts no line in an empty quote
            html = html.replace("<blockquote>\n</blockquote>", "<blockquote></blockquote>")
        return _finish(html, body, ctx)


def _finish(html: str, body: str, ctx: LinkContext) -> Rendered:
    out = Rendered(html="", text="", toc=[], links={}, site_links=[])
    # Plain text: every inline's text; code blocks and footnote marks are not text.
    text = _CODE_BLOCK.sub(" ", html) if "<pre>" in html else html
    if 'class="footnote-' in text:
        text = _FOOTNOTE_MARKS.sub("", text)
    text = _TAG.sub("", text)
    out.text = " ".join(_unescape(text).split())  # = _SPACES.sub(" ", …).strip(), in C

    slugs: set[str] = set()
    toc = out.toc

    def anchor(match: re.Match[str]) -> str:
        level, inner = match.group(1), match.group(2)
        title = _plain(inner).replace("\n", "")  # a line break in a heading is no text token
        slug = base = _SLUG_DROP.sub("", title.lower().replace(" ", "-"))
        i = 1
        while slug in slugs:
            slug = f"{base}-{i}"
            i += 1
        slugs.add(slug)
        toc.append({"level": int(level), "id": slug, "text": title.strip()})
        return f'<h{level} id="{slug}">{inner} <a class="header-anchor" href="#{slug}">#</a></h{level}>'

    if "<h2>" in html or "<h3>" in html:
        html = _HEADING.sub(anchor, html)

    links = LinkResolver(body, ctx, out)

    def target(match: re.Match[str]) -> str:
        url = links.resolve(_unescape(match.group(2)))
        return match.group(0) if url is None else f'{match.group(1)}{_escape(url)}"'

    out.html = _LINK_TARGET.sub(target, html)
    return out
