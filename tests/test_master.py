"""The master: ``runnerkit start/stop/restart/status``, driven by real processes and signals.

Each test runs real masters over its world's var dir, with the runners of
``tests/processes/`` on their ``PYTHONPATH``; the built-in runners are off.  The tests
read what the processes leave behind: the status file ``var/master.json`` (names,
slices, pids, states), the shared log, and the records of the recording runner.  Every
wait is bounded by a deadline, and the ``masters`` fixture kills, by pid, every master
and runner still alive when a test ends: the pids it saw in the status file and the log,
and any process that names the test's var dir on its command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from child_processes import (
    DEADLINE,
    MasterGroup,
    Recordings,
    alive,
    command_line,
    enqueue,
    kill_at_end,
    option,
    parent_of,
    run_to_end,
    runner_processes,
    wait_for,
)

from runnerkit.master import STUCK_CHECK_SECONDS, running_master_pid
from runnerkit.process import EXIT_RESTART
from runnerkit.testing import World

#: Where the runner classes of the children live.
PROCESSES_DIR = Path(__file__).parent / "processes"

#: The ``runnerkit`` console script of the interpreter running the tests.
RUNNERKIT = Path(sys.executable).with_name("runnerkit")

#: The issue's promise: the runners of a master killed by SIGKILL exit within 2 s.
ORPHAN_DEADLINE = 2.0

RECORDING = """
[runner.quiet]
class: process_runners.RecordingRunner
instances: 2
sleep_time: 100ms
"""

SLOW = """
[runner.slow]
class: process_runners.RecordingRunner
sleep_time: 100ms
"""

PAUSED = """
[runner.paused]
class: process_runners.PausedRunner
sleep_time: 100ms
"""

SERVICE = """
[runner.service]
class: process_runners.ServiceRunner
queue: no
"""

CRASHING = """
[runner.crashing]
class: process_runners.CrashingRunner
max_restarts: 4
"""

FINISHING = """
[runner.finishing]
class: process_runners.FinishingRunner
"""


class Masters(MasterGroup, Recordings):
    """Runs masters over one world's var dir, and reads what they leave."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        super().__init__(world.config, tmp_path, PROCESSES_DIR)
        self.world = world
        self.tmp_path = tmp_path

    # Commands.

    def runnerkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``runnerkit ARGS -C INI --var-dir VAR`` to its end."""
        assert RUNNERKIT.exists(), f"no runnerkit console script beside {sys.executable}"
        return run_to_end([str(RUNNERKIT), *args, *self.options()], self.env, self.tmp_path)

    def start(self, *args: str) -> int:
        """``runnerkit start ARGS``: a master in the background; return its pid."""
        result = self.runnerkit("start", *args)
        assert result.returncode == 0, result.stderr
        match = re.fullmatch(r"master started with pid (\d+)\n", result.stdout)
        assert match is not None, result.stdout
        pid = int(match[1])
        self.seen.add(pid)
        return pid

    def start_foreground(self) -> subprocess.Popen[bytes]:
        """``runnerkit start --foreground`` as a child of the test."""
        return self.spawn([str(RUNNERKIT), "start", "--foreground", *self.options()])

    @property
    def pid_path(self) -> Path:
        return self.var_dir / "master.pid"

    def state(self, name: str, slice: int | None = 0) -> str | None:
        """The state of runner *name*'s *slice*, or None while there is no status."""
        for runner in self.status()["runners"]:
            if (runner["name"], runner["slice"]) == (name, slice):
                return str(runner["state"])
        return None

    def log_records(self) -> list[tuple[datetime, int, str, str]]:
        """(time, pid, logger, message) of each log line."""
        return [(r.when, r.pid, r.logger, r.message) for r in self.log_entries()]


@pytest.fixture
def masters(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Masters]:
    """Run masters; kill, by pid, every master and runner left when the test ends."""
    # The test's own configuration loads the runner classes too, to find the queues.
    monkeypatch.syspath_prepend(str(PROCESSES_DIR))
    yield from kill_at_end(Masters(world, tmp_path))


def status_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The runner rows of ``runnerkit status``, by (name, slice): the other columns."""
    rows = {}
    # The runners' table ends with a blank line; the queues' table follows.
    for line in text.split("\n\n")[0].splitlines()[2:]:
        name, where, *rest = line.split(maxsplit=6)
        rows[name, where] = rest
    return rows


# Starting.


@pytest.mark.slow
def test_start_in_the_background_runs_one_process_per_slice(masters: Masters) -> None:
    masters.configure(RECORDING + PAUSED + SERVICE)
    for tag in ("a", "b", "c"):
        enqueue(masters.switchboard("paused"), tag)

    master = masters.start()
    assert running_master_pid(masters.world.config) == master
    assert masters.pid_path.read_text(encoding="ascii") == f"{master}\n"
    slots = {("paused", 0), ("quiet", 0), ("quiet", 1), ("service", None)}
    pids = masters.wait_running(master, slots)

    # One process per slice of each queue runner, one for the runner without a queue;
    # the built-in runners are off.
    runners = masters.status()["runners"]
    assert [(r["name"], r["slice"], r["count"]) for r in runners] == [
        ("paused", 0, 1),
        ("quiet", 0, 2),
        ("quiet", 1, 2),
        ("service", None, 1),
    ]
    assert len(set(pids.values())) == 4
    specs = {("paused", 0): "paused:0:1", ("quiet", 0): "quiet:0:2", ("quiet", 1): "quiet:1:2"}
    specs["service", None] = "service"
    for key, pid in pids.items():
        assert alive(pid)
        assert parent_of(pid) == master
        assert option(command_line(pid), "--runner") == specs[key]
    assert runner_processes(masters.var_dir) == {specs[key]: [pid] for key, pid in pids.items()}

    result = masters.runnerkit("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"master: running, pid {master}"
    # Every queue, shunt and bad included, whether a runner reads it or not.
    assert result.stdout.split("\n\n")[1].splitlines() == [
        "queue          depth",
        "bad                0",
        "bounces            0",
        "command            0",
        "in                 0",
        "out                0",
        "paused             3",
        "pipeline           0",
        "quiet              0",
        "retry              0",
        "shunt              0",
    ]
    assert lines[1].split() == ["runner", "slice", "pid", "state", "restarts", "queue"]
    assert status_rows(result.stdout) == {
        ("paused", "0/1"): [str(pids["paused", 0]), "running", "0", "3"],
        ("quiet", "0/2"): [str(pids["quiet", 0]), "running", "0", "0"],
        ("quiet", "1/2"): [str(pids["quiet", 1]), "running", "0", "0"],
        ("service", "-"): [str(pids["service", None]), "running", "0", "-"],
    }

    result = masters.runnerkit("stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"master {master} stopped\n"
    wait_for(lambda: not any(alive(pid) for pid in [master, *pids.values()]), "all to exit")
    assert not masters.pid_path.exists()
    assert not masters.status_path.exists()
    result = masters.runnerkit("status")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[0] == "master: not running"


@pytest.mark.slow
def test_start_in_the_foreground_runs_the_master_in_that_process(masters: Masters) -> None:
    masters.configure(RECORDING)
    child = masters.start_foreground()
    pids = masters.wait_running(child.pid, {("quiet", 0), ("quiet", 1)})
    assert running_master_pid(masters.world.config) == child.pid
    assert all(parent_of(pid) == child.pid for pid in pids.values())
    result = masters.runnerkit("status")
    assert result.stdout.splitlines()[0] == f"master: running, pid {child.pid}"

    result = masters.runnerkit("stop")
    assert result.returncode == 0, result.stderr
    assert child.wait(timeout=DEADLINE) == 0, masters.output(child)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), "the runners to exit")
    assert masters.output(child) == ""


def test_stop_and_restart_without_a_master_fail_and_say_what_to_do(masters: Masters) -> None:
    masters.configure(RECORDING)
    for command in ("stop", "restart"):
        result = masters.runnerkit(command)
        assert result.returncode == 1
        assert result.stderr == (
            f"runnerkit: error: no master is running on {masters.var_dir}; "
            "start one with 'runnerkit start'\n"
        )


# The lock.


@pytest.mark.slow
def test_a_second_start_fails_and_names_the_running_master(masters: Masters) -> None:
    masters.configure(RECORDING)
    master = masters.start()
    pids = masters.wait_running(master, {("quiet", 0), ("quiet", 1)})

    for args in (["start"], ["start", "--foreground"]):
        result = masters.runnerkit(*args)
        assert result.returncode == 1, args
        assert result.stderr.startswith("runnerkit: error: "), result.stderr
        assert f"already running with pid {master};" in result.stderr
        assert "'runnerkit stop'" in result.stderr

    # The master itself refuses too, whatever a caller checked before starting it.
    result = subprocess.run(
        [sys.executable, "-m", "runnerkit.master", *masters.options()],
        env=masters.env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1
    assert f"already running with pid {master} " in result.stderr

    # The first master goes on, with the same runners.
    assert running_master_pid(masters.world.config) == master
    assert masters.wait_running(master, set(pids)) == pids
    assert masters.pid_path.read_text(encoding="ascii") == f"{master}\n"


def test_a_stop_as_soon_as_the_pid_file_appears_stops_the_master_in_order(
    masters: Masters,
) -> None:
    """The master handles SIGTERM before it takes its lock and writes its pid file:
    a ``runnerkit stop`` that comes at once ends it in order, its files removed."""
    masters.configure(RECORDING)
    for _ in range(3):
        child = masters.spawn([sys.executable, "-m", "runnerkit.master", *masters.options()])
        while not masters.pid_path.exists():
            assert child.poll() is None, masters.output(child)
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(timeout=DEADLINE) == 0, masters.output(child)
        assert not masters.pid_path.exists()
        assert running_master_pid(masters.world.config) is None


def master_with_other_locks(masters: Masters) -> subprocess.CompletedProcess[str]:
    """Run a master over the same var dir and queues with a lock_dir of its own."""
    other_ini = masters.ini.with_name("other-locks.ini")
    other_ini.write_text(
        masters.ini.read_text(encoding="utf-8") + "\n[paths]\nlock_dir: $VAR_DIR/other-locks\n",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "runnerkit.master", "-C", str(other_ini), *masters.options()[2:]],
        env=masters.env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_a_second_master_with_another_lock_dir_is_refused_by_the_queues(
    masters: Masters,
) -> None:
    """Two masters whose configurations differ only in lock_dir would share the queues
    (two out processes on one slice, messages delivered twice): the queue directories
    themselves are locked, so the second is refused, naming the queue."""
    masters.configure(RECORDING)
    master = masters.start()
    masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    result = master_with_other_locks(masters)
    assert result.returncode == 1
    assert "is locked by another runnerkit master" in result.stderr
    assert running_master_pid(masters.world.config) == master


def test_a_queue_directory_made_again_is_locked_again(masters: Masters) -> None:
    """Removing a queue directory removed its lock: a second master could then run on
    it.  The master locks the new directory within a second."""
    masters.configure(RECORDING)
    master = masters.start()
    masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    queue = masters.switchboard("quiet").queue_directory
    shutil.rmtree(queue)
    time.sleep(2 * STUCK_CHECK_SECONDS + 0.5)  # the master looks once a second
    assert queue.is_dir()
    result = master_with_other_locks(masters)
    assert result.returncode == 1, result.stderr
    assert "is locked by another runnerkit master" in result.stderr
    assert running_master_pid(masters.world.config) == master


@pytest.mark.slow
def test_of_two_starts_at_once_one_wins_and_the_other_names_it(masters: Masters) -> None:
    masters.configure(RECORDING)
    command = [str(RUNNERKIT), "start", *masters.options()]
    both = [
        subprocess.Popen(
            command, env=masters.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=DEADLINE) for process in both]
    results = [
        (process.returncode, out, err) for process, (out, err) in zip(both, outputs, strict=True)
    ]
    assert sorted(status for status, _, _ in results) == [0, 1], results
    (_, out, _), (_, _, err) = sorted(results)
    master = int(out.split()[-1])
    masters.seen.add(master)
    assert f"already running with pid {master};" in err
    masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    assert len(runner_processes(masters.var_dir)) == 2


STALE_PIDS: dict[str, Callable[[], int]] = {
    "of a dead process": lambda: dead_pid(),
    "of a live process that is no master": os.getpid,
}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=DEADLINE)
    return process.pid


@pytest.mark.slow
@pytest.mark.parametrize("stale", STALE_PIDS.values(), ids=STALE_PIDS)
def test_a_stale_lock_is_taken_over(masters: Masters, stale: Callable[[], int]) -> None:
    masters.configure(RECORDING)
    lock = masters.var_dir / "locks" / "master.lck"
    lock.parent.mkdir(parents=True, exist_ok=True)
    stale_pid = stale()
    lock.write_text(f"{stale_pid}\n", encoding="ascii")
    masters.pid_path.write_text(f"{stale_pid}\n", encoding="ascii")
    assert running_master_pid(masters.world.config) is None

    master = masters.start()
    assert master != stale_pid
    assert lock.read_text(encoding="ascii") == f"{master}\n"
    assert masters.pid_path.read_text(encoding="ascii") == f"{master}\n"
    masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    assert masters.runnerkit("stop").returncode == 0
    assert alive(os.getpid())


# Restarts.


@pytest.mark.slow
def test_a_crash_loop_backs_off_and_then_the_slice_stays_down(masters: Masters) -> None:
    masters.configure(RECORDING + CRASHING, backoff_base="50ms", backoff_max="150ms")
    # Without --wait 0, start would see the crash, and stop the master.
    master = masters.start("--wait", "0")
    wait_for(lambda: masters.state("crashing") == "down", "the master to give up")

    crashing = masters.slot("crashing")
    assert crashing["pid"] is None
    assert crashing["restarts"] == 4
    assert crashing["reason"] == "failed 5 times within the restart window"
    # It dies with os._exit(1), writing nothing: its exit status speaks for it.
    assert crashing["last_error"] == "exited with status 1"

    # Each failure waits twice as long as the one before, up to backoff_max; the fifth,
    # one more than max_restarts, ends it.
    records = [(when, message) for when, pid, _, message in masters.log_records() if pid == master]
    starts = [(when, m) for when, m in records if m.startswith("master: started crashing:0:1")]
    deaths = [(when, m) for when, m in records if m.startswith("master: crashing:0:1 (pid ")]
    assert len(starts) == len(deaths) == 5
    delays = [re.search(r"died with status 1; restart (\d) of 4 in (\S+)s$", m) for _, m in deaths]
    assert [(d[1], d[2]) for d in delays[:4] if d] == [
        ("1", "0.05"),
        ("2", "0.10"),
        ("3", "0.15"),
        ("4", "0.15"),
    ]
    assert deaths[4][1].endswith(
        "died with status 1; it failed 5 times within 60.0s, more than max_restarts=4: "
        "giving up, the slice stays down"
    )
    # Each restart came after its pause (log times are in milliseconds; leave a margin).
    pauses = (0.05, 0.10, 0.15, 0.15)
    for (died, _), (restarted, _), delay in zip(deaths[:4], starts[1:], pauses, strict=True):
        assert (restarted - died).total_seconds() >= delay - 0.02

    result = masters.runnerkit("status")
    assert result.returncode == 1, result.stderr
    rows = status_rows(result.stdout)
    assert rows["crashing", "0/1"] == [
        "-",
        "down",
        "4",
        "0",
        "(failed 5 times within the restart window; last error: exited with status 1)",
    ]
    # The other runners do not suffer.
    assert rows["quiet", "0/2"][1:3] == ["running", "0"]
    assert rows["quiet", "1/2"][1:3] == ["running", "0"]


@pytest.mark.slow
def test_a_runner_killed_by_sigkill_is_restarted(masters: Masters) -> None:
    masters.configure(RECORDING)
    master = masters.start()
    pids = masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    killed = pids["quiet", 0]

    os.kill(killed, signal.SIGKILL)
    after = masters.wait_running(master, set(pids), avoid={killed})
    assert after["quiet", 1] == pids["quiet", 1]
    assert not alive(killed)
    assert parent_of(after["quiet", 0]) == master
    assert masters.slot("quiet", 0)["restarts"] == 1
    assert masters.slot("quiet", 0)["last_error"] == "killed by SIGKILL"
    assert masters.slot("quiet", 1)["restarts"] == 0
    assert masters.slot("quiet", 1)["last_error"] == ""
    assert f"master: quiet:0:2 (pid {killed}) died with signal 9; restart 1 of 10 in 0.05s" in (
        masters.messages_of(master)
    )


@pytest.mark.slow
def test_a_runner_that_exits_0_stays_down(masters: Masters) -> None:
    masters.configure(RECORDING + FINISHING)
    master = masters.start()
    wait_for(lambda: masters.state("finishing") == "down", "the runner to stop")
    finishing = masters.slot("finishing")
    assert (finishing["pid"], finishing["restarts"], finishing["reason"]) == (None, 0, "stopped")
    assert any(
        message.startswith("master: finishing:0:1 (pid ")
        and message.endswith("stopped on its own; not restarting")
        for message in masters.messages_of(master)
    )

    # Later events, handled by the same master, do not bring it back.
    pids = masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    os.kill(pids["quiet", 1], signal.SIGKILL)
    masters.wait_running(master, set(pids), avoid={pids["quiet", 1]})
    assert masters.slot("finishing")["state"] == "down"
    started = [m for m in masters.messages_of(master) if m.startswith("master: started finishing")]
    assert len(started) == 1
    assert runner_processes(masters.var_dir).keys() == {"quiet:0:2", "quiet:1:2"}


# Signals.


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_every_runner_after_its_current_message(
    masters: Masters, signum: signal.Signals
) -> None:
    masters.configure(SLOW + RECORDING)
    slow = masters.switchboard("slow")
    child = masters.start_foreground()
    pids = masters.wait_running(child.pid, {("slow", 0), ("quiet", 0), ("quiet", 1)})
    first = enqueue(slow, "m1", gate=True)
    wait_for(lambda: masters.records("started-m1"), "the slow runner to start m1")
    waiting = enqueue(slow, "m2")

    os.kill(child.pid, signum)
    # The slow runner has heard the stop in the middle of m1; the others are gone.
    wait_for(
        lambda: any(
            message.endswith("stopping on SIGTERM")
            for message in masters.messages_of(pids["slow", 0])
        ),
        "the slow runner to hear the stop",
    )
    wait_for(
        lambda: not alive(pids["quiet", 0]) and not alive(pids["quiet", 1]),
        "the idle runners to stop",
    )
    assert masters.records("done-m1") == []
    assert child.poll() is None, "the master must wait for the slow runner"
    masters.release("m1")

    assert child.wait(timeout=DEADLINE) == 0, masters.output(child)
    slow_pid = pids["slow", 0]
    assert masters.records("done-m1") == [f"pid {slow_pid} slice 0"]
    assert masters.records("started-m2") == []
    # m1 was finished, not shunted nor left half-done; m2 waits for the next start.
    assert first not in slow.get_files(".bak")
    assert slow.files == [waiting]
    assert masters.switchboard("shunt").files == []
    assert "stopped with status 0" in masters.messages_of(slow_pid)[-1]
    assert f"master: {signum.name}, stopping all runners" in masters.messages_of(child.pid)
    assert masters.messages_of(child.pid)[-1] == f"master {child.pid}: stopped"
    assert not any(alive(pid) for pid in pids.values())
    assert not masters.pid_path.exists()
    assert not masters.status_path.exists()
    assert running_master_pid(masters.world.config) is None
    assert masters.output(child) == ""


@pytest.mark.slow
def test_sigusr1_restarts_every_runner_without_spending_the_budget(masters: Masters) -> None:
    masters.configure(RECORDING.replace("instances: 2", "instances: 2\nmax_restarts: 1"))
    master = masters.start()
    slots = {("quiet", 0), ("quiet", 1)}
    pids = masters.wait_running(master, slots)
    every = set(pids.values())

    # Twice: once by the signal, once by 'runnerkit restart', which sends it.
    for round in (1, 2):
        if round == 1:
            os.kill(master, signal.SIGUSR1)
        else:
            result = masters.runnerkit("restart")
            assert result.returncode == 0, result.stderr
            assert result.stdout == f"asked master {master} to restart its runners\n"
        new = masters.wait_running(master, slots, avoid=every)
        for key, old in pids.items():
            assert f"stopped with status {EXIT_RESTART}" in masters.messages_of(old)[-1]
            spec = f"quiet:{key[1]}:2"
            assert f"master: {spec} (pid {old}) restarting on request" in masters.messages_of(
                master
            )
            assert masters.slot(*key)["restarts"] == round
        assert not any(alive(pid) for pid in every)
        pids = new
        every |= set(new.values())

    # The budget is whole: max_restarts is 1, and one failure is restarted ...
    killed = pids["quiet", 0]
    os.kill(killed, signal.SIGKILL)
    pids = masters.wait_running(master, slots, avoid={killed})
    every |= set(pids.values())
    died = f"master: quiet:0:2 (pid {killed}) died with signal 9;"
    assert f"{died} restart 1 of 1 in 0.05s" in masters.messages_of(master)
    # ... but a second one, within the window, is one too many.
    killed = pids["quiet", 0]
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: masters.state("quiet", 0) == "down", "the master to give up")
    died = f"master: quiet:0:2 (pid {killed}) died with signal 9;"
    assert any(
        message.startswith(died) and message.endswith("giving up, the slice stays down")
        for message in masters.messages_of(master)
    )

    # SIGUSR1 also brings back a slice that was given up, with a fresh budget.
    os.kill(master, signal.SIGUSR1)
    masters.wait_running(master, slots, avoid=every)
    assert masters.slot("quiet", 0)["reason"] == ""


@pytest.mark.slow
def test_a_file_edited_under_the_master_changes_nothing_until_a_restart(
    masters: Masters,
) -> None:
    """A runner process started after a crash is built from the text the master read,
    not from the file as it is now: an edit of instances does not take the slice down."""
    masters.configure(RECORDING)
    master = masters.start()
    slots = {("quiet", 0), ("quiet", 1)}
    pids = masters.wait_running(master, slots)
    edited = masters.ini.read_text(encoding="utf-8").replace("instances: 2", "instances: 4")
    masters.ini.write_text(edited, encoding="utf-8")

    os.kill(pids["quiet", 1], signal.SIGKILL)
    new = masters.wait_running(master, slots, avoid={pids["quiet", 1]})
    assert masters.slot("quiet", 1)["restarts"] == 1
    assert not any("has instances" in line for line in masters.messages_of(new["quiet", 1]))

    # A restart cannot apply that edit as a whole (two generations of slices would
    # share the queue): it is refused, and nothing changes.
    result = masters.runnerkit("restart")
    assert result.returncode == 1
    assert result.stderr == (
        f"runnerkit: error: the configuration files of master {master} changed, and a "
        "restart cannot apply the change: [runner.quiet] instances changes from 2 to 4; "
        "nothing was changed (to apply it, 'runnerkit stop', then 'runnerkit start')\n"
    )
    assert masters.running(master) == new


@pytest.mark.slow
def test_a_restart_applies_an_edited_file_as_a_whole(masters: Masters) -> None:
    masters.configure(RECORDING)
    master = masters.start()
    slots = {("quiet", 0), ("quiet", 1)}
    pids = masters.wait_running(master, slots)
    text = masters.ini.read_text(encoding="utf-8")
    masters.ini.write_text(text.replace("sleep_time: 100ms", "sleep_time: 7s"), encoding="utf-8")
    # Applied by the master when asked, not before.
    layers = json.loads((masters.var_dir / "master.layers.json").read_text(encoding="utf-8"))
    assert layers["texts"] == [text]

    result = masters.runnerkit("restart")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"asked master {master} to restart its runners with the changed configuration "
        f"({masters.ini})\n"
    )
    masters.wait_running(master, slots, avoid=set(pids.values()))
    assert "master: the runners restart with the changed configuration" in masters.messages_of(
        master
    )
    layers = json.loads((masters.var_dir / "master.layers.json").read_text(encoding="utf-8"))
    assert layers["texts"] == [masters.ini.read_text(encoding="utf-8")]

    # A file that no longer loads is refused by the command, and by the master itself
    # when signalled directly.
    masters.ini.write_text(text + "\n[runner.quiet]\nbogus: 1\n", encoding="utf-8")
    result = masters.runnerkit("restart")
    assert result.returncode == 2
    os.kill(master, signal.SIGUSR1)
    wait_for(
        lambda: any(
            line.startswith("master: the changed configuration is not applied: ")
            for line in masters.messages_of(master)
        ),
        "the master to refuse the broken file",
    )


@pytest.mark.slow
@pytest.mark.parametrize("deleted", [True, False], ids=["deleted", "moved"])
def test_a_master_whose_var_dir_is_deleted_stops_with_its_runners(
    masters: Masters, deleted: bool
) -> None:
    masters.configure(RECORDING)
    master = masters.start()
    pids = masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    # Gone at once, as a torn-down world's is (its runners may still write inside),
    # or moved away (the master then cannot write its status there either).
    gone = masters.var_dir.with_name("gone")
    masters.var_dir.rename(gone)
    if deleted:
        shutil.rmtree(gone, ignore_errors=True)
    wait_for(lambda: not alive(master), "the master to notice and stop", DEADLINE)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), "its runners to stop", DEADLINE)
    # runnerkit made nothing again on its way out (the test's runners write records/).
    made = {path.name for path in masters.var_dir.iterdir()} if masters.var_dir.exists() else set()
    assert made <= {"records"}
    if not deleted:
        # It said why, and ended in order: no traceback.
        log = (gone / "logs" / "runnerkit.log").read_text(encoding="utf-8")
        assert "is gone; stopping, with every runner" in log
        assert "Traceback" not in (gone / "logs" / "master.err").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_paused_machine_does_not_make_healthy_runners_stuck(masters: Masters) -> None:
    """The master's process group stopped for 6 s with stuck_after 3 s: the chaos run
    saw 6 healthy runners killed.  The time the whole system lost is not counted."""
    masters.configure(SLOW, stuck_after="3s")
    slow = masters.switchboard("slow")
    master = masters.start()
    [pid] = masters.wait_running(master, {("slow", 0)}).values()
    enqueue(slow, "m1", gate=True)
    wait_for(lambda: masters.records("started-m1"), "the runner to take m1")
    os.killpg(master, signal.SIGSTOP)  # the master and its runners, as a paused machine
    time.sleep(6)
    os.killpg(master, signal.SIGCONT)
    time.sleep(2)  # the watchdog looks once a second
    assert alive(pid)
    assert masters.slot("slow")["restarts"] == 0
    assert not any("is stuck on" in line for line in masters.messages_of(master))
    masters.release("m1")
    wait_for(lambda: masters.records("done-m1"), "m1 to be done")
    assert masters.records("done-m1") == [f"pid {pid} slice 0"]


def test_output_files_are_the_owners_and_the_groups_only(masters: Masters) -> None:
    masters.configure(RECORDING)
    log_dir = masters.world.config.paths.log_dir
    log_dir.mkdir(parents=True)
    (log_dir / "master.err").write_bytes(b"")
    (log_dir / "master.err").chmod(0o644)  # as an older version left it
    master = masters.start()
    masters.wait_running(master, {("quiet", 0), ("quiet", 1)})
    outputs = [log_dir / "master.err", *sorted((log_dir / "runners").iterdir())]
    assert len(outputs) == 3
    assert {stat.S_IMODE(path.stat().st_mode) for path in outputs} == {0o640}


@pytest.mark.slow
def test_sighup_reopens_the_logs_of_the_master_and_every_runner(masters: Masters) -> None:
    masters.configure(RECORDING + SERVICE)
    master = masters.start()
    slots = {("quiet", 0), ("quiet", 1), ("service", None)}
    pids = masters.wait_running(master, slots)
    rotated = masters.log_path.with_name("runnerkit.log.1")
    masters.log_path.rename(rotated)

    os.kill(master, signal.SIGHUP)
    expected = {master: "master: log files reopened on SIGHUP"}
    expected.update({pid: "log files reopened on SIGHUP" for pid in pids.values()})
    wait_for(
        lambda: all(
            any(message.endswith(text) for message in masters.messages_of(pid))
            for pid, text in expected.items()
        ),
        "a reopen line from the master and each runner in the new log",
    )
    assert "reopened" not in rotated.read_text(encoding="utf-8")
    # Nobody stopped: same master, same runners, and they still work.
    runners = masters.status()["runners"]
    assert {(r["name"], r["slice"]): r["pid"] for r in runners} == pids
    assert all(alive(pid) for pid in [master, *pids.values()])
    enqueue(masters.switchboard("quiet"), "after-hup")
    wait_for(lambda: masters.records("done-after-hup"), "a runner to process a message")
    assert masters.runnerkit("stop").returncode == 0
    assert masters.messages_of(master)[-1] == f"master {master}: stopped"


# Master death.


@pytest.mark.slow
def test_runners_of_a_killed_master_exit_and_a_new_master_never_doubles_a_slice(
    masters: Masters,
) -> None:
    masters.configure(RECORDING + SERVICE)
    slots = {("quiet", 0), ("quiet", 1), ("service", None)}
    old_master = masters.start()
    old = masters.wait_running(old_master, slots)

    os.kill(old_master, signal.SIGKILL)
    wait_for(
        lambda: not any(alive(pid) for pid in old.values()),
        "the runners of the killed master to exit",
        timeout=ORPHAN_DEADLINE,
    )
    for pid in old.values():
        assert any(m.endswith("stopped with status 0") for m in masters.messages_of(pid))

    new_master = masters.start()
    # Watch every runner process over the var dir while the new master starts them.
    samples: list[dict[str, list[int]]] = []

    def all_running() -> bool:
        samples.append(runner_processes(masters.var_dir))
        status = masters.status()
        return status["master_pid"] == new_master and all(
            runner["state"] == "running" and masters.has_started(runner["pid"])
            for runner in status["runners"]
        )

    wait_for(all_running, "the new master to run every runner")
    samples.append(runner_processes(masters.var_dir))
    for sample in samples:
        assert all(len(found) == 1 for found in sample.values()), sample
    final = samples[-1]
    assert final.keys() == {"quiet:0:2", "quiet:1:2", "service"}
    assert all(parent_of(pid) == new_master for [pid] in final.values())
    assert not set(old.values()) & {pid for [pid] in final.values()}


@pytest.mark.slow
def test_a_new_master_waits_for_a_leftover_runner_to_finish_its_message(
    masters: Masters,
) -> None:
    masters.configure(SLOW)
    slow = masters.switchboard("slow")
    old_master = masters.start()
    old = masters.wait_running(old_master, {("slow", 0)})["slow", 0]
    enqueue(slow, "m1", gate=True)
    wait_for(lambda: masters.records("started-m1"), "the runner to start m1")

    # The master dies while its runner is in the middle of m1: the runner hears it, but
    # finishes m1 first, however long that takes.
    os.kill(old_master, signal.SIGKILL)
    wait_for(
        lambda: any(m.endswith("stopping on SIGTERM") for m in masters.messages_of(old)),
        "the leftover runner to hear that its master died",
    )
    new_master = masters.start()

    # The new master's process for the slice waits for the leftover one ...
    waiting = f"runner slow slice 0: process {old} still works on this slice; waiting for it"
    new: list[int] = []

    def new_one_waits() -> bool:
        new[:] = [r["pid"] for r in masters.status()["runners"] if r["pid"] not in (None, old)]
        return bool(new) and waiting in masters.messages_of(new[0])

    wait_for(new_one_waits, "the new runner process to wait for the slice")
    [new_pid] = new
    assert masters.status()["master_pid"] == new_master
    assert not masters.has_started(new_pid)
    assert masters.records("started-m1") == [f"pid {old} slice 0"]

    # ... and takes over once m1 is done: m1 was processed once, by the leftover.
    masters.release("m1")
    wait_for(lambda: masters.has_started(new_pid), "the new runner process to start")
    wait_for(lambda: not alive(old), "the leftover runner to exit")
    assert masters.records("started-m1") == [f"pid {old} slice 0"]
    assert masters.records("done-m1") == [f"pid {old} slice 0"]
    enqueue(slow, "m2")
    wait_for(lambda: masters.records("done-m2"), "the new runner to process m2")
    assert masters.records("done-m2") == [f"pid {new_pid} slice 0"]
    assert slow.files == []
    assert slow.get_files(".bak") == []
