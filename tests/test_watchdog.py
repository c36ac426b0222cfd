"""The stuck-runner watchdog, without processes: fake slots, a queue directory, given times.

A taken message is a ``.bak`` file whose ctime is the moment it was taken; the tests
read that ctime back and ask the watchdog about moments relative to it.  A slice's lock
file names the pid of the process that holds the slice, as a runner process writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from runnerkit.locks import lock_holder, slice_lock_path
from runnerkit.master import Stuck, Watchdog
from runnerkit.slices import slice_bounds

#: The pid of each fake slot's process.
PIDS = {0: 4100, 1: 4101}


@dataclass
class FakeSlot:
    """What the watchdog reads of a slot, and nothing else."""

    name: str
    slice: int | None
    count: int
    pid: int | None
    started: float = 0.0
    stuck_on: str = ""


@dataclass
class Queue:
    directory: Path
    lock_dir: Path

    def take(self, slice: int, count: int = 2, serial: int = 0) -> tuple[str, float]:
        """A ``.bak`` of a message of *slice*: (its file base, its ctime)."""
        low, _ = slice_bounds(slice, count)
        filebase = f"1700000000.{serial:06d}+{low + serial:040x}"
        path = self.directory / f"{filebase}.bak"
        path.write_bytes(b"taken")
        return filebase, path.stat().st_ctime

    def hold(self, slot: FakeSlot, pid: int | None = None) -> None:
        """Write the slice lock of *slot*, naming *pid* (by default the slot's own)."""
        path = slice_lock_path(self.lock_dir, slot.name, slot.slice)
        path.write_text(f"{slot.pid if pid is None else pid}\n", encoding="ascii")


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    directory = tmp_path / "queue" / "work"
    directory.mkdir(parents=True)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    return Queue(directory, lock_dir)


@pytest.fixture
def slots(queue: Queue) -> list[FakeSlot]:
    """The two slices of runner ``work``, each with a process that holds its slice."""
    made = [FakeSlot("work", index, 2, PIDS[index]) for index in (0, 1)]
    for slot in made:
        queue.hold(slot)
    return made


def watchdog(queue: Queue, stuck_after: float = 10.0) -> Watchdog:
    return Watchdog(stuck_after, {"work": queue.directory}, queue.lock_dir)


def test_the_slice_lock_name_has_one_formula(tmp_path: Path) -> None:
    assert slice_lock_path(tmp_path, "out", None) == tmp_path / "runner-out.lck"
    assert slice_lock_path(tmp_path, "out", 3) == tmp_path / "runner-out-3.lck"
    assert lock_holder(tmp_path / "runner-out.lck") is None
    (tmp_path / "runner-out.lck").write_text("not a pid\n", encoding="ascii")
    assert lock_holder(tmp_path / "runner-out.lck") is None


def test_a_message_taken_for_longer_than_stuck_after_is_stuck(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    filebase, changed = queue.take(1)
    dog = watchdog(queue)
    assert dog.check(slots, changed + 10.0) == []
    [stuck] = dog.check(slots, changed + 12.5)
    assert stuck == Stuck(slots[1], filebase, 12.5, PIDS[1])
    assert stuck.own
    # Until the master marks the slot, each check finds it again.
    assert dog.check(slots, changed + 13.0) == [Stuck(slots[1], filebase, 13.0, PIDS[1])]


def test_the_file_belongs_to_the_slice_of_its_digest(queue: Queue, slots: list[FakeSlot]) -> None:
    first, changed = queue.take(0, serial=1)
    second, _ = queue.take(1, serial=2)
    found = watchdog(queue).check(slots, changed + 60)
    assert sorted((stuck.slot.slice, stuck.filebase) for stuck in found) == [
        (0, first),
        (1, second),
    ]


def test_the_time_counts_from_the_start_of_the_process_if_later(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    # A .bak older than the process was left by its predecessor; the new process
    # recovers it as it starts, and gets stuck_after for that.
    _, changed = queue.take(0)
    slots[0].started = changed + 100
    dog = watchdog(queue)
    assert dog.check(slots, changed + 109) == []
    [stuck] = dog.check(slots, changed + 111)
    assert stuck.held == pytest.approx(11)


def test_a_slot_already_marked_or_without_a_process_is_left_alone(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    queue.take(0, serial=1)
    _, changed = queue.take(1, serial=2)
    slots[0].stuck_on = "the file it is being killed for"
    slots[1].pid = None
    assert watchdog(queue).check(slots, changed + 60) == []


def test_a_slice_held_by_a_process_the_master_did_not_start_is_reported_once(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    filebase, changed = queue.take(0)
    queue.hold(slots[0], pid=9999)
    dog = watchdog(queue)
    [stuck] = dog.check(slots, changed + 11)
    assert stuck == Stuck(slots[0], filebase, 11.0, 9999)
    assert not stuck.own
    assert dog.check(slots, changed + 12) == []


def test_a_slice_without_a_lock_file_is_not_the_masters_to_kill(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    _, changed = queue.take(0)
    slice_lock_path(queue.lock_dir, "work", 0).unlink()
    [stuck] = watchdog(queue).check(slots, changed + 11)
    assert stuck.holder is None
    assert not stuck.own


def test_stuck_after_0_turns_the_watchdog_off(queue: Queue, slots: list[FakeSlot]) -> None:
    _, changed = queue.take(0)
    dog = watchdog(queue, stuck_after=0.0)
    assert not dog.enabled
    assert dog.check(slots, changed + 10_000) == []


def test_only_taken_files_of_runners_with_slices_count(queue: Queue) -> None:
    filebase, changed = queue.take(0, count=1)
    for other in (f"{filebase}.pck", f"{filebase}.bak.tmp", "notes.bak", f"x{filebase}.bak"):
        (queue.directory / other).write_bytes(b"")
    unsliced = FakeSlot("work", None, 1, 4200)
    queue.hold(unsliced)
    assert watchdog(queue).check([unsliced], changed + 60) == []
    sliced = FakeSlot("work", 0, 1, 4300)
    queue.hold(sliced)
    assert [stuck.filebase for stuck in watchdog(queue).check([sliced], changed + 60)] == [
        filebase
    ]


def test_a_missing_queue_directory_finds_nothing(queue: Queue, slots: list[FakeSlot]) -> None:
    queue.directory.rmdir()
    assert watchdog(queue).check(slots, 1e12) == []


def test_time_the_whole_system_lost_to_a_pause_is_not_counted(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    """The master's process group stopped for 6 s (stuck_after 3 s): the runner was
    stopped too, and is judged by the time it had (the chaos run's 6 killed runners)."""
    filebase, changed = queue.take(1)
    dog = watchdog(queue, stuck_after=3.0)
    assert dog.check(slots, changed + 1.0) == []
    # Stopped from changed + 1.0 to changed + 7.0: 5 s of the 6 s gap are not counted.
    assert dog.check(slots, changed + 7.0) == []
    assert dog.check(slots, changed + 8.0) == []
    [stuck] = dog.check(slots, changed + 9.0)
    assert stuck == Stuck(slots[1], filebase, 4.0, PIDS[1])


def test_a_pause_before_a_message_was_taken_does_not_excuse_it(
    queue: Queue, slots: list[FakeSlot]
) -> None:
    _, changed = queue.take(1)
    dog = watchdog(queue, stuck_after=3.0)
    assert dog.check(slots, changed - 20.0) == []
    assert dog.check(slots, changed - 10.0) == []  # a pause, over before it was taken
    for second in range(-9, 3):  # then a look each second
        assert dog.check(slots, changed + second) == []
    [stuck] = dog.check(slots, changed + 3.5)
    assert stuck.held == 3.5
