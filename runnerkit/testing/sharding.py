"""Shards: a suite split across machines, each document whole on exactly one of them.

When a suite outgrows one machine, CI runs it as a matrix: machine K of N runs
``pytest --spec-shard K/N``, and the N runs together run every test exactly once.
``-n`` still works inside each shard.

* **Work units.**  The examples of a spec file share a namespace and a world, so the
  file is one unit, run whole by one shard.  Every other test is a unit by itself.
* **Balance.**  Units are dealt out longest first, each to the shard with the least
  estimated time so far (then the fewest units, then the lowest number).  A unit's
  estimate is its duration in the durations file (:mod:`runnerkit.testing.durations`,
  recorded by ``--spec-store-durations``).  A unit without a record is estimated at its
  number of tests (for a spec file, all its examples) times the mean recorded seconds
  per test of the recorded units in the run; when none is recorded, one second a test.
* **Selection first.**  Sharding splits what is left once ``-k``, ``-m``, node ids,
  ``--deselect`` and ``--lf`` have chosen: the shards share out the selection, balanced
  by the estimates of the selected units.
* **One plan everywhere.**  Every shard, and every xdist worker in it, computes the same
  plan from the same collection and the same durations, whatever order the items are
  in (a shuffling plugin may have moved them).  The plan's fingerprint is shown in each
  shard's summary: shards that show different fingerprints did not collect the same
  tests, or did not read the same durations, and may run a unit twice or never.

Under xdist the controller reads the durations file and hands its records to the
workers, so they all plan with the same figures; the workers collect and deselect, and
the controller records the durations from the reports it receives and alone writes
the file, at the end of the session.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sybil.integration.pytest import SybilFile, SybilItem

from runnerkit.errors import DurationsFileError
from runnerkit.testing.durations import DurationLog, read_durations, store_durations
from runnerkit.testing.timecontrol import keep_pytest_timing_real

#: The durations file, in the rootdir, unless ``--spec-durations`` names another.
DEFAULT_DURATIONS = ".runnerkit-durations.json"

#: The estimate of a test when no unit of the run has a recorded duration.
SECONDS_PER_TEST = 1.0

#: The ``workerinput`` key of the records the controller read; the ``workeroutput``
#: key of what a worker planned and ran.
XDIST_KEY = "runnerkit_sharding"

_SHARD = re.compile(r"([0-9]+)/([0-9]+)")


@dataclass(frozen=True)
class Shard:
    """Shard :attr:`index` of :attr:`count`, numbered from 1."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """The shard that ``--spec-shard`` names as ``K/N``.

        :raises pytest.UsageError: *text* is not ``K/N`` with 1 <= K <= N.
        """
        match = _SHARD.fullmatch(text)
        if match is None:
            raise pytest.UsageError(
                f"--spec-shard {text!r}: expected K/N, this run's shard K of N shards"
                " (whole numbers, such as 2/3)"
            )
        index, count = int(match[1]), int(match[2])
        if count < 1:
            raise pytest.UsageError(f"--spec-shard {text!r}: the number of shards must be >= 1")
        if not 1 <= index <= count:
            raise pytest.UsageError(
                f"--spec-shard {text!r}: the shard must be from 1 to {count}, not {index}"
            )
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Unit:
    """What a shard runs whole: a spec file's examples, or one other test."""

    name: str
    #: How many tests the unit has: for a spec file, all its examples, selected or not.
    tests: int
    document: bool


def unit_name(item: pytest.Item) -> str:
    """The unit of *item*: its spec file's node id for a Sybil example, else its own."""
    spec_file = _spec_file(item)
    return item.nodeid if spec_file is None else spec_file.nodeid


def _spec_file(item: pytest.Item) -> SybilFile | None:
    """The spec file of a Sybil example (above the run of its document, if it has one)."""
    if not isinstance(item, SybilItem):
        return None
    node = item.parent
    while node is not None and not isinstance(node, SybilFile):
        node = node.parent
    return node


def units_of(items: Sequence[pytest.Item]) -> dict[str, Unit]:
    """The units that *items* belong to, by name."""
    units: dict[str, Unit] = {}
    for item in items:
        name = unit_name(item)
        if name not in units:
            if isinstance(item, SybilItem):
                documents = getattr(_spec_file(item), "documents", ())
                examples = sum(1 for document in documents for _ in document.examples())
                units[name] = Unit(name, max(examples, 1), document=True)
            else:
                units[name] = Unit(name, 1, document=False)
    return units


def estimates(units: Mapping[str, Unit], recorded: Mapping[str, float]) -> dict[str, float]:
    """The estimated seconds of each unit: its record, or a mean per test times its tests.

    The mean is over the units of *units* that have a record, so it is the same for
    every shard; with none, it is :data:`SECONDS_PER_TEST`.
    """
    known = sorted(name for name in units if name in recorded)
    tests = sum(units[name].tests for name in known)
    per_test = sum(recorded[name] for name in known) / tests if tests else SECONDS_PER_TEST
    return {
        name: recorded[name] if name in recorded else per_test * unit.tests
        for name, unit in units.items()
    }


def assign(estimated: Mapping[str, float], count: int) -> dict[str, int]:
    """The shard, from 1 to *count*, of each unit: longest processing time first.

    Units go in order of decreasing estimate, then of name, each to the shard with the
    least estimated time so far, then the fewest units, then the lowest number.  So the
    result depends only on the names and the estimates, never on the order given, and
    units estimated at nothing are still spread evenly.
    """
    shards = [(0.0, 0, index) for index in range(1, count + 1)]
    assignment: dict[str, int] = {}
    for name in sorted(estimated, key=lambda name: (-estimated[name], name)):
        load, size, index = heapq.heappop(shards)
        assignment[name] = index
        heapq.heappush(shards, (load + estimated[name], size + 1, index))
    return assignment


@dataclass(frozen=True)
class Plan:
    """Which shard runs each unit of a selection."""

    shard: Shard
    units: Mapping[str, Unit]
    estimates: Mapping[str, float]
    assignment: Mapping[str, int]
    #: How many of the units have no recorded duration.
    unrecorded: int

    @classmethod
    def make(cls, shard: Shard, units: Mapping[str, Unit], recorded: Mapping[str, float]) -> Plan:
        estimated = estimates(units, recorded)
        unrecorded = sum(1 for name in units if name not in recorded)
        return cls(shard, units, estimated, assign(estimated, shard.count), unrecorded)

    def runs(self, name: str) -> bool:
        """Whether this plan's shard runs the unit *name*."""
        return self.assignment[name] == self.shard.index

    def fingerprint(self) -> str:
        """A short digest of the whole assignment: the same on every shard of one plan."""
        text = "\0".join(f"{self.assignment[name]}\0{name}" for name in sorted(self.assignment))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]

    def summary(self) -> str:
        """One line for the terminal: what this shard runs, and how long it should take."""
        mine = [self.units[name] for name in self.units if self.runs(name)]
        documents = sum(1 for unit in mine if unit.document)
        seconds = sum(self.estimates[unit.name] for unit in mine)
        total = sum(self.estimates.values())
        line = (
            f"runnerkit: shard {self.shard}: {len(mine)} of {len(self.units)} units"
            f" ({_count(documents, 'document')}, {_count(len(mine) - documents, 'test')}),"
            f" estimated {seconds:.1f} s of {total:.1f} s"
        )
        if self.unrecorded:
            line += f" ({self.unrecorded} of {len(self.units)} units without a recorded duration)"
        return f"{line}; plan {self.fingerprint()}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


# -- The plugin --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runnerkit", "runnerkit specs")
    group.addoption(
        "--spec-shard",
        dest="spec_shard",
        metavar="K/N",
        help="run only shard K of N (1 <= K <= N): each spec file whole on exactly one "
        "shard, shards balanced by the durations file",
    )
    group.addoption(
        "--spec-durations",
        dest="spec_durations",
        metavar="PATH",
        help=f"the durations file that balances shards (default: {DEFAULT_DURATIONS} in "
        "the rootdir)",
    )
    group.addoption(
        "--spec-store-durations",
        dest="spec_store_durations",
        action="store_true",
        help="record how long each spec file and test of this run took, in real seconds, "
        "into the durations file, keeping its other records",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register :class:`Sharding` if the run shards or stores durations.

    It is registered here, after ``--lf``'s plugin, so that its collection hook wraps
    that one's and shards what ``--lf`` selected.  A run that stores durations keeps
    pytest's clocks real from the start, so that a freeze the harness never sees
    (freezegun used directly, by a module's fixture) is measured in real seconds too.

    :raises pytest.UsageError: ``--spec-shard`` is malformed, or the durations file is
        not one runnerkit can read.
    """
    text: str | None = config.getoption("spec_shard", None)
    store: bool = config.getoption("spec_store_durations", False)
    if text is None and not store:
        return
    shard = None if text is None else Shard.parse(text)
    if store:
        keep_pytest_timing_real()
    path = durations_path(config)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and XDIST_KEY in workerinput:
        recorded = dict(workerinput[XDIST_KEY])
    else:
        try:
            recorded = read_durations(path)
        except DurationsFileError as error:
            raise pytest.UsageError(str(error)) from error
    config.pluginmanager.register(Sharding(config, shard, path, store, recorded), Sharding.NAME)


def durations_path(config: pytest.Config) -> Path:
    """The durations file: ``--spec-durations`` from where pytest was started, else the
    default in the rootdir."""
    given: str | None = config.getoption("spec_durations", None)
    if given is None:
        return config.rootpath / DEFAULT_DURATIONS
    return config.invocation_params.dir / given


class Sharding:
    """Deselects what other shards run, and records durations; one per process.

    :param shard: the shard this run is, or None to run everything.
    :param path: the durations file.
    :param store: write the durations of this run into *path* at the end.
    :param recorded: the durations file's records, read when the run began.
    """

    NAME = "runnerkit-sharding"

    def __init__(
        self,
        config: pytest.Config,
        shard: Shard | None,
        path: Path,
        store: bool,
        recorded: Mapping[str, float],
    ) -> None:
        self.config = config
        self.shard = shard
        self.path = path
        self.store = store
        self.recorded = dict(recorded)
        #: Where a worker reports to the controller; None outside a worker.
        self.outbox: dict[str, Any] | None = getattr(config, "workeroutput", None)
        self.log = DurationLog()
        #: The unit of each test this run keeps, by node id, and each such unit's size.
        self.units: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.summary: str | None = None
        self.outcome: str | None = None
        self.failure: str | None = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, object, object]:
        """Once every other plugin has selected and ordered, keep this shard's units."""
        result = yield
        units = units_of(items)
        if self.shard is not None:
            plan = Plan.make(self.shard, units, self.recorded)
            self.summary = plan.summary()
            deselected = [item for item in items if not plan.runs(unit_name(item))]
            if deselected:
                config.hook.pytest_deselected(items=deselected)
                items[:] = [item for item in items if plan.runs(unit_name(item))]
        self.units = {item.nodeid: unit_name(item) for item in items}
        self.sizes = {name: units[name].tests for name in self.units.values()}
        if self.outbox is not None:
            self.outbox[XDIST_KEY] = {
                "summary": self.summary,
                "units": self.units,
                "sizes": self.sizes,
            }
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Give a worker the records read here, so every worker plans with the same."""
        node.workerinput[XDIST_KEY] = self.recorded

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take in what a worker planned, and the units of the tests it ran."""
        data = getattr(node, "workeroutput", {}).get(XDIST_KEY)
        if data is not None:
            self.summary = self.summary or data["summary"]
            self.units.update(data["units"])
            self.sizes.update(data["sizes"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each report's duration; under xdist, in the controller only."""
        if self.store and self.outbox is None:
            self.log.add(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Store the durations of the units that ran whole, unless this is a worker."""
        if not self.store or self.outbox is not None:
            return
        whole = self.log.whole_units(self.units, self.sizes)
        partial = len(set(self.sizes) - set(whole))
        name = self._name()
        if not whole:
            self.outcome = f"runnerkit: no unit ran whole: no duration stored in {name}"
            return
        try:
            store_durations(self.path, whole)
        except (DurationsFileError, OSError) as error:
            self.failure = f"runnerkit: durations not stored in {name}: {error}"
            return
        self.outcome = f"runnerkit: stored the durations of {_count(len(whole), 'unit')} in {name}"
        if partial:
            self.outcome += f" ({partial} more did not run whole)"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say what this shard ran, and whether the durations were stored."""
        lines = [line for line in (self.summary, self.outcome) if line is not None]
        if self.outbox is not None or not (lines or self.failure):
            return
        terminalreporter.write_sep("=", "runnerkit")
        for line in lines:
            terminalreporter.write_line(line)
        if self.failure is not None:
            terminalreporter.write_line(self.failure, red=True)

    def _name(self) -> str:
        try:
            return self.path.resolve().relative_to(self.config.rootpath.resolve()).as_posix()
        except ValueError:
            return str(self.path)
