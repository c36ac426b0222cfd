"""The names every spec document starts with."""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from typing import Any

from freezegun import freeze_time

from runnerkit.message import message_from_bytes, message_from_string
from runnerkit.testing.helpers import (
    create_list,
    dump_list,
    dump_msgdata,
    get_queue_messages,
    make_testable_runner,
)
from runnerkit.testing.world import World


def world_namespace(world: World) -> dict[str, Any]:
    """The helpers of *world*, bound to its configuration, under their spec names."""
    config = world.config
    return {
        "world": world,
        "config": config,
        "create_list": partial(create_list, config=config),
        "message_from_string": message_from_string,
        "message_from_bytes": message_from_bytes,
        "dump_msgdata": dump_msgdata,
        "dump_list": dump_list,
        "get_queue_messages": partial(get_queue_messages, config=config),
        "make_testable_runner": partial(make_testable_runner, config=config),
        "freeze_time": freeze_time,
        "cleanups": ExitStack(),
    }
