"""Checking a console command: run it in its document's world, compare what it printed.

The output, standard output and standard error as they came, is compared with the
expected output by a :class:`doctest.OutputChecker`, under the option flags of the
Sybil and the command's ``doctest:`` directive; the exit status with the ``[exit N]``
line, or with 0.  A failure carries what accept mode needs to rewrite the expected
output.
"""

from __future__ import annotations

import doctest
import re

from sybil import Example
from sybil.evaluators.doctest import KEEP_TRAILING_WHITESPACE

from runnerkit.errors import HarnessError
from runnerkit.testing.console_run import run_shell, session_environment
from runnerkit.testing.console_session import (
    DEFAULT_TIMEOUT,
    EXIT_LIKE,
    MORE,
    PROMPT,
    Command,
    is_command,
)
from runnerkit.testing.isolation import document_isolation
from runnerkit.testing.normalize import output_checker
from runnerkit.testing.world import World


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


class ConsoleEvaluator:
    """Run a command in its document's world and check its output and exit status.

    :param optionflags: the doctest option flags every command starts from.
    :param timeout: seconds a command may run unless its ``timeout:`` says otherwise.
    :param checker: what compares the output with the expected output: by default
        :func:`~runnerkit.testing.normalize.output_checker`'s, which knows the built-in
        normalisers; a :class:`~runnerkit.testing.SpecParser` passes its own, which also
        knows the user's.
    """

    def __init__(
        self,
        optionflags: int,
        timeout: float = DEFAULT_TIMEOUT,
        checker: doctest.OutputChecker | None = None,
    ) -> None:
        self.optionflags = optionflags
        self.timeout = timeout
        self.checker = output_checker() if checker is None else checker

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
        isolation = document_isolation(example.namespace)
        label = f"'{shown.splitlines()[0]}' (line {example.line})"
        result = run_shell(
            command.source,
            cwd=world.work_dir,
            env=session_environment(world),
            timeout=timeout,
            # What it leaves running in the background is stopped at the document's end.
            started=None if isolation is None else lambda sid: isolation.watch_session(sid, label),
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
        last_line = got.rstrip("\n").rpartition("\n")[2]
        # An output that itself ends with an "[exit N]" line (or one like it) is written
        # with the status after it, "[exit 0]" too, or it would read as the status.
        shows_status = result.status or EXIT_LIKE.fullmatch(last_line.strip())
        exit_line = f"[exit {result.status}]\n" if shows_status else ""
        checker = self.checker
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
        normalize = getattr(checker, "normalize", None)
        if normalize is not None:
            # Accept mode writes what the normalisers made of the output, so that the
            # accepted output is the same from run to run.
            got = str(normalize(got, flags))
        new_want, reason = written_want(got + exit_line, flags)
        return _failure("\n".join(report) + "\n", new_want, reason)


def written_want(got: str, optionflags: int) -> tuple[str | None, str | None]:
    """*got* as a block's expected output, or why it cannot be written as one.

    Lines keep their trailing whitespace only under ``KEEP_TRAILING_WHITESPACE``;
    blank lines at the end become ``<BLANKLINE>``, since a block's trailing blank lines
    are not read as output.

    :returns: (the expected output, None), or (None, why not).
    """
    lines = _without_trailing_whitespace(got, optionflags).split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        if is_command(line):
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
        return None, (
            f"its first line starts with {MORE!r} or is {MORE.strip()!r} alone, which would"
            " read as more of the command"
        )
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
