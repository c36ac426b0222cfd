"""Accept mode: ``pytest --spec-accept`` rewrites the expected output of failing examples.

Each failing doctest example of a Sybil document gets its expected output replaced
by what it printed, in place in the ``.rst`` or ``.md`` file; ``--spec-accept-diff`` only
prints the unified diff.  Failures stay failures: the run still reports them and
exits non-zero, and the next run passes.  An expected output that used ``...``
(ELLIPSIS) is replaced by the whole output, since which parts to elide is a choice
only the author can make.  A failing console command
(:mod:`runnerkit.testing.console`) gets its expected output rewritten the same way,
its ``[exit N]`` line included; one that ran out of time is not rewritten.

Before anything is written, the rewritten document is read back by the parsers that
collected it; an example whose new output does not read back, or whose rewrite would
change how any other example reads, is reported as not accepted, and the document
keeps its old output for it.

Under xdist, each worker plans the rewrites of the documents it ran, since only it
holds their parsers, and sends the plans to the controller in ``workeroutput``; the
controller alone writes documents, at the end of the session.  So no file is ever
written by two processes, whatever ``--dist`` mode scheduled the examples, and the
diff of a dry run lands in the one terminal report.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from sybil.document import PythonDocument
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.example import SybilFailure
from sybil.integration.pytest import SybilItem

from runnerkit.testing.accept_record import (
    Acceptance,
    Record,
    RecordingEvaluators,
    Refusal,
    outcome_of,
    record_from_dict,
    reset,
)
from runnerkit.testing.accept_rewrite import DocumentReader, FileChange, digest, plan_all
from runnerkit.testing.accept_runs import RunAgreement
from runnerkit.testing.console_check import ConsoleEvaluator, ConsoleFailure

#: The ``workeroutput`` key under which xdist workers send their records.
WORKEROUTPUT_KEY = "runnerkit_accept"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runnerkit", "runnerkit specs")
    group.addoption(
        "--spec-accept",
        action="store_true",
        help="rewrite the expected output of failing doctest examples and console commands"
        " in their documents",
    )
    group.addoption(
        "--spec-accept-diff",
        action="store_true",
        help="like --spec-accept, but only print the unified diff; change no file",
    )
    group.addoption(
        "--spec-accept-exceptions",
        action="store_true",
        help="with --spec-accept or --spec-accept-diff, also accept examples that raised an "
        "unexpected exception, as a doctest traceback",
    )


def pytest_configure(config: pytest.Config) -> None:
    accept = config.getoption("spec_accept", False)
    dry_run = config.getoption("spec_accept_diff", False)
    exceptions = config.getoption("spec_accept_exceptions", False)
    if accept and dry_run:
        raise pytest.UsageError(
            "--spec-accept and --spec-accept-diff exclude each other: choose one"
        )
    if exceptions and not (accept or dry_run):
        raise pytest.UsageError(
            "--spec-accept-exceptions needs --spec-accept or --spec-accept-diff"
        )
    if accept or dry_run:
        config.pluginmanager.register(AcceptMode(config, dry_run, exceptions), AcceptMode.NAME)


class AcceptMode:
    """The plugin that records failing examples and rewrites their documents.

    :param dry_run: print the diff instead of writing.
    :param accept_exceptions: accept unexpected exceptions too.
    """

    NAME = "runnerkit-accept"

    def __init__(self, config: pytest.Config, dry_run: bool, accept_exceptions: bool) -> None:
        self.config = config
        self.dry_run = dry_run
        self.evaluators = RecordingEvaluators(accept_exceptions)
        self.records: list[Record] = []
        #: How each document with a failing example was read, by path.
        self.readers: dict[str, DocumentReader] = {}
        self.changes: list[FileChange] = []
        self.errors: list[str] = []
        #: What each run of a parametrized document saw of its examples.
        self.runs = RunAgreement()
        workeroutput = getattr(config, "workeroutput", None)
        #: Where a worker puts its plans for the controller; None outside a worker.
        self.outbox: list[dict[str, Any]] | None = None
        if workeroutput is not None:
            self.outbox = workeroutput.setdefault(WORKEROUTPUT_KEY, [])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """Evaluate a doctest example with a recording evaluator, and keep the record."""
        if not isinstance(item, SybilItem):
            return (yield)
        example = item.example
        region = example.region
        original = region.evaluator
        if isinstance(original, ConsoleEvaluator):
            console_record: Record | None = None
            try:
                return (yield)
            except SybilFailure as failure:
                if isinstance(failure.result, ConsoleFailure):
                    result = failure.result
                    console_record = self._record(item, result.new_want, result.reason)
                    self.records.append(console_record)
                raise
            finally:
                self.runs.see(item, _seen(console_record))
        if not isinstance(original, DocTestEvaluator):
            return (yield)
        recording = self.evaluators.for_evaluator(original)
        reset(recording)
        region.evaluator = recording
        try:
            return (yield)
        finally:
            region.evaluator = original
            outcome = outcome_of(recording)
            record = None
            if outcome is not None:
                record = self._record(item, outcome.new_want, outcome.reason)
                self.records.append(record)
            self.runs.see(item, _seen(record))

    def _record(self, item: SybilItem, new_want: str | None, reason: str | None) -> Record:
        example = item.example
        if new_want is not None and isinstance(example.document, PythonDocument):
            reason = "examples in Python docstrings are not rewritten"
        if new_want is None or reason is not None:
            return Refusal(example.path, example.line, reason or "not accepted")
        reader = _reader(item)
        if reader is not None:
            self.readers.setdefault(example.path, reader)
        document = example.document
        return Acceptance(
            path=example.path,
            start=example.start,
            end=example.end,
            line=example.line,
            index=next(n for n, (_, r) in enumerate(document.regions) if r is example.region),
            source=example.parsed.source,
            want=example.parsed.want,
            new_want=new_want,
            digest=digest(document.text),
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take in a finished worker's refusals and planned changes."""
        for data in getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY, ()):
            if "change" in data:
                self._take(FileChange.from_dict(data["change"]))
            else:
                self.records.append(record_from_dict(data))

    def _take(self, change: FileChange) -> None:
        """Add a worker's change; under ``--dist each`` every worker plans the same one."""
        for known in self.changes:
            if known.path == change.path:
                if (known.old, known.new) != (change.old, change.new):
                    reason = "workers planned different rewrites of its document"
                    self.records.extend(
                        Refusal(a.path, a.line, reason) for _, a in change.accepted
                    )
                return
        self.changes.append(change)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Plan the rewrites of the documents this process ran; in a worker, send the
        plans to the controller, else, unless this is a dry run, write them."""
        latest: dict[tuple[str, int], Acceptance] = {}
        for record in self.records:
            if isinstance(record, Acceptance):
                latest[(record.path, record.start)] = record
        agreed, disagreed = self.runs.settle(latest.values())
        self.records = [*(r for r in self.records if isinstance(r, Refusal)), *disagreed]
        changes, unread = plan_all(agreed, self.readers)
        self.records.extend(unread)
        if self.outbox is not None:
            self.outbox.extend(r.as_dict() for r in self.records)
            self.outbox.extend({"change": change.as_dict()} for change in changes)
            return
        self.changes.extend(changes)
        if self.dry_run:
            return
        for change in self.changes:
            if change.accepted:
                try:
                    change.write()
                except OSError as error:
                    self.errors.append(f"{change.path}: not rewritten: {error}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say what was rewritten (or print the diff) and what was not accepted."""
        if self.outbox is not None:
            return
        refusals = {r for r in self.records if isinstance(r, Refusal)}
        refusals.update(r for change in self.changes for r in change.refused)
        changed = [change for change in self.changes if change.accepted]
        if not (changed or refusals or self.errors):
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "runnerkit accept")
        for change in changed:
            name = self._name(change.path)
            count = len(change.accepted)
            lines = ", ".join(str(line) for line, _ in change.accepted)
            verb = "would rewrite" if self.dry_run else "rewrote"
            write(f"{name}: {verb} {count} example{'s' * (count != 1)} (line {lines})")
            if self.dry_run:
                for line in change.diff(name):
                    write(line, green=line.startswith("+"), red=line.startswith("-"))
        for refusal in sorted(refusals, key=lambda r: (r.path, r.line)):
            write(
                f"{self._name(Path(refusal.path))}:{refusal.line}: not accepted: {refusal.reason}"
            )
        for error in self.errors:
            write(error, red=True)

    def _name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.config.rootpath.resolve()).as_posix()
        except ValueError:
            return str(path)


def _seen(record: Record | None) -> str | Refusal | None:
    """What a run saw of an example, for :class:`RunAgreement`: the output to accept,
    the refusal, or None when it passed."""
    return record.new_want if isinstance(record, Acceptance) else record


def _reader(item: SybilItem) -> DocumentReader | None:
    """How the item's Sybil read its document, or None if that cannot be told."""
    document = item.example.document
    parent = item.parent
    for sybil, collected in zip(
        getattr(parent, "sybils", ()), getattr(parent, "documents", ()), strict=False
    ):
        if collected is document:
            encoding = getattr(document, "encoding", None) or getattr(sybil, "encoding", "utf-8")
            return DocumentReader(document.path, type(document), sybil.parsers, str(encoding))
    return None
