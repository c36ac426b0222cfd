"""The spec report, part one: what happened to each example of each document.

Every process that runs examples (the only one, or each xdist worker) notes, on each
test report of a spec example, where the example stands in its document and, when it
failed, what it expected and what it got (:func:`example_facts`).  pytest's reports
carry such plain attributes to the xdist controller, which folds them into one
:class:`SpecOutcomes` (:meth:`SpecOutcomes.take_report`) and writes the report once.
The examples each process collected, and the text of their documents, travel the same
way (:meth:`SpecOutcomes.as_dict`), so that examples that did not run (deselected,
another shard's) are shown as not run.
"""

from __future__ import annotations

import doctest
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from sybil.example import Example as SybilExample
from sybil.example import SybilFailure
from sybil.integration.pytest import SybilItem

from runnerkit.testing.console_check import ConsoleEvaluator
from runnerkit.testing.console_session import Command

#: The statuses an example can have, worst first: the order :attr:`Example.status` uses.
FAILED = "failed"
ACCEPTED = "accepted"
PASSED = "passed"
SKIPPED = "skipped"
NOT_RUN = "not run"
STATUSES = (FAILED, ACCEPTED, PASSED, SKIPPED, NOT_RUN)
#: The count of the examples that ran only as the prelude of a selected example.
PRELUDE = "ran as prelude"
#: What the per-example counts count, said under them.
COUNTS_EXPLAINED = "examples in the text; a prelude example counts under 'ran as prelude'"

#: The attribute of a test report that holds an example's facts.
REPORT_ATTRIBUTE = "runnerkit_spec"

#: doctest's report of a failed comparison: ``Expected:`` (or ``Expected nothing``),
#: then ``Got:`` (or ``Got nothing``), each block indented by four spaces.
_DOCTEST_DIFFERENCE = re.compile(
    r"\A(?:Expected:\n(?P<want>(?:    .*\n|\n)*?)|Expected nothing\n)"
    r"(?:Got:\n(?P<got>(?:    .*\n|\n)*)|Got nothing\n)\Z"
)


@dataclass(frozen=True)
class Run:
    """What one run of an example came to.

    :param status: one of :data:`STATUSES` but :data:`NOT_RUN`.
    :param run: the id of the document's run (a parametrized document), or None.
    :param message: why it was skipped, or what its failure reported.
    :param want: what it expected, when it failed a comparison.
    :param got: what it printed instead.
    :param accepted: the expected output accept mode wrote for it.
    :param note: what accept mode said of it otherwise (not accepted, dry run).
    """

    status: str
    run: str | None = None
    message: str | None = None
    want: str | None = None
    got: str | None = None
    accepted: str | None = None
    note: str | None = None
    #: The line of the selected example it ran before, unreported, as its prelude.
    prelude_of: int | None = None


@dataclass
class Example:
    """An example of a document: where it stands and what each of its runs came to.

    :param line: the first line of the example in its document, from 1.
    :param end_line: its last line.
    """

    line: int
    end_line: int
    column: int = 1
    runs: dict[str, Run] = field(default_factory=dict)
    #: Whether it was selected to run (collected as an item), and then deselected.
    selected: bool = False
    deselected: bool = False
    #: Why it did not run, when it did not (:meth:`SpecOutcomes.explain`).
    reason: str | None = None

    @property
    def status(self) -> str:
        """The worst status of its runs, or :data:`NOT_RUN` when none ran."""
        statuses = {run.status for run in self.runs.values()}
        return next((status for status in STATUSES if status in statuses), NOT_RUN)


@dataclass
class Document:
    """A collected spec document: its text as collected and its examples, by line."""

    path: str
    text: str | None = None
    examples: dict[int, Example] = field(default_factory=dict)
    #: What went wrong collecting it, when something did.
    error: str | None = None
    #: The ids of its runs (a parametrized document), in the order pytest collected them.
    run_ids: list[str] = field(default_factory=list)

    def order_runs(self) -> None:
        """Put each example's runs in the order of :attr:`run_ids`."""
        order = {run_id: index for index, run_id in enumerate(self.run_ids)}
        for example in self.examples.values():
            keys = sorted(example.runs, key=lambda key: (order.get(key, len(order)), key))
            example.runs = {key: example.runs[key] for key in keys}

    def example(self, line: int, end_line: int, column: int = 1) -> Example:
        """The example at *line*, created when it is new."""
        found = self.examples.get(line)
        if found is None:
            found = self.examples[line] = Example(line, max(line, end_line), column)
        return found

    def counts(self) -> dict[str, int]:
        """How many examples have each status; those that ran only as a selected
        example's prelude are counted under :data:`PRELUDE`."""
        counts = dict.fromkeys((*STATUSES, PRELUDE), 0)
        for example in self.examples.values():
            runs = example.runs.values()
            if runs and all(run.prelude_of for run in runs):
                counts[PRELUDE] += 1
            else:
                counts[example.status] += 1
        return counts

    def unfinished(self) -> int:
        """How many examples were selected to run and did not."""
        return sum(
            1
            for example in self.examples.values()
            if example.selected and not example.deselected and not example.runs
        )


@dataclass
class SpecOutcomes:
    """Every spec document of the session and what became of its examples, by path."""

    documents: dict[str, Document] = field(default_factory=dict)
    #: Where each collected example stands, by node id.
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Reports that came without facts (xdist's report of a crashed worker's example,
    #: made by the controller), until :meth:`resolve` finds their examples by node id.
    pending: list[pytest.TestReport] = field(default_factory=list)
    #: The ids of the Sybil documents whose examples are all noted.
    _whole: set[int] = field(default_factory=set)

    def document(self, path: str) -> Document:
        """The document at *path*, created when it is new."""
        found = self.documents.get(path)
        if found is None:
            found = self.documents[path] = Document(path)
        return found

    def collect(self, item: pytest.Item) -> None:
        """Note *item*, when it is a spec example, as collected: not run until a report
        says otherwise."""
        if not isinstance(item, SybilItem) or is_directive(item.example):
            return
        facts = example_facts(item)
        self.nodes[item.nodeid] = facts
        document = self.document(facts["path"])
        if document.text is None:
            document.text = item.example.document.text
        document.example(facts["line"], facts["end_line"], facts["column"]).selected = True
        if facts["run"] is not None and facts["run"] not in document.run_ids:
            document.run_ids.append(facts["run"])
        # Every example of the document, whatever was selected (a node id, --lf):
        # those no report speaks of are not run.
        parsed = item.example.document
        if id(parsed) not in self._whole:
            self._whole.add(id(parsed))
            for example in parsed.examples():
                if is_directive(example):
                    continue
                place = where(example)
                document.example(place["line"], place["end_line"], place["column"])

    def explain(self, interruption: str | None) -> None:
        """Say, of each example that did not run, why not (:func:`not_run_reason`)."""
        for document in self.documents.values():
            for example in document.examples.values():
                if not example.runs:
                    example.reason = not_run_reason(example, interruption)

    def deselect(self, item: pytest.Item) -> None:
        """Note that *item*, when it is a spec example, was deselected."""
        facts = self.nodes.get(item.nodeid)
        if facts is not None:
            found = self.document(facts["path"]).examples.get(facts["line"])
            if found is not None:
                found.deselected = True

    def take_report(self, report: pytest.TestReport) -> None:
        """Fold one phase's report of a spec example into its example's run."""
        facts = getattr(report, REPORT_ATTRIBUTE, None)
        if not isinstance(facts, Mapping):
            facts = self.nodes.get(report.nodeid)
        if facts is None:
            if "::" in report.nodeid:
                self.pending.append(report)
            return
        document = self.document(facts["path"])
        example = document.example(facts["line"], facts["end_line"], facts["column"])
        run_id = facts.get("run")
        key = run_id or ""
        known = example.runs.get(key)
        for line, end_line, column, status, message in facts.get("prelude", ()):
            before = document.example(line, end_line, column)
            if key not in before.runs:
                before.runs[key] = Run(status, run_id, message=message, prelude_of=example.line)
        run = _run_of(report, facts)
        if run is None:
            return
        if known is not None and _rank(known.status) <= _rank(run.status):
            return
        example.runs[key] = run

    def resolve(self) -> None:
        """Fold in the reports that came without facts, once the examples collected
        are all known; those of no spec example are dropped."""
        pending, self.pending = self.pending, []
        for report in pending:
            if report.nodeid in self.nodes:
                self.take_report(report)
        for document in self.documents.values():
            document.order_runs()

    def take_empty(self, path: str, text: str | None) -> None:
        """Note the spec document at *path*, of *text*, which holds no example."""
        document = self.document(path)
        if document.text is None:
            document.text = text

    def take_collect_error(self, path: str, error: str) -> None:
        """Note that the spec file at *path* could not be collected, and why."""
        self.document(path).error = error or "collection failed"

    def merge(self, data: Mapping[str, Any]) -> None:
        """Add what :meth:`as_dict` of another process (an xdist worker) holds."""
        for path, entry in data.get("documents", {}).items():
            document = self.document(path)
            if document.text is None:
                document.text = entry.get("text")
            for line, end_line, column, *flags in entry.get("examples", ()):
                example = document.example(line, end_line, column)
                if flags:
                    example.selected |= bool(flags[0])
                    example.deselected |= bool(flags[1])
            for run_id in entry.get("run_ids", ()):
                if run_id not in document.run_ids:
                    document.run_ids.append(run_id)
        self.nodes.update(data.get("nodes", {}))

    def as_dict(self) -> dict[str, Any]:
        """The collected documents, their texts and examples, as plain data."""
        return {
            "documents": {
                path: {
                    "text": document.text,
                    "examples": [
                        [e.line, e.end_line, e.column, e.selected, e.deselected]
                        for e in document.examples.values()
                    ],
                    "run_ids": document.run_ids,
                }
                for path, document in self.documents.items()
            },
            "nodes": self.nodes,
        }

    def mark_accepted(self, path: str, line: int, new_want: str, *, written: bool) -> None:
        """Mark the failed runs of the example at *path*, *line* as accepted: accept
        mode wrote *new_want* as its expected output (or would have, when not *written*)."""
        example = self.document(path).examples.get(line)
        if example is None:
            return
        for key, run in list(example.runs.items()):
            if run.status != FAILED:
                continue
            if written:
                example.runs[key] = _replace(run, status=ACCEPTED, accepted=new_want)
            else:
                example.runs[key] = _replace(
                    run, accepted=new_want, note="would be accepted (--spec-accept-diff)"
                )

    def note_refusal(self, path: str, line: int, reason: str) -> None:
        """Say, on the failed runs of the example at *path*, *line*, why accept mode
        did not rewrite it."""
        example = self.document(path).examples.get(line)
        if example is None:
            return
        for key, run in list(example.runs.items()):
            if run.status == FAILED:
                example.runs[key] = _replace(run, note=f"not accepted: {reason}")


def example_facts(item: SybilItem) -> dict[str, Any]:
    """Where *item*'s example stands: its document's path, first and last line, column,
    and the id of its document's run (or None)."""
    params = getattr(getattr(item, "run", None), "params", None)
    return {**where(item.example), "run": None if params is None else str(params.id)}


def is_directive(example: SybilExample) -> bool:
    """Whether *example* is a skip directive (``.. skip: next``): no example of the
    text, but an instruction to Sybil about those that follow it."""
    from sybil.evaluators.skip import Skipper

    return isinstance(example.region.evaluator, Skipper)


def not_run_reason(example: Example, interruption: str | None) -> str:
    """Why *example*, which did not run, did not: *interruption* names what stopped
    the run (``the run was interrupted``), when something did."""
    if example.deselected:
        return "deselected"
    if example.selected:
        return interruption or "not reached"
    return "not selected"


def where(example: SybilExample) -> dict[str, Any]:
    """Where *example* stands: its document's path, first and last line, column."""
    text = example.document.text
    parsed = example.parsed
    if isinstance(parsed, doctest.Example):
        # Its region may hold less than the example (Sybil's Markdown regions hold the
        # prompt alone); the example is its source and expected output, line by line.
        end_line = example.line + parsed.source.count("\n") + parsed.want.count("\n") - 1
    else:
        end = max(example.start, example.end - 1)
        end_line = text.count("\n", 0, end) + 1
    return {
        "path": str(example.path),
        "line": int(example.line),
        "end_line": max(int(example.line), end_line),
        "column": int(example.column),
    }


def failure_facts(item: SybilItem, error: BaseException) -> dict[str, Any]:
    """What a failing example expected and got, as far as its failure tells.

    A doctest comparison reports both; a console command reports the output that
    would have matched; for anything else, only the message is kept.
    """
    facts: dict[str, Any] = {}
    if isinstance(error, SybilFailure):
        result = error.result
        facts["message"] = str(result)
        new_want = getattr(result, "new_want", None)
        want = getattr(item.example.parsed, "want", None)
        if isinstance(new_want, str):
            facts["got"] = new_want
            if isinstance(want, str):
                facts["want"] = want
            return facts
        match = _DOCTEST_DIFFERENCE.match(str(result))
        if match is not None:
            facts["want"] = _dedent(match.group("want"))
            facts["got"] = _dedent(match.group("got"))
    return facts


def doctest_skipped(item: SybilItem) -> bool:
    """Whether *item* is a doctest example, or a console command, that ``+SKIP`` tells
    doctest (or the console evaluator) not to run."""
    parsed = item.example.parsed
    evaluator = item.example.region.evaluator
    if isinstance(parsed, Command) and isinstance(evaluator, ConsoleEvaluator):
        return bool(evaluator.flags_for(parsed) & doctest.SKIP)
    if not isinstance(parsed, doctest.Example):
        return False
    option = parsed.options.get(doctest.SKIP)
    if option is not None:
        return bool(option)
    runner = getattr(item.example.region.evaluator, "runner", None)
    return bool(getattr(runner, "optionflags", 0) & doctest.SKIP)


def directive_skipped(example: SybilExample) -> bool:
    """Whether a skip directive (``.. skip: next``, ``skip: start``) without a reason
    tells Sybil to skip *example*: Sybil's skipper then returns without evaluating
    it, and pytest, seeing no exception, reports it as passed.

    Asked before the example is evaluated: the skipper forgets ``skip: next`` once it
    has skipped the example.
    """
    from sybil.evaluators.skip import Skipper

    for evaluator in reversed(example.document.evaluators):
        if not isinstance(evaluator, Skipper) or example.region.evaluator is evaluator:
            continue
        state = evaluator.document_state.get(example.document)
        if state is None or not state.active:
            continue
        # A skip with a reason raises SkipTest, which pytest reports itself.
        return state.exception is None
    return False


def _dedent(block: str | None) -> str:
    if block is None:
        return ""
    return "".join(
        line[4:] if line.startswith("    ") else line for line in block.splitlines(True)
    )


def _run_of(report: pytest.TestReport, facts: Mapping[str, Any]) -> Run | None:
    """What one phase's report says of the example's run; None when it says nothing
    (a passed setup or teardown)."""
    run_id = facts.get("run")
    if report.failed:
        if report.when not in ("setup", "teardown"):
            # "call", or xdist's "???" for the example whose worker crashed.
            return Run(
                FAILED,
                run_id,
                message=facts.get("message") or report.longreprtext,
                want=facts.get("want"),
                got=facts.get("got"),
            )
        return Run(FAILED, run_id, message=f"error at {report.when}:\n{report.longreprtext}")
    if report.skipped:
        reason = _skip_reason(report)
        return Run(SKIPPED, run_id, message=reason)
    if report.when != "call":
        return None
    if facts.get("doctest_skip"):
        return Run(SKIPPED, run_id, message="+SKIP")
    if facts.get("directive_skip"):
        return Run(SKIPPED, run_id, message="skip directive")
    return Run(PASSED, run_id)


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: ")
    return str(longrepr or "skipped")


def _rank(status: str) -> int:
    return STATUSES.index(status)


def _replace(run: Run, **changes: Any) -> Run:
    return Run(**{**asdict(run), **changes})


def ordered(documents: Iterable[Document]) -> list[Document]:
    """*documents* sorted by path."""
    return sorted(documents, key=lambda document: document.path)
