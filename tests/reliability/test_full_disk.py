"""A full disk: a failed enqueue leaves the queue as it was and says what went wrong.

``enqueue`` writes a temporary file, fsyncs it, renames it into the queue and fsyncs the
directory.  Each step is made to fail with ENOSPC, EIO and EFBIG in turn, by patching the
functions of :mod:`os` that :mod:`runnerkit.fsio` calls.  In every case the files already
queued are untouched, no temporary file is left, the caller gets a :class:`QueueError`
naming the queue and the error, and nothing is retried after the failure: in particular a
failed fsync is never called again, because after a failed fsync the kernel may have
dropped the dirty pages, and a second fsync could report a success that means nothing.

When only the directory's fsync fails, the rename has already published the file; the
file is removed again, so that an error always means "not queued".

Then the same on a real file system that fills up: a 256 KiB tmpfs, mounted in a private
user and mount namespace (``unshare -Urm``), which needs no root.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support_files import DEADLINE, child_env, message_text

from runnerkit import queuefile
from runnerkit.config import Configuration
from runnerkit.errors import QueueError
from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard

ERRORS = {code: errno.errorcode[code] for code in (errno.ENOSPC, errno.EIO, errno.EFBIG)}

#: The steps of an enqueue, each named by the os function that does it.  The switchboard
#: holds its directory open (it checks by ``stat`` that it is still the one its path
#: names), so the directory's fsync needs no open of its own.
STEPS = [
    "open temporary file",
    "write",
    "fsync file",
    "rename",
    "fsync directory",
]


class FaultyOs:
    """Wraps the os functions that fsio calls; makes one step fail; records every call."""

    def __init__(self, step: str, code: int) -> None:
        self.step = step
        self.code = code
        #: ``(step, failed)`` for every call, in order.
        self.calls: list[tuple[str, bool]] = []
        self.real = {name: getattr(os, name) for name in ("open", "write", "fsync", "rename")}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in self.real:
            monkeypatch.setattr(f"runnerkit.fsio.os.{name}", getattr(self, name))

    def _call(self, step: str, name: str, *args: Any, **kws: Any) -> Any:
        if step == self.step:
            self.calls.append((step, True))
            raise OSError(self.code, os.strerror(self.code))
        self.calls.append((step, False))
        return self.real[name](*args, **kws)

    def open(self, path: Any, flags: int, *args: Any, **kws: Any) -> int:
        step = "open directory" if flags & os.O_DIRECTORY else "open temporary file"
        return int(self._call(step, "open", path, flags, *args, **kws))

    def write(self, fd: int, data: Any) -> int:
        return int(self._call("write", "write", fd, data))

    def fsync(self, fd: int) -> None:
        step = "fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"
        self._call(step, "fsync", fd)

    def rename(self, source: Any, target: Any, **kws: Any) -> None:
        self._call("rename", "rename", source, target, **kws)

    def after_failure(self) -> list[str]:
        """The steps done after the failed one."""
        failed = [index for index, (_, failure) in enumerate(self.calls) if failure]
        assert len(failed) == 1, self.calls
        return [step for step, _ in self.calls[failed[0] + 1 :]]


def state(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry of *directory*: its inode, its modification time and its bytes."""
    found = {}
    for path in sorted(directory.iterdir()):
        info = path.stat()
        found[path.name] = (info.st_ino, info.st_mtime_ns, path.read_bytes())
    return found


@pytest.fixture
def queue(config: Configuration) -> Switchboard:
    config.push("full", "[runner.full]\nsleep_time: 0\n")
    return config.switchboards["full"]


def fill(queue: Switchboard, count: int) -> list[str]:
    return [
        queue.enqueue(message_from_string(message_text(f"m{n}")), tag=f"m{n}")
        for n in range(count)
    ]


@pytest.mark.parametrize("code", ERRORS, ids=ERRORS.values())
@pytest.mark.parametrize("step", STEPS)
def test_a_failed_step_leaves_the_queue_untouched_and_is_never_retried(
    queue: Switchboard, monkeypatch: pytest.MonkeyPatch, step: str, code: int
) -> None:
    queued = fill(queue, 3)
    before = state(queue.queue_directory)
    faulty = FaultyOs(step, code)
    with monkeypatch.context() as patch:
        faulty.install(patch)
        with pytest.raises(QueueError) as info:
            fill(queue, 1)

    message = str(info.value)
    assert message.startswith("cannot enqueue to 'full': writing "), message
    assert os.strerror(code) in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == code
    # Nothing is tried again, or done at all, once a step has failed: no second fsync,
    # no second write, no rename of a file that was not synced.
    assert faulty.after_failure() == []
    assert [s for s, _ in faulty.calls].count(step) == 1
    # What was queued is untouched; nothing new, not even a temporary file, is left.
    assert state(queue.queue_directory) == before
    assert queue.files == queued
    for filebase in queued:
        entry = queuefile.decode(before[f"{filebase}.pck"][2])
        assert entry.metadata["tag"] == entry.message["subject"]
    # And the queue works again once the disk does.
    again = fill(queue, 1)
    assert queue.files == queued + again


def test_the_steps_are_those_of_an_enqueue(
    queue: Switchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control of the fault injection: with no step failing, an enqueue makes
    # exactly these calls, so every step above was really reached and failed.
    fill(queue, 1)  # the queue's directory is open from here on
    faulty = FaultyOs("none", 0)
    with monkeypatch.context() as patch:
        faulty.install(patch)
        fill(queue, 1)
    assert [step for step, _ in faulty.calls] == STEPS


def test_a_directory_fsync_failure_after_a_runner_took_the_file(
    queue: Switchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The edge: between the rename and the failed directory fsync, a runner dequeued
    # the new file.  It cannot be taken back; the caller still hears of the failure,
    # and the runner's copy is left alone.  At worst a caller that queues again makes
    # a duplicate; a message is never lost.
    faulty = FaultyOs("fsync directory", errno.EIO)
    taken: list[Path] = []

    def runner_takes_it_first(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and not taken:
            (published,) = queue.files
            queue.dequeue(published)
            taken.append(queue.queue_directory / f"{published}.bak")
        faulty.fsync(fd)

    with monkeypatch.context() as patch:
        faulty.install(patch)
        patch.setattr("runnerkit.fsio.os.fsync", runner_takes_it_first)
        with pytest.raises(QueueError, match=os.strerror(errno.EIO)):
            fill(queue, 1)
    (bak,) = taken
    assert queuefile.decode(bak.read_bytes()).metadata["tag"] == "m0"
    assert queue.files == []
    assert sorted(path.name for path in queue.queue_directory.iterdir()) == [bak.name]


# A real, small file system.

#: The size of the tmpfs.
TMPFS_SIZE = "256k"


def user_namespaces_forbidden() -> str | None:
    """Why this machine forbids unprivileged user namespaces, or None if it does not."""
    if os.geteuid() == 0:
        return None
    for setting, forbidding in (
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        try:
            value = Path(setting).read_text().strip()
        except OSError:
            continue
        if value == forbidding:
            return f"{setting} is {value}"
    return None


def in_a_tiny_tmpfs(mount_point: Path, size: str, module: str, under: str) -> Any:
    """Run ``python -m MODULE MOUNT_POINT/UNDER`` in a private mount namespace where
    *mount_point* is a tmpfs of *size*, and return the JSON report it prints; None
    where this machine forbids user namespaces (checked to be the reason it failed).
    The mount lives only in the namespace."""
    mount_point.mkdir()
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    command = [
        *("unshare", "-Urm", "sh", "-c", script, "sh", size, str(mount_point)),
        *(sys.executable, "-m", module, str(mount_point / under) if under else str(mount_point)),
    ]
    forbidden = user_namespaces_forbidden()
    try:
        result = subprocess.run(
            command, env=child_env(), capture_output=True, text=True, timeout=DEADLINE
        )
    except FileNotFoundError:
        # No unshare at all: acceptable only where namespaces are forbidden anyway.
        assert forbidden, "unshare(1) is missing, but this machine allows user namespaces"
        return None
    if result.returncode != 0 and forbidden:
        # Expected to fail here: check that it failed for that reason, not another.
        assert "unshare" in result.stderr, result.stderr
        return None
    assert result.returncode == 0, (
        "unshare -Urm and a tmpfs mount should work on this machine "
        f"(no setting forbids user namespaces): {result.stderr}"
    )
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_real_tiny_file_system_fills_up(tmp_path: Path) -> None:
    mount_point = tmp_path / "tiny"
    report = in_a_tiny_tmpfs(mount_point, TMPFS_SIZE, "hostilekit.fill_queue", "queue")
    if report is None:
        return

    enqueued = report["enqueued"]
    assert len(enqueued) >= 10, "the tiny file system held almost nothing"
    error = report["error"]
    assert error is not None, "the tiny file system never filled up"
    assert error["type"] == "QueueError"
    assert error["errno"] == errno.ENOSPC
    assert error["message"].startswith("cannot enqueue to 'tiny': writing "), error
    assert os.strerror(errno.ENOSPC) in error["message"]
    # Every file queued before the disk filled up is there, whole and as written;
    # nothing else is, not even a temporary file.
    entries = {name: base64.b64decode(data) for name, data in report["entries"].items()}
    assert sorted(entries) == sorted(f"{item['filebase']}.pck" for item in enqueued)
    for item in enqueued:
        data = entries[f"{item['filebase']}.pck"]
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        entry = queuefile.decode(data)
        assert entry.metadata["tag"] == item["tag"]
        assert entry.message["subject"] == f"m{item['tag']}"
    assert [item["tag"] for item in enqueued] == list(range(len(enqueued)))
    print(f"tmpfs of {TMPFS_SIZE}: {len(enqueued)} files queued, then: {error['message']}")
    # The mount lived only in the namespace.
    assert list(mount_point.iterdir()) == []


@pytest.mark.slow
def test_a_full_disk_for_a_moment_strands_no_accepted_message(tmp_path: Path) -> None:
    """The chaos run: with the var dir's file system full for a moment, 4 of 7 accepted
    messages ended in bad and stayed there.  The environment's error is not the
    message's: they wait, and flow once there is room."""
    report = in_a_tiny_tmpfs(tmp_path / "tiny", "2m", "hostilekit.full_pipeline", "")
    if report is None:
        return
    # While the disk was full, none moved on, and none went to shunt or bad.
    assert report["full"] == {"pipeline": 7, "out": 0, "shunt": 0, "bad": 0}, report
    assert report["after"] == {"pipeline": 0, "out": 7, "shunt": 0, "bad": 0}, report
