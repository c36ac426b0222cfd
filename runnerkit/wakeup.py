"""Waking an idle runner as soon as a file lands in its queue.

On Linux a :class:`QueueWatcher` uses inotify: the rename that publishes a queue file
(``.pck.tmp`` to ``.pck``) is an ``IN_MOVED_TO`` event on the queue directory, and the
watcher calls its callback at once.  Where inotify is missing, :func:`watch_queue`
returns None and the runner falls back to polling every ``sleep_time``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("runnerkit.wakeup")

_IN_MOVED_TO = 0x00000080
_IN_CLOSE_WRITE = 0x00000008
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


def _libc() -> ctypes.CDLL | None:
    # CDLL(None) is the running program, which links the C library; unlike
    # ctypes.util.find_library it forks no helper program.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class QueueWatcher:
    """Call *callback* whenever a file is renamed into *directory*, from a thread.

    :raises OSError: inotify cannot watch the directory.
    """

    def __init__(self, directory: Path, callback: Callable[[], object], libc: ctypes.CDLL) -> None:
        self._callback = callback
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        self._fd = fd
        if libc.inotify_add_watch(fd, os.fsencode(directory), _IN_MOVED_TO | _IN_CLOSE_WRITE) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, os.strerror(error), str(directory))
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._watch, name="queue-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            readable, _, _ = select.select([self._fd, self._stop_read], [], [])
            if self._stop_read in readable:
                return
            try:
                while os.read(self._fd, 65536):
                    pass
            except BlockingIOError:
                pass
            except OSError as error:  # pragma: no cover - the fd is ours until close()
                if error.errno != errno.EINTR:
                    log.error("queue watcher stopped: %s", error)
                    return
            self._callback()

    def close(self) -> None:
        """Stop watching and release the inotify descriptor."""
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_read, self._stop_write):
            os.close(fd)


def watch_queue(directory: Path, callback: Callable[[], object]) -> QueueWatcher | None:
    """Watch *directory* for new queue files, or return None where that is impossible."""
    libc = _libc()
    if libc is None:
        return None
    try:
        return QueueWatcher(directory, callback, libc)
    except OSError as error:
        log.warning("cannot watch %s, polling instead: %s", directory, error)
        return None
