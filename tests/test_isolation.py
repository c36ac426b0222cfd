"""Nothing a document does outlives it, whichever of its examples ran (issue 11).

A document that starts something in one example and undoes it in a later one leaks
it whenever the later example does not run: a selection ran the earlier one as a
prelude, or an example in between failed.  Each test builds a small project with
pytester, leaves the undoing example out, and checks that the next document and a
plain test find the process as it was, and that a warning names the document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runnerkit.locks import lock_is_held
from runnerkit.testing.isolation import Isolation, IsolationWarning, terminate, thaw

pytest_plugins = ["pytester"]

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst"])
"""

#: Starts a freeze in one example and stops it in the last one.
WINDOW = """\
A delivery window
=================

    >>> import datetime
    >>> freezer = freeze_time("2001-02-03 04:05:06")
    >>> _ = freezer.start()
    >>> print(datetime.date.today())
    2001-02-03
    >>> freezer.stop()
"""

#: Fails while the clock is frozen, in the example that would have stopped the freeze.
FAILING_WINDOW = """\
A window that breaks
====================

    >>> import datetime
    >>> freezer = freeze_time("2001-02-03 04:05:06")
    >>> _ = freezer.start()
    >>> assert datetime.date.today().year == 1999; freezer.stop()
"""

#: A fresh document that needs the real clock.
TODAY = """\
Today
=====

    >>> import datetime
    >>> datetime.datetime.now().year >= 2024
    True
"""

PLAIN = """\
import datetime
import os
import sys


def test_clock_is_real():
    assert datetime.datetime.now().year >= 2024


def test_process_is_as_it_was():
    assert "RUNNERKIT_LEAK" not in os.environ
    assert "/nowhere/runnerkit" not in sys.path
    assert os.getcwd() == {cwd!r}
"""


def make_project(pytester: pytest.Pytester, **documents: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_z_plain=PLAIN.format(cwd=str(pytester.path)))
    (pytester.path / "docs").mkdir()
    for name, text in documents.items():
        (pytester.path / "docs" / f"{name}.rst").write_text(textwrap.dedent(text))


def isolation_warnings(result: pytest.RunResult) -> list[str]:
    """The lines of the run's output that start an :class:`IsolationWarning`."""
    return [line for line in result.outlines if "IsolationWarning:" in line]


def test_a_freeze_started_by_a_prelude_ends_with_its_document(pytester: pytest.Pytester) -> None:
    make_project(pytester, a_window=WINDOW, b_today=TODAY)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "docs/a_window.rst::line:7,column:1",
        "docs/b_today.rst",
        "test_z_plain.py",
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: docs/a_window.rst left changes behind*",
            "*1 freezegun freeze stopped",
        ]
    )


def test_a_freeze_ends_with_its_document_when_an_example_fails(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester, a_window=FAILING_WINDOW, b_today=TODAY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["FAILED docs/a_window.rst::line:7,column:1*"])
    result.stdout.fnmatch_lines(["*docs/a_window.rst left changes behind*"])


def test_a_full_run_that_undoes_everything_is_not_warned_about(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester, a_window=WINDOW, b_today=TODAY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)
    assert isolation_warnings(result) == []


MESS = """\
A mess
======

    >>> import logging, os, sys
    >>> os.environ['RUNNERKIT_LEAK'] = 'yes'
    >>> sys.path.insert(0, '/nowhere/runnerkit')
    >>> os.chdir(world.var_dir)
    >>> _ = os.umask(0o077)
    >>> logging.getLogger('runnerkit.leak').setLevel(logging.DEBUG)
    >>> logging.getLogger('runnerkit.leak').addHandler(logging.StreamHandler())
"""


def test_environ_cwd_path_umask_and_logging_are_restored(pytester: pytest.Pytester) -> None:
    make_project(pytester, a_mess=MESS)
    umask = os.umask(0o022)
    os.umask(umask)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(MESS.split(">>>")) - 1 + 2)
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: docs/a_mess.rst left changes behind*",
            "*os.environ: unset RUNNERKIT_LEAK",
            "*working directory * changed back to *",
            "*sys.path put back: '/nowhere/runnerkit' removed",
            "*umask 0077 changed back to *",
            "*logging put back: 'runnerkit.leak'",
        ]
    )
    # The inner run shares this process: its leaks would be ours.
    assert os.umask(umask) == umask
    assert "RUNNERKIT_LEAK" not in os.environ


#: Starts a master (with its runners) and a runner process of its own, both orphans,
#: records their pids, and never stops them.
MASTER = """\
A master that keeps running
===========================

    >>> import json, os, subprocess, sys, time
    >>> from runnerkit.master import running_master_pid
    >>> ini = world.var_dir / 'quiet.ini'
    >>> _ = ini.write_text(''.join(
    ...     f'[runner.{{name}}]\\nstart: no\\n'
    ...     for name in ('lmtp', 'retry', 'bounces', 'command', 'rest')))
    >>> env = dict(os.environ, RUNNERKIT_VAR_DIR=str(world.var_dir))
    >>> print(subprocess.run([sys.executable, '-m', 'runnerkit', 'start', '-C', str(ini)],
    ...                      env=env, capture_output=True, text=True, timeout=60).stdout)
    master started with pid ...
    >>> _ = subprocess.run(
    ...     ['sh', '-c', f'{{sys.executable}} -m runnerkit.process -r retry -C {{ini}} '
    ...      f'--var-dir {{world.var_dir}} >/dev/null 2>&1 &'], timeout=60)
    >>> lock = config.paths.lock_dir / 'runner-retry.lck'
    >>> status = world.var_dir / 'master.json'
    >>> def runner_pids():
    ...     if not status.exists():
    ...         return []
    ...     return [runner['pid'] for runner in json.loads(status.read_text())['runners']]
    >>> deadline = time.monotonic() + 30
    >>> while time.monotonic() < deadline and not (
    ...         lock.exists() and lock.read_text().strip()
    ...         and runner_pids() and all(runner_pids())):
    ...     time.sleep(0.05)
    >>> pids = [running_master_pid(config), int(lock.read_text()), *runner_pids()]
    >>> _ = open({record!r}, 'w').write(json.dumps(pids))
"""


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.slow
def test_a_master_and_runners_started_in_a_document_are_stopped_at_its_end(
    pytester: pytest.Pytester,
) -> None:
    record = pytester.path / "pids.json"
    make_project(pytester, a_master=MASTER.format(record=str(record)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "docs")
    result.assert_outcomes(passed=len(MASTER.split(">>>")) - 1)
    pids = json.loads(record.read_text())
    assert len(pids) == 5, pids  # the master, the orphan runner, in, out and pipeline
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if running(pid)]
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: docs/a_master.rst left changes behind*",
            f"*master {pids[0]} of * stopped",
            f"*runner process {pids[1]} (runner-retry.lck) killed",
        ]
    )


FIXTURE_TESTS = """\
import os

import pytest


def test_leaks(world, freeze_time):
    freeze_time("2001-02-03")
    os.environ["RUNNERKIT_LEAK"] = "yes"


def test_undoes_with_monkeypatch_first(monkeypatch, world):
    monkeypatch.setenv("RUNNERKIT_LEAK", "no")
    monkeypatch.chdir(world.var_dir)


def test_after():
    import datetime
    assert "RUNNERKIT_LEAK" not in os.environ
    assert datetime.date.today().year >= 2024
"""


def test_a_test_using_the_fixtures_is_restored_and_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: test_fixtures.py::test_leaks left changes behind*",
            "*os.environ: unset RUNNERKIT_LEAK",
        ]
    )
    assert len(isolation_warnings(result)) == 1
    assert "freezegun" not in result.stdout.str()


def test_thaw_stops_a_freeze_whose_freezer_is_gone() -> None:
    import datetime

    import freezegun

    isolation = Isolation()
    freezegun.freeze_time("2001-02-03").start()
    freezegun.freeze_time("2002-02-03").start()
    assert datetime.date.today().year == 2002
    assert isolation.restore() == ["2 freezegun freezes stopped"]
    assert datetime.date.today().year >= 2024
    assert thaw() == 0


def test_restoring_twice_is_an_error() -> None:
    from runnerkit.errors import HarnessError

    isolation = Isolation()
    assert isolation.restore() == []
    with pytest.raises(HarnessError, match="restored already"):
        isolation.restore()


def test_the_warning_is_a_pytest_warning() -> None:
    assert issubclass(IsolationWarning, pytest.PytestWarning)


#: A process whose main thread has exited while another runs on, holding a lock on the
#: file ``argv[1]``: ``/proc/PID/stat`` shows a zombie, as it does for a killed process
#: whose other threads are still on their way out.  ``argv[2]`` is ``ignore`` to have it
#: ignore SIGTERM.
HEADLESS = """\
import ctypes, fcntl, os, signal, sys, threading, time

if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
fcntl.flock(fd, fcntl.LOCK_EX)
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def start_headless(lock: Path, sigterm: str) -> subprocess.Popen[bytes]:
    """Start :data:`HEADLESS`; return once its main thread is a zombie, the lock held."""
    process = subprocess.Popen([sys.executable, "-c", HEADLESS, str(lock), sigterm])
    deadline = time.monotonic() + 15
    while not (main_thread_state(process.pid) == "Z" and lock_is_held(lock)):
        assert time.monotonic() < deadline, "the main thread did not exit"
        assert process.poll() is None, process.returncode
        time.sleep(0.01)
    return process


def main_thread_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_terminate_waits_until_every_thread_has_exited(tmp_path: Path) -> None:
    lock = tmp_path / "held.lck"
    process = start_headless(lock, "ignore")
    try:
        terminate([process.pid], timeout=0.2)
        assert not lock_is_held(lock)
    finally:
        process.kill()
        process.wait(timeout=15)


def test_a_child_whose_main_thread_has_exited_but_runs_on_is_stopped(tmp_path: Path) -> None:
    lock = tmp_path / "held.lck"
    isolation = Isolation()
    process = start_headless(lock, "default")
    try:
        assert isolation.restore() == [f"child process {process.pid} killed"]
        assert not lock_is_held(lock)
    finally:
        process.kill()
        process.wait(timeout=15)


FAILING_WITH_A_TIMEOUT = """\
def test_fails(world):
    assert world.var_dir is None
"""


def test_a_failed_test_under_pytest_timeout_is_not_warned_about(
    pytester: pytest.Pytester,
) -> None:
    # pytest-timeout resets SIGALRM to SIG_DFL as soon as a test fails, before its
    # teardown: that is pytest's doing, not the test's.
    pytester.makepyfile(test_timed=FAILING_WITH_A_TIMEOUT)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "timeout", "--timeout=600", "--timeout-method=signal"
    )
    result.assert_outcomes(failed=1)
    assert isolation_warnings(result) == []


def test_a_time_zone_set_by_a_document_is_undone_in_the_c_library_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.undo()  # what the test found, the isolation keeps: TZ=UTC, applied
    os.environ["TZ"] = "UTC"
    isolation = Isolation()
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    assert time.strftime("%Z") == "JST"
    try:
        assert any("TZ" in line for line in isolation.restore())
        # Setting os.environ back is not enough: time.tzset() must be called again.
        assert time.strftime("%Z") == "UTC"
    finally:
        del os.environ["TZ"]
        time.tzset()
