"""Corrupt queue files: every truncation and 1,000 random bit flips are caught, not processed.

A queue file states the lengths of its metadata and its message in its header, carries
the SHA-256 of the header fields and of both payloads, and ends with an end record.  A
truncated file is shorter than its header promises (or has lost its end record or even
its header); a flipped bit changes a length (the size no longer adds up), the end record,
the magic, or bytes that the checksum covers.  So no damaged file decodes, and a runner
preserves every one in ``bad`` without ever handing it to ``_dispose``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from _support_files import (
    RELIABILITY,
    TALLY,
    RunnerProcesses,
    drop,
    enqueue,
    queue_name,
    wait_for,
)
from hostilekit.runners import TallyRunner

from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import QueueFileError
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_string
from runnerkit.switchboard import Switchboard
from runnerkit.typing import MsgData

#: The seed of the bit flips, so that a failure can be replayed.
SEED = 20240605
#: How many corrupt copies with one flipped bit each.
FLIPS = 1_000

#: A message with a header in non-ASCII text, so that it is stored as text (kind ``t``).
ORIGINAL = """\
From: Zoë <zoe@example.com>
To: test@example.com
Subject: Grüße, and a test of every truncation
Message-ID: <corrupt@example.com>

The body of the message that every corrupt file started from.
"""

#: Metadata with the tagged types too, so that every decoding path is in the file.
METADATA: MsgData = {
    "tag": "original",
    "listid": None,
    "recipients": ("anne@example.com", "bart@example.com"),
    "seen": {1, 2, 3},
    "raw": b"\x00\xff bytes",
    "when": datetime(2024, 6, 5, 12, 30),
    "delay": timedelta(minutes=5),
    "ratio": 0.5,
}


class CountingRunner(TallyRunner):
    """Counts, in memory, every message that reaches ``_dispose``, and its passes."""

    def __init__(self, *args: Any, **kws: Any) -> None:
        super().__init__(*args, **kws)
        self.disposed: list[str] = []
        self.passes = 0

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        self.disposed.append(str(msgdata.get("tag")))
        return super()._dispose(mlist, msg, msgdata)

    def _one_iteration(self) -> int:
        count = super()._one_iteration()
        self.passes += 1
        return count


def original_bytes(switchboard: Switchboard) -> bytes:
    """A valid queue file, as the switchboard writes it."""
    filebase = switchboard.enqueue(message_from_string(ORIGINAL), METADATA)
    path = switchboard.queue_directory / f"{filebase}.pck"
    data = path.read_bytes()
    path.unlink()
    return data


def corruptions(data: bytes) -> dict[str, bytes]:
    """Every truncation of *data*, and :data:`FLIPS` copies with one distinct bit flipped."""
    found = {f"truncated to {length}": data[:length] for length in range(len(data))}
    rng = random.Random(SEED)
    for bit in rng.sample(range(len(data) * 8), FLIPS):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        found[f"bit {bit % 8} of byte {bit // 8} flipped"] = bytes(damaged)
    return found


@pytest.fixture
def tally(config: Configuration, monkeypatch: pytest.MonkeyPatch) -> Switchboard:
    monkeypatch.syspath_prepend(str(RELIABILITY))
    config.push("tally", TALLY)
    return config.switchboards["tally"]


def test_no_corruption_decodes(tally: Switchboard) -> None:
    data = original_bytes(tally)
    entry = queuefile.decode(data)
    assert entry.metadata["tag"] == "original"
    assert entry.message["subject"] == "Grüße, and a test of every truncation"
    damaged = corruptions(data)
    assert len(damaged) == len(data) + FLIPS
    decoded = []
    for what, corrupt in damaged.items():
        try:
            queuefile.decode(corrupt)
        except QueueFileError:
            continue
        decoded.append(what)
    assert decoded == []


@pytest.mark.slow
def test_a_runner_preserves_every_corrupt_file_in_bad_and_disposes_of_none(
    config: Configuration, tally: Switchboard, make_testable_runner: Any
) -> None:
    data = original_bytes(tally)
    damaged = corruptions(data)
    rng = random.Random(SEED)
    expected: dict[str, bytes] = {}
    for index, corrupt in enumerate(damaged.values()):
        filebase = queue_name(1_700_000_000, index, rng.getrandbits(160))
        (tally.queue_directory / f"{filebase}.pck").write_bytes(corrupt)
        expected[filebase] = corrupt
    # Valid copies among them, as the control: these, and only these, are processed.
    controls = [queue_name(1_700_000_001, index, rng.getrandbits(160)) for index in range(3)]
    for filebase in controls:
        (tally.queue_directory / f"{filebase}.pck").write_bytes(data)

    # One pass over the queue: the default stop condition would list the directory of
    # some 2,000 files after every one of them.
    runner: CountingRunner = make_testable_runner(
        CountingRunner, "tally", lambda runner: runner.passes > 0
    )
    runner.run()  # a crash would raise here
    assert runner.passes == 1

    assert runner.disposed == ["original"] * len(controls)
    bad = config.switchboards["bad"]
    preserved = bad.get_files(".psv")
    assert sorted(preserved) == sorted(expected)
    for filebase in preserved:
        assert (bad.queue_directory / f"{filebase}.psv").read_bytes() == expected[filebase]
    assert tally.files == []
    assert tally.get_files(".bak") == []
    assert config.switchboards["shunt"].files == []


@pytest.mark.slow
def test_a_runner_process_survives_corrupt_files(processes: RunnerProcesses) -> None:
    tally = processes.configure()
    bad = processes.world.config.switchboards["bad"]
    data = original_bytes(tally)
    damaged = corruptions(data)
    half = len(data) // 2
    chosen = [
        "truncated to 0",
        "truncated to 5",
        f"truncated to {half}",
        f"truncated to {len(data) - len(queuefile.END)}",
        f"truncated to {len(data) - 1}",
        *list(damaged)[len(data) : len(data) + 5],
    ]
    runner = processes.start_ready()
    rng = random.Random(SEED)
    expected = {}
    for index, what in enumerate(chosen):
        filebase = queue_name(1_700_000_000, index, rng.getrandbits(160))
        drop(tally.queue_directory, f"{filebase}.pck", damaged[what])
        expected[filebase] = damaged[what]
    enqueue(tally, "after")

    assert processes.wait_disposed("after") == runner.pid
    wait_for(lambda: len(bad.get_files(".psv")) == len(chosen), "every corrupt file in bad")
    assert runner.running()
    assert runner.stop() == 0, runner.stderr
    assert processes.disposed_tags() == ["after"]
    for filebase, corrupt in expected.items():
        assert (bad.queue_directory / f"{filebase}.psv").read_bytes() == corrupt
    assert tally.files == []
    assert tally.get_files(".bak") == []
    assert "Traceback" not in runner.stderr
