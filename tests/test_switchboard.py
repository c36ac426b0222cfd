"""Switchboard error paths: stray entries, bad names, failed writes, slices and recovery."""

from __future__ import annotations

import builtins
import errno
import fcntl
import io
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import example, given, settings
from hypothesis import strategies as st

import runnerkit
from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import MetadataError, QueueError, QueueFileError
from runnerkit.message import Message, message_from_string
from runnerkit.slices import MAX_DIGEST, digest_pattern, slice_bounds, slice_of
from runnerkit.switchboard import Switchboard

PROJECT_ROOT = Path(runnerkit.__file__).resolve().parents[1]
POWERS_OF_TWO = [2**k for k in range(11)]
SPACE = 1 << 160


def name(seconds: int, nanoseconds: int, digest: int) -> str:
    """A queue file base name with the given time and digest."""
    return f"{seconds}.{nanoseconds:09d}+{digest:040x}"


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every entry of *directory* with its bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def bad_dir(config: Configuration) -> Path:
    return config.switchboards["bad"].queue_directory


# Stray entries.


@pytest.fixture
def strays(test_queue: Switchboard, tmp_path: Path) -> dict[str, Any]:
    """Fill the test queue with entries that are not queue files, though some look it."""
    queue = test_queue.queue_directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "target.pck"
    target.write_bytes(queuefile.encode("Subject: target\n\nkeep me\n", {"secret": 1}))
    found = {
        "directory": name(1, 1, 1),
        "symlink": name(1, 2, 2),
        "fifo": name(1, 3, 3),
        "unreadable": name(1, 4, 4),
    }
    (queue / "README.pck").write_text("This directory holds the test queue.\n")
    (queue / f"{found['directory']}.pck").mkdir()
    (queue / f"{found['directory']}.pck" / "inside").write_text("x")
    (queue / f"{found['symlink']}.pck").symlink_to(target)
    os.mkfifo(queue / f"{found['fifo']}.pck")
    unreadable = queue / f"{found['unreadable']}.pck"
    unreadable.write_bytes(queuefile.encode("Subject: mode 000\n\n", {}))
    unreadable.chmod(0)
    # Names that are nearly queue file names.
    near_name = name(1, 5, 0xABCDEF)
    for near in (
        f"{near_name.upper()}.pck",
        f"{near_name[:-1]}.pck",
        f"{near_name}0.pck",
        f"{near_name.replace('+', '-')}.pck",
        f"{near_name}.pck.pck",
        f"x{near_name}.pck",
        f"{near_name}.PCK",
        ".pck",
        "\udcff.pck",
    ):
        (queue / near).write_bytes(b"near miss")
    return {"names": found, "target": target, "target_bytes": target.read_bytes()}


def test_listing_stray_entries_never_raises(
    test_queue: Switchboard, strays: dict[str, Any]
) -> None:
    names = strays["names"]
    assert test_queue.files == [
        names["directory"],
        names["symlink"],
        names["fifo"],
        names["unreadable"],
    ]
    assert test_queue.get_files(".bak") == []
    assert test_queue.get_files(".pck.pck") == [name(1, 5, 0xABCDEF)]


def test_listing_never_opens_or_stats_a_file(
    test_queue: Switchboard, strays: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []

    def refuse(*args: Any, **kws: Any) -> Any:
        opened.append(args)
        raise AssertionError(f"listing touched a file: {args!r}")

    expected = test_queue.files
    other = Switchboard("test", test_queue.queue_directory)
    with monkeypatch.context() as patch:
        for module, attribute in (
            (builtins, "open"),
            (io, "open"),
            (os, "open"),
            (os, "stat"),
            (os, "lstat"),
            (os, "scandir"),
        ):
            patch.setattr(module, attribute, refuse)
        files = test_queue.files
        backups = test_queue.get_files(".bak")
        fresh = other.files
    assert opened == []
    assert files == fresh == expected
    assert backups == []


def test_readme_is_not_a_queue_file(test_queue: Switchboard, strays: dict[str, Any]) -> None:
    with pytest.raises(QueueError, match="not a queue file base name"):
        test_queue.dequeue("README")
    assert (test_queue.queue_directory / "README.pck").is_file()


def test_a_directory_named_like_a_queue_file(
    config: Configuration, test_queue: Switchboard, strays: dict[str, Any]
) -> None:
    filebase = strays["names"]["directory"]
    with pytest.raises(QueueFileError, match=re.escape("not a regular file (a directory)")):
        test_queue.dequeue(filebase)
    test_queue.finish(filebase, preserve=True)
    preserved = bad_dir(config) / f"{filebase}.psv"
    assert preserved.is_dir()
    assert (preserved / "inside").read_text() == "x"
    assert filebase not in test_queue.files


def test_a_symlink_is_never_followed(
    config: Configuration, test_queue: Switchboard, strays: dict[str, Any]
) -> None:
    filebase = strays["names"]["symlink"]
    with pytest.raises(QueueFileError, match="symbolic link"):
        test_queue.dequeue(filebase)
    test_queue.finish(filebase, preserve=True)
    preserved = bad_dir(config) / f"{filebase}.psv"
    assert preserved.is_symlink()
    assert Path(os.readlink(preserved)) == strays["target"]
    assert strays["target"].read_bytes() == strays["target_bytes"]


def test_a_fifo_never_blocks(
    config: Configuration, test_queue: Switchboard, strays: dict[str, Any]
) -> None:
    filebase = strays["names"]["fifo"]
    outcome: list[BaseException | None] = []

    def dequeue() -> None:
        try:
            test_queue.dequeue(filebase)
        except BaseException as error:
            outcome.append(error)
        else:  # pragma: no cover - a FIFO is never a queue file
            outcome.append(None)

    worker = threading.Thread(target=dequeue, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "dequeue blocked on a FIFO"
    assert len(outcome) == 1
    assert isinstance(outcome[0], QueueFileError)
    assert "a FIFO" in str(outcome[0])
    test_queue.finish(filebase, preserve=True)
    assert stat.S_ISFIFO((bad_dir(config) / f"{filebase}.psv").lstat().st_mode)


def test_a_mode_000_file_does_not_crash(
    config: Configuration, test_queue: Switchboard, strays: dict[str, Any]
) -> None:
    # Root reads it anyway; anyone else gets a QueueFileError.  Neither may crash.
    filebase = strays["names"]["unreadable"]
    outcome: tuple[Message, dict[str, Any]] | QueueFileError
    try:
        outcome = test_queue.dequeue(filebase)
    except QueueFileError as error:
        outcome = error
    if isinstance(outcome, QueueFileError):
        assert "Permission denied" in str(outcome)
        test_queue.finish(filebase, preserve=True)
        assert (bad_dir(config) / f"{filebase}.psv").exists()
    else:
        msg, msgdata = outcome
        assert msg["subject"] == "mode 000"
        assert msgdata == {}
        test_queue.finish(filebase)
    assert filebase not in test_queue.files
    assert test_queue.get_files(".bak") == []


# Names.


@pytest.mark.parametrize(
    "filebase",
    [
        "../x",
        f"../{name(1, 1, 1)}",
        f"{name(1, 1, 1)}/../{name(1, 1, 2)}",
        f"/tmp/{name(1, 1, 1)}",
        f"{name(1, 1, 1)}.pck",
        name(1, 1, 0xABC).upper(),
        "",
        ".",
        None,
        42,
    ],
)
def test_bad_file_base_names(test_queue: Switchboard, tmp_path: Path, filebase: Any) -> None:
    outside = tmp_path / "x.pck"
    outside.write_bytes(queuefile.encode("Subject: outside\n\n", {}))
    for operation in (
        lambda: test_queue.dequeue(filebase),
        lambda: test_queue.finish(filebase),
        lambda: test_queue.finish(filebase, preserve=True),
    ):
        with pytest.raises(QueueError, match="is not a queue file base name"):
            operation()
    assert outside.read_bytes() == queuefile.encode("Subject: outside\n\n", {})


def test_finish_and_dequeue_of_unknown_files(
    config: Configuration, test_queue: Switchboard, msg: Message
) -> None:
    ghost = name(1, 1, 1)
    with pytest.raises(QueueError, match="cannot dequeue") as info:
        test_queue.dequeue(ghost)
    assert not isinstance(info.value, QueueFileError)
    with pytest.raises(QueueError, match=r"cannot remove .* of queue 'test'"):
        test_queue.finish(ghost)
    with pytest.raises(QueueError, match=r"cannot preserve .* of queue 'test'"):
        test_queue.finish(ghost, preserve=True)
    # A queued file that was never dequeued cannot be finished, and finishing twice fails.
    filebase = test_queue.enqueue(msg)
    with pytest.raises(QueueError):
        test_queue.finish(filebase)
    test_queue.dequeue(filebase)
    test_queue.finish(filebase)
    with pytest.raises(QueueError):
        test_queue.finish(filebase)
    with pytest.raises(QueueError):
        test_queue.dequeue(filebase)
    assert list(bad_dir(config).iterdir()) == []


def test_impossible_slices(tmp_path: Path) -> None:
    for slice_, numslices in ((0, 0), (None, -1), (2, 2), (-1, 4), (True, 2), (0, 1.0)):
        with pytest.raises(QueueError, match=r"numslices|slice must be"):
            Switchboard("test", tmp_path / "q", slice_, numslices)  # type: ignore[arg-type]


def test_queue_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(QueueError, match=r"cannot create queue directory .* for queue 'x'"):
        Switchboard("x", blocker / "queue")


# Failed writes.


@pytest.mark.parametrize(
    ("function", "code"),
    [
        ("fsync", errno.EIO),
        ("fsync", errno.ENOSPC),
        ("write", errno.ENOSPC),
        ("write", errno.EFBIG),
        ("write", errno.EIO),
        ("rename", errno.EIO),
        ("rename", errno.ENOSPC),
        ("open", errno.ENOSPC),
    ],
)
def test_a_failed_enqueue_leaves_nothing_behind(
    test_queue: Switchboard,
    msg: Message,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    code: int,
) -> None:
    first = test_queue.enqueue(msg, n=1)
    before = snapshot(test_queue.queue_directory)
    calls: list[tuple[Any, ...]] = []

    def fail(*args: Any, **kws: Any) -> Any:
        calls.append(args)
        raise OSError(code, os.strerror(code))

    with monkeypatch.context() as patch:
        patch.setattr(f"runnerkit.fsio.os.{function}", fail)
        with pytest.raises(QueueError) as info:
            test_queue.enqueue(msg, n=2)
    message = str(info.value)
    assert "cannot enqueue to 'test'" in message
    assert os.strerror(code) in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == code
    assert len(calls) == 1, f"{function} was retried"
    assert snapshot(test_queue.queue_directory) == before
    assert test_queue.files == [first]


def test_short_writes_are_completed(
    test_queue: Switchboard, msg: Message, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    sizes: list[int] = []

    def dribble(fd: int, data: Any) -> int:
        sizes.append(real_write(fd, bytes(data[:7])))
        return sizes[-1]

    with monkeypatch.context() as patch:
        patch.setattr("runnerkit.fsio.os.write", dribble)
        filebase = test_queue.enqueue(msg, n=1)
    assert len(sizes) > 10
    back, msgdata = test_queue.dequeue(filebase)
    assert back.as_string() == msg.as_string()
    assert msgdata["n"] == 1


def test_unstorable_metadata_writes_nothing(test_queue: Switchboard, msg: Message) -> None:
    with pytest.raises(MetadataError, match="'when'"):
        test_queue.enqueue(msg, when=time)
    assert list(test_queue.queue_directory.iterdir()) == []


def test_plaintext_keeps_the_message_as_it_was(test_queue: Switchboard) -> None:
    # No Unix From line may be invented on the way: it would read as the sender.
    msg = message_from_string("To: test@example.com\nSubject: anonymous\n\nbody\n")
    back, msgdata = test_queue.dequeue(test_queue.enqueue(msg, _plaintext=True))
    assert msgdata["_parsemsg"] is True
    assert back.get_unixfrom() is None
    assert back.sender == ""
    assert back.as_string() == msg.as_string()


# Slices.


@cache
def compiled(slice_: int, numslices: int) -> re.Pattern[str]:
    pattern = digest_pattern(slice_, numslices)
    assert pattern is not None
    return re.compile(pattern)


def check_digest(digest: int, numslices: int, *, exhaustive: bool = False) -> None:
    """Check that *digest* has exactly one owner among *numslices* slices, by every measure.

    :param exhaustive: try every slice's pattern, not just the owner's neighbours.
    """
    owner = slice_of(digest, numslices)
    assert 0 <= owner < numslices
    # The definition, in exact rational terms: owner/n <= digest/2**160 < (owner+1)/n.
    assert owner * SPACE <= digest * numslices < (owner + 1) * SPACE
    low, high = slice_bounds(owner, numslices)
    assert low <= digest < high
    if numslices & (numslices - 1) == 0:
        bits = numslices.bit_length() - 1
        assert owner == digest >> (160 - bits)
        hexdigest = f"{digest:040x}"
        if exhaustive or numslices <= 64:
            candidates = range(numslices)
        else:  # the neighbours are where an inexact pattern would go wrong
            candidates = range(max(owner - 1, 0), min(owner + 2, numslices))
        matching = [s for s in candidates if compiled(s, numslices).fullmatch(hexdigest)]
        assert matching == [owner]
    else:
        assert digest_pattern(owner, numslices) is None


def boundary_digests(numslices: int) -> list[int]:
    """The digests at and next to every slice boundary."""
    found = {0, MAX_DIGEST}
    for slice_ in range(numslices):
        low, high = slice_bounds(slice_, numslices)
        found.update({low - 1, low, low + 1, high - 1, high})
    return sorted(d for d in found if 0 <= d <= MAX_DIGEST)


@st.composite
def digests_near_boundaries(draw: st.DrawFn) -> tuple[int, int]:
    numslices = draw(st.sampled_from(POWERS_OF_TWO))
    slice_ = draw(st.integers(0, numslices - 1))
    low, _ = slice_bounds(slice_, numslices)
    digest = min(max(low + draw(st.integers(-2, 2)), 0), MAX_DIGEST)
    return digest, numslices


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.tuples(st.integers(0, MAX_DIGEST), st.sampled_from(POWERS_OF_TWO)),
        digests_near_boundaries(),
    )
)
@example((0, 1))
@example((MAX_DIGEST, 1))
@example((0, 1024))
@example((MAX_DIGEST, 1024))
@example((2**159, 2))
@example((2**159 - 1, 2))
@example((2**150, 1024))
@example((2**150 - 1, 1024))
def test_every_digest_is_in_exactly_one_slice(case: tuple[int, int]) -> None:
    digest, numslices = case
    check_digest(digest, numslices, exhaustive=True)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, MAX_DIGEST), st.integers(1, 1024))
@example(0, 3)
@example(MAX_DIGEST, 3)
@example(SPACE // 3, 3)
@example(SPACE // 3 + 1, 3)
@example(MAX_DIGEST, 1023)
def test_any_number_of_slices_is_exact(digest: int, numslices: int) -> None:
    check_digest(digest, numslices)


@pytest.mark.parametrize("numslices", [*POWERS_OF_TWO, 3, 5, 7, 10, 1000, 1023])
def test_slice_boundaries(numslices: int) -> None:
    # The slices tile the digest space: no gap, no overlap.
    assert slice_bounds(0, numslices)[0] == 0
    assert slice_bounds(numslices - 1, numslices)[1] == SPACE
    for slice_ in range(numslices - 1):
        low, high = slice_bounds(slice_, numslices)
        assert low < high == slice_bounds(slice_ + 1, numslices)[0]
    for digest in boundary_digests(numslices):
        check_digest(digest, numslices)


@pytest.mark.parametrize("numslices", [2, 3, 4, 7, 16])
def test_sliced_listings_partition_the_queue(tmp_path: Path, numslices: int) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    digests = boundary_digests(numslices)
    for index, digest in enumerate(digests):
        (queue / f"{name(1000, index, digest)}.pck").touch()
    everything = Switchboard("test", queue).files
    assert len(everything) == len(digests)
    seen: list[str] = []
    for slice_ in range(numslices):
        files = Switchboard("test", queue, slice_, numslices).files
        for filebase in files:
            assert slice_of(int(filebase[-40:], 16), numslices) == slice_
        seen.extend(files)
    assert sorted(seen) == sorted(everything)


def test_fifo_order_follows_time_not_spelling(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    order = [
        f"999.999999999+{'f' * 40}",
        f"1000+{'0' * 40}",
        f"1000.000000001+{'0' * 40}",
        f"1000.1+{'0' * 40}",
        f"10000.000000000+{'0' * 40}",
    ]
    for filebase in reversed(order):
        (queue / f"{filebase}.pck").touch()
    assert Switchboard("test", queue).files == order


@pytest.mark.slow
def test_fifo_order_under_a_frozen_clock(test_queue: Switchboard, msg: Message) -> None:
    with freeze_time("2024-02-29 12:00:00"):
        assert time.time_ns() == time.time_ns()  # the clock really stands still
        queued = [test_queue.enqueue(msg, n=n) for n in range(1000)]
    assert len(set(queued)) == 1000
    assert {filebase.split("+")[0][:10] for filebase in queued} == {"1709208000"}
    assert test_queue.files == queued
    for n in (0, 1, 500, 999):
        _, msgdata = test_queue.dequeue(queued[n])
        assert msgdata["n"] == n


RACE = """\
import sys
from freezegun import freeze_time
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard

queue = Switchboard("race", sys.argv[1])
msg = message_from_string("From: anne@example.com\\nSubject: same\\n\\nsame\\n")
with freeze_time("2024-02-29 12:00:00"):
    for _ in range(int(sys.argv[2])):
        queue.enqueue(msg, same=True)
"""


@pytest.mark.slow
def test_two_processes_queueing_identical_messages_in_one_tick(tmp_path: Path) -> None:
    count = 500
    queue = tmp_path / "race"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", RACE, str(queue), str(count)], env=env)
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.wait(timeout=60) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    files = Switchboard("race", queue).files
    assert len(files) == 2 * count
    # Both processes used the same frozen instant, so the times collide; nothing is lost.
    assert len({filebase.split("+")[0] for filebase in files}) == count
    assert not [path for path in queue.iterdir() if not path.name.endswith(".pck")]
    for filebase in files[:: count // 5]:
        entry = queuefile.decode((queue / f"{filebase}.pck").read_bytes())
        assert entry.message["subject"] == "same"


# Recovery.


def recoveries_of(path: Path) -> int:
    return queuefile.decode(path.read_bytes()).recoveries


def test_the_third_recovery_goes_to_bad(
    config: Configuration, test_queue: Switchboard, msg: Message
) -> None:
    filebase = test_queue.enqueue(msg, n=1)
    pck = test_queue.queue_directory / f"{filebase}.pck"
    for recovery in (1, 2):
        test_queue.dequeue(filebase)  # ... and the process crashes: the .bak stays
        assert test_queue.get_files(".bak") == [filebase]
        Switchboard(
            "test",
            test_queue.queue_directory,
            recover=True,
            bad=config.runner("bad").path,
            clock=config.clock,
        )
        assert test_queue.files == [filebase]
        assert test_queue.get_files(".bak") == []
        assert recoveries_of(pck) == recovery
    test_queue.dequeue(filebase)
    test_queue.recover_backup_files()
    assert test_queue.files == []
    assert test_queue.get_files(".bak") == []
    preserved = bad_dir(config) / f"{filebase}.psv"
    entry = queuefile.decode(preserved.read_bytes())
    assert entry.recoveries == 2
    assert entry.message.as_string() == msg.as_string()
    assert entry.metadata["n"] == 1


def test_a_damaged_backup_goes_to_bad(config: Configuration, test_queue: Switchboard) -> None:
    filebase = name(1, 1, 1)
    (test_queue.queue_directory / f"{filebase}.bak").write_bytes(b"RKQ1 damaged")
    test_queue.recover_backup_files()
    assert (bad_dir(config) / f"{filebase}.psv").read_bytes() == b"RKQ1 damaged"
    assert test_queue.files == []


def test_stale_temporary_files(test_queue: Switchboard) -> None:
    queue = test_queue.queue_directory
    old, fresh, held = (queue / f"{name(1, 1, d)}.pck.tmp" for d in (1, 2, 3))
    for path in (old, fresh, held):
        path.write_bytes(b"partial")
    long_ago = time.time() - 3600
    for path in (old, held):
        os.utime(path, (long_ago, long_ago))
    with open(held, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # a live writer holds it
        test_queue.recover_backup_files()
    assert not old.exists()
    assert fresh.exists()
    assert held.exists()
    assert test_queue.files == []


# Permissions.


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 0, so that only runnerkit's own modes restrict permissions."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_created_files_are_not_group_or_world_writable(
    open_umask: None, config: Configuration, tmp_path: Path, msg: Message
) -> None:
    queue = Switchboard(
        "perm", tmp_path / "perm", bad=config.runner("bad").path, clock=config.clock
    )
    first = queue.enqueue(msg)
    second = queue.enqueue(msg)
    queue.dequeue(first)
    queue.recover_backup_files()  # rewrites the file
    queue.dequeue(second)
    queue.finish(second, preserve=True)
    paths = [
        queue.queue_directory,
        queue.queue_directory / f"{first}.pck",
        bad_dir(config) / f"{second}.psv",
    ]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o022 == 0, f"{path} has mode {mode:o}"


def test_a_queue_directory_replaced_under_a_switchboard_is_followed(tmp_path: Path) -> None:
    # The switchboard holds its directory open; an operator who moves it away and makes
    # a new one (restoring a backup, say) must find every later message in the new one,
    # and none written into the old one.
    queue = Switchboard("moved", tmp_path / "moved", bad=tmp_path / "bad")
    first = queue.enqueue(message_from_string("Subject: first\n\n"))
    (tmp_path / "moved").rename(tmp_path / "old")
    (tmp_path / "moved").mkdir()
    second = queue.enqueue(message_from_string("Subject: second\n\n"))
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == [f"{second}.pck"]
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == [f"{first}.pck"]
    (tmp_path / "old" / f"{first}.pck").rename(tmp_path / "moved" / f"{first}.pck")
    assert queue.files == [first, second]
    for filebase in (first, second):
        queue.dequeue(filebase)
        queue.finish(filebase)
    assert list((tmp_path / "moved").iterdir()) == []


def test_a_queue_directory_removed_under_a_switchboard_is_made_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A deleted queue directory made LMTP answer 451 until a runner restarted: the
    switchboard makes it again, and the log says so."""
    queue = Switchboard("gone", tmp_path / "gone", bad=tmp_path / "bad")
    queue.enqueue(message_from_string("Subject: first\n\n"))
    for entry in (tmp_path / "gone").iterdir():
        entry.unlink()
    (tmp_path / "gone").rmdir()
    with caplog.at_level("WARNING", logger="runnerkit.switchboard"):
        second = queue.enqueue(message_from_string("Subject: second\n\n"))
    assert queue.files == [second]
    assert [record.getMessage() for record in caplog.records] == [
        f"the directory of queue 'gone', {tmp_path / 'gone'}, was gone; made it again"
    ]
    # One that only looks (create=False) makes nothing, and queueing to it fails.
    (tmp_path / "look").mkdir()
    looking = Switchboard("look", tmp_path / "look", create=False)
    (tmp_path / "look").rmdir()
    with pytest.raises(QueueError, match="cannot enqueue to 'look'"):
        looking.enqueue(message_from_string("Subject: x\n\n"))
    assert not (tmp_path / "look").exists()


def test_a_metadata_key_that_is_not_text_is_refused(tmp_path: Path) -> None:
    queue = Switchboard("keys", tmp_path / "keys")
    with pytest.raises(MetadataError, match=r"metadata keys must be text; 1 is a int"):
        queue.enqueue(message_from_string("Subject: x\n\n"), {1: "x"})  # type: ignore[dict-item]
    assert queue.files == []


def test_a_queue_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 GB file made the runner die of MemoryError at every start: its size is
    checked first, and the file is preserved in bad with the reason."""
    queue = Switchboard("big", tmp_path / "big", bad=tmp_path / "bad", max_file_size=1000)
    small = queue.enqueue(message_from_string("Subject: small\n\nx\n"))
    big = queue.enqueue(message_from_string("Subject: big\n\n" + "x" * 2000 + "\n"))
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, size: int) -> bytes:
        reads.append(size)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(QueueFileError, match=r"it is \d+ bytes, more than the 1000"):
        queue.dequeue(big)
    assert reads == []  # not a byte of it read
    monkeypatch.undo()
    queue.finish(big, preserve=True, reason="too big")
    msg, _ = queue.dequeue(small)
    assert msg["subject"] == "small"
    # Recovery after a crash checks it too: the runner goes on with the rest.
    queue.finish(small)
    again = queue.enqueue(message_from_string("Subject: big\n\n" + "x" * 2000 + "\n"))
    # Taken by a runner that then crashed: its .bak waits for recovery.
    (tmp_path / "big" / f"{again}.pck").rename(tmp_path / "big" / f"{again}.bak")
    queue.recover_backup_files()
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == sorted(
        [f"{again}.psv", f"{big}.psv"]
    )


def test_a_directory_removed_between_the_look_and_the_write_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rm -rf of a queue directory while mail flowed shunted 2 messages ('No such file
    or directory'): the queue's own error, not the message's."""
    import runnerkit.switchboard as module

    queue = Switchboard("racy", tmp_path / "racy", bad=tmp_path / "bad")
    real_write = module.write_new_file
    calls: list[int] = []

    def write(*args: Any, **kws: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            for entry in (tmp_path / "racy").iterdir():
                entry.unlink()
            (tmp_path / "racy").rmdir()
        real_write(*args, **kws)

    monkeypatch.setattr(module, "write_new_file", write)
    filebase = queue.enqueue(message_from_string("Subject: racy\n\nx\n"))
    assert queue.files == [filebase]
    assert len(calls) == 2
