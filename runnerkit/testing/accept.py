"""Accept mode: ``pytest --accept`` rewrites the expected output of failing examples.

Each failing doctest example of a Sybil document gets its expected output replaced
by what it printed, in place in the ``.rst`` or ``.md`` file; ``--accept-diff`` only
prints the unified diff.  Failures stay failures: the run still reports them and
exits non-zero, and the next run passes.  An expected output that used ``...``
(ELLIPSIS) is replaced by the whole output, since which parts to elide is a choice
only the author can make.

Under xdist, workers only record; they send their records to the controller in
``workeroutput``, and the controller alone reads and writes documents at the end of
the session.  So no file is ever written by two processes, whatever ``--dist`` mode
scheduled the examples, and the diff of a dry run lands in the one terminal report.
"""

from __future__ import annotations

import doctest
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from sybil import Example
from sybil.document import PythonDocument
from sybil.evaluators.doctest import DocTestEvaluator
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
from runnerkit.testing.accept_rewrite import FileChange, digest, plan_all

#: The ``workeroutput`` key under which xdist workers send their records.
WORKEROUTPUT_KEY = "runnerkit_accept"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runnerkit", "runnerkit specs")
    group.addoption(
        "--accept",
        action="store_true",
        help="rewrite the expected output of failing doctest examples in their documents",
    )
    group.addoption(
        "--accept-diff",
        action="store_true",
        help="like --accept, but only print the unified diff; change no file",
    )
    group.addoption(
        "--accept-exceptions",
        action="store_true",
        help="with --accept or --accept-diff, also accept examples that raised an "
        "unexpected exception, as a doctest traceback",
    )


def pytest_configure(config: pytest.Config) -> None:
    accept = config.getoption("accept", False)
    dry_run = config.getoption("accept_diff", False)
    exceptions = config.getoption("accept_exceptions", False)
    if accept and dry_run:
        raise pytest.UsageError("--accept and --accept-diff exclude each other: choose one")
    if exceptions and not (accept or dry_run):
        raise pytest.UsageError("--accept-exceptions needs --accept or --accept-diff")
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
        self.changes: list[FileChange] = []
        self.errors: list[str] = []
        workeroutput = getattr(config, "workeroutput", None)
        #: Where a worker puts its records for the controller; None outside a worker.
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
            if outcome is not None:
                self._keep(self._record(item, outcome.new_want, outcome.reason))

    def _record(self, item: SybilItem, new_want: str | None, reason: str | None) -> Record:
        example = item.example
        if new_want is not None and isinstance(example.document, PythonDocument):
            reason = "examples in Python docstrings are not rewritten"
        if new_want is None or reason is not None:
            return Refusal(example.path, example.line, reason or "not accepted")
        occurrence, occurrences = _occurrence(example)
        return Acceptance(
            path=example.path,
            start=example.start,
            end=example.end,
            line=example.line,
            source=example.parsed.source,
            want=example.parsed.want,
            new_want=new_want,
            occurrence=occurrence,
            occurrences=occurrences,
            digest=digest(example.document.text),
            encoding=_encoding(item),
        )

    def _keep(self, record: Record) -> None:
        if self.outbox is not None:
            self.outbox.append(record.as_dict())
        else:
            self.records.append(record)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take in a finished worker's records."""
        for data in getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY, ()):
            self.records.append(record_from_dict(data))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """In the controller, plan every rewrite and, unless this is a dry run, write it."""
        if self.outbox is not None:
            return
        latest: dict[tuple[str, int], Acceptance] = {}
        for record in self.records:
            if isinstance(record, Acceptance):
                latest[(record.path, record.start)] = record
        self.changes, unread = plan_all(latest.values())
        self.records.extend(unread)
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
        refusals = [r for r in self.records if isinstance(r, Refusal)]
        refusals += [r for change in self.changes for r in change.refused]
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


def _occurrence(example: Example) -> tuple[int, int]:
    """The index of *example* among its document's examples with its source and output,
    and how many of them there are."""
    parsed = example.parsed
    same = [
        region
        for _, region in example.document.regions
        if isinstance(region.parsed, doctest.Example)
        and (region.parsed.source, region.parsed.want) == (parsed.source, parsed.want)
    ]
    index = next(n for n, region in enumerate(same) if region is example.region)
    return index, len(same)


def _encoding(item: SybilItem) -> str:
    """The encoding the item's Sybil read its document with."""
    parent = item.parent
    for sybil, document in zip(
        getattr(parent, "sybils", ()), getattr(parent, "documents", ()), strict=False
    ):
        if document is item.example.document:
            return str(getattr(sybil, "encoding", "utf-8"))
    return "utf-8"
