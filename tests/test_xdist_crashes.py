"""A crashed xdist worker ends a run as it would without runnerkit, specs or not.

Each test runs a throwaway project in a pytest subprocess under ``-n N`` and reads,
from a file its ``conftest.py`` writes in the controller, every test report: which
node ids ran, how often and with what outcome.  A hang fails the test through the
subprocess timeout, not the suite's.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: Records, in the controller only, each report's node id, phase and outcome.
RECORDER = """\
import json, os


WORKER = []


def pytest_configure(config):
    # Not the environment: an outer xdist worker's PYTEST_XDIST_WORKER reaches here.
    WORKER.append(hasattr(config, "workerinput"))


def pytest_runtest_logreport(report):
    if WORKER[0]:
        return
    with open("reports.jsonl", "a") as log:
        fields = [report.nodeid, report.when, report.outcome, str(report.longrepr)]
        print(json.dumps(fields), file=log)
"""

#: What a project with specs adds to its conftest.py.
COLLECT_SPECS = """

from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst"])
"""

#: A plain test module whose second test kills its worker once, or every time.
CRASHING = """\
import os, signal
from pathlib import Path


def test_before():
    pass


def test_crash():
    marker = Path("crashed-once")
    if {every_time} or not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


def test_after():
    pass
"""

#: A document that builds on itself, with an example that crashes its worker once.
CRASHING_DOCUMENT = """\
Crashing
========

    >>> import os; total = 1

    >>> if {every_time} or not os.path.exists("doc-crashed-once"):
    ...     open("doc-crashed-once", "w").close(); os.kill(os.getpid(), 9)

    >>> total += 1
    >>> total
    2
"""

#: A document that must not be touched by another document's crash.
QUIET_DOCUMENT = """\
Quiet
=====

    >>> word = "calm"
    >>> word.upper()
    'CALM'
"""

RETRY_HOOK = """

def pytest_handlecrashitem(crashitem, report, sched):
    # xdist's documented recipe: run the crashed test again, once.
    if not os.path.exists("retried"):
        open("retried", "w").close()
        sched.mark_test_pending(crashitem)
"""

DIST_MODES = ["load", "worksteal", "loadscope", "loadfile", "loadgroup"]

DOC = "docs/crashing.rst"
EXAMPLES = [f"{DOC}::line:{line},column:1" for line in (4, 6, 9, 10)]


def project(
    pytester: pytest.Pytester,
    *,
    every_time: bool = False,
    document: bool = False,
    specs: bool = True,
    retry: bool = False,
) -> None:
    files = {
        "conftest.py": RECORDER
        + (COLLECT_SPECS if specs or document else "")
        + (RETRY_HOOK if retry else ""),
        "test_crash.py": CRASHING.format(every_time=every_time and not document),
    }
    if specs:
        files["docs/quiet.rst"] = QUIET_DOCUMENT
    if document:
        files["docs/crashing.rst"] = CRASHING_DOCUMENT.format(every_time=every_time)
        files["test_crash.py"] = CRASHING.format(every_time=False).replace(
            "def test_crash", "def _not_a_test"
        )
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[list[str]]]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)
    log = Path(pytester.path, "reports.jsonl")
    reports = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, reports


def finals(reports: list[list[str]]) -> dict[str, list[str]]:
    """Each node id's outcomes, one per run: its call report, or xdist's crash report."""
    outcomes: dict[str, list[str]] = {}
    for nodeid, when, outcome, _ in reports:
        if when in ("call", "???"):
            outcomes.setdefault(nodeid, []).append(outcome)
    return outcomes


#: The runs compared: each --dist mode with two workers, and load with one.
RUNS = [("2", mode) for mode in DIST_MODES] + [("1", "load")]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "mode"), RUNS)
def test_without_specs_a_crash_ends_as_without_runnerkit(
    pytester: pytest.Pytester, mode: str, workers: str
) -> None:
    # xdist's own scheduler is in charge: whatever it does with a crash (its loadscope,
    # loadfile and loadgroup run the crashed unit again, the crashed test included),
    # it does the same with runnerkit installed.
    project(pytester, specs=False)
    args = ("-n", workers, "--dist", mode)
    result, with_runnerkit = run(pytester, *args)
    Path(pytester.path, "reports.jsonl").unlink()
    Path(pytester.path, "crashed-once").unlink()
    without, without_runnerkit = run(pytester, *args, "-p", "no:runnerkit")
    plugins = next(line for line in without.stdout.lines if line.startswith("plugins:"))
    assert "runnerkit" not in plugins
    assert finals(with_runnerkit) == finals(without_runnerkit), result.stdout.str()
    assert result.ret == without.ret == 1
    assert "crashed while running 'test_crash.py::test_crash'" in result.stdout.str()


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "mode"), RUNS)
def test_with_specs_a_crashed_test_is_reported_once_and_the_rest_run_once(
    pytester: pytest.Pytester, mode: str, workers: str
) -> None:
    project(pytester, specs=True)
    result, reports = run(pytester, "-n", workers, "--dist", mode)
    outcomes = finals(reports)
    assert outcomes.pop("test_crash.py::test_crash") == ["failed"], result.stdout.str()
    assert outcomes.pop("test_crash.py::test_before") == ["passed"]
    assert outcomes.pop("test_crash.py::test_after") == ["passed"]
    assert outcomes.pop("docs/quiet.rst::line:4,column:1") == ["passed"]
    assert outcomes.pop("docs/quiet.rst::line:5,column:1") == ["passed"]
    assert outcomes == {}
    assert "crashed while running 'test_crash.py::test_crash'" in result.stdout.str()
    assert result.ret == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", DIST_MODES)
def test_a_crash_in_a_document_fails_the_rest_of_it_and_nothing_else(
    pytester: pytest.Pytester, mode: str
) -> None:
    project(pytester, document=True)
    result, reports = run(pytester, "-n", "2", "--dist", mode)
    outcomes = finals(reports)
    first, crashed, *rest = EXAMPLES
    assert outcomes.pop(first) == ["passed"], result.stdout.str()
    assert outcomes.pop(crashed) == ["failed"]
    for nodeid in rest:
        assert outcomes.pop(nodeid) == ["failed"]
    assert outcomes.pop("docs/quiet.rst::line:4,column:1") == ["passed"]
    assert outcomes.pop("docs/quiet.rst::line:5,column:1") == ["passed"]
    assert set(outcomes) == {"test_crash.py::test_before", "test_crash.py::test_after"}
    assert all(runs == ["passed"] for runs in outcomes.values())
    why = [longrepr for nodeid, when, _, longrepr in reports if nodeid == rest[0]]
    assert len(why) == 1
    assert f"crashed while running '{crashed}'" in why[0]
    assert "an earlier example of the same document" in why[0]
    result.assert_outcomes(passed=5, failed=3)


@pytest.mark.slow
@pytest.mark.parametrize("document", [False, True], ids=["test", "example"])
def test_a_crash_hook_can_run_the_crashed_test_again(
    pytester: pytest.Pytester, document: bool
) -> None:
    project(pytester, document=document, retry=True)
    result, reports = run(pytester, "-n", "1")
    outcomes = finals(reports)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    if document:
        first, crashed, *rest = EXAMPLES
        # The whole document ran again on the new worker, from its start.
        assert outcomes.pop(first) == ["passed", "passed"]
        assert outcomes.pop(crashed) == ["failed", "passed"], result.stdout.str()
        assert all(outcomes.pop(nodeid) == ["passed"] for nodeid in rest)
    else:
        assert outcomes.pop("test_crash.py::test_crash") == ["failed", "passed"]
    assert all(runs == ["passed"] for runs in outcomes.values()), outcomes


@pytest.mark.slow
@pytest.mark.parametrize("restarts", ["0", "2"])
def test_with_specs_max_worker_restart_is_honoured(
    pytester: pytest.Pytester, restarts: str
) -> None:
    # Two tests that crash every time, on one worker: restarts 0 stops at the first.
    project(pytester, every_time=True)
    Path(pytester.path, "test_crash_too.py").write_text(
        "import os, signal\n\ndef test_crash_again():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result, reports = run(pytester, "-n", "1", "--max-worker-restart", restarts)
    output = result.stdout.str()
    crashes = Counter(nodeid for nodeid, when, _, _ in reports if when == "???")
    assert all(count == 1 for count in crashes.values()), crashes
    assert "INTERNALERROR" not in output + result.stderr.str()
    if restarts == "0":
        assert "worker gw0 crashed and worker restarting disabled" in output
        assert len(crashes) == 1
    else:
        assert len(crashes) == 2
        assert "maximum crashed workers reached" not in output
        assert finals(reports)["test_crash.py::test_after"] == ["passed"]
    assert result.ret != 0


@pytest.mark.slow
def test_under_each_the_rest_of_a_crashed_document_is_not_run_again(
    pytester: pytest.Pytester,
) -> None:
    # --dist each stays xdist's: it hands a replacement worker the rest of what the
    # crashed worker had. Those examples fail as "not run": running the examples
    # before them again would crash the replacement too, one worker after another.
    # One worker: with two, both crash at once, and xdist 3.8's EachScheduling.schedule
    # may index the collection of a replacement that has not finished collecting
    # (INTERNALERROR KeyError: <WorkerController gw3>, with or without runnerkit; the
    # same family as pytest-xdist #714, #1189 and #1362).
    project(pytester, document=True, every_time=True)
    result, reports = run(pytester, "-n", "1", "--dist", "each")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    _first, crashed, *rest = EXAMPLES
    crashes = [nodeid for nodeid, when, _, _ in reports if when == "???"]
    assert crashes == [crashed], output
    for nodeid in rest:
        why = [
            text for each, when, outcome, text in reports if each == nodeid and outcome == "failed"
        ]
        assert len(why) == 1, output
        assert all("ran in another worker process, which crashed" in text for text in why)


def test_a_worker_the_scheduler_never_had_is_a_key_error_as_in_xdist() -> None:
    # DSession.worker_errordown removes a worker that may have died before it was
    # ready, and ignores the KeyError xdist's schedulers raise for it.
    from runnerkit.testing.scheduling import SpecAwareScheduling

    scheduler = SpecAwareScheduling(None, None, "load")  # type: ignore[arg-type]
    scheduler.add_node("gw0")
    with pytest.raises(KeyError):
        scheduler.remove_node("gw1")
    assert scheduler.remove_node("gw0") is None
