"""Console sessions: ``console`` code blocks whose commands run, checked against their output.

A ``.. code-block:: console`` (or ``.. code::``, ``.. sourcecode::``) in
reStructuredText, or a fenced ```` ```console ```` block in Markdown, is a session::

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
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sybil import Document, Example, Region
from sybil.evaluators.doctest import KEEP_TRAILING_WHITESPACE
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer
from sybil.parsers.rest.lexers import DirectiveLexer
from sybil.typing import Lexer

from runnerkit.errors import HarnessError
from runnerkit.testing.console_run import run_shell, session_environment
from runnerkit.testing.world import World

#: The language of the code blocks that are sessions.
LANGUAGE = "console"

#: Seconds a command may run unless told otherwise.
DEFAULT_TIMEOUT = 60.0

#: The prompt that starts a command, and the one that goes on with it.
PROMPT = "$ "
MORE = "> "

#: The last expected line that expects a non-zero exit status.
EXIT_LINE = re.compile(r"\[exit (\d+)\]")

#: A comment holding directives, at the end of a command line.
_DIRECTIVES = re.compile(r"(?:^|\s)#\s*((?:doctest|timeout)\s*:[^#]*?)\s*$")
_DIRECTIVE = re.compile(r"\s*(doctest|timeout)\s*:\s*(.*?)\s*")
_TIMEOUT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*s?")


class ConsoleSyntaxError(HarnessError):
    """A console block cannot be read as a session: the message says where and why."""


@dataclass(frozen=True)
class Command:
    """One command of a session, as its block says it.

    Offsets are in the text of the document the block is in.
    """

    #: The shell text: the command's lines without their prompts, joined by newlines.
    source: str
    #: The expected output as written, the ``[exit N]`` line included, each line
    #: ending with a newline; empty when nothing is expected.
    want: str
    #: Option flags the command's ``doctest:`` directive turns on (True) or off.
    options: dict[int, bool] = field(default_factory=dict)
    #: Seconds from its ``timeout:`` directive, or None for the session's default.
    timeout: float | None = None
    #: Where the expected output starts and ends (just after the command, when empty).
    want_start: int = 0
    want_end: int = 0
    #: What comes before the ``$`` on the command's line: the block's indentation.
    indent: str = ""

    @property
    def status(self) -> int:
        """The exit status expected: N of a last ``[exit N]`` line, else 0."""
        lines = self.want.splitlines()
        match = EXIT_LINE.fullmatch(lines[-1].strip()) if lines else None
        return int(match.group(1)) if match else 0

    @property
    def output(self) -> str:
        """The expected output without its ``[exit N]`` line."""
        lines = self.want.splitlines(keepends=True)
        if lines and EXIT_LINE.fullmatch(lines[-1].strip()):
            lines.pop()
        return "".join(lines)

    def reading(self) -> tuple[str, str, str, tuple[object, ...]]:
        """What the command says, to tell whether a rewritten document reads the same:
        its kind, source, expected output and directives."""
        return ("console", self.source, self.want, (sorted(self.options.items()), self.timeout))


@dataclass(frozen=True)
class SessionPart:
    """Where one command and its expected output are among a block's lines."""

    #: The index of the command's ``$`` line, and how many lines the command has.
    line: int
    command_lines: int
    #: How many lines of expected output follow it, blank lines at their end left out.
    output_lines: int
    source: str
    want: str
    #: The lines of the command that the shell reads as command lines, not a
    #: here-document's: directives are read from these.
    shell_lines: tuple[str, ...]


def split_session(lines: Sequence[str]) -> list[SessionPart]:
    """The commands of a block whose (dedented) lines are *lines*, without newlines.

    :raises ConsoleSyntaxError: a line that is neither blank nor a comment comes before
        the first command, or a command is empty; the message gives the line's index
        in *lines*, counting from 1.
    """
    parts: list[SessionPart] = []
    index = 0
    while index < len(lines) and not _is_command(lines[index]):
        line = lines[index]
        if line.strip() and not line.lstrip().startswith("#"):
            raise ConsoleSyntaxError(
                f"line {index + 1} of the block, {line!r}, comes before its first command:"
                f" start commands with {PROMPT!r}; before the first, only blank lines and"
                " '#' comments may come"
            )
        index += 1
    while index < len(lines):
        start = index
        source_lines = [lines[index][len(PROMPT) :] if lines[index] != "$" else ""]
        shell_lines = [source_lines[0]]
        index += 1
        while index < len(lines):
            line = lines[index]
            continued = source_lines[-1].endswith("\\")
            if line.startswith(MORE) or line == MORE.strip():
                source_lines.append(line[len(MORE) :])
            elif continued:
                source_lines.append(line)
            else:
                break
            if continued:
                shell_lines.append(source_lines[-1])
            index += 1
        if not "".join(source_lines).strip():
            raise ConsoleSyntaxError(
                f"line {start + 1} of the block is a prompt without a command"
            )
        output_start = index
        while index < len(lines) and not _is_command(lines[index]):
            index += 1
        output = list(lines[output_start:index])
        while output and not output[-1].strip():
            output.pop()
        parts.append(
            SessionPart(
                line=start,
                command_lines=output_start - start,
                output_lines=len(output),
                source="\n".join(source_lines),
                want="".join(line + "\n" for line in output),
                shell_lines=tuple(shell_lines),
            )
        )
    return parts


def _is_command(line: str) -> bool:
    return line.startswith(PROMPT) or line == PROMPT.strip()


def parse_directives(lines: Iterable[str]) -> tuple[dict[int, bool], float | None]:
    """The option flags and the timeout the directives on *lines* ask for.

    A directive is in a comment at the end of a line: ``# doctest: +ELLIPSIS``, flags
    named as :data:`doctest.OPTIONFLAGS_BY_NAME` names them, each turned on by ``+``
    or off by ``-``, separated by commas or spaces; ``# timeout: 5`` (or ``5s``, or
    ``0.5``), seconds.  One comment may hold both, separated by ``;``.

    :raises ConsoleSyntaxError: an option is unknown or lacks its sign, or a timeout is
        not a positive number of seconds.
    """
    options: dict[int, bool] = {}
    timeout: float | None = None
    for line in lines:
        match = _DIRECTIVES.search(line)
        if match is None:
            continue
        for item in match.group(1).split(";"):
            directive = _DIRECTIVE.fullmatch(item)
            if directive is None:
                raise ConsoleSyntaxError(
                    f"cannot read the directive {item.strip()!r}: write 'doctest: +FLAG'"
                    " or 'timeout: SECONDS', several separated by ';'"
                )
            name, value = directive.groups()
            if name == "timeout":
                timeout = _seconds(value)
            else:
                options.update(_flags(value))
    return options, timeout


def _seconds(value: str) -> float:
    match = _TIMEOUT.fullmatch(value)
    seconds = float(match.group(1)) if match else math.nan
    if not seconds > 0:
        raise ConsoleSyntaxError(
            f"timeout {value!r} is not a number of seconds above 0, such as 'timeout: 5'"
        )
    return seconds


def _flags(value: str) -> dict[int, bool]:
    flags = {}
    for option in value.replace(",", " ").split():
        name = option[1:]
        if option[:1] not in "+-" or name not in doctest.OPTIONFLAGS_BY_NAME:
            known = ", ".join(sorted(doctest.OPTIONFLAGS_BY_NAME))
            raise ConsoleSyntaxError(
                f"unknown doctest option {option!r}: use +NAME to turn one on or -NAME to"
                f" turn it off, where NAME is one of {known}"
            )
        flags[doctest.OPTIONFLAGS_BY_NAME[name]] = option[0] == "+"
    return flags


class ConsoleFailure(str):
    """What a failing command reports, with what accept mode needs to rewrite it.

    Exactly one of :attr:`new_want` and :attr:`reason` is set.
    """

    #: The expected output that would have matched, in the form a block writes it.
    new_want: str | None = None
    #: Why the command's expected output cannot be rewritten.
    reason: str | None = None


def _failure(report: str, new_want: str | None, reason: str | None) -> ConsoleFailure:
    failure = ConsoleFailure(report)
    failure.new_want = new_want
    failure.reason = reason
    return failure


def _output_checker() -> doctest.OutputChecker:
    """The checker that compares a command's output with its expected output."""
    return doctest.OutputChecker()


class ConsoleEvaluator:
    """Run a command in its document's world and check its output and exit status.

    :param optionflags: the doctest option flags every command starts from.
    :param timeout: seconds a command may run unless its ``timeout:`` says otherwise.
    """

    def __init__(self, optionflags: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.optionflags = optionflags
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<ConsoleEvaluator timeout={self.timeout}>"

    def flags_for(self, command: Command) -> int:
        """The option flags *command* runs with: the defaults, as its directive changes them."""
        flags = self.optionflags
        for flag, on in command.options.items():
            flags = flags | flag if on else flags & ~flag
        return flags

    def __call__(self, example: Example) -> str | None:
        command: Command = example.parsed
        flags = self.flags_for(command)
        if flags & doctest.SKIP:
            return None
        world = example.namespace.get("world")
        if not isinstance(world, World):
            raise HarnessError(
                "a console session runs in its document's world, but this document has"
                " none: collect it with runnerkit.testing.collect_specs or make_sybil"
            )
        timeout = self.timeout if command.timeout is None else command.timeout
        shown = _shown(command.source)
        result = run_shell(
            command.source, cwd=world.work_dir, env=session_environment(world), timeout=timeout
        )
        got = _without_trailing_whitespace(result.output, flags)
        if got and not got.endswith("\n"):
            got += "\n"
        if result.status is None:
            return _failure(
                f"{shown}\ntimed out after {timeout:g} s; its process group was killed."
                f" Its output until then:\n{_indent(got) or '    (none)'}",
                None,
                "the command timed out",
            )
        exit_line = f"[exit {result.status}]\n" if result.status else ""
        checker = _output_checker()
        want = _without_trailing_whitespace(command.output, flags)
        output_matches = checker.check_output(want, got, flags)
        if output_matches and result.status == command.status:
            return None
        report = [shown]
        if result.status != command.status:
            report.append(
                f"exit status {result.status}, expected {command.status}"
                + (f" (a last line '[exit {result.status}]' expects it)" if result.status else "")
            )
        if output_matches:
            report.append("Its output, as expected:\n" + (_indent(got) or "    (none)"))
        else:
            report.append(
                checker.output_difference(
                    doctest.Example(command.source, command.want), got + exit_line, flags
                ).rstrip("\n")
            )
        new_want, reason = written_want(got + exit_line, flags)
        return _failure("\n".join(report) + "\n", new_want, reason)


def written_want(got: str, optionflags: int) -> tuple[str | None, str | None]:
    """*got* as a block's expected output, or why it cannot be written as one.

    Lines keep their trailing whitespace only under ``KEEP_TRAILING_WHITESPACE``;
    blank lines at the end become ``<BLANKLINE>``, since a block's trailing blank lines
    are not read as output.

    :returns: (the expected output, None), or (None, why not).
    """
    lines = _without_trailing_whitespace(got, optionflags).splitlines()
    for line in lines:
        if _is_command(line):
            return None, f"its output holds a line starting with {PROMPT!r}, a command"
        if "\r" in line:
            return None, "its output holds a carriage return, which a text file cannot keep"
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    if end < len(lines) and optionflags & doctest.DONT_ACCEPT_BLANKLINE:
        return None, "its output ends with a blank line and DONT_ACCEPT_BLANKLINE is set"
    lines[end:] = [doctest.BLANKLINE_MARKER] * (len(lines) - end)
    if lines and (lines[0].startswith(MORE) or lines[0] == MORE.strip()):
        return None, f"its output starts with {MORE!r}, which would read as more command"
    return "".join(line + "\n" for line in lines), None


def _without_trailing_whitespace(text: str, optionflags: int) -> str:
    if optionflags & KEEP_TRAILING_WHITESPACE:
        return text
    return re.sub(r"[ \t]+$", "", text, flags=re.MULTILINE)


def _shown(source: str) -> str:
    """The command as a session shows it."""
    first, *rest = source.split("\n")
    return "\n".join([PROMPT + first, *(MORE + line for line in rest)])


def _indent(text: str) -> str:
    return "".join("    " + line + "\n" for line in text.splitlines())


class ConsoleParser:
    """A Sybil parser for console sessions found by *lexers*.

    :param lexers: lexers whose regions have ``arguments`` (or ``language``) and a
        ``source`` lexeme: :func:`rest_lexers` or :func:`markdown_lexers`.
    :param optionflags: doctest option flags every command starts from.
    :param timeout: seconds a command may run unless its ``timeout:`` says otherwise.
    """

    def __init__(
        self, lexers: Sequence[Lexer], optionflags: int, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if not timeout > 0:
            raise HarnessError(f"console timeout {timeout!r} is not a number of seconds above 0")
        self.lexers = list(lexers)
        self.evaluator = ConsoleEvaluator(optionflags, timeout)

    def __call__(self, document: Document) -> Iterator[Region]:
        for lexer in self.lexers:
            for lexed in lexer(document):
                language = lexed.lexemes.get("arguments") or lexed.lexemes.get("language")
                if (language or "").strip() == LANGUAGE:
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
                options, timeout = parse_directives(part.shell_lines)
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
    """The lexer of Markdown's fenced ```` ```console ```` blocks."""
    return [FencedCodeBlockLexer(language=LANGUAGE)]
