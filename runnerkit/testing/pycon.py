"""Python sessions in Markdown: ``pycon`` fences, and sessions that nothing collects.

Sybil's Markdown parser runs the ``>>>`` examples of ``python`` fences only.  A session
written in a ``pycon`` fence (Pygments' name for a Python console session, also
``python-console``) is just as much a doctest, and :class:`PyconParser` collects it.

A session in a fence of another language, or of none, is still shown to readers as
what Python prints, but no parser collects it, so a wrong expected output goes
unnoticed.  :func:`check_sessions` finds such fences in a parsed document and warns
(:class:`UncollectedSessionWarning`), fails (:class:`UncollectedSessionError`), or
ignores them, as ``collect_specs(uncollected_sessions=...)`` says.  In
reStructuredText, Sybil's doctest parser reads ``>>>`` wherever it is, so no session
there goes uncollected.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from sybil import Document, Region
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.parsers.abstract import DocTestStringParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from runnerkit.errors import HarnessError
from runnerkit.testing.fences import fence_lexer, real_blocks

#: The fence languages read as Python sessions (Pygments' PythonConsoleLexer aliases).
PYCON_LANGUAGES = ("pycon", "python-console")

#: What ``uncollected_sessions`` may be.
UNCOLLECTED_MODES = ("warn", "fail", "ignore")

#: A session's first line: a prompt, alone or with code after a blank.
_PROMPT = re.compile(r"[ \t]*>>>(?:[ \t]|$)")


class UncollectedSessionWarning(UserWarning):
    """A Markdown fence holds a Python session that no parser collects."""


class UncollectedSessionError(HarnessError):
    """A Markdown fence holds a Python session that no parser collects, and
    ``uncollected_sessions="fail"`` makes that an error."""


class PyconParser:
    """A Sybil parser for the ``>>>`` examples of ``pycon`` and ``python-console`` fences.

    :param evaluator: the doctest evaluator of the examples.
    """

    def __init__(self, evaluator: DocTestEvaluator) -> None:
        self.lexer = fence_lexer(PYCON_LANGUAGES)
        self.string_parser = DocTestStringParser(evaluator)

    def __call__(self, document: Document) -> Iterator[Region]:
        for fence in self.lexer(document):
            source = fence.lexemes["source"]
            for region in self.string_parser(source, document.path):
                region.adjust(fence, source)
                yield region


@dataclass(frozen=True)
class UncollectedSession:
    """A fence whose session no parser collected."""

    #: The line of its opening fence, from 1.
    line: int
    #: The fence as it opens, such as ```` ```text ````.
    opening: str
    #: Its language, or ``""``.
    language: str


def uncollected_sessions(document: Document) -> list[UncollectedSession]:
    """The fences of the parsed Markdown *document* whose first line that is not blank
    starts with ``>>>``, and inside which no parser found an example."""
    lexer = real_blocks(
        RawFencedCodeBlockLexer(
            info_pattern=re.compile(r"(?P<info>[^\n]*)(?:\n|\Z)"), mapping=None
        )
    )
    starts = sorted(start for start, _ in document.regions)
    fences = list(lexer(document))
    found = []
    for fence in fences:
        lines = [line for line in str(fence.lexemes["source"]).splitlines() if line.strip()]
        if not lines or not _PROMPT.match(lines[0]):
            continue
        if any(fence.start <= start < fence.end for start in starts):
            continue
        info = str(fence.lexemes["info"]).strip()
        opening_line = document.text[fence.start :].split("\n", 1)[0].strip()
        found.append(
            UncollectedSession(
                line=document.text.count("\n", 0, fence.start) + 1,
                opening=opening_line,
                language=info.split()[0] if info else "",
            )
        )
    return found


def describe(path: str, session: UncollectedSession) -> str:
    """What is wrong with *session* in the document at *path*, and how to fix it."""
    kind = f"a {session.language!r} fence" if session.language else "a fence with no language"
    fix = "open it with ```pycon (or ```python) to run it as a doctest"
    return (
        f"{path}, line {session.line}: {kind} ({session.opening}) holds a Python session"
        f" (it starts with >>>) that is not collected, so its expected output is never"
        f" checked: {fix}, or remove its >>> prompts if it is not meant to run"
    )


def check_sessions(document: Document, mode: str, name: str) -> None:
    """Report the uncollected sessions of the parsed Markdown *document*.

    :param mode: ``warn`` (an :class:`UncollectedSessionWarning` each, at the
        document's path and line), ``fail`` or ``ignore``.
    :param name: the document's name in messages.
    :raises UncollectedSessionError: *mode* is ``fail`` and the document has one.
    """
    if mode == "ignore":
        return
    sessions = uncollected_sessions(document)
    if mode == "fail" and sessions:
        raise UncollectedSessionError(
            "\n".join(describe(name, session) for session in sessions)
            + "\n(collect_specs(uncollected_sessions='warn') makes this a warning)"
        )
    for session in sessions:
        warnings.warn_explicit(
            describe(name, session),
            UncollectedSessionWarning,
            filename=document.path,
            lineno=session.line,
        )


def checked_mode(mode: str) -> str:
    """*mode*, once it is one of :data:`UNCOLLECTED_MODES`.

    :raises HarnessError: it is not.
    """
    if mode not in UNCOLLECTED_MODES:
        raise HarnessError(
            f"uncollected_sessions={mode!r} is not a mode: use one of"
            f" {', '.join(repr(m) for m in UNCOLLECTED_MODES)}"
        )
    return mode
