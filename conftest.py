"""Collect the specs in doctests/ with Sybil, each document in a fresh world."""

import pytest

from runnerkit.testing import collect_specs

#: ``token`` (doctests/normalize.rst): the command runner's confirmation tokens,
#: secrets.token_hex(20), normalised when a document or an example asks for it.
NORMALIZERS = {"token": (r"\b[0-9a-f]{40}\b", "<TOKEN>")}

pytest_collect_file = collect_specs(["doctests/*.rst", "doctests/*.md"], normalizers=NORMALIZERS)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # pyproject.toml sets pytest-timeout's `timeout` (the test extra), which
    # --strict-config refuses when that plugin is not installed (`pip install -e .`
    # alone, as the tutorial's readers may have done): then the key is declared here,
    # and unused.
    if not pluginmanager.has_plugin("timeout"):
        parser.addini("timeout", "the per-test limit of pytest-timeout, which is not installed")
