"""Console sessions: ``console`` code blocks whose commands run, checked against their output.

A ``.. code-block:: console`` (or ``.. code::``, ``.. sourcecode::``; or the language
``shell-session``, Pygments' other name for it) in reStructuredText, or a fenced
```` ```console ```` (```` ```shell-session ````) block in Markdown, is a session::

    $ runnerkit lists create ant@example.com
    created ant@example.com (list id ant.example.com)
    $ runnerkit lists create not-an-address
    runnerkit: error: invalid email address 'not-an-address': it has no '@'
    [exit 1]

Each line starting with ``$ `` is a command, one example of its own; the lines up to
the next command, or the end of the block, are its expected output, blank lines at
their end left out.  A command goes on over the next lines while a line ends with
``\\``, and over the lines that start with ``> `` (or are ``>`` alone), the shell's
prompt for more (a here-document's lines).  Before the first command, a block holds
only blank lines and ``#`` comments; a block without any command shows output only
and runs nothing.

An expected output whose last line is ``[exit N]`` expects exit status N; without
one, the command must exit with 0.  A comment on the command line holds directives:
``# doctest: +ELLIPSIS, -NORMALIZE_WHITESPACE`` (doctest's option flags, any
registered one), ``# timeout: 5`` (seconds), or both, separated by ``;``.

Commands run as :mod:`runnerkit.testing.console_run` says, in the world's
:attr:`~runnerkit.testing.World.work_dir`.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator, Sequence

from sybil import Document, Region
from sybil.parsers.rest.lexers import DirectiveLexer
from sybil.typing import Lexer

from runnerkit.errors import ConsoleSyntaxError, HarnessError
from runnerkit.testing.console_check import ConsoleEvaluator
from runnerkit.testing.console_session import (
    DEFAULT_TIMEOUT,
    LANGUAGES,
    Command,
    parse_directives,
    split_session,
)
from runnerkit.testing.fences import fence_lexer


class ConsoleParser:
    """A Sybil parser for console sessions found by *lexers*.

    :param lexers: lexers whose regions have ``arguments`` (or ``language``) and a
        ``source`` lexeme: :func:`rest_lexers` or :func:`markdown_lexers`.
    :param optionflags: doctest option flags every command starts from.
    :param timeout: seconds a command may run unless its ``timeout:`` says otherwise.
    :param checker: what compares output with expected output (see
        :class:`~runnerkit.testing.console_check.ConsoleEvaluator`).
    """

    def __init__(
        self,
        lexers: Sequence[Lexer],
        optionflags: int,
        timeout: float = DEFAULT_TIMEOUT,
        checker: doctest.OutputChecker | None = None,
    ) -> None:
        if not timeout > 0:
            raise HarnessError(f"console timeout {timeout!r} is not a number of seconds above 0")
        self.lexers = list(lexers)
        self.evaluator = ConsoleEvaluator(optionflags, timeout, checker)

    def __call__(self, document: Document) -> Iterator[Region]:
        for lexer in self.lexers:
            for lexed in lexer(document):
                language = lexed.lexemes.get("arguments") or lexed.lexemes.get("language")
                if (language or "").strip().lower() in LANGUAGES:
                    yield from self._regions(document, lexed)

    def _regions(self, document: Document, lexed: Region) -> Iterator[Region]:
        source = lexed.lexemes["source"]
        text = document.text
        block_lines = source.splitlines()
        # The lexeme's lines are the document's, less their indentation: walk the
        # document's lines alongside them, to know where each one is.
        starts: list[int] = []
        position = lexed.start + source.offset
        for _ in block_lines:
            starts.append(position)
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline + 1
        ends = [*starts[1:], position]
        first_line = document.line_column(lexed.start)
        try:
            parts = split_session(block_lines)
        except ConsoleSyntaxError as error:
            raise ConsoleSyntaxError(
                f"{document.path}, console block at {first_line}: {error}"
            ) from None  # the same error, now saying where it is
        for part in parts:
            line_start = starts[part.line]
            line_text = text[line_start : ends[part.line]].rstrip("\n")
            indent = line_text[: len(line_text) - len(block_lines[part.line])]
            try:
                options, timeout = parse_directives(part.source.split("\n"))
            except ConsoleSyntaxError as error:
                raise ConsoleSyntaxError(
                    f"{document.path}, command at"
                    f" {document.line_column(line_start + len(indent))}: {error}"
                ) from None  # the same error, now saying where it is
            after_command = part.line + part.command_lines
            want_start = ends[after_command - 1]
            want_end = ends[after_command + part.output_lines - 1]
            if not part.output_lines:
                want_end = want_start
            command = Command(
                source=part.source,
                want=part.want,
                options=options,
                timeout=timeout,
                want_start=want_start,
                want_end=want_end,
                indent=indent,
            )
            yield Region(line_start + len(indent), want_end, command, self.evaluator)


def rest_lexers() -> list[Lexer]:
    """The lexers of reStructuredText's ``code-block``, ``code`` and ``sourcecode``."""
    return [DirectiveLexer(directive=r"(?:code-block|code|sourcecode)")]


def markdown_lexers() -> list[Lexer]:
    """The lexer of Markdown's fenced ```` ```console ```` (and ```` ```shell-session ````)
    blocks."""
    return [fence_lexer(LANGUAGES)]
