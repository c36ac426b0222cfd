"""The master's files in the var dir: its lock, its pid file and its status file.

A master holds an exclusive :func:`fcntl.flock` on ``LOCK_DIR/master.lck`` for its whole
life and writes its pid into it, so a second master on the same var dir is refused and
any process can tell whether a master runs, and which.  The kernel drops the lock of a
dead process, so the lock of a master killed outright is simply taken over.  Beside it
the master keeps ``VAR_DIR/master.pid`` and ``VAR_DIR/master.json``
(:mod:`runnerkit.master.status`), and removes both when it stops.  It also writes
``VAR_DIR/master.layers.json``, the configuration files and import path it runs with
(:func:`read_layers`), which ``runnerkit restart`` compares with its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from runnerkit.config import Configuration
from runnerkit.errors import MasterError, MasterRunningError, StatusFileError
from runnerkit.fsio import FILE_MODE, make_directories, replace_file
from runnerkit.master.status import MasterStatus

#: How long to retry a lock held for an instant by a process that only checks it.
LOCK_RETRY_SECONDS = 0.25
#: What :func:`running_master_pid` returns for a lock held by a process that wrote no
#: pid.  Never a pid to signal: ``kill(-1)`` reaches every process the user may signal.
UNKNOWN_PID = -1
#: A pid as a master writes it: ASCII digits, no sign, not 0 (``kill(0)`` signals the
#: caller's own process group).
_PID = re.compile(r"[1-9][0-9]{0,9}")


class MasterPaths(NamedTuple):
    """The files of the master of one var dir."""

    lock: Path
    pid: Path
    status: Path


def lock_paths(config: Configuration) -> MasterPaths:
    """(lock file, pid file, status file) of the master of *config*'s var dir."""
    return MasterPaths(
        lock=config.paths.lock_dir / "master.lck",
        pid=config.paths.var_dir / "master.pid",
        status=config.paths.var_dir / "master.json",
    )


def running_master_pid(config: Configuration) -> int | None:
    """The pid of the master that holds *config*'s lock, or None if no master does.

    :returns: the pid, None when no master holds the lock, or :data:`UNKNOWN_PID` when a
        process holds it but has written no valid pid within :data:`LOCK_RETRY_SECONDS`.
    """
    try:
        fd = os.open(lock_paths(config).lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # A master that has just taken the lock writes its pid a moment later.
            deadline = time.monotonic() + LOCK_RETRY_SECONDS
            while True:
                text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                if _PID.fullmatch(text):
                    return int(text)
                if time.monotonic() > deadline:
                    return UNKNOWN_PID
                time.sleep(0.005)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class MasterLock:
    """The master lock of *config*'s var dir, with the pid and status files it guards.

    :meth:`acquire` and :meth:`release` must pair; the context manager does both.
    """

    def __init__(self, config: Configuration) -> None:
        self.paths = lock_paths(config)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write this process's pid into it and into the pid file.

        A lock left by a dead master is free (the kernel drops a dead process's locks),
        so it is simply taken over, whatever pid its file names.

        :raises MasterRunningError: a live master holds the lock, or this object does.
        """
        if self._fd is not None:
            raise MasterRunningError(f"this process holds the lock {str(self.paths.lock)!r}")
        make_directories(self.paths.lock.parent)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            _lock_exclusively(fd)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise MasterRunningError(
                f"a runnerkit master is already running with pid {holder} "
                f"(lock {str(self.paths.lock)!r}); stop it with 'runnerkit stop'"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        replace_file(self.paths.pid, f"{os.getpid()}\n".encode())

    def lost(self) -> str | None:
        """Why the held lock no longer guards the var dir, or None while it does.

        It does not once its file was removed or replaced (the var dir deleted, a
        spec's world torn down under it): another master would take a new lock at the
        same path.

        :raises MasterError: the lock is not held.
        """
        if self._fd is None:
            raise MasterError("the master lock is not held")
        try:
            on_disk = os.stat(self.paths.lock)
        except FileNotFoundError:
            return f"the master lock {str(self.paths.lock)!r} is gone"
        except OSError as error:
            return f"the master lock {str(self.paths.lock)!r} cannot be read: {error}"
        held = os.fstat(self._fd)
        if (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            return f"the master lock {str(self.paths.lock)!r} was replaced by another file"
        return None

    def release(self) -> None:
        """Remove the pid and status files and release the lock; nothing if not held."""
        if self._fd is None:
            return
        for path in (self.paths.pid, self.paths.status):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> MasterLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class QueueLocks:
    """Exclusive :func:`fcntl.flock` locks on the queue directories themselves.

    The master lock lives in ``[paths] lock_dir``; two masters whose lock dirs differ
    would each take their own and run on the same queues, their runners sharing
    slices (messages delivered twice).  So a master also locks every queue directory
    it runs (the directory, opened, not a file in it): whatever else the
    configurations say, one queue has one master.  The locks are not inherited by the
    runner processes, and the kernel drops them when the master dies.

    :param directories: queue name -> its directory; each is made if missing.
    """

    def __init__(self, directories: Mapping[str, Path]) -> None:
        self.directories = dict(directories)
        self._fds: list[int] = []
        #: queue name -> the descriptor of its directory, while locked.
        self._held: dict[str, int] = {}

    def renew(self) -> str | None:
        """Lock again each directory that was removed or replaced since it was locked
        (the lock went with the old one, and another master could take the new one).

        :returns: why a directory can no longer be this master's, or None when all is
            well.
        """
        for name, fd in list(self._held.items()):
            directory = self.directories[name]
            try:
                now = os.stat(directory)
            except FileNotFoundError:
                now = None
            held = os.fstat(fd)
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                continue
            try:
                make_directories(directory)
                new = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as error:
                return f"the directory of queue {name!r} cannot be locked again: {error}"
            try:
                fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(new)
                return (
                    f"the directory of queue {name!r}, {str(directory)!r}, was replaced and "
                    "is now locked by another runnerkit master"
                )
            self._fds.remove(fd)
            os.close(fd)
            self._fds.append(new)
            self._held[name] = new
        return None

    def acquire(self) -> None:
        """Lock every directory, or none.

        :raises MasterRunningError: a directory is locked by another process (another
            master); the message names the queue and its directory.
        """
        if self._fds:
            raise MasterRunningError("this process holds the queue directory locks")
        try:
            for name, directory in sorted(self.directories.items()):
                make_directories(directory)
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._fds.append(fd)
                self._held[name] = fd
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise MasterRunningError(
                        f"the directory of queue {name!r}, {str(directory)!r}, is locked by "
                        "another runnerkit master (one whose [paths] lock_dir or var_dir "
                        "differ from this one's); two masters on one queue would process "
                        "its messages twice: stop the other master first"
                    ) from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release every lock held; nothing if none are."""
        fds, self._fds = self._fds, []
        self._held = {}
        for fd in fds:
            os.close(fd)


def read_status(config: Configuration) -> MasterStatus | None:
    """The status that the master of *config*'s var dir last wrote, or None if none.

    The file outlives a master killed outright: check :func:`running_master_pid` to know
    whether the master it names still runs.

    :raises StatusFileError: the file cannot be read, or is not a status record.
    """
    path = lock_paths(config).status
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StatusFileError(
            f"cannot read the master's status file {str(path)!r}: {error}"
        ) from error
    return MasterStatus.from_json(text, source=repr(str(path)))


def write_status(config: Configuration, status: MasterStatus) -> None:
    """Replace the status file of *config*'s var dir with *status*, atomically and durably.

    :raises OSError: the file cannot be written; the old one is left as it was.
    """
    replace_file(lock_paths(config).status, (status.to_json() + "\n").encode())


def _lock_exclusively(fd: int) -> None:
    """Take an exclusive lock on *fd*, waiting a little for a passing shared lock.

    :func:`running_master_pid` holds a shared lock for an instant; only a lock still
    held after :data:`LOCK_RETRY_SECONDS` belongs to a master.

    :raises BlockingIOError: the lock is still held.
    """
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class MasterLayers(NamedTuple):
    """What a master runs with: its configuration files and import path, absolute, and
    the text it read from each file (None in a record written before texts were kept)."""

    master_pid: int
    config_files: tuple[Path, ...]
    import_path: tuple[Path, ...]
    texts: tuple[str, ...] | None = None


def layers_path(config: Configuration) -> Path:
    """The file where the master of *config*'s var dir records its layers."""
    return config.paths.var_dir / "master.layers.json"


def write_layers(
    config: Configuration,
    config_files: Sequence[Path],
    import_path: Sequence[Path],
    texts: Sequence[str] = (),
) -> None:
    """Record that this process, a master, runs with *config_files* and *import_path*.

    :param texts: the text the master read from each of *config_files*: its runner
        processes are built from these (``python -m runnerkit.process --layers``),
        never from the files, which may have changed since.
    :raises OSError: the file cannot be written.
    """
    record = {
        "master_pid": os.getpid(),
        "config_files": [str(path) for path in config_files],
        "import_path": [str(path) for path in import_path],
        "texts": list(texts),
    }
    replace_file(layers_path(config), (json.dumps(record, indent=2) + "\n").encode())


def remove_layers(config: Configuration) -> None:
    """Remove the record :func:`write_layers` made, if there is one."""
    with contextlib.suppress(FileNotFoundError):
        layers_path(config).unlink()


def read_layers(config: Configuration) -> MasterLayers | None:
    """The layers the master of *config*'s var dir recorded, or None if it recorded none.

    The file outlives a master killed outright: compare its ``master_pid`` with
    :func:`running_master_pid`.

    :raises StatusFileError: the file cannot be read, or is not such a record.
    """
    return read_layers_file(layers_path(config))


def read_layers_file(path: Path) -> MasterLayers | None:
    """The record of a master's layers in the file at *path* (see :func:`read_layers`).

    :raises StatusFileError: the file cannot be read, or is not such a record.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise StatusFileError(f"cannot read the master's layers {str(path)!r}: {error}") from error
    try:
        pid = data["master_pid"]
        files = data["config_files"]
        directories = data["import_path"]
        texts = data.get("texts")
        if not (
            isinstance(pid, int) and all(isinstance(item, str) for item in [*files, *directories])
        ):
            raise TypeError("expected a pid and lists of paths")
        if texts is not None and not (
            isinstance(texts, list)
            and len(texts) == len(files)
            and all(isinstance(text, str) for text in texts)
        ):
            raise TypeError("expected the text of each configuration file")
    except (KeyError, TypeError, AttributeError) as error:
        raise StatusFileError(
            f"{str(path)!r} is not a master's record of its layers: {error}"
        ) from error
    return MasterLayers(
        pid,
        tuple(map(Path, files)),
        tuple(map(Path, directories)),
        None if texts is None else tuple(texts),
    )
