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
