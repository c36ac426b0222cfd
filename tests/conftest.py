"""Fixtures shared by the unit tests.

The runnerkit pytest plugin provides ``world``, ``config``, ``create_list`` and friends;
these fixtures add a ``test`` queue and a sample message on top.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runnerkit.config import Configuration
from runnerkit.message import Message, message_from_string
from runnerkit.switchboard import Switchboard

#: A small message that every test may queue.
SAMPLE = """\
From: anne@example.com
To: test@example.com
Subject: a test
Message-ID: <sample@example.com>

A test message.
"""

#: The layer that declares the ``test`` runner and its queue.
TEST_RUNNER_LAYER = """\
[runner.test]
sleep_time: 0
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, with pytest-randomly off in its inner runs, so they run in file order.

    The ``-p no:randomly`` in pyproject.toml's ``addopts`` reaches only this suite: an
    inner run reads the throwaway project's configuration, and pytest-randomly, loaded
    through its entry point, would shuffle the inner tests and reseed ``random`` with a
    new seed each run.  ``PYTEST_ADDOPTS`` reaches both in-process and subprocess inner
    runs; pytester deletes it when it is created, so it is set here, after, through the
    same ``monkeypatch``, which undoes both.  A test that wants pytest-randomly in its
    inner runs deletes it again.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")
    return pytester


@pytest.fixture
def test_queue(config: Configuration) -> Iterator[Switchboard]:
    """Push ``[runner.test]``, yield its switchboard, and pop the layer again.

    Popping fails the test if it left another layer above this one.
    """
    config.push("test-runner", TEST_RUNNER_LAYER)
    yield config.switchboards["test"]
    config.pop("test-runner")


@pytest.fixture
def msg() -> Message:
    """A fresh copy of :data:`SAMPLE`, parsed."""
    return message_from_string(SAMPLE)
