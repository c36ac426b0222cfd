"""Strange entries in a queue: nothing named like a queue file can block, crash or mislead.

A real runner process, running as an ordinary user (``nobody`` when the tests run as
root, so that a mode-000 file really is unreadable to it), finds among its queue files:
a mode-000 file, a FIFO, a symbolic link to a valid queue file elsewhere, a symbolic
link to ``/etc/passwd`` and a directory, all named ``<time>+<digest>.pck``, and a
``README.pck``.  It must not block on the FIFO, crash, or follow a link: the links'
targets are never opened, let alone processed.  Messages queued before and after the
strange entries are all processed, by the same process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support_files import (
    RELIABILITY,
    OpenWatch,
    RunnerProcesses,
    enqueue,
    message_text,
    queue_name,
    wait_for,
)

from runnerkit import queuefile
from runnerkit.switchboard import Switchboard
from runnerkit.testing import World

#: The user the runner process runs as, when the tests run as root: ``nobody``.
NOBODY = 65534


def chown_tree(top: Path, uid: int) -> None:
    """Give *top* and everything under it to *uid*, never following a link."""
    os.chown(top, uid, uid, follow_symlinks=False)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def enqueue_for(processes: RunnerProcesses, tally: Switchboard, tag: str) -> None:
    """Queue a message that the runner processes' user owns, as if that user queued it.

    The message is queued in a staging queue, given to the user, and renamed into
    *tally*, so the runner never sees a file that its user does not own.
    """
    config = processes.world.config
    staging = Switchboard(
        "staging",
        processes.workdir.parent / "staging",
        bad=config.runner("bad").path,
        clock=config.clock,
    )
    filebase = enqueue(staging, tag)
    path = staging.queue_directory / f"{filebase}.pck"
    if processes.user is not None:
        os.chown(path, processes.user, processes.user)
    os.rename(path, tally.queue_directory / path.name)


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunnerProcesses]:
    """Runner processes over a world that an ordinary user can reach.

    The usual temporary directories of a test are private to the user running the
    tests, so this world lives in a directory of its own, open to be traversed.  When
    the tests run as root, the processes run as ``nobody``; otherwise as that user.
    """
    monkeypatch.syspath_prepend(str(RELIABILITY))
    base = Path(tempfile.mkdtemp(prefix="runnerkit-strange-"))
    base.chmod(0o755)
    user = NOBODY if os.geteuid() == 0 else None
    world = World(base / "var").open()
    started = RunnerProcesses(world, base / "work", user=user)
    started.workdir.mkdir()
    try:
        yield started
    finally:
        try:
            started.kill_all()
        finally:
            world.close()
            shutil.rmtree(base)


@pytest.mark.slow
def test_strange_entries_neither_block_nor_crash_nor_are_followed(
    processes: RunnerProcesses,
) -> None:
    tally = processes.configure()
    config = processes.world.config
    bad = config.switchboards["bad"]
    queue = tally.queue_directory
    base = processes.workdir.parent

    # A valid queue file outside the queue, which the runner could read if it followed
    # a link: readable by everyone, in a directory everyone can traverse.
    elsewhere = base / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    target = elsewhere / "target.pck"
    target.write_bytes(queuefile.encode(message_text("target"), {"tag": "target"}))
    target.chmod(0o644)
    target_bytes = target.read_bytes()
    passwd = Path("/etc/passwd")
    passwd_digest = hashlib.sha256(passwd.read_bytes()).hexdigest()

    now = int(time.time())
    names = {
        kind: queue_name(now - 60, index, 0x57A0 + index)
        for index, kind in enumerate(
            ["mode 000", "fifo", "link to a queue file", "link to /etc/passwd", "directory"]
        )
    }
    enqueue(tally, "before")
    unreadable = queue / f"{names['mode 000']}.pck"
    unreadable.write_bytes(queuefile.encode(message_text("unreadable"), {"tag": "unreadable"}))
    unreadable.chmod(0)
    os.mkfifo(queue / f"{names['fifo']}.pck")
    (queue / f"{names['link to a queue file']}.pck").symlink_to(target)
    (queue / f"{names['link to /etc/passwd']}.pck").symlink_to(passwd)
    (queue / f"{names['directory']}.pck").mkdir()
    (queue / f"{names['directory']}.pck" / "inside.pck").write_bytes(target_bytes)
    (queue / "README.pck").write_text("This directory holds the tally queue.\n")
    if processes.user is not None:
        chown_tree(processes.var_dir, processes.user)
        chown_tree(processes.workdir, processes.user)

    watch = OpenWatch(target)
    try:
        runner = processes.start_ready()
        if processes.user is not None:
            status = Path(f"/proc/{runner.pid}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uids.split()[1:] == [str(processes.user)] * 4, uids
        assert processes.wait_disposed("before") == runner.pid
        wait_for(lambda: len(bad.get_files(".psv")) == len(names), "every strange entry in bad")
        enqueue_for(processes, tally, "after")
        assert processes.wait_disposed("after") == runner.pid
        assert runner.running()
        opened = watch.events()
    finally:
        watch.close()

    # The links were moved as links; what they point to was never opened or read.
    assert opened == 0
    assert target.read_bytes() == target_bytes
    assert hashlib.sha256(passwd.read_bytes()).hexdigest() == passwd_digest
    preserved = {kind: bad.queue_directory / f"{name}.psv" for kind, name in names.items()}
    assert os.readlink(preserved["link to a queue file"]) == str(target)
    assert os.readlink(preserved["link to /etc/passwd"]) == str(passwd)
    assert stat.S_ISFIFO(preserved["fifo"].lstat().st_mode)
    assert preserved["directory"].is_dir()
    assert stat.S_IMODE(preserved["mode 000"].lstat().st_mode) == 0
    # Only the real messages were processed; README.pck was never even looked at.
    assert processes.disposed_tags() == ["before", "after"]
    assert (queue / "README.pck").exists()
    assert tally.files == []
    assert tally.get_files(".bak") == []
    assert runner.stop() == 0, runner.stderr
    assert "Traceback" not in runner.stderr
    reasons = "\n".join(line for line in processes.log_lines() if "preserving" in line)
    assert "Permission denied" in reasons
    assert "it is a symbolic link" in reasons
    assert "(a FIFO)" in reasons
    assert "(a directory)" in reasons


def test_the_open_watch_sees_a_read(tmp_path: Path) -> None:
    # The control of the watch above: a read of the watched file is seen.
    path = tmp_path / "watched"
    path.write_bytes(b"data")
    watch = OpenWatch(path)
    try:
        assert watch.events() == 0
        assert path.read_bytes() == b"data"
        assert watch.events() >= 2
    finally:
        watch.close()
