"""Switchboard measurements: enqueue, drain, listing, and the file-system floor.

Every trial works in a fresh directory and times only the operation measured: the
messages are parsed before the clock starts, a drain's queue is filled before it, and
directories are removed after it stops.
"""

from __future__ import annotations

import email
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.mailman import Mailman
from bench.payload import METADATA, message_bytes
from bench.places import Place
from bench.stats import Measurement, Target, Trial, alternate
from runnerkit import queuefile
from runnerkit.message import message_from_bytes
from runnerkit.switchboard import QueueClock, Switchboard

#: What runnerkit is given to queue: its own Message (as LMTP makes them), and a
#: user's own ``email.message.Message`` objects, from text and from bytes.
MESSAGE_KINDS = ("runnerkit Message", "email.Message from text", "email.Message from bytes")
#: How each kind names its measurements' keys.
_KIND_KEYS = {
    MESSAGE_KINDS[0]: "",
    MESSAGE_KINDS[1]: "-email-text",
    MESSAGE_KINDS[2]: "-email-bytes",
}

#: The slice of 8 whose listing is measured.
LISTED_SLICE = 1
#: The timestamp that every file of the tie test shares.
TIE_SECONDS = 1_700_000_000

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class BenchError(Exception):
    """A measurement went wrong: a queue lost a message, a process died."""


class Contestants:
    """The queues under test, with their messages parsed once, before any clock runs.

    :param count: how many distinct messages each trial queues.
    :param mailman: Mailman's adapter, or None to measure runnerkit alone.
    :param var_dir: the var dir whose ``queue/bad`` runnerkit's queues preserve to.
    """

    def __init__(self, count: int, mailman: Mailman | None, var_dir: Path) -> None:
        raw = [message_bytes(number) for number in range(count)]
        self.bad = var_dir / "queue" / "bad"
        self.clock = QueueClock()
        self.messages = [message_from_bytes(data) for data in raw]
        #: The same messages as a user's own code makes them: the standard library's
        #: ``email.message.Message``, parsed from text and from bytes.
        self.kinds: dict[str, list[Any]] = {
            MESSAGE_KINDS[0]: self.messages,
            MESSAGE_KINDS[1]: [email.message_from_string(data.decode("ascii")) for data in raw],
            MESSAGE_KINDS[2]: [email.message_from_bytes(data) for data in raw],
        }
        self.mailman = mailman
        self.mailman_messages = [] if mailman is None else [mailman.parse(d) for d in raw]
        if mailman is not None:
            mailman.register_bad_queue(var_dir / "mailman-bad")
        #: The size of one queue file as runnerkit writes it: the floor writes as much.
        self.file_size = len(queuefile.encode(self.messages[0], METADATA))

    def close(self) -> None:
        """Nothing to release: the queues are plain directories."""

    # One slice or all of a queue, for each contestant.

    def runnerkit(self, directory: Path, slice: int | None = None, numslices: int = 1) -> Any:
        return Switchboard("bench", directory, slice, numslices, bad=self.bad, clock=self.clock)

    def mailman_switchboard(
        self, directory: Path, slice: int | None = None, numslices: int = 1
    ) -> Any:
        if self.mailman is None:
            raise BenchError("Mailman is not measured in this run")
        return self.mailman.switchboard("bench", directory, slice, numslices)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def write_raw_files(directory: Path, data: bytes, count: int, sync_directory: bool) -> None:
    """The floor: create, write, fsync, close and rename *count* files of *data*.

    With *sync_directory* the directory is fsynced after each rename, as a durable
    queue must do for the rename itself to survive a crash.  The names, as long as
    runnerkit's, are made before the loop: the floor does nothing but the system calls.
    """
    names = [
        f"{directory}/{TIE_SECONDS + number}.{number:09d}+{'0' * 40}" for number in range(count)
    ]
    for name in names:
        tmp = name + ".pck.tmp"
        fd = os.open(tmp, _CREATE, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name + ".pck")
        if sync_directory:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def enqueue_trials(
    place: Place, queues: Contestants, kind: str = MESSAGE_KINDS[0]
) -> dict[str, Trial]:
    """Trials that each queue every message into a fresh directory; figures in msg/s."""
    count = len(queues.messages)
    floor_data = b"x" * queues.file_size

    def run(name: str, make: Callable[[Path], Any], messages: Sequence[Any]) -> Trial:
        def trial() -> float:
            directory = place.fresh(name)
            switchboard = make(directory)
            enqueue = switchboard.enqueue
            seconds = _timed(lambda: [enqueue(msg, METADATA) for msg in messages])
            shutil.rmtree(directory)
            return _rate(count, seconds)

        return trial

    def floor(sync_directory: bool) -> Trial:
        def trial() -> float:
            directory = place.fresh("floor")
            seconds = _timed(lambda: write_raw_files(directory, floor_data, count, sync_directory))
            shutil.rmtree(directory)
            return _rate(count, seconds)

        return trial

    trials = {"runnerkit": run("runnerkit", queues.runnerkit, queues.kinds[kind])}
    if queues.mailman is not None:
        trials[f"Mailman {queues.mailman.version}"] = run(
            "mailman", queues.mailman_switchboard, queues.mailman_messages
        )
    trials["floor + dir fsync"] = floor(True)
    trials["floor"] = floor(False)
    return trials


def drain(switchboards: Iterable[Any]) -> int:
    """List each switchboard, then dequeue and finish each of its files; count them."""
    done = 0
    for switchboard in switchboards:
        for filebase in switchboard.files:
            switchboard.dequeue(filebase)
            switchboard.finish(filebase)
            done += 1
    return done


def drain_trials(
    place: Place, queues: Contestants, numslices: int, kind: str = MESSAGE_KINDS[0]
) -> dict[str, Trial]:
    """Trials that fill a fresh queue, then time draining it slice by slice; in msg/s."""
    count = len(queues.messages)

    def run(name: str, make: Callable[..., Any], messages: Sequence[Any]) -> Trial:
        def trial() -> float:
            directory = place.fresh(name)
            filler = make(directory)
            for msg in messages:
                filler.enqueue(msg, METADATA)
            slices = [make(directory, number, numslices) for number in range(numslices)]
            drained = 0

            def work() -> None:
                nonlocal drained
                drained = drain(slices)

            seconds = _timed(work)
            shutil.rmtree(directory)
            if drained != count:
                raise BenchError(f"{name} drained {drained} of {count} messages")
            return _rate(count, seconds)

        return trial

    def floor() -> Trial:
        def trial() -> float:
            directory = place.fresh("floor")
            names = write_floor_queue(directory, floor_data, count)
            seconds = _timed(lambda: drain_raw_files(directory, names))
            shutil.rmtree(directory)
            return _rate(count, seconds)

        return trial

    floor_data = b"x" * queues.file_size
    trials = {"runnerkit": run("runnerkit", queues.runnerkit, queues.kinds[kind])}
    if queues.mailman is not None:
        trials[f"Mailman {queues.mailman.version}"] = run(
            "mailman", queues.mailman_switchboard, queues.mailman_messages
        )
    trials["floor"] = floor()
    return trials


def write_floor_queue(directory: Path, data: bytes, count: int) -> list[str]:
    """Fill *directory* with *count* fsynced files of *data*, named as runnerkit names them."""
    names = []
    for number in range(count):
        name = f"{TIE_SECONDS + number}.{number:09d}+{os.urandom(20).hex()}"
        fd = os.open(directory / f"{name}.pck", _CREATE, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        names.append(name)
    return names


def drain_raw_files(directory: Path, names: Sequence[str]) -> None:
    """The floor of a drain: list and sort, then rename, read and remove every file.

    What any queue must do to hand over each file once and survive a crash while
    doing so, without parsing anything or checking anything.
    """
    listed = sorted(name[:-4] for name in os.listdir(directory) if name.endswith(".pck"))
    if len(listed) != len(names):
        raise BenchError(f"the floor listed {len(listed)} of {len(names)} files")
    prefix = f"{directory}/"
    for name in listed:
        bak = prefix + name + ".bak"
        os.rename(prefix + name + ".pck", bak)
        fd = os.open(bak, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        os.unlink(bak)


def _kind_title(kind: str) -> str:
    return "" if kind == MESSAGE_KINDS[0] else f", {kind}"


def measure_enqueue(
    place: Place,
    queues: Contestants,
    rounds: int,
    progress: Callable[[str], None],
    kind: str = MESSAGE_KINDS[0],
) -> Measurement:
    figures = alternate(enqueue_trials(place, queues, kind), rounds, progress)
    mailman = _mailman_name(queues)
    targets = []
    if place.label == "tmpfs":
        targets.append(Target("≥ 1.3x Mailman", "ratio", 1.3, True, mailman))
    else:
        targets.append(Target("≥ 0.9x floor + dir fsync", "ratio", 0.9, True, "floor + dir fsync"))
    return Measurement(
        f"enqueue-{place.label}{_KIND_KEYS[kind]}",
        f"enqueue, {place.label}, {len(queues.messages)} x {queues.file_size} B"
        + _kind_title(kind),
        "msg/s",
        figures,
        targets,
    )


def measure_drain(
    place: Place,
    queues: Contestants,
    numslices: int,
    rounds: int,
    progress: Callable[[str], None],
    kind: str = MESSAGE_KINDS[0],
) -> Measurement:
    figures = alternate(drain_trials(place, queues, numslices, kind), rounds, progress)
    mailman = _mailman_name(queues)
    targets = []
    if place.label == "tmpfs":
        targets.append(Target("≥ 1.25x Mailman", "ratio", 1.25, True, mailman))
    else:
        targets.append(Target("≥ 0.9x Mailman", "ratio", 0.9, True, mailman))
    slices = "1 slice" if numslices == 1 else f"{numslices} slices"
    return Measurement(
        f"drain-{numslices}-{place.label}{_KIND_KEYS[kind]}",
        f"drain, {slices}, {place.label}, {len(queues.messages)} messages" + _kind_title(kind),
        "msg/s",
        figures,
        targets,
    )


def _mailman_name(queues: Contestants) -> str | None:
    return None if queues.mailman is None else f"Mailman {queues.mailman.version}"


# Listing.


def queue_file_names(count: int, *, one_timestamp: bool) -> list[str]:
    """*count* distinct queue file names, in runnerkit's format (which Mailman also reads).

    The digests are random, so each slice of 8 gets about an eighth of them.
    """
    names = []
    for number in range(count):
        # Distinct times are a millisecond apart: Mailman reads the time as a float,
        # which cannot tell nanoseconds apart at today's epoch seconds.
        stamp = TIE_SECONDS * 1_000_000_000 + (0 if one_timestamp else number * 1_000_000)
        digest = os.urandom(20).hex()
        names.append(f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}+{digest}.pck")
    return names


def create_empty_files(directory: Path, names: Iterable[str]) -> None:
    """Create an empty file for each name.

    A listing reads names only (``getdents``), never contents, so empty files list
    exactly as full ones do, and 100,000 of them are made in a second or two instead of
    100,000 fsynced writes.
    """
    for name in names:
        os.close(os.open(directory / name, _CREATE, 0o640))


def measure_listing(
    place: Place,
    queues: Contestants,
    files: int,
    rounds: int,
    progress: Callable[[str], None],
) -> Measurement:
    """One slice of 8 listed among *files* queued files, against a bare ``os.listdir``."""
    directory = place.fresh("listing")
    create_empty_files(directory, queue_file_names(files, one_timestamp=False))
    mine = queues.runnerkit(directory, LISTED_SLICE, 8)
    trials: dict[str, Trial] = {
        "runnerkit": lambda: _timed(lambda: mine.files) * 1000,
        "os.listdir": lambda: _timed(lambda: os.listdir(directory)) * 1000,
    }
    if queues.mailman is not None:
        theirs = queues.mailman_switchboard(directory, LISTED_SLICE, 8)
        if sorted(theirs.files) != sorted(mine.files):
            raise BenchError("runnerkit and Mailman disagree about the files of slice 1 of 8")
        trials[f"Mailman {queues.mailman.version}"] = lambda: _timed(lambda: theirs.files) * 1000
    for trial in trials.values():
        trial()  # warm the directory's entries into the cache, for every contestant
    listed = len(mine.files)
    figures = alternate(trials, rounds, progress)
    shutil.rmtree(directory)
    return Measurement(
        "listing",
        f"listing slice {LISTED_SLICE} of 8 among {files:,} files ({listed:,} listed)",
        "ms",
        figures,
        [Target("≤ 1.2x os.listdir", "ratio", 1.2, False, "os.listdir")],
        note="empty files with valid names: a listing reads names only",
    )


def measure_ties(
    place: Place,
    queues: Contestants,
    files: int,
    rounds: int,
    progress: Callable[[str], None],
) -> Measurement:
    """A whole queue of *files* sharing one timestamp, against distinct timestamps."""
    tied = place.fresh("ties")
    distinct = place.fresh("distinct")
    create_empty_files(tied, queue_file_names(files, one_timestamp=True))
    create_empty_files(distinct, queue_file_names(files, one_timestamp=False))
    mine_tied, mine_distinct = queues.runnerkit(tied), queues.runnerkit(distinct)
    if len(mine_tied.files) != files:
        raise BenchError(f"runnerkit listed {len(mine_tied.files)} of {files} tied files")
    trials: dict[str, Trial] = {
        "runnerkit, one timestamp": lambda: _timed(lambda: mine_tied.files) * 1000,
        "runnerkit, distinct": lambda: _timed(lambda: mine_distinct.files) * 1000,
    }
    if queues.mailman is not None:
        name = f"Mailman {queues.mailman.version}"
        theirs_tied = queues.mailman_switchboard(tied)
        theirs_distinct = queues.mailman_switchboard(distinct)
        trials[f"{name}, one timestamp"] = lambda: _timed(lambda: theirs_tied.files) * 1000
        trials[f"{name}, distinct"] = lambda: _timed(lambda: theirs_distinct.files) * 1000
    figures = alternate(trials, rounds, progress)
    shutil.rmtree(tied)
    shutil.rmtree(distinct)
    return Measurement(
        "ties",
        f"listing {files:,} files that share one timestamp",
        "ms",
        figures,
        [Target("≤ 1.5x distinct", "ratio", 1.5, False, "runnerkit, distinct")],
    )
