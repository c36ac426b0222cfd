"""Switchboards: durable, flat, file-based queues that many processes can share.

Each queued message is one file, ``<time>+<40 hex digits>.pck``, in the queue's
directory.  The time part orders the queue; the digest part is random, so names never
collide, and it decides which slice of the queue, and so which runner process, owns the
file.  Everything about a queue can be learned by listing its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from runnerkit import queuefile
from runnerkit.backend import QueueBackend
from runnerkit.errors import MetadataError, QueueError, QueueFileError, QueueUnavailableError
from runnerkit.fsio import (
    fsync_directory,
    make_directories,
    move,
    read_queue_file,
    remove_stale_temporary,
    write_new_file,
)
from runnerkit.logtext import one_line
from runnerkit.message import Message
from runnerkit.slices import DIGEST_BITS, DIGEST_HEX, check_slice, digest_pattern, slice_of
from runnerkit.typing import MsgData, StrPath

log = logging.getLogger("runnerkit.switchboard")

#: The metadata version stamped on every queued message.
METADATA_VERSION = 3
#: A ``.bak`` file recovered this many times is preserved in ``bad`` instead.
MAX_RECOVERIES = 3
#: Leftover ``.tmp`` files younger than this may belong to a live writer.
TMP_MIN_AGE = 1.0

#: The suffix of the file that keeps why a ``<filebase>.psv`` was preserved:
#: ``<filebase>.reason``, a JSON object with ``queue`` (where it was preserved from),
#: ``reason`` (one line) and ``time`` (UTC, ISO 8601).  It lives in the directory
#: beside ``bad``'s, ``bad.reasons`` (:func:`reasons_directory`), so that ``bad``
#: holds only what was preserved, as Mailman's does; it goes when its entry goes.
REASON_SUFFIX = ".reason"


def reasons_directory(bad_directory: Path) -> Path:
    """Where the reasons of the entries preserved in *bad_directory* are kept: the
    directory beside it, named after it with ``.reasons`` (``$QUEUE_DIR/bad.reasons``).
    No queue can have that name: runner names have no dot."""
    return bad_directory.with_name(f"{bad_directory.name}.reasons")


#: The longest reason kept, in characters before escaping (see :func:`one_line`).
MAX_REASON = 500

_TEXT = frozenset({str})
_FILEBASE = re.compile(r"(\d+)(?:\.(\d+))?\+([0-9a-f]{40})")


class QueueDirectory(type(Path())):  # type: ignore[misc]
    """A queue directory's path, equal to its text as well as to the same path.

    Mailman's switchboards hold their directory as a ``str``, and specs written for
    Mailman compare it with one.
    """

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        return super().__eq__(other)  # type: ignore[no-any-return]  # or NotImplemented

    __hash__ = Path.__hash__


class QueueClock:
    """Stamps queue file names with strictly increasing nanosecond times.

    When the wall clock stands still (a frozen clock in a test, or a coarse one) each
    stamp is one nanosecond after the last, so names still sort in the order the
    messages were queued.  A :class:`~runnerkit.site.Site` gives one clock to all of
    its switchboards.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        """Return a time in nanoseconds, greater than any this clock returned before."""
        now = time.time_ns()
        with self._lock:
            if now <= self._last:
                now = self._last + 1
            self._last = now
        return now


class Switchboard:
    """One queue directory, or one slice of it.

    :param name: the queue's name, such as ``in`` or ``shunt``.
    :param queue_directory: the flat directory holding the queue files; created if missing.
    :param slice: which slice this switchboard serves, or None for the whole queue.
    :param numslices: how many slices the queue is split into.
    :param recover: recover this slice's ``.bak`` files and clean crashed writers'
        ``.tmp`` files now, as a runner does when it starts.
    :param bad: the directory of the ``bad`` queue, where :meth:`finish` preserves
        files; by default ``bad`` beside *queue_directory* (as ``$QUEUE_DIR/bad``), and
        created when a file is first preserved.
    :param clock: the clock that stamps file names; by default one of its own.  Queues
        that must keep FIFO order among each other share one.
    :param max_file_size: the largest queue file read, in bytes, checked before
        reading (None: no limit); :func:`runnerkit.fsio.max_queue_file_size`.
    :param create: create the directory now if it does not exist.  Without it, a
        switchboard over a missing directory lists no files (for a look that must
        change nothing, such as ``runnerkit status``), and queueing to it fails.
    :raises QueueError: the slice is impossible or the directory cannot be created.
    """

    def __init__(
        self,
        name: str,
        queue_directory: StrPath,
        slice: int | None = None,
        numslices: int = 1,
        recover: bool = False,
        *,
        bad: StrPath | None = None,
        clock: QueueClock | None = None,
        create: bool = True,
        max_file_size: int | None = None,
    ) -> None:
        check_slice(slice, numslices)
        #: The queue's name.
        self.name = name
        #: The queue's directory: a path that also compares equal to its text, as
        #: Mailman's (a ``str``) does.
        self.queue_directory: Path = QueueDirectory(queue_directory)
        # Paths as text: the hot paths make three a message, and Path objects cost more
        # than the system calls that use them.
        self._prefix = os.path.join(str(self.queue_directory), "")
        # The directory held open for its fsyncs, and which directory that is.
        self._dir_fd: int | None = None
        self._dir_id: tuple[int, int] = (0, 0)
        #: This switchboard's slice, or None for all of them.
        self.slice = slice
        #: How many slices the queue has.
        self.numslices = numslices
        #: Where :meth:`finish` preserves files: the ``bad`` queue's directory.
        self.bad_directory = self.queue_directory.parent / "bad" if bad is None else Path(bad)
        self._clock = clock if clock is not None else QueueClock()
        pattern = digest_pattern(slice, numslices)
        self._needs_arithmetic = pattern is None
        self._digest_pattern = pattern or "[0-9a-f]{40}"
        self._digest_prefixes = _digest_prefixes(slice, numslices)
        self._patterns: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {}
        self._records: dict[tuple[int, str], re.Pattern[str]] = {}
        self._create = create
        #: The largest queue file read, in bytes (None: no limit); a larger one is
        #: unreadable, and preserved in bad with the reason, never read into memory.
        self.max_file_size = max_file_size
        try:
            if create:
                make_directories(self.queue_directory)
        except OSError as error:
            raise QueueError(
                f"cannot create queue directory {str(self.queue_directory)!r} "
                f"for queue {name!r}: {error.strerror}"
            ) from error
        if recover:
            self.recover_backup_files()

    def __repr__(self) -> str:
        where = "" if self.slice is None else f" slice {self.slice}/{self.numslices}"
        return f"<Switchboard {self.name!r}{where} at {str(self.queue_directory)!r}>"

    # Queueing.

    def enqueue(self, msg: Message | str, metadata: MsgData | None = None, **kws: Any) -> str:
        """Queue *msg* with *metadata*, and return the new file's base name.

        Keyword arguments override keys of *metadata*.  Keys that start with ``_`` are
        not stored, except ``_parsemsg``.  With ``_plaintext=True`` (or when *msg* is a
        ``str``) the message is stored as text and ``_parsemsg`` is True.

        :raises MetadataError: a metadata value cannot be stored.
        :raises QueueError: the file could not be written; nothing is left behind.
        """
        content = encode_entry(msg, metadata, kws)
        filebase = new_filebase(self._clock)
        final = f"{filebase}.pck"
        try:
            try:
                write_new_file(f"{final}.tmp", final, content, self._directory_fd())
            except FileNotFoundError:
                if not self._create:
                    raise
                # The directory went between the look and the write: once more, in
                # the directory made again (the message is not at fault).
                write_new_file(f"{final}.tmp", final, content, self._directory_fd())
        except OSError as error:
            raise QueueError(
                f"cannot enqueue to {self.name!r}: writing {self._prefix + final!r} failed: "
                f"{error.strerror or error}"
            ) from error
        return filebase

    def dequeue(self, filebase: str) -> tuple[Message, MsgData]:
        """Take the file *filebase* for processing and return its message and metadata.

        The file is first renamed to ``.bak``, so a crash leaves it to be recovered;
        :meth:`finish` must follow.

        :raises QueueError: there is no such queued file.
        :raises QueueFileError: the file (now ``.bak``) is not a valid queue file; the
            caller should ``finish(filebase, preserve=True)``.
        """
        self._check_filebase(filebase)
        bak = f"{filebase}.bak"
        try:
            fd = self._dir_fd
            try:
                if fd is None:
                    raise FileNotFoundError
                os.rename(f"{filebase}.pck", bak, src_dir_fd=fd, dst_dir_fd=fd)
            except FileNotFoundError:
                # Not in the directory held open: perhaps the path names another one
                # now.  Look again (checked by stat), and retry if it is another.
                held = self._dir_id if fd is not None else None
                fd = self._directory_fd()
                if self._dir_id == held:
                    raise
                os.rename(f"{filebase}.pck", bak, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as error:
            raise QueueError(
                f"cannot dequeue {filebase!r} from {self.name!r}: {error.strerror}"
            ) from error
        data = read_queue_file(bak, fd, self.max_file_size)
        entry = queuefile.decode(data, source=f"{self._prefix}{bak}")
        return entry.message, entry.metadata

    def finish(self, filebase: str, preserve: bool = False, reason: str | None = None) -> None:
        """Be done with a dequeued file: remove its ``.bak``, or preserve it in ``bad``.

        :param preserve: move the file to the ``bad`` queue as ``<filebase>.psv``, for
            an operator to inspect, instead of removing it.
        :param reason: with *preserve*, why: kept beside the preserved file as
            ``<filebase>.reason`` (:data:`REASON_SUFFIX`), made one line of at most
            :data:`MAX_REASON` characters.  A reason that cannot be written is logged;
            the file is preserved all the same.
        :raises QueueError: there is no ``.bak`` for *filebase*, or it cannot be moved.
        """
        self._check_filebase(filebase)
        bak = f"{self._prefix}{filebase}.bak"
        try:
            if preserve:
                self._preserve(bak, filebase, reason)
            else:
                # The directory that dequeue used, held open: no path walked again.
                os.unlink(f"{filebase}.bak", dir_fd=self._dir_fd or self._directory_fd())
        except OSError as error:
            action = "preserve" if preserve else "remove"
            raise QueueError(
                f"cannot {action} {bak!r} of queue {self.name!r}: {error.strerror}"
            ) from error

    def put_back(self, filebase: str) -> None:
        """Undo :meth:`dequeue`: the taken ``<filebase>.bak`` waits again as ``.pck``.

        For a tool that took a file to move it elsewhere, and could not.

        :raises QueueError: there is no ``.bak`` for *filebase*, or it cannot be renamed.
        """
        bak = self._path(filebase, ".bak")
        try:
            os.rename(bak, self._path(filebase, ".pck"))
            fsync_directory(self.queue_directory)
        except OSError as error:
            raise QueueError(
                f"cannot put {bak!r} back in queue {self.name!r}: {error.strerror}"
            ) from error

    def close(self) -> None:
        """Release the descriptor of the queue directory that enqueue holds open."""
        fd, self._dir_fd = getattr(self, "_dir_fd", None), None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def _directory_fd(self) -> int:
        """The queue directory, open, for fsyncs: the one its path names now.

        Opening a directory costs more than checking by ``stat`` that the one held open
        is still the one its path names; a directory removed or replaced meanwhile is
        opened afresh, so no rename is ever fsynced in the wrong directory.  A
        directory that is gone is made again (and the log says so), unless the
        switchboard was made with ``create=False``.
        """
        try:
            info = os.stat(self._prefix)
        except FileNotFoundError:
            if not self._create:
                raise
            # Removed under a running system: the queue goes on in a new directory.
            make_directories(self.queue_directory)
            log.warning(
                "the directory of queue %r, %s, was gone; made it again",
                self.name,
                self.queue_directory,
            )
            info = os.stat(self._prefix)
        if self._dir_fd is None or (info.st_ino, info.st_dev) != self._dir_id:
            self.close()
            fd = os.open(self._prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            held = os.fstat(fd)
            self._dir_fd, self._dir_id = fd, (held.st_ino, held.st_dev)
        return self._dir_fd

    # Listing.

    @property
    def files(self) -> list[str]:
        """This slice's queued file base names, oldest first."""
        return self.get_files(".pck")

    def get_files(self, extension: str = ".pck") -> list[str]:
        """This slice's file base names with *extension*, oldest first.

        Only names are read: no file is opened, and entries whose names are not queue
        file names (``README.pck``, say) are ignored.
        """
        patterns = self._patterns.get(extension)
        if patterns is None:
            # One pattern only checks a name, and fast: possessive, nothing captured.
            # The other takes a name apart, for the rare names that need it.
            tail = f"\\+{self._digest_pattern}{re.escape(extension)}"
            patterns = (
                re.compile(rf"\d++(?:\.\d++)?+{tail}"),
                re.compile(
                    rf"((\d+)(?:\.(\d+))?\+({self._digest_pattern})){re.escape(extension)}"
                ),
            )
            self._patterns[extension] = patterns
        check, parse = patterns
        try:
            names = os.listdir(self.queue_directory)
        except FileNotFoundError:
            return []
        if self._digest_prefixes is not None:
            # A first cut that costs less than any regular expression: most names
            # belong to other slices, and the first digits of the digest tell.
            prefixes, width = self._digest_prefixes
            names = _with_digest_prefix(names, -len(extension) - DIGEST_HEX, width, prefixes)
        if not self._needs_arithmetic:
            in_order = self._in_own_layout(names, extension)
            if in_order is not None:
                return in_order
        names = list(filter(check.fullmatch, names))
        if self._needs_arithmetic:
            cut = len(extension) + DIGEST_HEX
            names = [
                name
                for name in names
                if slice_of(
                    int(name[len(name) - cut : len(name) - len(extension)], 16), self.numslices
                )
                == self.slice
            ]
        return _fifo_order(names, parse)

    def _in_own_layout(self, names: list[str], extension: str) -> list[str] | None:
        """The file bases of *names*, oldest first, if all are in runnerkit's layout.

        runnerkit writes every name in one layout: the seconds, a dot, nine digits of
        nanoseconds, ``+`` and the digest.  Names of one length in that layout sort by
        time when sorted as text, ties broken by digest, and one regular expression
        checks them all at once, as fixed-width records.  None if any name differs.
        """
        lengths = set(map(len, names))
        if len(lengths) != 1:
            return None
        seconds = lengths.pop() - len(extension) - DIGEST_HEX - 11
        if not 1 <= seconds <= 20:
            return None
        records = self._records.get((seconds, extension))
        if records is None:
            record = (
                rf"[0-9]{{{seconds}}}\.[0-9]{{9}}\+{self._digest_pattern}{re.escape(extension)}"
            )
            records = re.compile(f"(?:{record})*")
            self._records[seconds, extension] = records
        if not records.fullmatch("".join(names)):
            return None
        names.sort()
        return list(map(itemgetter(slice(None, -len(extension) or None)), names))

    def depth(self) -> int:
        """How many files wait in this slice, preserved (``.psv``) files included."""
        return len(self.files) + len(self.get_files(".psv"))

    # Recovery.

    def recover_backup_files(self) -> None:
        """Requeue this slice's ``.bak`` files, left by a crash in mid-message.

        Each recovery is counted in the file.  A file that would be recovered for the
        :data:`MAX_RECOVERIES`\\ th time, or that is damaged, is preserved in ``bad``.
        Temporary files of crashed writers are removed.
        """
        now = time.time()
        for filebase in self.get_files(".pck.tmp"):
            path = self._path(filebase, ".pck.tmp")
            if remove_stale_temporary(path, TMP_MIN_AGE, now):
                log.info("removed %s, left by a crashed writer", path)
        for filebase in self.get_files(".bak"):
            bak = self._path(filebase, ".bak")
            try:
                data = read_queue_file(bak, max_size=self.max_file_size)
                recoveries = queuefile.decode(data, source=str(bak)).recoveries + 1
            except QueueFileError as error:
                log.error("preserving unreadable backup %s in bad: %s", bak, error)
                self._preserve_quietly(bak, filebase, f"unreadable after a crash: {error}")
                continue
            if recoveries >= MAX_RECOVERIES:
                log.error(
                    "preserving %s in bad: recovered %d times, it keeps failing",
                    bak,
                    recoveries,
                )
                self._preserve_quietly(
                    bak,
                    filebase,
                    f"recovered {recoveries} times after crashes: processing it keeps failing",
                )
                continue
            pck = self._path(filebase, ".pck")
            tmp = self._path(filebase, ".pck.tmp")
            # A recovery killed half-way leaves this name behind, however young; only the
            # runner of this slice writes it, so no live writer holds it now.
            remove_stale_temporary(tmp, 0.0, time.time())
            try:
                write_new_file(
                    tmp,
                    pck,
                    queuefile.with_recoveries(data, recoveries),
                )
                os.unlink(bak)
            except OSError as error:
                log.error("cannot recover %s: %s", bak, error)
                continue
            log.info("recovered %s (recovery %d of %d)", pck, recoveries, MAX_RECOVERIES - 1)

    # Internals.

    def _check_filebase(self, filebase: str) -> None:
        check_filebase(filebase)

    def _path(self, filebase: str, extension: str) -> str:
        self._check_filebase(filebase)
        return f"{self._prefix}{filebase}{extension}"

    def _preserve(self, bak: str, filebase: str, reason: str | None = None) -> None:
        make_directories(self.bad_directory)
        move(bak, self.bad_directory / f"{filebase}.psv")
        if reason is not None:
            # After the move: a reason never stands without its entry.
            self._write_reason(filebase, reason)

    def _write_reason(self, filebase: str, reason: str) -> None:
        """Keep *reason* beside the preserved *filebase*, atomically; log a failure."""
        record = {
            "queue": self.name,
            "reason": one_line(reason, MAX_REASON),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        directory = reasons_directory(self.bad_directory)
        final = directory / f"{filebase}{REASON_SUFFIX}"
        tmp = final.with_name(f"{final.name}.tmp")
        try:
            make_directories(directory)
            write_new_file(tmp, final, (json.dumps(record, sort_keys=True) + "\n").encode())
        except OSError as error:
            log.error("cannot keep the reason beside %s.psv in bad: %s", filebase, error)

    def _preserve_quietly(self, bak: str, filebase: str, reason: str) -> None:
        try:
            self._preserve(bak, filebase, reason)
        except Exception as error:
            log.error("cannot preserve %s in bad, leaving it in place: %s", bak, error)

    # Preserved entries.

    def preserved_reason(self, filebase: str) -> dict[str, str] | None:
        """Why the ``<filebase>.psv`` of this queue's directory was preserved, if known.

        :returns: the ``<filebase>.reason`` record (:data:`REASON_SUFFIX`, in
            :func:`reasons_directory`): ``queue``,
            ``reason`` and ``time``, as text; None when there is none.  A record that
            does not read as one is returned as ``{"reason": "<what is wrong>"}``.
        :raises QueueError: *filebase* is not a queue file base name.
        """
        path = self._reason_path(filebase)
        try:
            data = read_queue_file(path)
        except QueueFileError as error:
            if not os.path.lexists(path):
                return None
            return {"reason": f"its reason file cannot be read: {error}"}
        try:
            record = json.loads(data.decode("utf-8"))
        except ValueError as error:
            return {"reason": f"its reason file {path!r} is not JSON: {error}"}
        if not isinstance(record, dict):
            return {"reason": f"its reason file {path!r} is not a JSON object"}
        return {str(key): one_line(value, MAX_REASON) for key, value in record.items()}

    def _reason_path(self, filebase: str) -> str:
        """The reason file of *filebase*, preserved in this queue (``bad``)."""
        self._check_filebase(filebase)
        return str(reasons_directory(self.queue_directory) / f"{filebase}{REASON_SUFFIX}")

    @contextlib.contextmanager
    def preserved_held(self, filebase: str) -> Iterator[None]:
        """Hold the preserved ``<filebase>.psv`` of this queue (``bad``) for the block.

        Two commands that requeue or discard the same entry at once would otherwise
        both queue a copy: the first to take an exclusive :func:`fcntl.flock` on the
        file goes on, and one that gets it after the file was removed finds it gone.

        :raises QueueError: the entry is held by another process, gone, or cannot be
            opened (a symbolic link, say); the message says which.
        """
        path = self._path(filebase, ".psv")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            raise QueueError(f"cannot take {path!r}: {error.strerror}") from error
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise QueueError(f"{path!r} is being handled by another command") from None
            held = os.fstat(fd)
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                raise QueueError(f"{path!r} is gone: another command took it") from None
            if (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
                raise QueueError(f"{path!r} is gone: another command took it")
            yield
        finally:
            os.close(fd)

    def remove_orphaned_reason(self, filebase: str) -> bool:
        """Remove the reason kept for *filebase* in this queue (``bad``) when its entry is
        gone (removed by hand, say); leave it if the entry is there.

        :returns: whether a reason was removed.
        """
        if os.path.lexists(self._path(filebase, ".psv")):
            return False
        try:
            os.unlink(self._reason_path(filebase))
        except FileNotFoundError:
            return False
        return True

    def remove_preserved(self, filebase: str) -> None:
        """Remove the preserved ``<filebase>.psv`` of this queue's directory, and its reason.

        :raises QueueError: there is no such file, or it cannot be removed; its reason,
            if any, is then left as it was.
        """
        psv = self._path(filebase, ".psv")
        try:
            os.unlink(psv)
        except OSError as error:
            raise QueueError(
                f"cannot remove {psv!r} of queue {self.name!r}: {error.strerror}"
            ) from error
        try:
            os.unlink(self._reason_path(filebase))
        except FileNotFoundError:
            pass
        except OSError as error:
            log.error("cannot remove the reason of %s: %s", psv, error)
        fsync_directory(self.queue_directory)

    # Reading entries as they are, for the operator's tools.

    def entry_extension(self, filebase: str) -> str | None:
        """Where *filebase* is in this queue's directory: ``.pck`` (waiting), ``.psv``
        (preserved, in ``bad``) or ``.bak`` (taken); None when it is not there.

        :raises QueueError: *filebase* is not a queue file base name.
        """
        for extension in (".pck", ".psv", ".bak"):
            if os.path.lexists(self._path(filebase, extension)):
                return extension
        return None

    def entry_location(self, filebase: str, extension: str = ".pck") -> str:
        """Where ``<filebase><extension>`` is, for people: its file's path.

        :raises QueueError: *filebase* is not a queue file base name.
        """
        return self._path(filebase, extension)

    def read_document(self, filebase: str, extension: str = ".pck") -> bytes:
        """The bytes of ``<filebase><extension>``, changing nothing, at most
        :attr:`max_file_size` of them.

        :raises QueueError: *filebase* is not a queue file base name.
        :raises QueueFileError: the file is gone, unreadable, or larger.
        """
        return read_queue_file(self._path(filebase, extension), max_size=self.max_file_size)


def encode_entry(msg: Message | str, metadata: MsgData | None, kws: Mapping[str, Any]) -> bytes:
    """The queue-file document of *msg* with *metadata* updated by *kws*, as every
    backend stores it (:mod:`runnerkit.queuefile`); the rules are those of
    :meth:`Switchboard.enqueue`.

    :raises MetadataError: a metadata key is not text, or a value cannot be stored.
    """
    data: MsgData = {} if metadata is None else dict(metadata)
    data.update(kws)
    plaintext = bool(data.get("_plaintext")) or isinstance(msg, str)
    if not _TEXT.issuperset(map(type, data)):
        odd = next(key for key in data if type(key) is not str)
        raise MetadataError(f"metadata keys must be text; {odd!r} is a {type(odd).__name__}")
    stored = {key: value for key, value in data.items() if not key.startswith("_")}
    stored["_parsemsg"] = plaintext
    stored["version"] = METADATA_VERSION
    body = _plain_text(msg) if plaintext and not isinstance(msg, str) else msg
    return queuefile.encode(body, stored)


def check_filebase(filebase: str) -> None:
    """Check that *filebase* is a queue file base name, ``<time>+<40 hex digits>``.

    :raises QueueError: it is not.
    """
    if not isinstance(filebase, str) or not _FILEBASE.fullmatch(filebase):
        raise QueueError(f"{filebase!r} is not a queue file base name (<time>+<40 hex digits>)")


def new_filebase(clock: QueueClock) -> str:
    """A new file base, ``<seconds>.<nanoseconds>+<40 random hex digits>``, stamped by
    *clock*; the random digest decides the message's slice (:mod:`runnerkit.slices`)."""
    stamp = clock.stamp()
    return f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}+{os.urandom(20).hex()}"


def _plain_text(msg: Message) -> str:
    """*msg* as text that parses back into the same message, for ``_plaintext``."""
    unixfrom = bool(msg.get_unixfrom())
    if getattr(msg, "parsed_from_bytes", False):
        # Its very bytes, the undecodable ones kept as surrogates: the text generators
        # would replace 8-bit body bytes with U+FFFD.
        return msg.as_bytes(unixfrom=unixfrom).decode("utf-8", "surrogateescape")
    if isinstance(msg, Message):
        # Non-ASCII header text as it is: as_string would make one encoded word of a
        # whole From: header, and the sender would be lost.
        return msg.as_text(unixfrom=unixfrom)
    return msg.as_string(unixfrom=unixfrom)


def queue_depths(switchboards: Mapping[str, QueueBackend]) -> dict[str, int]:
    """Each queue's number of waiting messages, by name; ``bad`` counts preserved ones too."""
    return {name: switchboard.depth() for name, switchboard in sorted(switchboards.items())}


def read_depths(
    switchboards: Mapping[str, QueueBackend],
) -> tuple[dict[str, int | None], list[str]]:
    """Each queue's depth as :func:`queue_depths` counts it, None where it cannot be read,
    and why, one line per distinct cause (a server that cannot be reached is said once,
    and not asked again for the other queues).

    For a look that must show every queue whatever happens (``status``, ``queues``).
    """
    depths: dict[str, int | None] = {}
    causes: dict[str, list[str]] = {}
    unavailable: str | None = None
    for name, switchboard in sorted(switchboards.items()):
        cause = unavailable
        if cause is None:
            try:
                depths[name] = switchboard.depth()
                continue
            except QueueError as error:
                cause = _cause(str(error))
                if isinstance(error, QueueUnavailableError):
                    unavailable = cause
        depths[name] = None
        causes.setdefault(cause, []).append(name)
    problems = [
        f"{'queues' if len(names) > 1 else 'queue'} {', '.join(names)}: depth unknown: {cause}"
        for cause, names in causes.items()
    ]
    return depths, problems


def _cause(text: str) -> str:
    """An error's text without its leading ``cannot <what was being done>:``, which
    differs from one queue to the next while the cause is the same."""
    doing, separator, rest = text.partition(": ")
    if separator and doing.startswith("cannot ") and rest:
        return rest
    return text


def filebase_time(filebase: str) -> float:
    """When the file *filebase* was queued, in seconds since the epoch: its name's time.

    :raises QueueError: *filebase* is not a queue file's base name.
    """
    match = _FILEBASE.fullmatch(filebase)
    if match is None:
        raise QueueError(f"not a queue file name: {filebase!r}")
    seconds, fraction = match.group(1), match.group(2) or ""
    return int(seconds) + int(fraction.ljust(9, "0")[:9]) / 1e9


def _fifo_key(match: tuple[str, ...]) -> tuple[int, str, str]:
    return int(match[1]), match[2].ljust(9, "0"), match[3]


def _fifo_order(names: list[str], pattern: re.Pattern[str]) -> list[str]:
    """The file bases of *names*, queue file names that *pattern* takes apart, oldest first."""
    matches = [match.groups("") for match in map(pattern.fullmatch, names) if match]
    matches.sort(key=_fifo_key)
    return [match[0] for match in matches]


def _with_digest_prefix(
    names: list[str], start: int, width: int, prefixes: frozenset[str]
) -> list[str]:
    """The *names* whose digest, *start* characters from the end, begins with a prefix."""
    if width == 1:
        try:
            return [name for name in names if name[start] in prefixes]
        except IndexError:  # a name too short to hold a digest; slicing copes with it
            pass
    where = slice(start, start + width)  # made once, not once per name
    return [name for name in names if name[where] in prefixes]


def _digest_prefixes(slice: int | None, numslices: int) -> tuple[frozenset[str], int] | None:
    """The first hex digits of the digests that *slice* owns, and how many digits that is.

    With a power-of-two number of slices, up to 256, one or two digits decide the slice.
    Otherwise None: every name is checked in full.
    """
    if slice is None or numslices == 1 or numslices & (numslices - 1) or numslices > 256:
        return None
    width = 1 if numslices <= 16 else 2
    shift = DIGEST_BITS - 4 * width
    owned = (
        f"{p:0{width}x}" for p in range(16**width) if slice_of(p << shift, numslices) == slice
    )
    return frozenset(owned), width
