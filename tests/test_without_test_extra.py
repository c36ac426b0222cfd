"""The suite runs without the test extra's plugins, as `pip install -e .` leaves it.

pyproject.toml sets pytest-timeout's ``timeout``; under ``--strict-config`` pytest
refuses a key no plugin declares, so without pytest-timeout every run stopped with
"Unknown config option: timeout" (the tutorial invites ``pytest doctests/tutorial.rst``).
The root ``conftest.py`` declares the key when the plugin is not there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The project's root, where pyproject.toml and the root conftest.py are.
ROOT = Path(__file__).resolve().parent.parent


def test_a_spec_is_collected_without_pytest_timeout_and_xdist() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:timeout", "-p", "no:xdist",
         "-p", "no:cacheprovider", "--collect-only", "-q", "doctests/slices.rst"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown config option" not in result.stdout + result.stderr
    assert "tests collected" in result.stdout
