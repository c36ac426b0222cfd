"""The main job: ``runnerkit demo`` runs the whole system and accounts for every message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runnerkit.master import running_master_pid
from runnerkit.site import Site


def run_demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runnerkit", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_the_demo_delivers_every_message_and_stops_everything(tmp_path: Path) -> None:
    var_dir = tmp_path / "demo"
    result = run_demo("-n", "40", "--members", "2", "--var-dir", str(var_dir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sent"] == 40
    assert summary["delivered"] == 40
    assert summary["lost"] == 0
    assert summary["shunted"] == summary["bad"] == summary["queued"] == 0
    assert summary["seconds"] > 0
    assert summary["var_dir"] == str(var_dir)
    maildir = var_dir / "maildir" / "demo.example.com" / "new"
    delivered = sorted(path.read_bytes() for path in maildir.iterdir())
    assert len(delivered) == 40
    assert all(b"List-Id: Demo <demo.example.com>" in text for text in delivered)
    with Site(var_dir) as config:
        assert running_master_pid(config) is None


@pytest.mark.slow
def test_the_demo_shows_progress_and_a_summary_without_json(tmp_path: Path) -> None:
    result = run_demo("-n", "5", "--var-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "delivered 5" in result.stderr
    assert "lost" in result.stdout
    lines = dict(line.rsplit(None, 1) for line in result.stdout.splitlines()[:6])
    assert lines["sent over LMTP"] == "5"
    assert lines["lost"] == "0"


def test_the_demo_refuses_a_var_dir_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("precious")
    result = run_demo("--var-dir", str(tmp_path))
    assert result.returncode == 1
    assert "is not empty; the demo needs a fresh one" in result.stderr
    assert (tmp_path / "something").read_text() == "precious"


def test_the_demo_refuses_a_count_below_one(tmp_path: Path) -> None:
    result = run_demo("-n", "0", "--var-dir", str(tmp_path / "demo"))
    assert result.returncode == 1
    assert "at least 1 message" in result.stderr
