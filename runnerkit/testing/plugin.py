"""runnerkit's pytest plugin: fixtures for plain tests, and specs kept whole under xdist."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runnerkit.config import Configuration
from runnerkit.lists import MailingList
from runnerkit.testing import helpers
from runnerkit.testing.world import World

_SYBIL_EXAMPLE = re.compile(r"line:\d+,column:\d+")


@pytest.fixture
def world(tmp_path: Any) -> Iterator[World]:
    """A fresh world in the test's temporary directory, current for the test."""
    with World(tmp_path / "var") as opened:
        yield opened


@pytest.fixture
def config(world: World) -> Configuration:
    """The world's configuration."""
    return world.config


@pytest.fixture
def create_list(world: World) -> Callable[..., MailingList]:
    """Create a mailing list in the world's database."""

    def create(fqdn_listname: str, **kws: Any) -> MailingList:
        return helpers.create_list(fqdn_listname, config=world.config, **kws)

    return create


@pytest.fixture
def get_queue_messages(world: World) -> Callable[..., list[helpers.QueueItem]]:
    """Drain a queue of the world and return its messages."""

    def get(name: str, **kws: Any) -> list[helpers.QueueItem]:
        return helpers.get_queue_messages(name, config=world.config, **kws)

    return get


@pytest.fixture
def make_testable_runner(world: World) -> Callable[..., Any]:
    """Build a runner of the world that stops once its queue is empty."""

    def make(runner_class: Any, name: str | None = None, predicate: Any = None) -> Any:
        return helpers.make_testable_runner(runner_class, name, predicate, config=world.config)

    return make


@pytest.fixture
def message_from_string() -> Callable[..., Any]:
    """runnerkit's message parser."""
    from runnerkit.message import message_from_string as parse

    return parse


@pytest.fixture
def dump_msgdata() -> Callable[..., None]:
    """Print metadata as sorted, aligned ``key : value`` lines."""
    return helpers.dump_msgdata


@pytest.fixture
def dump_list() -> Callable[..., None]:
    """Print items sorted, one a line, or ``*Empty*``."""
    return helpers.dump_list


def document_scope(nodeid: str) -> str:
    """The scheduling scope of a test: its document for a Sybil example, else itself."""
    path, _, rest = nodeid.partition("::")
    return path if _SYBIL_EXAMPLE.fullmatch(rest) else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist load`` or ``worksteal``, never split a document across workers."""
    if config.getoption("dist", None) not in ("load", "worksteal"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class DocumentScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """Load-balance tests one by one, but each document's examples as one unit."""

        def _split_scope(self, nodeid: str) -> str:
            return document_scope(nodeid)

    return DocumentScheduling(config, log)
