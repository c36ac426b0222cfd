"""Crash leftovers are cleaned at start-up, and nothing is created that others could write.

A writer killed in mid-write leaves a ``.pck.tmp`` file: written, perhaps, but never
renamed into the queue.  A runner removes such files when it starts, but only those that
no live writer holds: a writer locks its temporary file for as long as it exists, and
the lock dies with the process.  Files and directories are created with modes that let
no other user write to them (files ``0o640``, directories ``0o750``), even under umask 0
and for parent directories created on the way.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support_files import (
    DEADLINE,
    RunnerProcesses,
    child_env,
    enqueue,
    wait_for,
)

from runnerkit import queuefile
from runnerkit.switchboard import TMP_MIN_AGE


@pytest.fixture
def paused_writer(
    processes: RunnerProcesses, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A process paused inside the fsync of a message it queues to ``tally``.

    Yields the process and its temporary file, once that file is older than
    :data:`TMP_MIN_AGE`, so that only its lock can keep it from being cleaned.
    """
    queue = processes.configure().queue_directory
    marker = tmp_path / "paused"
    writer = subprocess.Popen(
        [sys.executable, "-m", "hostilekit.paused_writer", str(queue), str(marker)],
        env=child_env(),
    )
    try:
        wait_for(marker.exists, "the writer to pause in its fsync")
        (tmp,) = queue.glob("*.pck.tmp")
        wait_for(
            lambda: time.time() - tmp.stat().st_mtime > TMP_MIN_AGE + 0.1,
            "the temporary file to age",
        )
        yield writer, tmp
    finally:
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=DEADLINE)


@pytest.mark.slow
def test_a_crashed_writers_temporary_file_is_removed_when_a_runner_starts(
    processes: RunnerProcesses, paused_writer: tuple[subprocess.Popen[bytes], Path]
) -> None:
    tally = processes.world.config.switchboards["tally"]
    writer, tmp = paused_writer
    written = tmp.read_bytes()
    # The writer got as far as the fsync: the file is whole, just not published.
    assert queuefile.decode(written).metadata["tag"] == "crashed"
    queued = enqueue(tally, "queued before")

    # While the writer lives, a starting runner leaves its file alone, old as it is.
    first = processes.start_ready()
    assert processes.wait_disposed("queued before") == first.pid
    assert tmp.read_bytes() == written
    assert first.stop() == 0, first.stderr

    # The writer crashes.  Its file stays behind, never published...
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert tmp.exists()
    assert tally.files == []
    # ...until the next runner starts, and removes it before it does anything else.
    second = processes.start_ready()
    assert not tmp.exists()
    removed = [line for line in processes.log_lines() if "left by a crashed writer" in line]
    assert len(removed) == 1, removed
    assert f" {second.pid} " in removed[0]
    assert tmp.name in removed[0]

    enqueue(tally, "queued after")
    assert processes.wait_disposed("queued after") == second.pid
    assert second.stop() == 0, second.stderr
    # The half-queued message was never processed; the others were, once each.
    assert processes.disposed_tags() == ["queued before", "queued after"]
    assert list(tally.queue_directory.iterdir()) == []
    assert queued not in tally.files


def test_files_and_directories_are_not_writable_by_others_under_umask_0(
    tmp_path: Path,
) -> None:
    # In a child, because the umask belongs to the whole process.
    base = tmp_path / "fresh"
    subprocess.run(
        [sys.executable, "-m", "hostilekit.open_umask", str(base)],
        env=child_env(),
        check=True,
        timeout=DEADLINE,
    )
    modes = {}
    for root, dirs, files in os.walk(base):
        for name in [*dirs, *files]:
            path = Path(root, name)
            modes[str(path.relative_to(base))] = path.lstat().st_mode
    modes["."] = base.stat().st_mode
    directories = {name for name, mode in modes.items() if stat.S_ISDIR(mode)}
    files = {name for name, mode in modes.items() if stat.S_ISREG(mode)}
    # The two queues' directories, and every parent created on the way.
    assert directories == {
        ".",
        "deep",
        "deep/var",
        "deep/var/queue",
        "deep/var/queue/bad",
        "elsewhere",
        "elsewhere/a",
        "elsewhere/a/b",
        "elsewhere/a/b/modes",
    }
    # Two queued files (one written again by a recovery), a backup, a preserved file.
    suffixes = sorted(name.rpartition(".")[2] for name in files)
    assert suffixes == ["bak", "pck", "pck", "psv"], sorted(files)
    assert set(modes) == directories | files
    wrong = {
        name: oct(stat.S_IMODE(mode))
        for name, mode in modes.items()
        if stat.S_IMODE(mode) != (0o750 if name in directories else 0o640)
    }
    assert wrong == {}
