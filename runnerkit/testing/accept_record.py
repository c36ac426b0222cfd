"""Accept mode, part one: catch what a failing doctest example really printed.

Sybil's :class:`~sybil.evaluators.doctest.DocTestEvaluator` reports a failure as
text meant for people.  To rewrite the expected output we need the raw output, so
accept mode evaluates each doctest example with a copy of its evaluator whose runner
records the outcome of a failure: the output to accept in doctest form, or the reason
it cannot be accepted.  The records are plain data, so xdist workers can send them to
the controller, the only process that writes files.
"""

from __future__ import annotations

import copy
import doctest
import re
import traceback
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from sybil.evaluators.doctest import KEEP_TRAILING_WHITESPACE, DocTestEvaluator, DocTestRunner

#: How an accepted exception is written: the header, an elided stack, the message.
TRACEBACK_WANT = "Traceback (most recent call last):\n...\n"

_EXCEPTION_RE: re.Pattern[str] = doctest.DocTestParser._EXCEPTION_RE  # type: ignore[attr-defined]
_BLANK = re.compile(r"[^\S\n]*")
_PROMPT = re.compile(r"[ ]*>>>")
_CONTINUATION = re.compile(r"[ ]*\.\.\.")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


@dataclass(frozen=True)
class Acceptance:
    """A failing example and the expected output that would make it pass."""

    #: The document's absolute path.
    path: str
    #: Where Sybil's region for the example starts and ends in the document's text.
    start: int
    end: int
    #: The example's line in the document, for reports.
    line: int
    #: Which of the document's regions it is, counting from 0, to know it again
    #: when the rewritten document is read back.
    index: int
    #: The example as parsed: its source and its expected output, without indentation.
    source: str
    want: str
    #: The output to write instead, in doctest form and without indentation.
    new_want: str
    #: The sha256 of the document's text as collected, to notice edits during the run.
    digest: str

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data, for xdist's ``workeroutput``."""
        return {"accept": asdict(self)}


@dataclass(frozen=True)
class Refusal:
    """A failing example that accept mode reports instead of rewriting."""

    path: str
    line: int
    #: Why it was not accepted, for people.
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data, for xdist's ``workeroutput``."""
        return {"refuse": asdict(self)}


Record = Acceptance | Refusal


def record_from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record that :meth:`Acceptance.as_dict` or :meth:`Refusal.as_dict` made."""
    if "accept" in data:
        return Acceptance(**data["accept"])
    return Refusal(**data["refuse"])


@dataclass(frozen=True)
class Outcome:
    """What a recording runner saw when an example failed.

    Exactly one of *new_want* and *reason* is set.
    """

    new_want: str | None = None
    reason: str | None = None


class _RecordingChecker(doctest.OutputChecker):
    """Delegate to the evaluator's checker, remembering what it was asked to compare.

    When an expected exception does not match, doctest hands the report a whole
    traceback; the first comparison it made holds the one line doctest compares.
    """

    def __init__(self, checker: doctest.OutputChecker) -> None:
        self.checker = checker
        self.compared: list[tuple[str, str]] = []

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        self.compared.append((want, self.normalize(got, optionflags)))
        return self.checker.check_output(want, got, optionflags)

    def normalize(self, got: str, optionflags: int) -> str:
        """*got* as the checker normalises it, so accepted output is written normalised
        (:mod:`runnerkit.testing.normalize`); as it is when the checker does not."""
        normalize = getattr(self.checker, "normalize", None)
        return got if normalize is None else str(normalize(got, optionflags))

    def output_difference(self, example: doctest.Example, got: str, optionflags: int) -> str:
        return self.checker.output_difference(example, got, optionflags)


class _RecordingRunner(DocTestRunner):
    """Run examples as *original* would, and record the outcome of each failure."""

    def __init__(self, original: doctest.DocTestRunner, accept_exceptions: bool) -> None:
        super().__init__(original.optionflags)
        self._recorder = _RecordingChecker(original._checker)  # type: ignore[attr-defined]
        self._checker = self._recorder
        self.accept_exceptions = accept_exceptions
        #: The outcome of the last failure, or None.
        self.outcome: Outcome | None = None

    def reset(self) -> None:
        """Forget the last example."""
        self.outcome = None
        self._recorder.compared.clear()

    def report_failure(
        self, out: Any, test: doctest.DocTest, example: doctest.Example, got: str
    ) -> None:
        compared = self._recorder.compared
        if example.exc_msg is not None and compared and compared[0][0] is example.exc_msg:
            self.outcome = self._exception(compared[0][1])
        else:
            self.outcome = self._output(self._recorder.normalize(got, self.optionflags))
        super().report_failure(out, test, example, got)

    def report_unexpected_exception(
        self, out: Any, test: doctest.DocTest, example: doctest.Example, exc_info: ExcInfo
    ) -> None:
        exc_msg = traceback.format_exception_only(*exc_info[:2])[-1]
        exc_msg = self._recorder.normalize(exc_msg, self.optionflags)
        if self.accept_exceptions:
            self.outcome = self._exception(exc_msg)
        else:
            raised = exc_msg.strip().splitlines()[0] if exc_msg.strip() else "an exception"
            self.outcome = Outcome(
                reason=f"raised {raised}; use --spec-accept-exceptions to accept exceptions"
            )
        super().report_unexpected_exception(out, test, example, exc_info)

    def _output(self, got: str) -> Outcome:
        new_want = doctest_want(got, self.optionflags)
        problem = unwritable(new_want, self.optionflags)
        if problem is None and _EXCEPTION_RE.match(new_want):
            problem = "its output starts like a traceback, which doctest would take for one"
        if problem is None and not self._recorder.checker.check_output(
            new_want, got, self.optionflags
        ):
            problem = "the rewritten output would still not match"
        return Outcome(reason=problem) if problem else Outcome(new_want=new_want)

    def _exception(self, exc_msg: str) -> Outcome:
        new_want = doctest_want(TRACEBACK_WANT + exc_msg, self.optionflags)
        problem = unwritable(new_want, self.optionflags)
        match = _EXCEPTION_RE.match(new_want)
        if problem is None and (
            match is None
            or not self._recorder.checker.check_output(match["msg"], exc_msg, self.optionflags)
        ):
            problem = "its exception message cannot be written as a doctest traceback"
        return Outcome(reason=problem) if problem else Outcome(new_want=new_want)


def doctest_want(got: str, optionflags: int) -> str:
    """*got* as doctest's expected output: blank lines become ``<BLANKLINE>``.

    Trailing whitespace goes too, unless ``KEEP_TRAILING_WHITESPACE`` is set, since
    Sybil ignores it and editors strip it.  Under ``DONT_ACCEPT_BLANKLINE`` blank
    lines stay blank, and :func:`unwritable` then refuses the output.
    """
    lines = got.split("\n")
    if lines[-1] == "":
        lines.pop()
    written = []
    for line in lines:
        if not optionflags & KEEP_TRAILING_WHITESPACE:
            line = line.rstrip(" \t")
        if _BLANK.fullmatch(line) and not optionflags & doctest.DONT_ACCEPT_BLANKLINE:
            line = doctest.BLANKLINE_MARKER
        written.append(line + "\n")
    return "".join(written)


def unwritable(want: str, optionflags: int) -> str | None:
    """Why *want* cannot be written as an example's expected output, or None.

    These are the known cases, named for people; whatever else does not read back
    is caught when the rewritten document is parsed again.
    """
    if _CONTINUATION.match(want):
        return "its output starts with ..., which doctest would read as more source"
    for line in want.split("\n")[:-1]:
        if "\r" in line:
            return "its output holds a carriage return, which a text file cannot keep"
        if _BLANK.fullmatch(line):
            return "its output holds a blank line and DONT_ACCEPT_BLANKLINE is set"
        if _PROMPT.match(line):
            return "its output holds a line starting with >>>, which would start an example"
    return None


class RecordingEvaluators:
    """Recording copies of doctest evaluators, one per original, made on demand."""

    def __init__(self, accept_exceptions: bool) -> None:
        self.accept_exceptions = accept_exceptions
        self._copies: dict[int, tuple[DocTestEvaluator, DocTestEvaluator]] = {}

    def for_evaluator(self, original: DocTestEvaluator) -> DocTestEvaluator:
        """The recording copy of *original*; its ``runner`` is a recording runner."""
        known = self._copies.get(id(original))
        if known is not None and known[0] is original:
            return known[1]
        recording = copy.copy(original)
        recording.runner = _RecordingRunner(original.runner, self.accept_exceptions)
        self._copies[id(original)] = (original, recording)
        return recording


def outcome_of(evaluator: DocTestEvaluator) -> Outcome | None:
    """The outcome a recording copy saw for the last example, or None if it passed."""
    runner = evaluator.runner
    return runner.outcome if isinstance(runner, _RecordingRunner) else None


def reset(evaluator: DocTestEvaluator) -> None:
    """Forget what a recording copy saw, before it evaluates the next example."""
    runner = evaluator.runner
    if isinstance(runner, _RecordingRunner):
        runner.reset()
