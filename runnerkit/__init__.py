"""runnerkit: durable file queues, long-running runners, and a harness for executable specs.

The core (configuration, messages, lists, switchboards, runners) lives in this package;
the harness lives in :mod:`runnerkit.testing` and is imported only on purpose.
"""

from runnerkit.config import Configuration, current_config, use_config
from runnerkit.errors import (
    ConfigurationError,
    ListError,
    QueueError,
    QueueFileError,
    RunnerError,
    RunnerkitError,
)
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.runner import Runner
from runnerkit.switchboard import Switchboard

__all__ = [
    "Configuration",
    "ConfigurationError",
    "ListError",
    "Message",
    "QueueError",
    "QueueFileError",
    "Runner",
    "RunnerError",
    "RunnerkitError",
    "Switchboard",
    "current_config",
    "message_from_bytes",
    "message_from_string",
    "use_config",
]
