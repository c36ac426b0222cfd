"""Keep each spec whole and in order, whatever reordered or deselected its examples.

The examples of a document build on each other, so two things must hold for any
selection of tests that pytest ends up running:

* **Order.**  A plugin that shuffles tests (pytest-randomly, pytest-random-order, a
  ``--ff`` run) may scatter a document's examples.  :class:`DocumentOrder` puts them
  back in document order, all together, where the first of them landed; the rest of
  the shuffle stands.
* **Preludes.**  Selecting one example (``pytest doc.rst::line:40,column:1``, ``-k``,
  ``--lf``, ``--deselect``) would run it without the examples before it, and it would
  fail with a ``NameError``.  While setting up each selected example, runnerkit first
  runs the unselected examples before it in its document, in order, in the
  document's namespace.  They are not reported as tests: the report holds only what
  was selected.  As in a full run, a failure among them does not stop the next ones;
  it is shown in the report section ``runnerkit prelude`` of the example, and in the
  terminal summary.
* **Crashes.**  An xdist worker that is handed the rest of a document after the
  worker running it crashed (``--dist each`` does that) fails those examples as "not
  run", rather than run what crashed again.
"""

from __future__ import annotations

import unittest
from collections.abc import Generator, Sequence
from typing import Any

import pytest
from sybil import Document, Example
from sybil.integration.pytest import SybilItem


def _position(item: SybilItem) -> tuple[int, int]:
    """Where *item*'s example lies in its file: which document, and where in it."""
    example = item.example
    documents: Sequence[Document] = getattr(item.parent, "documents", ())
    index = next((i for i, doc in enumerate(documents) if doc is example.document), 0)
    return index, example.start


def documents_in_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """*items*, with each spec file's examples together and in document order.

    A file's examples take the place of the first of them; every other item keeps
    its place relative to the rest.
    """
    by_file: dict[Any, list[SybilItem]] = {}
    for item in items:
        if isinstance(item, SybilItem):
            by_file.setdefault(item.parent, []).append(item)
    if not by_file:
        return items
    ordered: list[pytest.Item] = []
    for item in items:
        if not isinstance(item, SybilItem):
            ordered.append(item)
        elif item.parent in by_file:
            examples: list[SybilItem] = sorted(by_file.pop(item.parent), key=_position)
            ordered.extend(examples)
    return ordered


class Preludes:
    """What each example needs run before it, in the process that runs it.

    :meth:`select` is told the session's selected items, each document's examples in
    document order.  An example's prelude is then every unselected example before it
    in its document.  An example whose *selected* predecessors have not run in this
    process (an xdist worker that took over the rest of a document after the worker
    running it crashed) cannot run: what it builds on ran in a process that is gone,
    and running the examples again could crash again.  :meth:`before` raises
    :class:`NotRun` for it.
    """

    def __init__(self) -> None:
        self._unselected: dict[int, list[Example]] = {}
        self._selected_before: dict[int, list[int]] = {}
        self._run: dict[Document, set[int]] = {}

    def select(self, items: Sequence[pytest.Item]) -> None:
        """Work out the preludes of the session's selected *items*.

        Keyed by ``id(item)``: a node's hash is its node id, which xdist may change.
        """
        by_document: dict[Document, list[SybilItem]] = {}
        for item in items:
            if isinstance(item, SybilItem):
                by_document.setdefault(item.example.document, []).append(item)
        self._unselected, self._selected_before = {}, {}
        for document, chosen in by_document.items():
            starts = {item.example.start for item in chosen}
            waiting: list[Example] = []
            selected: list[int] = []
            position = 0
            last = max(starts)
            for example in document.examples():
                if example.start > last:
                    break
                if example.start not in starts:
                    waiting.append(example)
                    continue
                item = chosen[position]
                position += 1
                self._unselected[id(item)], waiting = waiting, []
                self._selected_before[id(item)] = list(selected)
                selected.append(example.start)

    def before(self, item: SybilItem) -> list[Example]:
        """The examples to run before *item*'s; it counts as run from now on.

        :raises NotRun: when a selected example before it has not run in this process.
        """
        run = self._run.setdefault(item.example.document, set())
        missing = [start for start in self._selected_before.get(id(item), []) if start not in run]
        run.add(item.example.start)
        if missing:
            raise NotRun(item.example.document.path, missing)
        return self._unselected.get(id(item), [])


class NotRun(Exception):
    """An example whose document's earlier examples ran in another, crashed, process."""

    def __init__(self, path: str, starts: Sequence[int]) -> None:
        super().__init__(
            f"not run: the examples before it in {path} ran in another worker process,"
            " which crashed; the examples of a document build on each other, so the"
            " rest of a document is not run after a crash"
        )


#: The name of the report section that holds a prelude's failures.
PRELUDE = "runnerkit prelude"


#: What each example of an item's prelude came to: (example, status, message), the
#: status "passed", "failed" or "skipped"; the spec report shows them.
PRELUDE_OUTCOMES = pytest.StashKey[list[tuple[Example, str, str | None]]]()


def run_prelude(item: pytest.Item, examples: Sequence[Example]) -> None:
    """Evaluate *examples* in their document's namespace, as a full run would have.

    Failures do not stop the next example; they are kept in a report section of *item*.
    """
    from runnerkit.testing.report_outcomes import directive_skipped

    failures = []
    outcomes = item.stash.setdefault(PRELUDE_OUTCOMES, [])
    for example in examples:
        try:
            skipped = directive_skipped(example)
            example.evaluate()
        except (unittest.SkipTest, pytest.skip.Exception) as skip:
            outcomes.append((example, "skipped", str(skip) or "skipped"))
            continue
        except Exception as error:  # a full run would report it, and go on
            failures.append(f"line {example.line}: {type(error).__name__}: {error}")
            outcomes.append((example, "failed", f"{type(error).__name__}: {error}"))
        else:
            if skipped:
                outcomes.append((example, "skipped", "skip directive"))
            else:
                outcomes.append((example, "passed", None))
    if failures:
        item.add_report_section(
            "setup",
            PRELUDE,
            "Examples before this one, run because they were not selected, failed:\n"
            + "\n".join(failures),
        )


class DocumentOrder:
    """The plugin object that keeps documents whole; registered by runnerkit's plugin.

    It is registered late, from ``pytest_configure``, and its collection hook is an
    outer ``tryfirst`` wrapper, so that it sees the items after every other plugin
    (shufflers, ``--lf``, ``--ff``, ``-k``, ``--deselect``) is done with them.
    """

    def __init__(self) -> None:
        self._preludes = Preludes()
        #: (node id, what failed) for each selected example whose prelude had failures.
        self.prelude_failures: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the prelude failures of each report, from this process or a worker."""
        if report.when == "setup":
            for name, content in report.sections:
                if name == f"Captured {PRELUDE} setup":
                    self.prelude_failures.append((report.nodeid, content))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Show prelude failures even when the selected examples passed.

        A passing test's report sections are shown only with ``-rA``; a failure in the
        examples run before a selected one must not hide behind a pass.
        """
        if not self.prelude_failures:
            return
        terminalreporter.section(PRELUDE + " failures", yellow=True)
        for nodeid, content in self.prelude_failures:
            terminalreporter.line(f"{nodeid}:")
            for line in content.splitlines()[1:]:
                terminalreporter.line(f"    {line}")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> Generator[None]:
        result = yield
        items[:] = documents_in_order(items)
        self._preludes.select(items)
        return result

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Run an example's prelude, after pytest has set the example up.

        Not a hook wrapper: a wrapper would be a frame in the traceback of every
        set-up error of every test, specs or not.
        """
        if isinstance(item, SybilItem):
            try:
                examples = self._preludes.before(item)
            except NotRun as error:
                pytest.fail(str(error), pytrace=False)
            if examples:
                run_prelude(item, examples)
