"""What a restart may change (runnerkit.master.reload): a plan and directories kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerkit.config import Configuration
from runnerkit.master.reload import plan, reload_problem

BASE = "[runner.extra]\nclass: runnerkit.runners.retry.RetryRunner\ninstances: 2\n"


def configuration(tmp_path: Path, text: str) -> Configuration:
    config = Configuration()
    config.push("site", f"[paths]\nvar_dir: {tmp_path}\n" + text)
    return config


def test_the_plan_is_every_started_process(tmp_path: Path) -> None:
    config = configuration(tmp_path, BASE + "[runner.rest]\nstart: yes\n")
    specs = plan(config)
    assert [spec for spec in specs if spec[0] == "extra"] == [("extra", 0, 2), ("extra", 1, 2)]
    assert ("rest", None, 1) in specs
    assert not any(name in ("bad", "shunt") for name, _, _ in specs)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            "[runner.extra]\nsleep_time: 5s\n[logging]\nlevel: debug\n"
            "[master]\nstop_timeout: 1s\n",
            None,
        ),
        ("[runner.extra]\ninstances: 4\n", "[runner.extra] instances changes from 2 to 4"),
        ("[runner.extra]\nstart: no\n", "[runner.extra] start changes from yes to no"),
        ("[runner.rest]\nstart: yes\n", "[runner.rest] start changes from no to yes"),
        (
            "[runner.more]\nclass: runnerkit.runners.retry.RetryRunner\n",
            "the queue 'more' appears",
        ),
        ("[runner.extra]\npath: $QUEUE_DIR/elsewhere\n", "[runner.extra] path changes from "),
        ("[paths]\nlock_dir: $VAR_DIR/other\n", "[paths] lock_dir changes from "),
        ("[runner.extra]\nclass: nowhere.Runner\n", "cannot import module 'nowhere'"),
    ],
)
def test_a_change_is_taken_whole_only_if_it_keeps_the_plan_and_directories(
    tmp_path: Path, edit: str, problem: str | None
) -> None:
    running = configuration(tmp_path, BASE)
    changed = configuration(tmp_path, BASE)
    changed.push("edit", edit)
    found = reload_problem(running, changed)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found, found
