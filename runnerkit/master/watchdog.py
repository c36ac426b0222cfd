"""The stuck-runner watchdog: which runner processes have been on one message too long.

Stuck runners
-------------
A runner takes a message by renaming its file to ``.bak``, which sets the file's ctime;
it removes the ``.bak`` when it is done.  So a ``.bak`` in a slice's queue directory that
is older than ``[master] stuck_after`` (and older than the process itself, which
recovered its slice's ``.bak`` files when it started) means the slice's runner has been
on one message for too long.  Once a second the master looks for such files; for each
one it logs an error naming the runner, the slice, the pid and the file, shows the
process as ``stuck`` in the status file, and kills it with SIGKILL.  That is a failure
like any other, so the process is restarted; the restarted runner recovers the message
and counts the recovery in the file, and a message that is stuck every time ends in
``bad`` after three attempts.  Time the master itself did not run (a gap of
over :data:`PAUSE_SECONDS` between two looks: its process group stopped, the machine
suspended) is not counted: the runners lost it too.  ``stuck_after: 0`` turns the
watchdog off.  A ``.bak``
held by a leftover process of a killed master (which still holds the slice's lock) is
only logged: the master kills only its own children.

The watchdog only looks: it reads queue directories and slice locks and reports what it
finds.  The master logs, marks and kills (:meth:`runnerkit.master.Master.kill_stuck`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from runnerkit.locks import lock_holder, slice_lock_path
from runnerkit.slices import slice_of

#: How often the master looks for runners stuck on one message, at most.
STUCK_CHECK_SECONDS = 1.0
#: A gap between two looks longer than this is a pause of the master itself (its
#: process group stopped, the machine suspended), not a slow look: the runners were
#: paused with it, so all of the gap but one look's interval does not count as time
#: spent on a message.
PAUSE_SECONDS = 5.0
#: How many pauses the watchdog remembers; older ones end before any message it
#: still measures was taken.
KEPT_PAUSES = 64

#: A queue file taken for processing: its base name, whose last 40 hex digits are the digest.
_BACKUP_NAME = re.compile(r"(\d+(?:\.\d+)?\+([0-9a-f]{40}))\.bak")


class Watched(Protocol):
    """What the watchdog reads of a slot (:class:`runnerkit.master.Slot` has it all)."""

    @property
    def name(self) -> str: ...

    @property
    def slice(self) -> int | None: ...

    @property
    def count(self) -> int: ...

    @property
    def pid(self) -> int | None:
        """The pid of the slot's process, or None when it has none."""

    @property
    def started(self) -> float:
        """When the process started, on the wall clock (:func:`time.time`)."""

    @property
    def stuck_on(self) -> str:
        """The file base the process was already found stuck on, or empty."""


S = TypeVar("S", bound=Watched)


@dataclass(frozen=True)
class Stuck(Generic[S]):
    """A slot whose slice has had one message taken for longer than ``stuck_after``."""

    slot: S
    #: The taken file's base name, without ``.bak``.
    filebase: str
    #: Seconds the message has been on the slot's process: since the file was taken,
    #: or since the process started, whichever is later.
    held: float
    #: The pid in the slice's lock file, or None if it names none.
    holder: int | None

    @property
    def own(self) -> bool:
        """Whether the slot's own process holds the slice, so that killing it helps.

        Otherwise the slice is held by a process that the master did not start (a
        leftover of a master killed earlier), and the slot's process waits for it.
        """
        return self.holder is not None and self.holder == self.slot.pid


class Watchdog:
    """Find the runner processes that have been on one message for too long.

    :param stuck_after: seconds a process may spend on one message; 0 turns the
        watchdog off.
    :param queue_directories: runner name -> its queue directory.
    :param lock_dir: where the slice locks are (``[paths] lock_dir``).
    """

    def __init__(
        self, stuck_after: float, queue_directories: Mapping[str, Path], lock_dir: Path
    ) -> None:
        self.stuck_after = stuck_after
        self.queue_directories = dict(queue_directories)
        self.lock_dir = lock_dir
        #: Files already reported as held by a process the master did not start.
        self._foreign: set[str] = set()
        #: When the last look was (the *now* of :meth:`check`).
        self._last: float | None = None
        #: The pauses seen, oldest first: (when each ended, seconds not counted).
        self._pauses: list[tuple[float, float]] = []

    @property
    def enabled(self) -> bool:
        """Whether the watchdog looks at all (``stuck_after`` is not 0)."""
        return self.stuck_after > 0

    def check(self, slots: Sequence[S], now: float) -> list[Stuck[S]]:
        """The slots of *slots* stuck at *now*: the ones to kill, and the foreign holders.

        A slot already marked (its :attr:`~Watched.stuck_on` is set) is left out, since
        it is being killed.  A file held by a process that the master did not start
        (:attr:`Stuck.own` is false) is reported once only.  Slots without slices are
        never stuck: they read no queue.

        A pause of the master (a gap of over :data:`PAUSE_SECONDS` between two looks)
        is not counted as time on a message: the whole system lost it, the runners
        too, and they are judged by the time they had.

        :param now: the wall-clock time, as :func:`time.time` gives it (file ctimes are
            wall-clock times).
        """
        if not self.enabled:
            return []
        if self._last is not None and now - self._last > PAUSE_SECONDS:
            self._pauses = [
                *self._pauses[-KEPT_PAUSES + 1 :],
                (now, now - self._last - STUCK_CHECK_SECONDS),
            ]
        self._last = now
        by_queue: dict[str, dict[int, S]] = {}
        for candidate in slots:
            if candidate.slice is not None:
                by_queue.setdefault(candidate.name, {})[candidate.slice] = candidate
        found: list[Stuck[S]] = []
        for name, slices in by_queue.items():
            count = next(iter(slices.values())).count
            for filebase, digest, changed in _backups(self.queue_directories[name]):
                slot = slices.get(slice_of(digest, count))
                if slot is None or slot.pid is None or slot.stuck_on:
                    continue
                since = max(changed, slot.started)
                # Of a pause, only what was lost after the message was taken.
                excused = sum(max(0.0, min(lost, end - since)) for end, lost in self._pauses)
                held = now - since - excused
                if held <= self.stuck_after:
                    continue
                holder = lock_holder(slice_lock_path(self.lock_dir, name, slot.slice))
                stuck = Stuck(slot, filebase, held, holder)
                if not stuck.own:
                    if filebase in self._foreign:
                        continue
                    self._foreign.add(filebase)
                found.append(stuck)
        return found


def _backups(directory: Path) -> list[tuple[str, int, float]]:
    """(file base, digest, ctime) of each ``.bak`` file in the queue *directory*."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = _BACKUP_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            changed = entry.stat(follow_symlinks=False).st_ctime
        except OSError:
            continue
        found.append((match[1], int(match[2], 16), changed))
    return found
