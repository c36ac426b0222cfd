"""Markdown fences by their language, whatever words follow it on the opening line."""

from __future__ import annotations

import re
from collections.abc import Sequence

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
