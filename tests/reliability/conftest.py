"""Fixtures of the reliability tests: real masters over a test's var dir.

The runner classes of the children live in :mod:`chaoskit.runners`; the harness that
starts masters and reads their status, log and records is :mod:`chaoskit.harness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoskit.harness import RELIABILITY, MasterRun

from runnerkit.testing import World


@pytest.fixture
def master_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MasterRun]:
    """Run masters over the world's var dir; kill, by pid, all that is left at the end."""
    # The test's own configuration loads the runner classes too, to find their queues.
    monkeypatch.syspath_prepend(str(RELIABILITY))
    run = MasterRun(world.config, tmp_path)
    try:
        yield run
    finally:
        run.kill_all()
