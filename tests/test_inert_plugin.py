"""runnerkit's plugin changes nothing in a run that does not use it.

The plugin is loaded in every pytest run wherever runnerkit is installed.  A throwaway
project with no specs, only plain tests and a module's doctests, is run beside
pytest-xdist (``--dist loadgroup`` with ``xdist_group`` marks), pytest-randomly and
pytest-accept, once as it is and once with ``-p no:runnerkit``, as if runnerkit were
not installed: every test must end the same way, with the same message and the same
output, and, where pytest-randomly shuffles with one seed, in the same order.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pytest

pytest_plugins = ["pytester"]

#: pytest-randomly's seed for every run: the same seed must give the same order.
SEED = "20261130"

#: Options every run gets: no cache files, pytest-randomly with a fixed seed, the
#: module's doctests, and a JUnit report that keeps what each test printed.
COMMON = (
    "-p",
    "no:cacheprovider",
    "-p",
    "randomly",
    f"--randomly-seed={SEED}",
    "--doctest-modules",
    "-o",
    "junit_logging=system-out",
)

#: The control run: as if runnerkit were not installed.
WITHOUT_RUNNERKIT = ("-p", "no:runnerkit")

CONFTEST = """\
import pytest


@pytest.fixture
def numbers():
    yield [1, 2, 3]


@pytest.fixture(scope="module")
def shared():
    return {"calls": 0}


@pytest.fixture
def broken():
    raise RuntimeError("this fixture cannot be set up")


@pytest.fixture
def placed(request, worker_id, record_property):
    # The test's xdist group, and the worker it ran on.
    record_property("group", request.node.get_closest_marker("xdist_group").args[0])
    record_property("worker", worker_id)
"""

TEST_PLAIN = """\
import random

import pytest


def test_passes(numbers):
    assert sum(numbers) == 6


def test_fails(numbers):
    assert sum(numbers) == 7


@pytest.mark.skip(reason="not today")
def test_skipped():
    raise AssertionError("never run")


def test_skips_itself():
    pytest.skip("decided while running")


@pytest.mark.xfail(reason="a known bug")
def test_xfails():
    assert False


@pytest.mark.xfail(reason="fixed already")
def test_xpasses():
    pass


@pytest.mark.xfail(reason="must fail", strict=True)
def test_xpasses_strictly():
    pass


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_even(number):
    assert number % 2 == 0


def test_set_up_fails(broken):
    pass


def test_prints():
    print("printed by a test")


def test_draws_a_random_number():
    print("drew", random.random())


@pytest.mark.xdist_group("alpha")
def test_alpha_here(placed):
    pass


class TestThings:
    def test_one(self, shared):
        shared["calls"] += 1

    def test_two(self, numbers):
        assert numbers[0] == 1

    @pytest.mark.parametrize("word", ["ab", "cd"])
    def test_words(self, word):
        assert word.isalpha()
"""

TEST_GROUPS = """\
import pytest


@pytest.mark.xdist_group("alpha")
def test_alpha_one(placed):
    pass


@pytest.mark.xdist_group("alpha")
def test_alpha_two(placed):
    pass


@pytest.mark.xdist_group("beta")
class TestBeta:
    def test_first(self, placed):
        pass

    def test_second(self, placed):
        assert "beta" == "gamma"


@pytest.mark.parametrize("index", range(6))
def test_filler(index):
    pass
"""

#: A module whose doctests run with --doctest-modules; one of them expects a wrong
#: output, which pytest-accept's --accept rewrites.
ARITHMETIC = '''\
"""Arithmetic with doctests.

>>> double(2)
4
"""


def double(value):
    """Twice *value*.

    >>> double("ab")
    'abab'
    """
    return value * 2


def triple(value):
    """Three times *value*.

    >>> triple(2)
    7
    >>> triple(1)
    3
    """
    return value * 3
'''

#: What pytest-accept writes for ``triple(2)``.
ACCEPTED = ARITHMETIC.replace("    >>> triple(2)\n    7\n", "    >>> triple(2)\n    6\n")


class Outcome(NamedTuple):
    """How one test ended, as its JUnit record tells."""

    #: ``passed``, or the tag and type of the record's element: ``failure:``,
    #: ``error:``, ``skipped:pytest.skip``, ``skipped:pytest.xfail``.
    kind: str
    message: str
    #: The report: the traceback of a failure or error, with addresses blanked.
    text: str
    #: What the test printed.
    output: str


class Run(NamedTuple):
    """What one run reported."""

    #: Each test's outcome, in the order the tests were reported.
    outcomes: dict[str, Outcome]
    #: The properties each test recorded, for those that recorded any.
    properties: dict[str, dict[str, str]]
    #: The counts of pytest's last line: ``{"passed": 21, "failed": 6, ...}``.
    summary: dict[str, int]


#: A memory address in a report (``<object at 0x7f...>``): it differs from run to run.
_ADDRESS = re.compile(r"0x[0-9a-f]+")


def read_junit(path: Path) -> tuple[dict[str, Outcome], dict[str, dict[str, str]]]:
    """Each test case's outcome, in report order, and the properties it recorded."""
    outcomes: dict[str, Outcome] = {}
    properties: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kind, message, text = "passed", "", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = f"{child.tag}:{child.get('type', '')}"
                message = child.get("message", "")
                text = _ADDRESS.sub("0x?", child.text or "")
        output = "".join(out.text or "" for out in case.iter("system-out"))
        outcomes[name] = Outcome(kind, message, text, output)
        recorded = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        if recorded:
            properties[name] = recorded
    return outcomes, properties


def make_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain=TEST_PLAIN, test_groups=TEST_GROUPS, arithmetic=ARITHMETIC)


def run(pytester: pytest.Pytester, name: str, *args: str) -> Run:
    """Run the project in a fresh process; *name* names its JUnit report."""
    report = pytester.path / f"{name}.xml"
    result = pytester.runpytest_subprocess(*COMMON, f"--junitxml={report}", *args, timeout=300)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    outcomes, properties = read_junit(report)
    return Run(outcomes, properties, result.parseoutcomes())


@pytest.fixture
def randomly_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let pytest-randomly load in the inner runs (tests/conftest.py turns it off)."""
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


#: How the project's tests end, runnerkit loaded or not, in the order pytest collects them.
EXPECTED_KINDS = {
    "arithmetic::arithmetic": "passed",
    "arithmetic::arithmetic.double": "passed",
    "arithmetic::arithmetic.triple": "failure:",
    "test_groups::test_alpha_one": "passed",
    "test_groups::test_alpha_two": "passed",
    "test_groups.TestBeta::test_first": "passed",
    "test_groups.TestBeta::test_second": "failure:",
    **{f"test_groups::test_filler[{index}]": "passed" for index in range(6)},
    "test_plain::test_passes": "passed",
    "test_plain::test_fails": "failure:",
    "test_plain::test_skipped": "skipped:pytest.skip",
    "test_plain::test_skips_itself": "skipped:pytest.skip",
    "test_plain::test_xfails": "skipped:pytest.xfail",
    "test_plain::test_xpasses": "passed",
    "test_plain::test_xpasses_strictly": "failure:",
    "test_plain::test_even[1]": "failure:",
    "test_plain::test_even[2]": "passed",
    "test_plain::test_even[3]": "failure:",
    "test_plain::test_even[4]": "passed",
    "test_plain::test_set_up_fails": "error:",
    "test_plain::test_prints": "passed",
    "test_plain::test_draws_a_random_number": "passed",
    "test_plain::test_alpha_here": "passed",
    "test_plain.TestThings::test_one": "passed",
    "test_plain.TestThings::test_two": "passed",
    "test_plain.TestThings::test_words[ab]": "passed",
    "test_plain.TestThings::test_words[cd]": "passed",
}


def test_a_serial_run_is_the_same_without_runnerkit(
    pytester: pytest.Pytester, randomly_on: None
) -> None:
    make_project(pytester)

    with_runnerkit = run(pytester, "with")
    without = run(pytester, "without", *WITHOUT_RUNNERKIT)

    assert {name: o.kind for name, o in without.outcomes.items()} == EXPECTED_KINDS
    # pytest-randomly shuffled them, so the same order below means something.
    assert list(without.outcomes) != list(EXPECTED_KINDS)
    # The same outcomes, messages, reports and output, in the same order.
    assert list(with_runnerkit.outcomes.items()) == list(without.outcomes.items())
    assert with_runnerkit.summary == without.summary
    assert with_runnerkit.properties == without.properties
    assert "printed by a test\n" in without.outcomes["test_plain::test_prints"].output
    assert "drew 0." in without.outcomes["test_plain::test_draws_a_random_number"].output


def test_a_run_on_two_workers_by_group_is_the_same_without_runnerkit(
    pytester: pytest.Pytester, randomly_on: None
) -> None:
    make_project(pytester)
    distributed = ("-n", "2", "--dist", "loadgroup")

    with_runnerkit = run(pytester, "with", *distributed)
    without = run(pytester, "without", *distributed, *WITHOUT_RUNNERKIT)

    kinds = {name.partition("@")[0]: o.kind for name, o in without.outcomes.items()}
    assert kinds == EXPECTED_KINDS
    # The order in which workers report is theirs; what each test did is not.
    assert with_runnerkit.outcomes == without.outcomes
    assert with_runnerkit.summary == without.summary
    # xdist groups a test by adding "@group" to its node id; where it can (pytest-xdist
    # 3.8 cannot on pytest 9.2, whose node ids it can no longer edit), each group must
    # have run on one worker, as it does without runnerkit.  Which worker is xdist's.
    if any("@" in name for name in without.outcomes):
        for each in (without, with_runnerkit):
            workers: dict[str, set[str]] = {}
            for recorded in each.properties.values():
                workers.setdefault(recorded["group"], set()).add(recorded["worker"])
            assert sorted(workers) == ["alpha", "beta"]
            assert all(len(ids) == 1 for ids in workers.values()), workers


def test_pytest_accept_rewrites_a_doctest_as_it_does_without_runnerkit(
    pytester: pytest.Pytester, randomly_on: None
) -> None:
    make_project(pytester)
    sources = sorted(pytester.path.glob("*.py"))
    originals = {path: path.read_bytes() for path in sources}

    # pytest-accept rewrites failing assertions of the tests too: every file is compared.
    with_runnerkit = run(pytester, "with", "--accept")
    written_with_runnerkit = {path: path.read_bytes() for path in sources}
    for path, original in originals.items():
        path.write_bytes(original)
    without = run(pytester, "without", "--accept", *WITHOUT_RUNNERKIT)
    written_without = {path: path.read_bytes() for path in sources}

    assert written_with_runnerkit == written_without
    assert written_without[pytester.path / "arithmetic.py"] == ACCEPTED.encode()
    assert list(with_runnerkit.outcomes.items()) == list(without.outcomes.items())
    assert without.outcomes["arithmetic::arithmetic.triple"].kind == "failure:"
