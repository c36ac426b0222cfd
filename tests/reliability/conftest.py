"""Fixtures of the reliability tests: real masters, or real runner processes, over a
test's var dir.

The runner classes of the masters' children live in :mod:`chaoskit.runners`; the harness
that starts masters and reads their status, log and records is :mod:`chaoskit.harness`.
The tally runner processes are :mod:`hostilekit.runners`, started by
:class:`_support_files.RunnerProcesses`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _support_files import RunnerProcesses
from chaoskit.harness import RELIABILITY, MasterRun
from child_processes import kill_at_end

from runnerkit.testing import World


@pytest.fixture
def master_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MasterRun]:
    """Run masters over the world's var dir; kill, by pid, all that is left at the end."""
    # The test's own configuration loads the runner classes too, to find their queues.
    monkeypatch.syspath_prepend(str(RELIABILITY))
    yield from kill_at_end(MasterRun(world.config, tmp_path))


@pytest.fixture
def processes(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunnerProcesses]:
    """Tally runner processes over the world; killed by pid when the test ends."""
    # The test's own configuration loads the runner classes too.
    monkeypatch.syspath_prepend(str(RELIABILITY))
    yield from kill_at_end(RunnerProcesses(world, tmp_path))
