"""Runner processes: ``python -m runnerkit.process``, driven by real signals.

Every test starts real child processes with the test's own Python, over the test's
var dir, with the runners of ``tests/processes/`` on their ``PYTHONPATH``.  The children
leave records in the var dir (see ``process_runners``), which the tests read.  Every wait
is bounded by a deadline, and the ``children`` fixture kills, by pid, any child still
running when a test ends.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import (
    Recordings,
    RunnerGroup,
    enqueue,
    kill_at_end,
    run_to_end,
    wait_for,
)

from runnerkit.process import EXIT_RESTART
from runnerkit.slices import slice_of
from runnerkit.switchboard import Switchboard
from runnerkit.testing import World

#: Where the children's runner classes live.
PROCESSES_DIR = Path(__file__).parent / "processes"

#: Signals that stop a runner after the message it is processing, and the exit status
#: each leads to: SIGUSR1 asks the master for a restart.
STOP_SIGNALS = {signal.SIGTERM: 0, signal.SIGINT: 0, signal.SIGUSR1: EXIT_RESTART}

RECORDING = """\
[runner.slow]
class: process_runners.RecordingRunner
sleep_time: 100ms
"""


class Children(RunnerGroup, Recordings):
    """Starts runner processes over one world's var dir, and reads what they leave."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        super().__init__(world, tmp_path, PROCESSES_DIR)
        self.tmp_path = tmp_path

    def configure(self, text: str, name: str = "slow") -> Switchboard:
        return super().configure(text, name)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runnerkit.process", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a runner process to its end with *args*, capturing its output."""
        return run_to_end(self.command(*args), self.env, self.tmp_path)


@pytest.fixture
def children(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Children]:
    """Start runner processes; kill, by pid, those still running when the test ends."""
    # The test's own configuration loads the runner classes too, when it reads the file.
    monkeypatch.syspath_prepend(str(PROCESSES_DIR))
    yield from kill_at_end(Children(world, tmp_path))


# Stopping.


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda signum: signum.name)
def test_stop_signal_mid_message_finishes_it_and_keeps_the_rest_queued(
    children: Children, signum: signal.Signals
) -> None:
    switchboard = children.configure(RECORDING)
    config = children.world.config
    first = enqueue(switchboard, "m1", gate=True)
    others = [enqueue(switchboard, tag) for tag in ("m2", "m3")]
    child = children.start_ready("slow")
    wait_for(lambda: children.records("started-m1"), "the runner to start m1")

    child.send_signal(signum)
    # Only once the runner has taken the signal does m1 go on: the signal surely
    # arrived in the middle of the message.
    wait_for(
        lambda: f"stopping on {signum.name}" in children.log_text(),
        f"the runner to log {signum.name}",
    )
    assert children.records("done-m1") == []
    children.release("m1")

    status = STOP_SIGNALS[signum]
    assert child.wait_exit() == status, child.stderr
    assert len(children.records("done-m1")) == 1
    assert children.records("started-m2") == children.records("started-m3") == []
    for extension in (".pck", ".bak"):
        assert first not in switchboard.get_files(extension)
    assert switchboard.files == others
    assert switchboard.get_files(".bak") == []
    assert config.switchboards["shunt"].files == []
    assert config.switchboards["bad"].get_files(".psv") == []
    assert f"stopped with status {status}" in children.log_text()
    assert "Traceback" not in child.stderr


def test_idle_runner_stops_promptly(children: Children) -> None:
    children.configure(RECORDING.replace("100ms", "10s"))
    child = children.start_ready("slow")
    snoozing = children.var_dir / "records" / "snoozing"
    wait_for(snoozing.exists, "the runner to snooze")
    child.send_signal(signal.SIGTERM)
    # Well under the 10 s snooze: the stop ends the snooze at once.
    assert child.wait_exit(timeout=3) == 0, child.stderr


def test_a_stop_signal_while_waiting_for_the_slice_lock_ends_the_process_cleanly(
    children: Children,
) -> None:
    switchboard = children.configure(RECORDING)
    filebase = enqueue(switchboard, "m1")
    lock_path = children.var_dir / "locks" / "runner-slow.lck"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # This test holds the slice's lock, as a leftover runner would.
    holder = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        child = children.start("slow")
        wait_for(
            lambda: "still works on this slice; waiting for it" in children.log_text(),
            "the runner to wait for the slice lock",
        )
        child.send_signal(signal.SIGTERM)
        assert child.wait_exit() == 0, child.stderr
    finally:
        os.close(holder)
    assert "stopping on SIGTERM" in children.log_text()
    assert children.records("started-m1") == []
    assert switchboard.files == [filebase]


def test_sighup_reopens_the_log_and_the_runner_goes_on(children: Children) -> None:
    switchboard = children.configure(RECORDING)
    child = children.start_ready("slow")
    rotated = children.log_path.with_name(children.log_path.name + ".1")
    children.log_path.rename(rotated)

    child.send_signal(signal.SIGHUP)
    wait_for(lambda: "reopened" in children.log_text(), "a new log with the reopen line")
    assert "reopened" not in rotated.read_text(encoding="utf-8")

    enqueue(switchboard, "after-hup")
    wait_for(lambda: children.records("done-after-hup"), "the runner to process a message")
    assert child.running()
    assert switchboard.files == []

    child.send_signal(signal.SIGTERM)
    assert child.wait_exit() == 0, child.stderr
    assert "stopped with status 0" in children.log_text()


# Setting up.

BAD_SETUPS = {
    "runner text with two parts": ("slow:0", RECORDING, "expected NAME or NAME:SLICE:COUNT"),
    "runner text with an empty name": (":0:1", RECORDING, "expected NAME or NAME:SLICE:COUNT"),
    "runner text with a bad count": ("slow:0:x", RECORDING, "expected NAME or NAME:SLICE:COUNT"),
    "slice past the count": (
        "slow:2:2",
        f"{RECORDING}instances: 2\n",
        "SLICE must be from 0 to 1",
    ),
    "negative slice": ("slow:-1:2", f"{RECORDING}instances: 2\n", "SLICE must be from 0 to 1"),
    "unknown runner": ("nosuch", RECORDING, "no [runner.nosuch] section"),
    "count above instances": ("slow:0:4", f"{RECORDING}instances: 2\n", "instances: 2, not 4"),
    "count below instances": ("slow:0:1", f"{RECORDING}instances: 2\n", "instances: 2, not 1"),
    "count without instances": ("slow:0:2", RECORDING, "instances: 1, not 2"),
    "bad value": ("slow", f"{RECORDING}instances: 3\n", "key 'instances', value '3'"),
    "unknown key": ("slow", f"{RECORDING}colour: blue\n", "colour"),
    "class that is not there": (
        "slow",
        RECORDING.replace("RecordingRunner", "NoSuchRunner"),
        "has no attribute 'NoSuchRunner'",
    ),
    "not an INI file": ("slow", "this is not\nINI text\n", "runnerkit.ini"),
}


@pytest.mark.parametrize(("runner", "text", "expected"), BAD_SETUPS.values(), ids=BAD_SETUPS)
def test_bad_setup_exits_with_status_2_and_says_why(
    children: Children, runner: str, text: str, expected: str
) -> None:
    children.ini.write_text(text, encoding="utf-8")
    result = children.run(
        "-r", runner, "-C", str(children.ini), "--var-dir", str(children.var_dir)
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("runnerkit: "), result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_with_status_2(children: Children) -> None:
    missing = children.tmp_path / "missing.ini"
    result = children.run("-r", "slow", "-C", str(missing), "--var-dir", str(children.var_dir))
    assert result.returncode == 2
    assert result.stderr.startswith("runnerkit: cannot read configuration file")
    assert str(missing) in result.stderr


def test_missing_runner_option_exits_with_status_2(children: Children) -> None:
    result = children.run("--var-dir", str(children.var_dir))
    assert result.returncode == 2
    assert "--runner" in result.stderr


# Slices.


@pytest.mark.slow
def test_each_slice_process_handles_only_its_slice(children: Children) -> None:
    switchboard = children.configure(f"{RECORDING}instances: 2\n")
    owner: dict[str, int] = {}
    # Enough messages that each slice has several, however the digests fall.
    while min(sum(1 for s in owner.values() if s == k) for k in (0, 1)) < 3:
        assert len(owner) < 200, "the digests keep falling in one slice"
        tag = f"m{len(owner)}"
        filebase = enqueue(switchboard, tag)
        owner[tag] = slice_of(int(filebase.rpartition("+")[2], 16), 2)

    pair = [children.start_ready(f"slow:{k}:2") for k in (0, 1)]
    wait_for(
        lambda: all(children.records(f"done-{tag}") for tag in owner),
        "the two processes to process every message",
    )
    for child in pair:
        child.send_signal(signal.SIGTERM)
    for child in pair:
        assert child.wait_exit() == 0, child.stderr

    pids = {k: child.pid for k, child in enumerate(pair)}
    for tag, k in owner.items():
        expected = [f"pid {pids[k]} slice {k}"]
        assert children.records(f"started-{tag}") == expected, tag
        assert children.records(f"done-{tag}") == expected, tag
    assert switchboard.files == []
    assert switchboard.get_files(".bak") == []


# Crashes.

POISONED = """\
[runner.poisoned]
class: process_runners.RecordingRunner
sleep_time: 100ms
"""


@pytest.mark.slow
def test_a_message_that_crashes_the_process_goes_to_bad_after_three_attempts(
    children: Children,
) -> None:
    switchboard = children.configure(POISONED, "poisoned")
    bad = children.world.config.switchboards["bad"]
    enqueue(switchboard, "before")
    poison = enqueue(switchboard, "poison", poison=True)
    after = enqueue(switchboard, "after")

    for attempt in (1, 2, 3):
        child = children.start("poisoned")
        assert child.wait_exit() == 1, child.stderr
        assert len(children.records("started-poison")) == attempt
        # The crash left the message in mid-processing, as a .bak; the next process
        # recovers it and tries again, before the younger message.
        assert switchboard.get_files(".bak") == [poison]
        assert switchboard.files == [after]
        assert children.records("started-after") == []
    assert len(children.records("done-before")) == 1

    # The third recovery preserves the message in bad instead; the runner goes on.
    child = children.start("poisoned")
    wait_for(lambda: children.records("done-after"), "the runner to process the last message")
    child.send_signal(signal.SIGTERM)
    assert child.wait_exit() == 0, child.stderr
    assert len(children.records("started-poison")) == 3
    assert bad.get_files(".psv") == [poison]
    assert switchboard.files == []
    assert switchboard.get_files(".bak") == []
    assert children.world.config.switchboards["shunt"].files == []
    assert len(children.records("done-before")) == 1
