"""The names and contents of the lock files that runner processes hold.

Each runner process holds the lock of its slice (:func:`runnerkit.process.lock_slice`)
and writes its pid into the file; the master's watchdog reads that pid to tell its own
processes from leftovers of a master killed earlier.  Both build the file's name here,
so the two can never disagree.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def slice_lock_path(lock_dir: Path, name: str, slice: int | None) -> Path:
    """The lock file of runner *name*'s *slice*, in *lock_dir*.

    ``runner-NAME.lck`` for a runner without slices (*slice* is None), else
    ``runner-NAME-SLICE.lck``.
    """
    suffix = "" if slice is None else f"-{slice}"
    return lock_dir / f"runner-{name}{suffix}.lck"


def lock_holder(path: Path) -> int | None:
    """The pid written in the lock file *path*, or None if it is missing or holds no pid.

    The pid is that of the process that last took the lock; it holds the lock still only
    if it is alive.
    """
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_is_held(path: Path) -> bool:
    """Whether some process holds an exclusive ``flock`` on *path* now.

    False when the file is missing or cannot be opened.  It asks for a shared lock
    without blocking, and lets go at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
