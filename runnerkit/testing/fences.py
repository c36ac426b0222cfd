"""Markdown fences by their language, whatever words follow it on the opening line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer


def fence_lexer(languages: Sequence[str]) -> RawFencedCodeBlockLexer:
    """A lexer of the Markdown fences whose language is one of *languages*; its regions
    have a ``language`` and a ``source`` lexeme.

    As CommonMark has it, a fence's language is the first word of its info string; the
    words after it (```` ```pycon title="x.py" ````, ```` ```console linenums="1" ````,
    as MkDocs and other renderers take them) are the renderer's, and are left alone.
    Sybil's own ``FencedCodeBlockLexer`` wants the language alone on its line, and
    passes such fences over.
    """
    names = "|".join(re.escape(language) for language in languages)
    return RawFencedCodeBlockLexer(
        info_pattern=re.compile(f"(?P<language>{names})(?:[ \t][^\n]*)?$\n", re.MULTILINE),
    )


#: File suffixes read as Markdown; every other suffix is read as reStructuredText.
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})


def is_markdown(path: str) -> bool:
    """Whether the document at *path* is read as Markdown, by its suffix."""
    return Path(path).suffix.lower() in MARKDOWN_SUFFIXES


#: Any fence, whatever its info string.
_ANY_FENCE = re.compile(r"[^\n]*$\n", re.MULTILINE)


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
    blanked = list(text)
    covered = 0
    lexer = RawFencedCodeBlockLexer(info_pattern=_ANY_FENCE)
    for region in sorted(lexer(document), key=lambda region: region.start):
        if region.start < covered:
            continue
        for index in range(region.start, region.end):
            if blanked[index] != "\n":
                blanked[index] = " "
        covered = region.end
    return "".join(blanked)
