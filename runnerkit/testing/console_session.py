"""Reading a console session: a block's lines as commands, their output and directives.

:mod:`runnerkit.testing.console` says what a session looks like; this module holds the
reading alone, with no Sybil document and no process, so that it can be tested alone.
"""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from runnerkit.errors import ConsoleSyntaxError

#: The languages of the code blocks that are sessions: Pygments' names of its shell
#: session lexer (``BashSessionLexer``), which renderers colour as one.
LANGUAGES = ("console", "shell-session")

#: Seconds a command may run unless told otherwise.
DEFAULT_TIMEOUT = 60.0

#: The prompt that starts a command, and the one that goes on with it.
PROMPT = "$ "
MORE = "> "

#: The last expected line that expects a non-zero exit status.
EXIT_LINE = re.compile(r"\[exit (\d+)\]")
#: A line meant as one, rightly or not: ``[exit one]``, ``[exit  1]``, ``[exit]``.
EXIT_LIKE = re.compile(r"\[exit\b[^\]]*\]")

#: Directives, at the end of a shell comment.
_DIRECTIVES = re.compile(r"(?:^|\s)#\s*((?:doctest|timeout)\s*:[^#]*?)\s*$")
#: A here-document's operator and delimiter word: ``<<EOF``, ``<<-'EOF'``, ``<< "EOF"``.
_HERE_DOCUMENT = re.compile(r"""<<(-?)[ \t]*((?:[^\s;&|<>()'"\\]|\\.|'[^'\n]*'|"[^"\n]*")+)""")
#: A backslash and what it escapes, or a quoted string, in a here-document's delimiter.
_QUOTED = re.compile(r"\\(.)|'([^']*)'" + r'|"([^"]*)"')
#: Characters after which a ``#`` starts a word, so a comment (POSIX sh, 2.3 and 2.10).
_WORD_BREAKS = frozenset(" \t\n;&|()<>")
_DIRECTIVE = re.compile(r"\s*(doctest|timeout)\s*:\s*(.*?)\s*")
_TIMEOUT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*s?")


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
        """The exit status expected: N of a last ``[exit N]`` line, else 0.  (An output
        whose own last line looks so is written with ``[exit 0]`` after it.)"""
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


def split_session(lines: Sequence[str]) -> list[SessionPart]:
    """The commands of a block whose (dedented) lines are *lines*, without newlines.

    A block with no command at all (output shown on its own, or another prompt such as
    ``user@host:~$``) has none, and is not run.

    :raises ConsoleSyntaxError: a line that is neither blank nor a comment comes before
        the first command, or a command is empty; the message gives the line's index
        in *lines*, counting from 1.
    """
    parts: list[SessionPart] = []
    if not any(is_command(line) for line in lines):
        # Output shown without its commands, or a prompt of another shape
        # ("user@host:~$ ..."): a block to read, not a session to run.
        return parts
    index = 0
    while index < len(lines) and not is_command(lines[index]):
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
        index += 1
        while index < len(lines):
            line = lines[index]
            continued = continues("\n".join(source_lines))
            if line.startswith(MORE) or line == MORE.strip():
                source_lines.append(line[len(MORE) :])
            elif continued:
                source_lines.append(line)
            else:
                break
            index += 1
        if not "".join(source_lines).strip():
            raise ConsoleSyntaxError(
                f"line {start + 1} of the block is a prompt without a command"
            )
        output_start = index
        while index < len(lines) and not is_command(lines[index]):
            index += 1
        output = list(lines[output_start:index])
        while output and not output[-1].strip():
            output.pop()
        if output:
            _check_exit_line(output[-1], output_start + len(output))
        parts.append(
            SessionPart(
                line=start,
                command_lines=output_start - start,
                output_lines=len(output),
                source="\n".join(source_lines),
                want="".join(line + "\n" for line in output),
            )
        )
    return parts


def _check_exit_line(line: str, number: int) -> None:
    """Refuse a last output *line* (the block's line *number*, from 1) that is meant as
    an ``[exit N]`` line but is not one: it would be read as output, never as a status.

    :raises ConsoleSyntaxError: it is ``[exit ...]`` alone, but not ``[exit N]`` with N
        from 0 to 255, the statuses a process can exit with.
    """
    text = line.strip()
    if not EXIT_LIKE.fullmatch(text):
        return
    match = EXIT_LINE.fullmatch(text)
    if match is None or int(match.group(1)) > 255:
        raise ConsoleSyntaxError(
            f"line {number} of the block, {line!r}, is not an exit status line: write"
            " '[exit N]', N a number from 0 to 255, as the last line of a command's output"
        )


def is_command(line: str) -> bool:
    """Whether *line* starts a command: ``$ ...``, or ``$`` alone."""
    return line.startswith(PROMPT) or line == PROMPT.strip()


def parse_directives(lines: Iterable[str]) -> tuple[dict[int, bool], float | None]:
    """The option flags and the timeout the directives of a command ask for.

    *lines* are the command's lines, without prompts.  A directive is at the end of a
    shell comment, ``# doctest: +ELLIPSIS``, flags named as
    :data:`doctest.OPTIONFLAGS_BY_NAME` names them, each turned on by ``+`` or off by
    ``-``, separated by commas or spaces; ``# timeout: 5`` (or ``5s``, or ``0.5``),
    seconds.  One comment may hold both, separated by ``;``.  A ``#`` in quotes, inside
    a word, or in a here-document starts no comment (:func:`shell_comments`), so
    ``echo 'a # doctest: +SKIP'`` is run as written.

    :raises ConsoleSyntaxError: an option is unknown or lacks its sign, or a timeout is
        not a positive number of seconds.
    """
    options: dict[int, bool] = {}
    timeout: float | None = None
    for comment in shell_comments("\n".join(lines)):
        match = _DIRECTIVES.search(comment)
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


def shell_comments(source: str) -> list[str]:
    """The comments of the shell text *source*, each from its ``#`` to its line's end.

    As POSIX sh reads them (Shell Command Language, 2.2 Quoting, 2.3 Token Recognition,
    2.6 Word Expansions, 2.7.4 Here-Document): a ``#`` starts a comment where it starts
    a word, outside single and double quotes and not escaped by a backslash; the lines
    of a here-document (after ``<<WORD`` up to the line ``WORD``, quotes removed) are
    data.  Command substitutions (``$(...)``, with their parentheses counted, and
    backquotes), in double quotes too, are read as shell text; a ``#`` in a parameter
    expansion (``${x:-a #b}``) or an arithmetic one (``$((1 << 2))``) starts nothing.
    A ``case`` pattern's ``)`` inside ``$(...)`` is not told from the end of it.
    """
    return _ShellText(source).comments


def continues(source: str) -> bool:
    """Whether the shell text *source* ends with a backslash that goes on to the next
    line: not escaped itself (``C:\\``), not in single quotes, not in a comment."""
    return _ShellText(source).continued


class _ShellText:
    """One reading of shell text, as :func:`shell_comments` describes it: its comments,
    and whether its last character is a line continuation."""

    def __init__(self, source: str) -> None:
        self.comments: list[str] = []
        self.continued = False
        self._source = source
        self._contexts: list[str] = []  # open quotes and expansions, innermost last
        self._here_documents: list[tuple[str, bool]] = []  # read at the line's end
        self._read()

    def _read(self) -> None:
        source, contexts = self._source, self._contexts
        index, end = 0, len(source)
        word_start = True
        while index < end:
            char = source[index]
            inner = contexts[-1] if contexts else ""
            if inner == "'":
                if char == "'":
                    contexts.pop()
                index += 1
                continue
            if char == "\\":
                self.continued = index == end - 1
                index += 2
                word_start = False
                continue
            if source.startswith("$((", index):
                index = _after_arithmetic(source, index + 1)
                word_start = False
                continue
            if inner == '"':
                # What follows the closing quote goes on with the same word ("a"#b).
                word_start = False
                if char == '"':
                    contexts.pop()
                elif source.startswith("${", index):
                    contexts.append("${")
                    index += 1
                elif source.startswith("$(", index):
                    contexts.append("$(")
                    index += 1
                    word_start = True
                elif char == "`":
                    contexts.append("`")
                    word_start = True
                index += 1
                continue
            if char == "#" and word_start and inner != "${":
                stop = source.find("\n", index)
                stop = end if stop < 0 else stop
                self.comments.append(source[index:stop])
                index = stop
                continue
            if char == "\n" and self._here_documents:
                index = _after_here_documents(source, index + 1, self._here_documents)
                self._here_documents.clear()
                word_start = True
                continue
            here = _HERE_DOCUMENT.match(source, index) if char == "<" else None
            if here is not None and not source.startswith("<<<", index):
                self._here_documents.append((_unquoted(here.group(2)), here.group(1) == "-"))
                index = here.end()
                word_start = False
                continue
            index, word_start = self._step(index, char, inner)

    def _step(self, index: int, char: str, inner: str) -> tuple[int, bool]:
        """Read *char*, unquoted, at *index*: where reading goes on, and whether a word
        starts there."""
        source, contexts = self._source, self._contexts
        if char in "'\"":
            contexts.append(char)
        elif source.startswith("${", index):
            contexts.append("${")
            return index + 2, False
        elif char == "}" and inner == "${":
            contexts.pop()
        elif source.startswith("$(", index):
            contexts.append("$(")
            return index + 2, True
        elif char == "`" and inner != "`":
            contexts.append("`")
            return index + 1, True
        elif char == "`" or (char == ")" and inner in ("$(", "(")):
            contexts.pop()
            # A substitution is part of a word ($(echo a)#b); a subshell's ")" ends one.
            return index + 1, inner == "("
        elif char == "(" and inner in ("$(", "("):
            contexts.append("(")
        return index + 1, char in _WORD_BREAKS


def _after_arithmetic(source: str, index: int) -> int:
    """Where the shell text goes on after the arithmetic expansion whose ``((`` starts
    at *index*: after the ``)`` that closes its first ``(``, or at the end."""
    depth = 0
    for position in range(index, len(source)):
        if source[position] == "(":
            depth += 1
        elif source[position] == ")":
            depth -= 1
            if depth == 0:
                return position + 1
    return len(source)


def _unquoted(word: str) -> str:
    """A here-document's delimiter *word* as the shell compares it: quotes and
    backslashes removed (``E"OF"`` is ``EOF``)."""
    return _QUOTED.sub(lambda m: "".join(g or "" for g in m.groups()), word)


def _after_here_documents(source: str, index: int, delimiters: list[tuple[str, bool]]) -> int:
    """Where the shell text goes on after the bodies of *delimiters*' here-documents,
    which start at *index*: after each one's delimiter line (tabs before it dropped for
    ``<<-``), or at the end of *source*."""
    for delimiter, strip_tabs in delimiters:
        while index < len(source):
            stop = source.find("\n", index)
            stop = len(source) if stop < 0 else stop
            line = source[index:stop]
            index = stop + 1
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                break
    return min(index, len(source))


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
