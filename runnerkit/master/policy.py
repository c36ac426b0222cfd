"""The restart policy: what the master does when a runner process ends.

Restart rule
------------
A runner process that exits with status 0 stopped on purpose and stays down.  One
that exits with :data:`~runnerkit.exits.EXIT_RESTART` (75; a runner stopped by
SIGUSR1) is restarted at once, at no cost, and so is one that the master itself asked to
stop for a restart.  Any other exit -- an error status or death by a signal -- is a
*failure*:

- failures older than ``[master] restart_window`` of *running time* are forgotten, so a
  runner that fails now and then is always restarted.  The pauses before restarts do
  not count: otherwise a backoff longer than the window (``backoff_max`` is 1 minute by
  default; a window may be shorter) would forget every failure before the next one, and
  a runner that crashes at once would be restarted for ever, never given up on;
- the *n*\\ th failure inside the window is followed by a pause of
  ``backoff_base * 2**(n-1)``, capped at ``backoff_max``, before the restart, so a crash
  loop does not spin;
- when a runner has failed more than its ``max_restarts`` times inside the window, the
  master logs that it gives up and leaves that slice down.

Unlike a cumulative budget, which leaves a slice dead for good after enough sporadic
crashes over weeks, the window forgives old failures; unlike immediate restarts, the
backoff gives a broken dependency time to come back.

The rule is a pure function of a slot's failure history, the exit status and the time:
it starts no process, reads no clock and logs nothing, so tests give it the times.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from runnerkit.config import MasterSettings
from runnerkit.exits import EXIT_RESTART


class Action(enum.Enum):
    """What becomes of a slot whose process ended."""

    #: Start it again at once, at no cost: a restart was asked for.
    RESTART = "restart"
    #: Start it again after a pause: it failed.
    BACKOFF = "backoff"
    #: Leave it down: it stopped on purpose (status 0).
    STOPPED = "stopped"
    #: Leave it down: it failed more than ``max_restarts`` times inside the window.
    GIVE_UP = "give up"


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one ended process."""

    action: Action
    #: Running-time stamps of the failures inside the window, oldest first, this exit's
    #: included if it is one: the history to keep for the next decision.
    failures: tuple[float, ...]
    #: When to start the process again, on the clock of ``now``; None: it stays down.
    start_at: float | None = None
    #: Seconds from ``now`` to :attr:`start_at`; None when the slot stays down.
    delay: float | None = None
    #: Why the slot stays down, as the status file shows it; empty when it starts again.
    reason: str = ""

    @property
    def stays_down(self) -> bool:
        """Whether the slot is left down until someone restarts it."""
        return self.start_at is None


@dataclass(frozen=True)
class RestartPolicy:
    """The restart rule of one master, with its ``[master]`` settings.

    All three are in seconds, and none is negative.
    """

    #: Failures older than this many seconds are forgotten.
    restart_window: float
    #: Pause before the restart after the first failure; doubled for each further one.
    backoff_base: float
    #: Longest pause before a restart.
    backoff_max: float

    @classmethod
    def from_settings(cls, settings: MasterSettings) -> RestartPolicy:
        """The policy of a ``[master]`` section (:attr:`Configuration.master`)."""
        return cls(
            restart_window=settings.restart_window.total_seconds(),
            backoff_base=settings.backoff_base.total_seconds(),
            backoff_max=settings.backoff_max.total_seconds(),
        )

    def decide(
        self,
        failures: tuple[float, ...],
        max_restarts: int,
        status: int,
        *,
        restart_requested: bool = False,
        now: float,
        running: float | None = None,
    ) -> Decision:
        """Decide what to do about a process that ended with *status* at *now*.

        :param failures: the slot's earlier failures, oldest first, as the last decision
            returned them: stamps on the *running* clock.
        :param max_restarts: failures inside the window that are still restarted.
        :param status: the exit status, as :attr:`subprocess.Popen.returncode` gives it:
            negative for death by a signal.
        :param restart_requested: the master asked the process to stop for a restart.
        :param now: the time the exit was seen, in seconds (any clock, e.g. monotonic);
            :attr:`Decision.start_at` is on this clock.
        :param running: how long the slot's processes have run in all, in seconds, when
            the exit was seen: the clock that ages failures.  By default *now* (for a
            caller whose processes never pause).
        """
        if restart_requested or status == EXIT_RESTART:
            return Decision(Action.RESTART, failures, start_at=now, delay=0.0)
        if status == 0:
            return Decision(Action.STOPPED, failures, reason="stopped")
        stamp = now if running is None else running
        horizon = stamp - self.restart_window
        recent = (*(failure for failure in failures if failure > horizon), stamp)
        if len(recent) > max_restarts:
            reason = f"failed {len(recent)} times within the restart window"
            return Decision(Action.GIVE_UP, recent, reason=reason)
        delay = self.backoff(len(recent))
        return Decision(Action.BACKOFF, recent, start_at=now + delay, delay=delay)

    def backoff(self, failures: int) -> float:
        """The pause, in seconds, before the restart that follows the *failures*\\ th failure.

        ``backoff_base * 2**(failures - 1)``, at most ``backoff_max``.  Computed with
        :func:`math.ldexp`, which scales by a power of two exactly: the plain product
        raises :exc:`OverflowError` past about a thousand failures, because the integer
        power no longer converts to a float, and ``max_restarts`` may be that large.
        """
        try:
            delay = math.ldexp(self.backoff_base, failures - 1)
        except OverflowError:
            delay = math.inf
        return min(delay, self.backoff_max)


def describe_exit(status: int) -> str:
    """``status N`` or ``signal N``, for a :attr:`subprocess.Popen.returncode`."""
    return f"signal {-status}" if status < 0 else f"status {status}"
