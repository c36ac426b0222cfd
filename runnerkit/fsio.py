"""Careful file operations: durable writes, and reads that refuse anything but a file."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from runnerkit.errors import QueueFileError, UnsafeNameError
from runnerkit.typing import StrPath

#: Bytes a queue file may hold beyond its message's limit: its metadata, and the
#: header fields the pipeline adds.
METADATA_ALLOWANCE = 1024 * 1024


def max_queue_file_size(max_message_size: int) -> int | None:
    """The largest queue file read, in bytes, for ``[lmtp] max_message_size``; None
    when that is 0 (no limit)."""
    return max_message_size + METADATA_ALLOWANCE if max_message_size else None


#: Queue files are readable by the group (operators), writable only by the owner.
FILE_MODE = 0o640
#: Queue directories: the same rule.
DIRECTORY_MODE = 0o750

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def path_in(directory: Path, name: str) -> Path:
    """The path of the entry *name* directly inside *directory*, for a name from outside.

    Every path runnerkit builds from a name (a list id for its Maildir, say) goes
    through here, so that no name can lead out of its directory or into another entry's.

    :param name: one path component.
    :returns: ``directory / name``.
    :raises UnsafeNameError: *name* is empty, ``.`` or ``..``, starts with a dot (a
        hidden entry, or one of Maildir's own), holds a ``/``, a backslash or a NUL, or
        is longer than 255 bytes (NAME_MAX of Linux's file systems); the message names it.
    """
    problem = None
    if not name:
        problem = "it is empty"
    elif name.startswith("."):
        problem = "it starts with a dot"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator"
    elif "\0" in name:
        problem = "it holds a NUL character"
    elif len(os.fsencode(name)) > 255:
        problem = "it is longer than 255 bytes"
    if problem is not None:
        raise UnsafeNameError(
            f"the name {name!r} cannot be an entry of {str(directory)!r}: {problem}"
        )
    return directory / name


def open_append(path: Path) -> BinaryIO:
    """Open the file at *path* to append to it (an output or log file), made if missing.

    The file is :data:`FILE_MODE` (0640: it may hold mail and addresses), whatever the
    umask; one that exists with wider permissions (made by an older version) is
    narrowed to it.

    :raises OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & ~FILE_MODE:
            os.fchmod(fd, mode & FILE_MODE)
        return open(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def fsync_directory(directory: StrPath) -> None:
    """Flush *directory*'s entries to disk, so a rename in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(directory: Path, mode: int = DIRECTORY_MODE) -> None:
    """Create *directory*, and any missing parents, each with *mode* (less the umask).

    ``Path.mkdir(mode, parents=True)`` gives the parents it creates the default mode,
    ``0o777`` less the umask: under a loose umask, directories anyone could write to.

    :raises OSError: a directory cannot be created, or a file is in the way.
    """
    try:
        directory.mkdir(mode)
    except FileNotFoundError:
        if directory.parent == directory:
            raise
        make_directories(directory.parent, mode)
        make_directories(directory, mode)
    except FileExistsError:
        if not directory.is_dir():
            raise


def write_new_file(
    tmp: StrPath, final: StrPath, data: bytes, directory_fd: int | None = None
) -> None:
    """Write *data* to *tmp*, fsync it, rename it to *final* and fsync the directory.

    The temporary file is locked while it exists, so that a start-up clean-up can tell
    a crashed writer's leftovers from a live writer's work.  On any failure the
    temporary file is removed and the error propagates: a failed fsync is never retried,
    because the kernel may already have dropped the dirty pages.

    If only the directory's fsync fails, the rename has already published *final*, but
    it may not survive a crash.  *final* is removed again, so that an error always means
    "not written".  If it is already gone, a reader took it in the meantime: the data
    was delivered, and the error is a false alarm that can at worst cause a duplicate.

    :param directory_fd: an open descriptor of the directory; *tmp* and *final* are
        then names in it, and no path is looked up again (nor the directory opened for
        its fsync).  By default they are paths, and the directory is opened by name.
    """
    fd = os.open(tmp, _CREATE_FLAGS, FILE_MODE, dir_fd=directory_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.rename(tmp, final, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        os.close(fd)
        _remove_quietly(tmp, directory_fd)
        raise
    os.close(fd)
    try:
        if directory_fd is None:
            fsync_directory(os.path.dirname(final))
        else:
            os.fsync(directory_fd)
    except BaseException:
        _remove_quietly(final, directory_fd)
        raise


def replace_file(path: Path, data: bytes) -> None:
    """Replace the contents of *path* with *data*, atomically: a reader sees all or none.

    Written through a temporary file of this process's own (a leftover of a crashed
    earlier run with the same pid is removed first), with :func:`write_new_file`.

    :raises OSError: the file could not be written; *path* is as it was.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    _remove_quietly(tmp)
    write_new_file(tmp, path, data)


def read_queue_file(
    path: StrPath, directory_fd: int | None = None, max_size: int | None = None
) -> bytes:
    """Read the regular file at *path*, never following a link or blocking on a FIFO.

    :param directory_fd: an open descriptor of the directory *path* is a name in.
    :param max_size: the largest file read, in bytes, checked before reading: a file
        of gigabytes would otherwise take as much memory (None: no limit).
    :raises QueueFileError: *path* is a link, a directory, a FIFO, unreadable, gone,
        or larger than *max_size* (the message gives both sizes).
    """
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=directory_fd)
    except OSError as error:
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise QueueFileError(f"cannot open queue file {str(path)!r}: {reason}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise QueueFileError(
                f"cannot read queue file {str(path)!r}: it is not a regular file "
                f"({_kind(info.st_mode)})"
            )
        if max_size is not None and info.st_size > max_size:
            raise QueueFileError(
                f"cannot read queue file {str(path)!r}: it is {info.st_size} bytes, more "
                f"than the {max_size} a queue file may be ([lmtp] max_message_size and "
                f"{METADATA_ALLOWANCE} bytes for its metadata)"
            )
        # One read for the whole file: asked for a byte more than its size, a regular
        # file gives exactly its size when that is all there is.
        first = os.read(fd, info.st_size + 1)
        if len(first) == info.st_size:
            return first
        chunks = [first]
        while chunk := os.read(fd, max(info.st_size, 65536)):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as error:
        raise QueueFileError(f"cannot read queue file {str(path)!r}: {error.strerror}") from error
    finally:
        os.close(fd)


def move(source: StrPath, target: StrPath) -> None:
    """Rename *source* to *target*, copying across file systems when it must."""
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        shutil.copy2(source, target, follow_symlinks=False)
        os.unlink(source)
    fsync_directory(os.path.dirname(target))


def remove_stale_temporary(path: StrPath, min_age: float, now: float) -> bool:
    """Remove a temporary file that no live writer holds and that is at least *min_age* old.

    :returns: whether the file was removed.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return _remove_quietly(path)
    finally:
        os.close(fd)


def _remove_quietly(path: StrPath, directory_fd: int | None = None) -> bool:
    try:
        os.unlink(path, dir_fd=directory_fd)
    except OSError:
        return False
    return True


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"
