"""The clock under control: freezegun for specs and tests, without lying to pytest.

freezegun patches ``time.time``, ``time.perf_counter`` and friends in every loaded
module while a freeze is active, including ``_pytest.timing``, the one module through
which pytest measures test durations and stamps its reports.  A freeze that spans the
start and the end of a test's call phase (started by an earlier example, or by a
fixture) then makes ``--durations`` report ``0.00s`` and reports carry the frozen date.
:func:`keep_pytest_timing_real` puts pytest's clocks on freezegun's ignore list.

The list is deliberately short.  freezegun gives the real time to any caller with an
ignored module within five frames of the call, so ignoring ``pluggy`` or ``sybil``
would unfreeze the clock for the very tests and specs that froze it.
"""

from __future__ import annotations

from typing import Any

import freezegun
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory, TickingDateTimeFactory

#: Modules whose clocks must stay real: pytest's timing, and xdist's, which measures
#: how long each test took on a worker.
PYTEST_CLOCKS = ("_pytest.timing", "xdist.remote")

#: What a started freeze returns: an object to ``tick()`` or ``move_to()`` the clock.
TimeFactory = FrozenDateTimeFactory | StepTickTimeFactory | TickingDateTimeFactory


def real_monotonic() -> float:
    """The real monotonic clock, in seconds, whatever freezegun freezes: for the
    harness's own time limits and waits, which a spec's frozen clock must not stop.

    Read from ``freezegun.api`` at each call: a freeze replaces, in every module it does
    not ignore, each attribute that holds a clock function, so a reference kept in
    another module would be the frozen clock while a freeze holds.
    """
    return freezegun.api.real_monotonic()


def keep_pytest_timing_real() -> None:
    """Add :data:`PYTEST_CLOCKS` to freezegun's ignore list; calling it again is harmless.

    It applies to freezes created afterwards, since each freeze copies the list.
    """
    freezegun.configure(extend_ignore_list=list(PYTEST_CLOCKS))


class TimeFreezer:
    """Freezes the clock on request and thaws it, all at once, when the test ends.

    ``freeze(time_to_freeze, **kws)`` takes :func:`freezegun.freeze_time`'s arguments,
    starts freezing at once, and returns the time factory, to ``tick()`` or
    ``move_to()`` the frozen clock.  The ``freeze_time`` fixture is one of these.
    """

    def __init__(self) -> None:
        keep_pytest_timing_real()
        self._active: list[Any] = []

    def __call__(self, time_to_freeze: Any = None, **kws: Any) -> TimeFactory:
        freezer = freezegun.freeze_time(time_to_freeze, **kws)
        factory: TimeFactory = freezer.start()
        self._active.append(freezer)
        return factory

    @property
    def frozen(self) -> bool:
        """Whether this freezer holds the clock."""
        return bool(self._active)

    def thaw(self) -> None:
        """Stop every freeze this freezer started, the latest first."""
        while self._active:
            self._active.pop().stop()
