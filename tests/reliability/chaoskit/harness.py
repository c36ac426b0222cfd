"""Run real masters over one var dir, and read what they and their runners leave behind.

The masters run as ``python -m runnerkit.master -C INI --var-dir VAR``, children of the
test, with ``tests/reliability`` on their ``PYTHONPATH`` so that their runner processes
can load :mod:`chaoskit.runners`.  The runners are not the test's children; they are
seen through ``/proc``, the master's status file and the shared log.  :meth:`MasterRun.kill_all`
kills, by pid, every master and runner of the var dir that is still alive.  What this
shares with ``tests/test_master.py`` lives in ``tests/support/child_processes.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import child_processes
from child_processes import BUILT_INS_OFF, MasterGroup

from chaoskit.runners import records_path
from runnerkit.config import Configuration

__all__ = [
    "BUILT_INS_OFF",
    "DEADLINE",
    "RELIABILITY",
    "MasterRun",
    "master_section",
    "wait_for",
]

#: The directory that holds :mod:`chaoskit`; it goes on the children's ``PYTHONPATH``.
RELIABILITY = Path(__file__).resolve().parent.parent

#: The bound on every ordinary wait: generous, so that a loaded machine never fails a
#: test; a test that passes waits far less.
DEADLINE = 30.0

#: The ``[master]`` settings of these tests: short delays, so that they stay fast.
MASTER_DEFAULTS = {
    "backoff_base": "20ms",
    "backoff_max": "100ms",
    "restart_window": "1m",
    "stop_timeout": "10s",
}


def wait_for(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> float:
    """Poll *condition* until it is true; fail the test after *timeout* seconds."""
    return child_processes.wait_for(condition, what, timeout)


def master_section(**overrides: str) -> str:
    """A ``[master]`` section with short delays, so that the tests stay fast."""
    return child_processes.master_section(MASTER_DEFAULTS, **overrides)


class MasterRun(MasterGroup):
    """Runs masters over the var dir of *config*, and reads what they leave behind.

    :param config: the test's configuration; :meth:`configure` pushes the masters'
        INI file onto it, so that the test sees the same queues.
    :param work: where the INI file and the masters' output go.
    """

    master_defaults = MASTER_DEFAULTS
    deadline = DEADLINE

    def __init__(self, config: Configuration, work: Path) -> None:
        super().__init__(config, work, RELIABILITY)

    def start(self) -> subprocess.Popen[bytes]:
        """Start ``python -m runnerkit.master -C INI --var-dir VAR`` as a child."""
        return self.spawn([sys.executable, "-m", "runnerkit.master", *self.options()])

    def log_records(self) -> list[tuple[int, str, str]]:
        """(pid, level, message) of each line of the shared log."""
        return [(r.pid, r.level, r.message) for r in self.log_entries()]

    def records(self) -> list[tuple[int, int, str]]:
        """(message id, slice, process token) of each message the runners processed, in
        the order they recorded them."""
        try:
            text = records_path(self.var_dir).read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet: leave it for the next read.
        lines = text.split("\n")[:-1]
        return [(int(mid), int(slice), token) for mid, slice, token in map(str.split, lines)]
