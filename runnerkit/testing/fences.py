"""Markdown fences by their language, whatever words follow it on the opening line."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sybil import Document, Region
from sybil.parsers.abstract.lexers import LexerCollection
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer
from sybil.typing import Lexer


def fence_lexer(languages: Sequence[str]) -> Lexer:
    """A lexer of the Markdown fences whose language is one of *languages*; its regions
    have a ``language`` and a ``source`` lexeme.

    As CommonMark has it, a fence's language is the first word of its info string; the
    words after it (```` ```pycon title="x.py" ````, ```` ```console linenums="1" ````,
    as MkDocs and other renderers take them) are the renderer's, and are left alone.
    Sybil's own ``FencedCodeBlockLexer`` wants the language alone on its line, and
    passes such fences over.  Blanks before the language (```` ``` pycon ````) are
    allowed too, as CommonMark trims the info string, and the language's case does not
    matter (```` ```Console ````), as to Pygments, which colours it.
    """
    names = "|".join(re.escape(language) for language in languages)
    return real_blocks(
        RawFencedCodeBlockLexer(
            info_pattern=re.compile(
                f"[ \t]*(?P<language>{names})(?:[ \t][^\n]*)?$\n", re.MULTILINE | re.IGNORECASE
            ),
        )
    )


#: File suffixes read as Markdown; every other suffix is read as reStructuredText.
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})


def is_markdown(path: str) -> bool:
    """Whether the document at *path* is read as Markdown, by its suffix."""
    return Path(path).suffix.lower() in MARKDOWN_SUFFIXES


def directive_text(document: Document) -> str:
    """The text in which *document*'s own comment lines (``runnerkit-backend``,
    ``runnerkit-normalize``, ``runnerkit-fixtures``...) are looked for.

    In Markdown, a fenced block shows text instead of being it: a comment line inside
    one (as a spec that teaches the lines shows them) is not the document's, so the
    blocks are blanked out, their line breaks kept, so that a match's offset still
    gives its line.  A reStructuredText document is read whole: there a literal block
    is indented, and the lines, which start at the margin, cannot match inside it.
    """
    text = document.text
    if not is_markdown(document.path):
        return text
    blocks = _blocks(text)
    lines = text.split("\n")
    for start, end in blocks.literal:
        for number in range(start, min(end, len(lines))):
            lines[number] = " " * len(lines[number])
    return "\n".join(lines)


@dataclass(frozen=True)
class _Blocks:
    """Where a Markdown text's blocks are, as CommonMark reads it (lines from 0)."""

    #: The offset at which each line starts.
    line_starts: tuple[int, ...]
    #: The lines on which a real fence or an HTML block (a comment) opens.
    openings: frozenset[int]
    #: The [start, end) lines of every block whose lines are the block's text, not
    #: Markdown: fences, indented code blocks and HTML blocks.
    opaque: tuple[tuple[int, int], ...]
    #: The [start, end) lines of the fences and indented code blocks alone.
    literal: tuple[tuple[int, int], ...]

    def line_of(self, offset: int) -> int:
        return bisect_right(self.line_starts, offset) - 1

    def is_real(self, offset: int) -> bool:
        """Whether a block that a lexer found at *offset* is one that CommonMark reads
        there: one that starts where a real fence or HTML block opens, or one outside
        every fence, indented code block and HTML block."""
        line = self.line_of(offset)
        if line in self.openings:
            return True
        return not any(start <= line < end for start, end in self.opaque)


@lru_cache(maxsize=64)
def _blocks(text: str) -> _Blocks:
    """*text*'s blocks, parsed once per text."""
    from markdown_it import MarkdownIt

    openings: set[int] = set()
    opaque: list[tuple[int, int]] = []
    literal: list[tuple[int, int]] = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.map is None or token.type not in ("fence", "code_block", "html_block"):
            continue
        start, end = token.map
        opaque.append((start, end))
        if token.type == "code_block":
            literal.append((start, end))
        else:
            openings.add(start)
            if token.type == "fence":
                literal.append((start, end))
    line_starts = [0]
    line_starts.extend(match.end() for match in re.finditer("\n", text))
    return _Blocks(tuple(line_starts), frozenset(openings), tuple(opaque), tuple(literal))


def real_blocks(lexer: Lexer) -> Lexer:
    """*lexer*, keeping only the regions that start where CommonMark has a block start.

    Sybil's Markdown lexers are regular expressions, which do not know that a fence
    inside a longer fence (````` ````markdown `````), inside a ``~~~`` fence, an
    indented code block or an HTML block is only text of that block; nor that a
    ``<!-- skip: next -->`` inside a fence is text, not a comment.  A region that starts
    inside such a block, other than on the line where a real fence or HTML block opens,
    is dropped.  Fences in block quotes and list items are real, and kept.
    """

    def lex(document: Document) -> Iterator[Region]:
        blocks = _blocks(document.text)
        for region in lexer(document):
            if blocks.is_real(region.start):
                yield region

    return lex


def language_first_word(lexer: Lexer) -> Lexer:
    """*lexer*, its regions' ``arguments`` lexeme (a fence's info string, as Sybil's
    Markdown ``CodeBlockParser`` reads it) cut to its first word: the language, as
    CommonMark has it (4.5, Fenced code blocks).  Sybil compares the whole info string
    with the language, so ```` ```python title="x.py" ```` or a ```` ```python ```` with
    a space after it would not run.  The language is read in lower case
    (```` ```Python ````), as Pygments reads it."""

    def lex(document: Document) -> Iterator[Region]:
        for region in lexer(document):
            arguments = region.lexemes.get("arguments")
            if isinstance(arguments, str) and arguments.split():
                region.lexemes["arguments"] = arguments.split()[0].lower()
            yield region

    return lex


def fences_by_language(parser: Any) -> None:
    """Wrap each of the Sybil code block *parser*'s ``lexers`` in
    :func:`language_first_word`, in place."""
    parser.lexers = LexerCollection(language_first_word(lexer) for lexer in parser.lexers)


def only_real_blocks(parser: Any) -> None:
    """Wrap each of the Sybil *parser*'s ``lexers`` in :func:`real_blocks`, in place."""
    parser.lexers = LexerCollection(real_blocks(lexer) for lexer in parser.lexers)
