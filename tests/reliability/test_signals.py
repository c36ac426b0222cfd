"""Signals: one arriving in the middle of a message never shunts it, and SIGHUP
reopens the logs within a second.

Real runner processes, real signals.  The runner takes 50 ms a message, so a stop
signal sent at a random moment nearly always lands while a message is in progress; the
process must finish that message, exit 0, and leave the rest queued for the next
process, with nothing shunted, nothing in ``bad`` and every message processed exactly
once.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from _support_files import RunnerProcesses, enqueue, wait_for

SLOW = """\
[runner.tally]
class: hostilekit.runners.SlowTallyRunner
sleep_time: 100ms
"""

#: The bound the issue sets on reopening the logs after SIGHUP.
REOPEN_WITHIN = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_stop_signals_at_random_moments_never_shunt_or_lose_a_message(
    processes: RunnerProcesses, signum: signal.Signals
) -> None:
    switchboard = processes.configure(SLOW)
    config = processes.world.config
    tags = [f"m{number:02d}" for number in range(40)]
    for tag in tags:
        enqueue(switchboard, tag)
    chance = random.Random(signum)
    stops = 0
    expected_status = 75 if signum == signal.SIGUSR1 else 0
    while switchboard.files and stops < 12:
        process = processes.start_ready()
        done_before = len(processes.disposed())
        wait_for(
            lambda before=done_before: len(processes.disposed()) > before or not switchboard.files,
            "the runner to get going",
        )
        time.sleep(chance.uniform(0.0, 0.2))
        process.process.send_signal(signum)
        assert process.process.wait(timeout=15) == expected_status, process.stderr
        stops += 1
        assert "Traceback" not in process.stderr
    # Whatever is left, one last process finishes.
    if switchboard.files:
        process = processes.start_ready()
        wait_for(lambda: not switchboard.files, "the queue to drain")
        assert process.stop() == 0
    counts = Counter(processes.disposed_tags())
    assert sorted(counts) == tags
    assert set(counts.values()) == {1}, "every message processed exactly once"
    assert stops >= 3
    assert switchboard.get_files(".bak") == []
    assert config.switchboards["shunt"].files == []
    bad = config.switchboards["bad"]
    assert bad.files == bad.get_files(".psv") == []
    stopping = [line for line in processes.log_lines() if f"stopping on {signum.name}" in line]
    assert len(stopping) == stops


def test_sighup_reopens_the_log_within_a_second_every_time(processes: RunnerProcesses) -> None:
    switchboard = processes.configure(SLOW)
    process = processes.start_ready()
    took = []
    for rotation in range(1, 6):
        rotated = processes.log_path.with_name(f"{processes.log_path.name}.{rotation}")
        processes.log_path.rename(rotated)
        before = rotated.read_text(encoding="utf-8")
        sent = time.monotonic()
        process.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any("reopened on SIGHUP" in line for line in processes.log_lines()),
            "the runner to reopen its log",
        )
        took.append(time.monotonic() - sent)
        # Nothing more went to the rotated file once the log was reopened.
        assert rotated.read_text(encoding="utf-8") == before
    # The runner goes on working after the rotations.
    enqueue(switchboard, "after")
    processes.wait_disposed("after")
    assert process.stop() == 0
    print(f"SIGHUP to reopened log, seconds: {', '.join(f'{t:.3f}' for t in took)}")
    assert max(took) < REOPEN_WITHIN, took
