"""The spec report: ``pytest --spec-report DIR`` writes the specs back as documents.

Each collected spec document is rendered as HTML, each example marked where it stands
in the text as passed, failed, skipped, accepted or not run, a failure showing what
was expected and what came instead; an index page counts them per document and says
when and with what the run was made.  The pages are static and link to each other
relatively, so they open from the file system (:mod:`runnerkit.testing.report_site`).

Every process that runs examples notes their outcomes on pytest's reports
(:mod:`runnerkit.testing.report_outcomes`); under xdist the controller receives the
workers' reports, and the examples each worker collected in its ``workeroutput``, and
it alone writes the report, once, at the end of the session, after accept mode
(:mod:`runnerkit.testing.accept`) has said what it rewrote.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from sybil.integration.pytest import SybilFile, SybilItem

from runnerkit.testing.ordering import PRELUDE_OUTCOMES
from runnerkit.testing.report_outcomes import (
    REPORT_ATTRIBUTE,
    SpecOutcomes,
    directive_skipped,
    doctest_skipped,
    example_facts,
    failure_facts,
    is_directive,
    where,
)

#: Whether a skip directive skips an item's example (:func:`directive_skipped`).
_DIRECTIVE_SKIP = pytest.StashKey[bool]()

#: The ``workeroutput`` key under which xdist workers send what they collected.
WORKEROUTPUT_KEY = "runnerkit_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runnerkit", "runnerkit specs")
    group.addoption(
        "--spec-report",
        metavar="DIR",
        default=None,
        help="write the specs as HTML documents to DIR, each example marked passed,"
        " failed, skipped or not run where it stands; open DIR/index.html",
    )
    parser.addini(
        "spec_report",
        "the directory --spec-report writes to when the option is not given",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    option = config.getoption("spec_report", None)
    ini = str(config.getini("spec_report") or "")
    if option is None and not ini:
        return
    if option is not None:
        if not option.strip():
            raise pytest.UsageError("--spec-report: give the directory to write the report to")
        directory = Path(option)
        if not directory.is_absolute():
            directory = Path(config.invocation_params.dir) / directory
    else:
        directory = config.rootpath / ini
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is None:
        check_place(directory.absolute(), config.rootpath)
        check_foreign(directory)
        check_writable(directory)
    config.pluginmanager.register(SpecReport(config, directory.absolute()), SpecReport.NAME)


def check_place(directory: Path, root: Path) -> None:
    """Refuse to write the report where its pages would lie beside the documents: in
    the root directory, or in a directory that holds it.

    :raises pytest.UsageError: *directory* is *root* or above it.
    """
    resolved, top = directory.resolve(), root.resolve()
    if resolved == top or resolved in top.parents:
        where = "is the root directory" if resolved == top else "holds the root directory"
        raise pytest.UsageError(
            f"--spec-report {directory}: {where} ({top}), where its pages would be"
            " written beside the documents; give a directory of its own, such as"
            " build/specs"
        )


def check_foreign(directory: Path) -> None:
    """Refuse to write over an ``index.html`` the report did not write.

    :raises pytest.UsageError: *directory* holds an ``index.html`` and no manifest.
    """
    from runnerkit.testing.report_site import MANIFEST

    if (directory / "index.html").exists() and not (directory / MANIFEST).exists():
        raise pytest.UsageError(
            f"--spec-report {directory}: holds an index.html the spec report did not"
            f" write (no {MANIFEST} beside it); give a directory of its own, such as"
            " build/specs"
        )


def check_documents(directory: Path, documents: list[str]) -> str | None:
    """Why the report cannot go to *directory*: it is, or holds, the directory of one
    of the collected *documents*; None when it can."""
    resolved = directory.resolve()
    for document in documents:
        parent = Path(document).resolve().parent
        if resolved == parent or resolved in parent.parents:
            return (
                f"spec report not written: --spec-report {directory} is or holds the"
                f" directory of the spec document {document}, where its pages would be"
                " written beside the documents; give a directory of its own, such as"
                " build/specs"
            )
    return None


def check_writable(directory: Path) -> None:
    """Make sure the report can be written to *directory*, before anything runs.

    :raises pytest.UsageError: *directory* is a file, or cannot be created or written.
    """
    if directory.exists() and not directory.is_dir():
        raise pytest.UsageError(f"--spec-report {directory}: is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise pytest.UsageError(
            f"--spec-report {directory}: cannot write there: {error.strerror or error}"
        ) from error


class SpecReport:
    """The plugin that notes each example's outcome and, in the controller, writes
    the report.

    :param directory: where to write it.
    """

    NAME = "runnerkit-spec-report"

    def __init__(self, config: pytest.Config, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.outcomes = SpecOutcomes()
        workeroutput = getattr(config, "workeroutput", None)
        #: Where a worker puts what it collected; None outside a worker.
        self.outbox: dict[str, Any] | None = workeroutput
        self.written: Path | None = None
        #: The xdist workers that crashed, and how, in the controller.
        self.crashed: list[str] = []
        self.error: str | None = None
        #: Whether the run was interrupted (KeyboardInterrupt), in the controller.
        self.keyboard_interrupt = False

    def pytest_keyboard_interrupt(self) -> None:
        """Note that the run was interrupted: the report says so."""
        self.keyboard_interrupt = True

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Note the spec examples deselected (-k, -m): not run, and why."""
        for item in items:
            self.outcomes.deselect(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Note every spec example collected, before any is deselected."""
        for item in items:
            self.outcomes.collect(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        """Note a spec document that holds no example (prose alone): it has a page too."""
        report = yield
        if isinstance(collector, SybilFile) and report.passed and not report.result:
            documents = collector.documents
            self.outcomes.take_empty(str(collector.path), documents[0].text if documents else None)
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Note a spec file that could not be collected."""
        if report.failed and self.outbox is None:
            path = _spec_path(report, self.config)
            if path is not None:
                self.outcomes.take_collect_error(str(path), report.longreprtext)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put on each report of a spec example where the example stands, and what
        it expected and got when it failed."""
        report = yield
        if isinstance(item, SybilItem) and not is_directive(item.example):
            facts = example_facts(item)
            if call.excinfo is not None and report.failed:
                facts.update(failure_facts(item, call.excinfo.value))
            prelude = item.stash.get(PRELUDE_OUTCOMES, None)
            if call.when == "setup" and prelude:
                facts["prelude"] = [
                    [place["line"], place["end_line"], place["column"], status, message]
                    for place, status, message in (
                        (where(example), status, message)
                        for example, status, message in prelude
                        if not is_directive(example)
                    )
                ]
            if call.when == "call" and report.passed and doctest_skipped(item):
                facts["doctest_skip"] = True
            if call.when == "call" and report.passed and item.stash.get(_DIRECTIVE_SKIP, False):
                facts["directive_skip"] = True
            setattr(report, REPORT_ATTRIBUTE, facts)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        """Note, before it runs, an example a skip directive skips without a reason."""
        if isinstance(item, SybilItem):
            item.stash[_DIRECTIVE_SKIP] = directive_skipped(item.example)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold each report in; in the controller, the workers' reports too."""
        if self.outbox is None:
            self.outcomes.take_report(report)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take in what a finished worker collected."""
        if error is not None:
            name = getattr(getattr(node, "gateway", None), "id", None) or "a worker"
            self.crashed.append(f"{name}: {error}")
        data = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if data:
            self.outcomes.merge(data)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """In a worker, send what it collected; else write the report, after accept
        mode has rewritten what it rewrites."""
        if self.outbox is not None:
            self.outbox[WORKEROUTPUT_KEY] = self.outcomes.as_dict()
            return
        from runnerkit.testing.report_site import RunFacts, write_site

        try:
            self.outcomes.resolve()
            refusal = check_documents(self.directory, list(self.outcomes.documents))
            if refusal is not None:
                self.error = refusal
                return
            interruption = self._interruption(session)
            self.outcomes.explain(interruption)
            texts = self._take_acceptances()
            totals, others = self._totals()
            self.written = write_site(
                self.directory,
                self.outcomes,
                RunFacts.now(
                    self.config,
                    crashed=self.crashed,
                    interruption=interruption,
                    totals=totals,
                    other_tests=others,
                ),
                root=self.config.rootpath,
                texts=texts,
            )
        except Exception as error:  # the run's own summary must not be lost to it
            self.error = (
                f"spec report could not be written to {_shown(self.directory)}:"
                f" {type(error).__name__}: {error}"
            )

    def _interruption(self, session: pytest.Session) -> str | None:
        """What stopped the run before it ran all it selected, or None."""
        if self.keyboard_interrupt:
            return "the run was interrupted (KeyboardInterrupt)"
        stopped = session.shouldfail or session.shouldstop
        maxfail = int(self.config.getoption("maxfail", 0) or 0)
        failed = sum(
            1
            for document in self.outcomes.documents.values()
            for example in document.examples.values()
            for run in example.runs.values()
            if run.status == "failed" and not run.prelude_of
        )
        unfinished = any(document.unfinished() for document in self.outcomes.documents.values())
        if unfinished and ((stopped and session.testsfailed) or (maxfail and failed >= maxfail)):
            return "the run stopped at the first failure (-x / --maxfail)"
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            return "the run was interrupted by a collection error"
        return None

    def _totals(self) -> tuple[tuple[tuple[str, int], ...], int]:
        """pytest's own totals of the spec items, as its summary line counts them, and
        how many other tests ran."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        stats: dict[str, list[Any]] = getattr(reporter, "stats", {}) or {}
        totals: list[tuple[str, int]] = []
        others: set[str] = set()
        for category in ("failed", "passed", "skipped", "xfailed", "xpassed", "error"):
            count = 0
            for report in stats.get(category, ()):
                nodeid = getattr(report, "nodeid", None)
                if not isinstance(report, pytest.TestReport) or nodeid is None:
                    continue
                if nodeid in self.outcomes.nodes:
                    count += 1
                else:
                    others.add(nodeid)
            if count:
                totals.append((category, count))
        return tuple(totals), len(others)

    def _take_acceptances(self) -> dict[str, str]:
        """Mark what accept mode rewrote (or refused); the documents' texts as they
        were before it rewrote them, by path."""
        accept = self.config.pluginmanager.get_plugin("runnerkit-accept")
        texts: dict[str, str] = {}
        if accept is None:
            return texts
        failed_writes = " ".join(accept.errors)
        for change in accept.changes:
            path = str(change.path)
            texts[path] = change.old
            written = not accept.dry_run and f"{change.path}: not rewritten" not in failed_writes
            for _, acceptance in change.accepted:
                self.outcomes.mark_accepted(
                    acceptance.path, acceptance.line, acceptance.new_want, written=written
                )
            for refusal in change.refused:
                self.outcomes.note_refusal(refusal.path, refusal.line, refusal.reason)
        for record in accept.records:
            reason = getattr(record, "reason", None)
            if reason is not None:
                self.outcomes.note_refusal(record.path, record.line, reason)
        return texts

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say where the report is."""
        if self.outbox is not None:
            return
        if self.error is not None:
            terminalreporter.write_line(self.error, red=True)
        elif self.written is not None:
            terminalreporter.write_line(f"spec report: {_shown(self.written)}")


def _spec_path(report: pytest.CollectReport, config: pytest.Config) -> Path | None:
    """The path of the document whose collection *report* is of, or None when it is of
    no document (a Python module, a directory, an item)."""
    if not report.nodeid or "::" in report.nodeid:
        return None
    path = config.rootpath / report.nodeid
    if path.suffix in ("", ".py") or path.is_dir():
        return None
    return path


def _shown(path: Path) -> str:
    """*path* relative to the current directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
