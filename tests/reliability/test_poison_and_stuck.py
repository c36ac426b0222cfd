"""Poison messages and stuck runners: nothing loops for ever.

- A message that kills its runner every time is tried exactly three times under the real
  master, which restarts the runner after each death; then it is in ``bad``, and the
  messages behind it flow.
- A runner stuck on one message is noticed by the master's watchdog (``[master]
  stuck_after``): the master logs it, shows it as ``stuck`` and kills it; the restarted
  runner tries the message again, and after three attempts the message is in ``bad``,
  while the runner of the other slice keeps working.

The watchdog's rules are also tested in this process, on a :class:`~runnerkit.master.Master`
that is not running, with a plain ``sleep`` process standing for a runner and the clock
given to :meth:`~runnerkit.master.Master.kill_stuck`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoskit.harness import BUILT_INS_OFF, RELIABILITY, MasterRun, master_section, wait_for

from runnerkit.config import Configuration
from runnerkit.master import Master, Slot
from runnerkit.message import message_from_string
from runnerkit.slices import slice_of
from runnerkit.switchboard import MAX_RECOVERIES, Switchboard

MESSAGE = """\
From: someone@example.com
To: list@example.com
Subject: message {mid}

Message {mid}.
"""


def enqueue(queue: Switchboard, mid: int, **metadata: object) -> str:
    return queue.enqueue(message_from_string(MESSAGE.format(mid=mid)), mid=mid, **metadata)


def slice_of_file(filebase: str, count: int) -> int:
    return slice_of(int(filebase[-40:], 16), count)


def attempts(run: MasterRun, mid: int) -> list[str]:
    """The tokens (``<pid>-<random>``) of the processes that recorded message *mid*."""
    return [token for recorded, _, token in run.records() if recorded == mid]


# Poison.

POISON = """
[runner.poison]
class: chaoskit.runners.RecordingRunner
sleep_time: 100ms
max_restarts: 10
"""


@pytest.mark.slow
def test_a_message_that_kills_its_runner_is_in_bad_after_exactly_three_attempts(
    master_run: MasterRun,
) -> None:
    master_run.configure(POISON)
    queue = master_run.switchboard("poison")
    bad = master_run.switchboard("bad")
    poison = enqueue(queue, 0, poison=True)
    behind = [enqueue(queue, mid) for mid in range(1, 6)]
    master = master_run.start()

    wait_for(lambda: bad.get_files(".psv") == [poison], "the poison message to reach bad")
    wait_for(
        lambda: all(attempts(master_run, mid) for mid in range(1, 6)),
        "the messages behind it to be processed",
    )

    # Three attempts, each by a new process: the master restarted the runner each time.
    tried = attempts(master_run, 0)
    assert len(tried) == MAX_RECOVERIES == 3
    pids = [int(token.split("-")[0]) for token in tried]
    assert len(set(pids)) == 3
    log = master_run.messages_of(master.pid)
    for pid in pids:
        assert any(
            line.startswith(f"master: poison:0:1 (pid {pid}) died with signal 9; restart ")
            for line in log
        ), log
    # The messages behind it were processed once each, and the runner still runs.
    for mid in range(1, 6):
        assert len(attempts(master_run, mid)) == 1
    assert set(behind).isdisjoint(queue.files)
    assert queue.files == []
    assert queue.get_files(".bak") == []
    assert master_run.switchboard("shunt").files == []
    wait_for(lambda: master_run.slot("poison")["state"] == "running", "the runner to run")
    assert master_run.slot("poison")["restarts"] == 3
    assert bad.files == []


# The stuck-runner watchdog, under the real master.

STUCK = """
[runner.stuck]
class: chaoskit.runners.RecordingRunner
instances: 2
sleep_time: 100ms
max_restarts: 10
"""

STUCK_LINE = re.compile(
    r"master: runner stuck slice (\d) \(pid (\d+)\) is stuck on (\S+): no progress for "
    r"[\d.]+s, more than stuck_after=1.0s; killing it"
)


@pytest.mark.slow
def test_a_runner_stuck_on_a_message_is_killed_until_the_message_is_in_bad(
    master_run: MasterRun,
) -> None:
    master_run.configure(STUCK, stuck_after="1s")
    queue = master_run.switchboard("stuck")
    bad = master_run.switchboard("bad")
    stuck = enqueue(queue, 0, stuck=True)
    stuck_slice = slice_of_file(stuck, 2)
    master = master_run.start()
    wait_for(lambda: attempts(master_run, 0), "the runner to take the stuck message")

    # While the runner of its slice is stuck, messages of the other slice flow, and
    # those of the stuck slice wait behind it.
    others: dict[int, list[int]] = {0: [], 1: []}
    mid = 1
    while len(others[0]) < 3 or len(others[1]) < 3:
        others[slice_of_file(enqueue(queue, mid), 2)].append(mid)
        mid += 1
    flowing = others[1 - stuck_slice]
    waiting = others[stuck_slice]
    wait_for(
        lambda: all(attempts(master_run, mid) for mid in flowing),
        "the other slice's runner to process its messages",
    )
    assert len(attempts(master_run, 0)) < 3
    assert bad.get_files(".psv") == []

    # Each attempt was noticed, logged and killed; after the third the message is in bad.
    wait_for(lambda: bad.get_files(".psv") == [stuck], "the stuck message to reach bad")
    wait_for(
        lambda: all(attempts(master_run, mid) for mid in waiting),
        "the messages behind the stuck one to be processed",
    )
    tried = [int(token.split("-")[0]) for token in attempts(master_run, 0)]
    assert len(tried) == 3
    assert len(set(tried)) == 3
    noticed = [
        match.groups()
        for match in map(STUCK_LINE.fullmatch, master_run.messages_of(master.pid))
        if match
    ]
    assert noticed == [(str(stuck_slice), str(pid), stuck) for pid in tried]
    for pid in tried:
        assert any(
            line.startswith(f"master: stuck:{stuck_slice}:2 (pid {pid}) died with signal 9;")
            for line in master_run.messages_of(master.pid)
        )
    assert master_run.slot("stuck", stuck_slice)["restarts"] == 3
    assert master_run.slot("stuck", 1 - stuck_slice)["restarts"] == 0
    for mid in flowing + waiting:
        assert len(attempts(master_run, mid)) == 1
    assert queue.files == []
    assert queue.get_files(".bak") == []


# The watchdog's rules, on a master that is not running.


@pytest.fixture
def idle_master(
    config: Configuration, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Master]:
    """A master over the world, with ``stuck_after: 1s``, that has started nothing."""
    monkeypatch.syspath_prepend(str(RELIABILITY))
    config.push("stuck", master_section(stuck_after="1s") + BUILT_INS_OFF + STUCK)
    master = Master(config)
    for slot in master.slots:
        slot.start_at = None
    try:
        yield master
    finally:
        for slot in master.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()


def stand_in(master: Master, slot: Slot, started: float, holds_lock: bool = True) -> None:
    """Give *slot* a process that sleeps, started at *started*, holding the slice lock."""
    slot.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    slot.started = started
    lock = master.config.paths.lock_dir / f"runner-{slot.name}-{slot.slice}.lck"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = slot.process.pid if holds_lock else os.getpid()
    lock.write_text(f"{holder}\n", encoding="ascii")


def take(master: Master) -> tuple[str, Slot, float]:
    """Queue a message and take it, as a runner does: (file base, its slot, ctime)."""
    queue = master.config.switchboards["stuck"]
    filebase = enqueue(queue, 0)
    queue.dequeue(filebase)
    changed = (queue.queue_directory / f"{filebase}.bak").stat().st_ctime
    slot = next(slot for slot in master.slots if slot.slice == slice_of_file(filebase, 2))
    return filebase, slot, changed


def test_the_watchdog_kills_the_process_and_marks_it_stuck(
    idle_master: Master, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "runnerkit.master")
    filebase, slot, changed = take(idle_master)
    stand_in(idle_master, slot, started=changed - 60)
    other = next(other for other in idle_master.slots if other is not slot)
    stand_in(idle_master, other, started=changed - 60)
    assert slot.process is not None
    assert other.process is not None

    # Within stuck_after of the dequeue, the runner is only busy.
    assert idle_master.kill_stuck(changed + 0.9) == []
    assert slot.process.poll() is None

    assert idle_master.kill_stuck(changed + 1.5) == [slot]
    assert slot.process.wait(timeout=10) == -9
    assert other.process.poll() is None
    status = json.loads((idle_master.config.paths.var_dir / "master.json").read_text())
    rows = {row["slice"]: row for row in status["runners"]}
    assert rows[slot.slice]["state"] == "stuck"
    assert rows[slot.slice]["reason"] == f"stuck on {filebase}"
    assert rows[other.slice]["state"] == "running"
    assert [record.getMessage() for record in caplog.records] == [
        f"master: runner stuck slice {slot.slice} (pid {slot.process.pid}) is stuck on "
        f"{filebase}: no progress for 1.5s, more than stuck_after=1.0s; killing it"
    ]
    # Found once: the next checks leave it to be reaped and restarted.
    assert idle_master.kill_stuck(changed + 3) == []
    idle_master.step(time.monotonic())
    assert slot.process is None
    assert slot.stuck_on == ""
    assert idle_master.status().runners[slot.slice].state == "starting"


def test_the_watchdog_counts_from_the_start_of_the_process(idle_master: Master) -> None:
    # A .bak older than the process was left by its predecessor: the new process
    # recovers it as it starts, and gets stuck_after for that.
    _, slot, changed = take(idle_master)
    stand_in(idle_master, slot, started=changed + 10)
    assert idle_master.kill_stuck(changed + 10.9) == []
    assert idle_master.kill_stuck(changed + 11.1) == [slot]


def test_the_watchdog_kills_only_the_masters_own_process(
    idle_master: Master, caplog: pytest.LogCaptureFixture
) -> None:
    # The slice's lock names another process: a runner of a master killed earlier,
    # still on its message.  This master's process waits for it and is left alone.
    caplog.set_level(logging.ERROR, "runnerkit.master")
    filebase, slot, changed = take(idle_master)
    stand_in(idle_master, slot, started=changed - 60, holds_lock=False)
    assert idle_master.kill_stuck(changed + 5) == []
    assert idle_master.kill_stuck(changed + 6) == []
    assert slot.process is not None
    assert slot.process.poll() is None
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"master: runner stuck slice {slot.slice}: {filebase} has been taken for 5.0s by "
        f"process {os.getpid()}, which this master did not start; pid {slot.process.pid}"
    )


def test_the_watchdog_looks_at_most_once_a_second_and_not_at_all_when_off(
    idle_master: Master,
) -> None:
    checks: list[float] = []
    idle_master.kill_stuck = checks.append  # type: ignore[method-assign,assignment]
    for now in (100.0, 100.5, 100.99, 101.0, 101.7, 102.1):
        idle_master.step(now)
    assert len(checks) == 3
    idle_master.stuck_after = 0.0
    for now in (200.0, 201.0, 202.0):
        idle_master.step(now)
    assert len(checks) == 3


def test_stuck_after_is_ten_minutes_unless_configured(config: Configuration) -> None:
    assert config.get("master", "stuck_after").total_seconds() == 600
