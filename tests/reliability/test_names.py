"""Names: processes queueing identical messages at the same moment never collide.

:data:`PROCESSES` processes (``multiprocessing``, spawn) each queue the same message, with
the same metadata, :data:`PER_PROCESS` times into one directory, all starting together
behind a barrier.  Every ``enqueue`` returns a name of its own, and the directory then
holds exactly one intact file per call: none overwrote another.

The directory is on ``/dev/shm`` (tmpfs) when the machine has one: the property is about
names, not durability, and on a disk every one of the 80,000 enqueues waits for two
fsyncs, which makes the run several times slower without testing anything more.  The
figures are written to ``names.json`` in the test's temporary directory and printed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoskit.names import MESSAGE, enqueue_identical

from runnerkit import queuefile
from runnerkit.message import message_from_string

PROCESSES = 8
PER_PROCESS = 10_000
#: The bound on the whole run; a passing run takes a fraction of it.
DEADLINE = 300.0

FILE_NAME = re.compile(r"\d+\.\d{9}\+[0-9a-f]{40}\.pck")


def on_tmpfs(path: Path) -> bool:
    """Whether *path* is the mount point of a tmpfs."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(
        fields[1] == str(path) and fields[2] == "tmpfs" for fields in map(str.split, mounts)
    )


@pytest.fixture
def shared_directory(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on /dev/shm if it is a writable tmpfs, else in the tmp dir."""
    shm = Path("/dev/shm")
    if on_tmpfs(shm) and os.access(shm, os.W_OK):
        directory = Path(tempfile.mkdtemp(prefix="runnerkit-names-", dir=shm))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    else:
        directory = tmp_path / "queue"
        directory.mkdir()
        yield directory


@pytest.mark.slow
def test_eight_processes_queueing_identical_messages_make_80000_files(
    shared_directory: Path, tmp_path: Path
) -> None:
    queue_dir = shared_directory / "names"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = [tmp_path / f"names-{n}.txt" for n in range(PROCESSES)]
    children = [
        context.Process(
            target=enqueue_identical, args=(str(queue_dir), PER_PROCESS, barrier, str(result))
        )
        for result in results
    ]
    for child in children:
        child.start()
    try:
        # Every child has set up its queue and waits: they start together.
        barrier.wait(timeout=60)
        began = time.monotonic()
        for child in children:
            child.join(timeout=max(0.0, began + DEADLINE - time.monotonic()))
        seconds = time.monotonic() - began
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
    assert [child.exitcode for child in children] == [0] * PROCESSES

    returned: list[str] = []
    loop_seconds = []
    for result in results:
        *names, took = result.read_text(encoding="ascii").splitlines()
        assert len(names) == PER_PROCESS
        returned += names
        loop_seconds.append(float(took))
    entries = os.listdir(queue_dir)
    figures = {
        "processes": PROCESSES,
        "messages_each": PER_PROCESS,
        "names_returned": len(returned),
        "distinct_names": len(set(returned)),
        "files": len(entries),
        "seconds": round(seconds, 2),
        "slowest_process_seconds": max(loop_seconds),
        "filesystem": "tmpfs" if on_tmpfs(shared_directory.parent) else "tmp dir",
    }
    (tmp_path / "names.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"\nnames {json.dumps(figures)}")

    total = PROCESSES * PER_PROCESS
    assert len(set(returned)) == total
    assert len(entries) == total
    assert sorted(entries) == sorted(f"{name}.pck" for name in returned)
    assert all(FILE_NAME.fullmatch(entry) for entry in entries)
    # Every file is whole and holds the message: none was overwritten or mixed.
    contents = {(queue_dir / entry).read_bytes() for entry in entries}
    [content] = contents
    entry = queuefile.decode(content)
    assert str(entry.message) == str(message_from_string(MESSAGE))
    assert entry.metadata["listname"] == "same@example.com"
