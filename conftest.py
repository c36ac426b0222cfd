"""Collect the specs in doctests/ with Sybil, each document in a fresh world, and the
README's console sessions."""

from collections.abc import Mapping

import pytest

from runnerkit.testing import World, make_sybil

#: ``token`` (doctests/normalize.rst): the command runner's confirmation tokens,
#: secrets.token_hex(20), normalised when a document or an example asks for it.
NORMALIZERS = {"token": (r"\b[0-9a-f]{40}\b", "<TOKEN>")}


def _free_ports(world: World) -> Mapping[str, object]:
    """The README's session starts a master: its LMTP server listens on a port the
    system chooses, so that it collides with nothing that runs at the same time."""
    world.config.push("free ports", "[lmtp]\nport: 0\n")
    return {}


pytest_collect_file = (
    make_sybil(["doctests/*.rst", "doctests/*.md"], normalizers=NORMALIZERS)
    + make_sybil(["README.md"], parsers=["console"], extra_namespace=_free_ports)
).pytest()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # pyproject.toml sets pytest-timeout's `timeout` (the test extra), which
    # --strict-config refuses when that plugin is not installed (`pip install -e .`
    # alone, as the tutorial's readers may have done): then the key is declared here,
    # and unused.
    if not pluginmanager.has_plugin("timeout"):
        parser.addini("timeout", "the per-test limit of pytest-timeout, which is not installed")
