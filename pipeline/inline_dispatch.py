"""First-character dispatch for markdown-it-py's inline tokenizer.

At every position that is not plain text, markdown-it-py asks each enabled inline rule in
turn; all but one or two of them look at the character under the cursor and say no. The
loop here asks only the rules that can start with that character, in the same order, so
the tokens are the same by construction (and by test: ``tests/unit/pipeline/
test_inline_dispatch.py`` compares both on the sample site and on generated text). It saves
about a twentieth of a cold build's markdown time, the largest part of that build.

It is installed only when every enabled rule is one whose first characters are listed
here; a rule this module does not know (a new plugin) keeps markdown-it-py's own loop.
"""

from __future__ import annotations

from collections.abc import Callable

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline

InlineRule = Callable[[StateInline, bool], bool]

#: The characters at which each rule can match, read from the rules' sources: each
#: returns False at once for any other character under the cursor.
FIRST_CHARS: dict[str, str] = {
    "newline": "\n",
    "escape": "\\",
    "backticks": "`",
    "strikethrough": "~",
    "emphasis": "_*",
    "link": "[",
    "image": "!",
    "autolink": "<",
    "html_inline": "<",
    "entity": "&",
    "footnote_inline": "^",
    "footnote_ref": "[",
}


def install(md: MarkdownIt) -> bool:
    """Swap ``md``'s inline tokenize loop for the dispatching one; False when it cannot."""
    inline = md.inline
    enabled = [rule for rule in inline.ruler.__rules__ if rule.enabled]
    if not enabled or enabled[0].name != "text":
        return False
    text_rule: InlineRule = enabled[0].fn
    by_char: dict[str, list[InlineRule]] = {}
    for rule in enabled[1:]:
        chars = FIRST_CHARS.get(rule.name)
        if chars is None:
            return False
        for ch in chars:
            by_char.setdefault(ch, []).append(rule.fn)
    # Skipping the text rule at these characters is right only because it stops at them.
    if any(inline.terminator_re.match(ch) is None for ch in by_char):
        return False
    rules_at = {ch: tuple(fns) for ch, fns in by_char.items()}
    max_nesting: int = md.options["maxNesting"]

    def tokenize(state: StateInline) -> None:
        """markdown-it-py's ``ParserInline.tokenize``, asking only the rules that can match."""
        end = state.posMax
        src = state.src
        while state.pos < end:
            pos = state.pos
            ch = src[pos]
            ok = False
            if state.level < max_nesting:
                rules = rules_at.get(ch)
                if rules is None:
                    ok = text_rule(state, False)  # plain text, or a terminator no rule takes
                else:
                    for rule in rules:
                        if rule(state, False):
                            ok = True
                            break
                if ok and state.pos <= pos:
                    raise RuntimeError("inline rule didn't increment state.pos")
            if ok:
                if state.pos >= end:
                    break
                continue
            state.append_pending(ch)
            state.pos += 1
        if state.pending:
            state.pushPending()

    inline.tokenize = tokenize  # type: ignore[method-assign]
    return True
