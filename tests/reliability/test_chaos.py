"""Chaos: messages flow through sliced runners under the real master while runners die.

For each seed, :data:`MESSAGES` messages are queued for a runner with :data:`INSTANCES`
slices; the master (``python -m runnerkit.master``) runs one process per slice; a loop
driven by ``random.Random(seed)`` SIGKILLs a random runner process every 50 to 200 ms,
and half-way through it SIGKILLs the master itself and starts a new one.  The runners
record each message they process (:mod:`chaoskit.runners`).  At the end:

- no message is lost: every id is recorded at least once;
- duplicates (ids recorded more than once: killed after the work, before the queue file
  was removed) are counted, and there are no more of them than kills;
- the queue drains: no ``.pck``, ``.bak`` or ``.tmp`` is left, and nothing went to
  ``shunt`` or ``bad``;
- the runners of the killed master exit within 2 s, and no slice ever had two runner
  processes: none in any sample of ``/proc``, and in the record each process's lines for
  its slice form one block, never interleaved with another process's;
- each message was processed by the runner of its own slice.

The figures of each seed (messages, kills, lost, duplicates, seconds) are written to
``chaos-<seed>.json`` in the test's temporary directory and printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from chaoskit.harness import MasterRun, wait_for
from child_processes import alive, is_runner_of, runner_processes

from runnerkit.config import Configuration
from runnerkit.message import message_from_string
from runnerkit.slices import slice_of
from runnerkit.switchboard import Switchboard

#: The seeds of the kill loop: one test each.
SEEDS = (1, 2, 3)
#: Messages per seed.
MESSAGES = 10_000
#: Runner processes, one per slice.
INSTANCES = 4
#: The pause between two kills, in seconds: drawn uniformly from this range.
KILL_EVERY = (0.05, 0.2)
#: The issue's promise: the runners of a master killed by SIGKILL exit within 2 s.
ORPHAN_DEADLINE = 2.0
#: Threads that queue the messages.
ENQUEUE_THREADS = 8
#: The bound on a whole run; a passing run takes a fraction of it.
RUN_DEADLINE = 300.0

CHAOS = f"""
[runner.chaos]
class: chaoskit.runners.RecordingRunner
instances: {INSTANCES}
sleep_time: 100ms
max_restarts: 1000000
"""

MESSAGE = """\
From: chaos@example.com
To: list@example.com
Subject: chaos

A message among many.
"""


class Chaos:
    """One seed's run: the kill loop, the master kill, and what was seen."""

    def __init__(self, run: MasterRun, seed: int) -> None:
        self.run = run
        self.rng = random.Random(seed)
        self.kills = 0
        self.master = run.start()
        self.master_killed_at: int | None = None
        self.orphan_seconds: float | None = None
        self.samples = 0
        self.doubled: list[dict[str, list[int]]] = []

    def kill_a_runner(self) -> None:
        """SIGKILL one runner process that the current master reports running."""
        running = self.run.running(self.master.pid)
        if not running:
            return
        pid = running[self.rng.choice(sorted(running))]
        # The status file may be a moment old: kill only a runner of this var dir.
        if is_runner_of(pid, self.run.var_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.kills += 1

    def sample(self) -> None:
        """Look, through /proc, for two runner processes of one slice."""
        self.samples += 1
        found = runner_processes(self.run.var_dir)
        # /proc is read pid by pid: a process seen alive may have died, and another
        # started, during the scan.  Two live at once are alive when looked at again.
        doubled = {
            spec: pids
            for spec, pids in found.items()
            if len(pids) > 1 and sum(alive(pid) for pid in pids) > 1
        }
        if doubled:
            self.doubled.append(doubled)

    def kill_the_master(self, processed: int) -> None:
        """SIGKILL the master; its runners must exit within 2 s; then start a new one."""
        orphans = [pid for pids in runner_processes(self.run.var_dir).values() for pid in pids]
        self.master.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.master.wait(timeout=ORPHAN_DEADLINE)
        deadline = killed + ORPHAN_DEADLINE
        while any(alive(pid) for pid in orphans):
            if time.monotonic() > deadline:
                late = {pid: self.run.messages_of(pid)[-3:] for pid in orphans if alive(pid)}
                pytest.fail(f"runners of the killed master still alive after 2 s: {late}")
            time.sleep(0.01)
        self.orphan_seconds = time.monotonic() - killed
        self.master_killed_at = processed
        self.master = self.run.start()


def queue_entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_no_message_is_lost_while_runners_and_the_master_are_killed(
    master_run: MasterRun, tmp_path: Path, seed: int
) -> None:
    master_run.configure(CHAOS, backoff_base="10ms", backoff_max="50ms")
    queue = master_run.switchboard("chaos")
    msg = message_from_string(MESSAGE)
    began = time.monotonic()
    # A few threads: each enqueue waits for two fsyncs, which the disk serves together.
    with ThreadPoolExecutor(ENQUEUE_THREADS) as pool:
        filebases = list(pool.map(lambda mid: queue.enqueue(msg, mid=mid), range(MESSAGES)))
    owner = {mid: slice_of(int(fb[-40:], 16), INSTANCES) for mid, fb in enumerate(filebases)}
    enqueued = time.monotonic()

    chaos = Chaos(master_run, seed)
    deadline = enqueued + RUN_DEADLINE
    while True:
        processed = len({mid for mid, _, _ in master_run.records()})
        if processed == MESSAGES:
            break
        assert time.monotonic() < deadline, f"only {processed} of {MESSAGES} processed"
        if chaos.master_killed_at is None and processed >= MESSAGES // 2:
            chaos.kill_the_master(processed)
        time.sleep(chaos.rng.uniform(*KILL_EVERY))
        chaos.sample()
        chaos.kill_a_runner()

    # No more kills: the queue drains, and the master stops cleanly.
    wait_for(lambda: not queue_entries(queue.queue_directory), "the queue to drain")
    drained = time.monotonic()
    chaos.master.send_signal(signal.SIGTERM)
    assert chaos.master.wait(timeout=30) == 0, master_run.output(chaos.master)

    records = master_run.records()
    # Each kill in the middle of a message left a .bak, which the next process recovered.
    recoveries = sum(
        message.startswith("recovered ") for _, _, message in master_run.log_records()
    )
    counts = Counter(mid for mid, _, _ in records)
    lost = sorted(set(range(MESSAGES)) - set(counts))
    duplicates = sum(count - 1 for count in counts.values())
    figures = {
        "seed": seed,
        "messages": MESSAGES,
        "runner_processes": INSTANCES,
        "kills": chaos.kills,
        "master_killed_after": chaos.master_killed_at,
        "orphans_exited_seconds": round(chaos.orphan_seconds or 0.0, 3),
        "lost": len(lost),
        "duplicates": duplicates,
        "recoveries": recoveries,
        "enqueue_seconds": round(enqueued - began, 2),
        "seconds": round(drained - enqueued, 2),
        "proc_samples": chaos.samples,
    }
    artifact = tmp_path / f"chaos-{seed}.json"
    artifact.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"\nchaos {json.dumps(figures)}")

    assert lost == []
    assert duplicates <= chaos.kills
    assert chaos.kills > 0
    assert chaos.master_killed_at is not None
    assert set(counts) == set(range(MESSAGES))
    assert queue_entries(queue.queue_directory) == []
    for name in ("shunt", "bad"):
        directory = master_run.switchboard(name).queue_directory
        assert queue_entries(directory) == [], name

    # One runner process per slice at any time.
    assert chaos.doubled == []
    blocks: dict[int, list[str]] = {}
    for mid, slice, token in records:
        assert slice == owner[mid], f"message {mid} of slice {owner[mid]} done by slice {slice}"
        tokens = blocks.setdefault(slice, [])
        if not tokens or tokens[-1] != token:
            tokens.append(token)
    for slice, tokens in blocks.items():
        interleaved = [token for token, n in Counter(tokens).items() if n > 1]
        assert interleaved == [], f"slice {slice}: processes {interleaved} interleaved"
    assert sorted(blocks) == list(range(INSTANCES))


def test_a_recovery_killed_half_way_does_not_strand_its_message(
    config: Configuration, tmp_path: Path
) -> None:
    # A runner killed while it recovered a .bak leaves the recovery's temporary file
    # beside it.  The next runner, starting a moment later, must recover the message
    # anyway, not wait for the leftover to grow old: under chaos, a message that waits
    # for a later restart may wait for ever.
    queue = Switchboard(
        "chaos", tmp_path / "chaos", bad=config.runner("bad").path, clock=config.clock
    )
    filebase = queue.enqueue(message_from_string(MESSAGE), mid=1)
    queue.dequeue(filebase)
    (queue.queue_directory / f"{filebase}.pck.tmp").write_bytes(b"RKQ1 half")

    Switchboard(
        "chaos",
        queue.queue_directory,
        recover=True,
        bad=config.runner("bad").path,
        clock=config.clock,
    )
    assert queue_entries(queue.queue_directory) == [f"{filebase}.pck"]
    message, metadata = queue.dequeue(filebase)
    assert metadata["mid"] == 1
    assert str(message) == str(message_from_string(MESSAGE))
