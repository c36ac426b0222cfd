"""``--spec-shard K/N``: a suite split across machines, each document whole on one shard.

Each test builds a throwaway project with pytester: spec documents whose every example
needs the one before, and plain tests.  Running every shard of a plan, serially and
under ``-n 2``, must run every example and test exactly once in all, each document on
one shard; recorded durations must balance the shards; ``--spec-store-durations`` must
record real seconds while a spec freezes the clock; and the plan must not depend on
the order a plugin put the tests in.
"""

from __future__ import annotations

import json
import random
import re
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from runnerkit.errors import DurationsFileError
from runnerkit.testing.durations import FORMAT, VERSION, durations_text, read_durations
from runnerkit.testing.sharding import SECONDS_PER_TEST, Shard, Unit, assign, estimates

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"])
"""

PLAIN = """\
import pytest


def test_one():
    pass


def test_two():
    pass


@pytest.mark.parametrize('number', range(5))
def test_number(number):
    pass
"""

#: The spec documents of the project: name, number of steps, Markdown or not.
DOCUMENTS = (("alpha", 6, False), ("beta", 4, True), ("gamma", 3, False), ("delta", 8, False))


def chained(name: str, steps: int, *, markdown: bool = False) -> str:
    """A document of ``1 + steps`` examples, each needing the one before it."""
    examples = [">>> step = 0"] + [f">>> step += 1; step\n{n}" for n in range(1, steps + 1)]
    if markdown:
        return f"# {name}\n\n" + "".join(f"```python\n{e}\n```\n\n" for e in examples)
    body = "\n\n".join(textwrap.indent(example, "    ") for example in examples)
    return f"{name}\n{'=' * len(name)}\n\n{body}\n"


def document_path(name: str, markdown: bool) -> str:
    return f"docs/{name}.{'md' if markdown else 'rst'}"


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def project(pytester: pytest.Pytester, conftest: str = CONFTEST) -> None:
    """Four chained documents and seven plain tests: eleven units."""
    files = {"conftest.py": conftest, "test_plain.py": PLAIN}
    for name, steps, markdown in DOCUMENTS:
        files[document_path(name, markdown)] = chained(name, steps, markdown=markdown)
    write(pytester, files)


def collected(result: pytest.RunResult) -> list[str]:
    """The node ids a ``--collect-only -q`` run lists."""
    return [line for line in result.outlines if "::" in line and " " not in line]


def passed(result: pytest.RunResult) -> list[str]:
    """The node ids of a ``-rA`` run's passed tests."""
    return [line.split()[1] for line in result.outlines if line.startswith("PASSED ")]


def failed(result: pytest.RunResult) -> list[str]:
    """The node ids of a ``-rA`` run's failed tests."""
    return [line.split()[1] for line in result.outlines if line.startswith("FAILED ")]


def plan_line(result: pytest.RunResult) -> str:
    lines = [line for line in result.outlines if line.startswith("runnerkit: shard ")]
    assert len(lines) == 1, result.outlines
    return lines[0]


def fingerprint(result: pytest.RunResult) -> str:
    match = re.search(r"; plan ([0-9a-f]{8})$", plan_line(result))
    assert match, plan_line(result)
    return match[1]


def unit_of(nodeid: str) -> str:
    """The unit of a node id of :func:`project`: a document, or the test itself."""
    return nodeid.partition("::")[0] if nodeid.startswith("docs/") else nodeid


def durations_file(units: dict[str, float]) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "units": units})


# -- Every shard together runs everything, once ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "xdist"])
@pytest.mark.parametrize("count", [2, 3])
def test_the_shards_together_run_every_test_exactly_once(
    pytester: pytest.Pytester, count: int, workers: int
) -> None:
    project(pytester)
    everything = collected(pytester.runpytest(*QUIET, "--collect-only", "-q"))
    assert len(everything) == sum(1 + steps for _, steps, _ in DOCUMENTS) + 7

    ran: Counter[str] = Counter()
    shard_of: dict[str, set[int]] = {}
    fingerprints = set()
    for index in range(1, count + 1):
        options = (*QUIET, "-rA", "--spec-shard", f"{index}/{count}")
        if workers:
            result = pytester.runpytest_subprocess(*options, "-n", str(workers))
        else:
            result = pytester.runpytest(*options)
        assert result.ret == pytest.ExitCode.OK, result.outlines
        assert set(result.parseoutcomes()) - {"warnings"} <= {"passed", "deselected"}
        mine = passed(result)
        assert mine, f"shard {index}/{count} ran nothing"
        ran.update(mine)
        for nodeid in mine:
            shard_of.setdefault(nodeid.partition("::")[0], set()).add(index)
        fingerprints.add(fingerprint(result))

    assert ran == Counter(everything)
    # Each document ran on one shard; so did the test module here, being its tests' file.
    documents = {document_path(name, markdown) for name, _, markdown in DOCUMENTS}
    assert all(len(shard_of[document]) == 1 for document in documents), shard_of
    # The tests of test_plain.py are units of their own, spread over the shards.
    assert len(shard_of["test_plain.py"]) > 1
    assert len(fingerprints) == 1


def test_sharding_splits_what_k_selected(pytester: pytest.Pytester) -> None:
    project(pytester)
    selection = ("-k", "alpha or gamma or test_number")
    expected = collected(pytester.runpytest(*QUIET, "--collect-only", "-q", *selection))
    ran: list[str] = []
    for index in (1, 2):
        result = pytester.runpytest(*QUIET, "-rA", "--spec-shard", f"{index}/2", *selection)
        ran += passed(result)
        # Units are counted among the selected ones: 2 documents and 5 tests.
        assert re.search(r" of 7 units ", plan_line(result)), plan_line(result)
    assert sorted(ran) == sorted(expected)


LAST_FAILED = """\
import os

import pytest


@pytest.mark.parametrize('name', 'abcdef')
def test_letter(name):
    assert name not in os.environ.get('FAIL', '')
"""


def test_sharding_splits_what_last_failed_selected(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--lf`` deselects in its own hook wrapper (for a file named on the command
    line; in others it drops what passed while collecting), and sharding comes after it.

    With one second a test, shards of the whole collection are a, c, e and b, d, f:
    both failures would be in shard 1.  Shards of what ``--lf`` selected split them.
    """
    write(pytester, {"test_letters.py": LAST_FAILED})
    monkeypatch.setenv("FAIL", "ac")
    pytester.runpytest().assert_outcomes(passed=4, failed=2)
    # They fail again, so that the first shard's run leaves the cache as it was.
    first = pytester.runpytest("-rA", "--lf", "--spec-shard=1/2", "test_letters.py")
    second = pytester.runpytest("-rA", "--lf", "--spec-shard=2/2", "test_letters.py")
    assert failed(first) == ["test_letters.py::test_letter[a]"]
    assert failed(second) == ["test_letters.py::test_letter[c]"]


def test_a_shard_without_units_runs_nothing(pytester: pytest.Pytester) -> None:
    """More shards than units: as when ``-k`` selects nothing, pytest exits with 5."""
    write(pytester, {"test_alone.py": "def test_alone():\n    pass\n"})
    pytester.runpytest(*QUIET, "--spec-shard", "1/2").assert_outcomes(passed=1)
    result = pytester.runpytest(*QUIET, "--spec-shard", "2/2")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["runnerkit: shard 2/2: 0 of 1 units (0 documents, 0 tests)*"])


# -- Balance ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "xdist"])
def test_a_slow_document_gets_a_shard_of_its_own(pytester: pytest.Pytester, workers: int) -> None:
    project(pytester)
    recorded = {"docs/delta.rst": 50.0, "docs/alpha.rst": 3.0, "docs/beta.md": 2.0}
    write(pytester, {".runnerkit-durations.json": durations_file(recorded)})
    delta = [f"docs/delta.rst::line:{line},column:1" for line in (4, 6, 9, 12, 15, 18, 21, 24, 27)]
    results = {}
    for index in (1, 2):
        options = (*QUIET, "-rA", "--spec-shard", f"{index}/2")
        if workers:
            results[index] = pytester.runpytest_subprocess(*options, "-n", str(workers))
        else:
            results[index] = pytester.runpytest(*options)
    # delta, the longest, goes first, to shard 1; everything else is less than it.
    assert sorted(passed(results[1])) == sorted(delta)
    assert len(passed(results[2])) == 7 + 5 + 7 + 4
    # gamma and the plain tests have no record: 55 s over 21 tests are 55/21 s a test.
    per_test = 55 / 21
    estimate = 3 + 2 + 4 * per_test + 7 * per_test
    assert plan_line(results[2]) == (
        f"runnerkit: shard 2/2: 10 of 11 units (3 documents, 7 tests),"
        f" estimated {estimate:.1f} s of {estimate + 50:.1f} s"
        f" (8 of 11 units without a recorded duration); plan {fingerprint(results[1])}"
    )


def test_a_unit_without_a_record_is_estimated_from_the_mean_per_test() -> None:
    units = {
        "a.rst": Unit("a.rst", 10, document=True),
        "t::x": Unit("t::x", 1, document=False),
        "b.rst": Unit("b.rst", 4, document=True),
        "t::y": Unit("t::y", 1, document=False),
    }
    recorded = {"a.rst": 5.0, "t::x": 0.5, "gone.rst": 100.0}
    # 5.5 s over the 11 tests of the recorded units of this run; gone.rst is not one.
    assert estimates(units, recorded) == {"a.rst": 5.0, "t::x": 0.5, "b.rst": 2.0, "t::y": 0.5}
    assert estimates(units, {})["b.rst"] == 4 * SECONDS_PER_TEST


def test_longest_first_to_the_least_loaded_shard() -> None:
    estimated = {"a": 7.0, "b": 6.0, "c": 5.0, "d": 4.0, "e": 3.0, "f": 3.0}
    # a→1, b→2, c→3, d→3 (5), e→2 (6), f→1 (7): each shard near 10 s.
    assert assign(estimated, 3) == {"a": 1, "b": 2, "c": 3, "d": 3, "e": 2, "f": 1}
    # Units estimated at nothing are spread by their number, not all put on shard 1.
    assert Counter(assign(dict.fromkeys("abcdefg", 0.0), 3).values()) == {1: 3, 2: 2, 3: 2}


def test_the_plan_depends_on_names_and_estimates_not_on_order() -> None:
    estimated = {f"unit{n}": float(n % 4) for n in range(40)}
    names = list(estimated)
    for seed in range(5):
        random.Random(seed).shuffle(names)
        shuffled = {name: estimated[name] for name in names}
        assert assign(shuffled, 3) == assign(estimated, 3)


def test_every_shard_plans_the_same_whatever_the_order(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-randomly shuffles each run its own way; the shards still agree.

    The fingerprint covers the whole plan; each shard's selection is checked too.
    """
    monkeypatch.delenv("PYTEST_ADDOPTS")
    project(pytester)
    selections: dict[int, set[frozenset[str]]] = {}
    orders = set()
    fingerprints = set()
    for seed in ("1", "2"):
        for index in (1, 2, 3):
            result = pytester.runpytest(
                *QUIET,
                "--collect-only",
                "-q",
                "-p",
                "randomly",
                f"--randomly-seed={seed}",
                f"--spec-shard={index}/3",
            )
            selections.setdefault(index, set()).add(frozenset(collected(result)))
            orders.add(tuple(collected(result)))
            fingerprints.add(fingerprint(result))
    assert len(orders) > 3, "the seeds did not shuffle"
    assert all(len(seen) == 1 for seen in selections.values()), selections
    assert len(fingerprints) == 1


# -- Recording durations ----------------------------------------------------------------

#: A spec that freezes the clock years ago, and moves the frozen clock a day on.
FROZEN_SPEC = """\
Frozen
======

    >>> import datetime, time
    >>> freezer = freeze_time('2003-04-05 06:07:08')
    >>> clock = freezer.start()
    >>> _ = cleanups.callback(freezer.stop)

    >>> time.sleep(0.3)
    >>> _ = clock.tick(datetime.timedelta(days=1))
    >>> print(datetime.datetime.now())
    2003-04-06 06:07:08
"""

#: Tests under one freeze that spans them: it starts in the first and ends in the last.
FROZEN_TESTS = """\
import datetime
import time

import freezegun
import pytest


@pytest.fixture(scope='module', autouse=True)
def years_ago():
    with freezegun.freeze_time('2003-04-05') as clock:
        yield clock


def test_first(years_ago):
    time.sleep(0.2)
    years_ago.tick(datetime.timedelta(days=1))


def test_second():
    time.sleep(0.2)
    assert datetime.date.today() == datetime.date(2003, 4, 6)


def test_quick():
    pass
"""


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "xdist"])
def test_stored_durations_are_real_seconds_under_a_frozen_clock(
    pytester: pytest.Pytester, workers: int
) -> None:
    write(
        pytester,
        {
            "conftest.py": CONFTEST,
            "docs/frozen.rst": FROZEN_SPEC,
            # Before docs/, so that its freeze starts before any spec has run.
            "checks/test_frozen.py": FROZEN_TESTS,
            ".runnerkit-durations.json": durations_file({"test_gone.py::test_old": 1.5}),
        },
    )
    before = time.monotonic()
    # In a process of its own: freezegun's ignore list is the process's, and this one's
    # may have been extended already by the tests that ran before.
    result = pytester.runpytest_subprocess(
        *QUIET, "--spec-store-durations", *(("-n", str(workers)) if workers else ())
    )
    elapsed = time.monotonic() - before
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        ["runnerkit: stored the durations of 4 units in .runnerkit-durations.json"]
    )

    path = pytester.path / ".runnerkit-durations.json"
    units = read_durations(path)
    assert set(units) == {
        "docs/frozen.rst",
        "checks/test_frozen.py::test_first",
        "checks/test_frozen.py::test_second",
        "checks/test_frozen.py::test_quick",
        "test_gone.py::test_old",
    }
    # Against a frozen clock, test_second would take no time at all, and test_first
    # and test_quick would be some 1e9 seconds out, one each way.  (A unit's phases add
    # up to about the time from its start to its end, so the freeze that begins and
    # ends within the spec would all but cancel out even then.)
    assert 0.3 <= units["docs/frozen.rst"] <= elapsed
    assert 0.2 <= units["checks/test_frozen.py::test_first"] <= elapsed
    assert 0.2 <= units["checks/test_frozen.py::test_second"] <= elapsed
    assert units["checks/test_frozen.py::test_quick"] < 0.2
    # The record of a unit this run did not have is kept.
    assert units["test_gone.py::test_old"] == 1.5
    # Sorted, one unit a line, and no temporary file left beside it.
    assert path.read_text(encoding="utf-8") == durations_text(units)
    assert [p.name for p in pytester.path.iterdir() if p.suffix == ".tmp"] == []


def test_a_unit_that_did_not_run_whole_is_not_recorded(pytester: pytest.Pytester) -> None:
    project(pytester)
    selection = ("-k", "alpha and line:9 or test_one")
    result = pytester.runpytest(*QUIET, "--spec-store-durations", *selection)
    result.assert_outcomes(passed=2, deselected=30)
    # alpha ran one example (after the ones before it, silently), not all of them.
    result.stdout.fnmatch_lines(
        ["runnerkit: stored the durations of 1 unit in .runnerkit-durations.json (1 more*"]
    )
    assert set(read_durations(pytester.path / ".runnerkit-durations.json")) == {
        "test_plain.py::test_one"
    }


def test_each_shard_stores_the_durations_of_its_own_units(pytester: pytest.Pytester) -> None:
    """As on a CI matrix, each shard has its own copy of the file, as the run began."""
    project(pytester)
    (pytester.path / "timings").mkdir()
    units: dict[int, set[str]] = {}
    for index in (1, 2):
        result = pytester.runpytest(
            *QUIET,
            "-rA",
            f"--spec-shard={index}/2",
            "--spec-store-durations",
            f"--spec-durations=timings/{index}.json",
        )
        units[index] = set(read_durations(pytester.path / "timings" / f"{index}.json"))
        assert units[index] == {unit_of(nodeid) for nodeid in passed(result)}
    assert not units[1] & units[2]
    assert len(units[1] | units[2]) == 11


def test_a_durations_file_that_cannot_be_written_is_reported(pytester: pytest.Pytester) -> None:
    write(pytester, {"test_alone.py": "def test_alone():\n    pass\n"})
    result = pytester.runpytest(
        *QUIET, "--spec-store-durations", "--spec-durations", "missing/durations.json"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["runnerkit: durations not stored in missing/durations.json: *"])


# -- Usage errors -----------------------------------------------------------------------


#: What a malformed ``--spec-shard`` value is told.
SHARD_COMPLAINTS = {
    "0/3": "the shard must be from 1 to 3, not 0",
    "4/3": "the shard must be from 1 to 3, not 4",
    "1/0": "the number of shards must be >= 1",
    "x": "expected K/N*",
    "3": "expected K/N*",
    "1/2/3": "expected K/N*",
    "-1/3": "expected K/N*",
    " 1/3": "expected K/N*",
    "\uff11/3": "expected K/N*",
}


@pytest.mark.parametrize("value", list(SHARD_COMPLAINTS))
def test_a_malformed_shard_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    write(pytester, {"test_alone.py": "def test_alone():\n    pass\n"})
    result = pytester.runpytest(*QUIET, f"--spec-shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --spec-shard {value!r}: {SHARD_COMPLAINTS[value]}"])


def _file(version: object = 1, units: object = "{}") -> str:
    return f'{{"format": "runnerkit durations", "version": {version}, "units": {units}}}'


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param("{", "is not a runnerkit durations file: it is not JSON (*)", id="json"),
        pytest.param(
            "[]",
            'is not a runnerkit durations file: it lacks "format": "runnerkit durations"',
            id="list",
        ),
        pytest.param('{"units": {}}', "is not a runnerkit durations file: it lacks*", id="format"),
        pytest.param(
            _file(version='"1"'),
            'is not a runnerkit durations file: "version" must be a whole number*',
            id="version",
        ),
        pytest.param(
            _file(version=2),
            "is a durations file of version 2, written by a newer runnerkit;*",
            id="newer",
        ),
        pytest.param(
            _file(units="[]"),
            'is not a runnerkit durations file: "units" must map unit names to seconds',
            id="units",
        ),
        pytest.param(
            _file(units='{"a.rst": -1}'),
            "is not a runnerkit durations file: unit 'a.rst' has -1, not a number*",
            id="negative",
        ),
        pytest.param(
            _file(units='{"a.rst": true}'),
            "is not a runnerkit durations file: unit 'a.rst' has True, not a number*",
            id="bool",
        ),
    ],
)
@pytest.mark.parametrize("option", ["--spec-shard=1/2", "--spec-store-durations"])
def test_a_malformed_durations_file_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, text: str, complaint: str, option: str
) -> None:
    write(pytester, {"test_alone.py": "def test_alone():\n    pass\n", "d.json": text})
    result = pytester.runpytest(*QUIET, option, "--spec-durations", "d.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {pytester.path / 'd.json'} {complaint}"])


def test_a_durations_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(durations_text({"b.rst": 1.23456, "a::t": 0}), encoding="utf-8")
    assert read_durations(path) == {"a::t": 0.0, "b.rst": 1.235}
    assert read_durations(tmp_path / "none.json") == {}
    path.write_bytes(b"\xff")
    with pytest.raises(DurationsFileError, match="cannot read the durations file"):
        read_durations(path)


def test_shard_parse() -> None:
    assert Shard.parse("2/3") == Shard(2, 3)
    assert str(Shard.parse("10/12")) == "10/12"


def test_a_skipped_test_keeps_its_unit_from_being_recorded() -> None:
    from runnerkit.testing.durations import DurationLog

    log = DurationLog()
    for when, outcome in (("setup", "skipped"), ("teardown", "passed")):
        log.add(
            pytest.TestReport(
                nodeid="test_x.py::test_slow",
                location=("test_x.py", 1, "test_slow"),
                keywords={},
                outcome=outcome,  # type: ignore[arg-type]
                longrepr=("test_x.py", 1, "Skipped: not now") if outcome == "skipped" else None,
                when=when,  # type: ignore[arg-type]
                duration=0.001,
            )
        )
    units = {"test_x.py::test_slow": "test_x.py::test_slow"}
    # A skipped run says nothing of how long the test takes: its record is kept.
    assert log.whole_units(units, {"test_x.py::test_slow": 1}) == {}
