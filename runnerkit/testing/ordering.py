"""Keep each spec whole and in order, whatever reordered or deselected its examples.

The examples of a document build on each other, so two things must hold for any
selection of tests that pytest ends up running:

* **Order.**  A plugin that shuffles tests (pytest-randomly, pytest-random-order, a
  ``--ff`` run) may scatter a document's examples.  :class:`DocumentOrder` puts them
  back in document order, all together, where the first of them landed; the rest of
  the shuffle stands.
* **Preludes.**  Selecting one example (``pytest doc.rst::line:40,column:1``, ``-k``,
  ``--lf``, ``--deselect``) would run it without the examples before it, and it would
  fail with a ``NameError``.  Before each selected example, runnerkit runs the
  unselected examples that come before it in its document, in order, in the
  document's namespace, while setting up the selected one.  They are not reported as
  tests: the report holds only what was selected.  As in a full run, a failure among
  them does not stop the next ones; it is shown with the selected example, in the
  report section ``runnerkit prelude``, if that example fails.
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


def preludes(items: Sequence[pytest.Item]) -> dict[pytest.Item, list[Example]]:
    """For each selected example, the unselected examples that must run before it.

    :param items: the selected items, each document's examples in document order.
    """
    selected: dict[Document, dict[int, pytest.Item]] = {}
    for item in items:
        if isinstance(item, SybilItem):
            selected.setdefault(item.example.document, {})[item.example.start] = item
    found: dict[pytest.Item, list[Example]] = {}
    for document, by_start in selected.items():
        waiting: list[Example] = []
        last = max(by_start)
        for example in document.examples():
            if example.start > last:
                break
            chosen = by_start.get(example.start)
            if chosen is None:
                waiting.append(example)
            elif waiting:
                found[chosen], waiting = waiting, []
    return found


#: The name of the report section that holds a prelude's failures.
PRELUDE = "runnerkit prelude"


def run_prelude(item: pytest.Item, examples: Sequence[Example]) -> None:
    """Evaluate *examples* in their document's namespace, as a full run would have.

    Failures do not stop the next example; they are kept in a report section of *item*.
    """
    failures = []
    for example in examples:
        try:
            example.evaluate()
        except (unittest.SkipTest, pytest.skip.Exception):
            continue
        except Exception as error:  # a full run would report it, and go on
            failures.append(f"line {example.line}: {type(error).__name__}: {error}")
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
        #: Keyed by ``id(item)``: a node's hash is its node id, which xdist may change.
        self._preludes: dict[int, list[Example]] = {}
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
        self._preludes = {id(item): examples for item, examples in preludes(items).items()}
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None]:
        result = yield
        examples = self._preludes.pop(id(item), None)
        if examples:
            run_prelude(item, examples)
        return result
