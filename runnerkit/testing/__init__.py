"""The runnerkit harness: worlds, spec helpers, Sybil wiring and the pytest plugin.

This package depends on the core; the core never imports it.
"""

from runnerkit.testing.documents import collect_specs, make_sybil
from runnerkit.testing.helpers import (
    QueueItem,
    create_list,
    dump_list,
    dump_msgdata,
    get_queue_messages,
    make_testable_runner,
)
from runnerkit.testing.normalize import NormalizingOutputChecker, output_checker
from runnerkit.testing.pycon import UncollectedSessionError, UncollectedSessionWarning
from runnerkit.testing.world import World

__all__ = [
    "NormalizingOutputChecker",
    "QueueItem",
    "UncollectedSessionError",
    "UncollectedSessionWarning",
    "World",
    "collect_specs",
    "create_list",
    "dump_list",
    "dump_msgdata",
    "get_queue_messages",
    "make_sybil",
    "make_testable_runner",
    "output_checker",
]
