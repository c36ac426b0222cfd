"""Helpers for specs and tests: printing metadata, draining queues, testable runners."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

from runnerkit.errors import QueueCountError
from runnerkit.lists import MailingList
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.site import Site, current_site
from runnerkit.typing import MsgData

R = TypeVar("R", bound=Runner)


class QueueItem(NamedTuple):
    """One message taken from a queue by :func:`get_queue_messages`."""

    msg: Message
    msgdata: MsgData


def dump_msgdata(msgdata: MsgData, *skip: str) -> None:
    """Print *msgdata* as ``key : value`` lines, sorted, keys padded to the longest.

    :param skip: keys to leave out, such as ones whose values vary from run to run.
    """
    keys = sorted(key for key in msgdata if key not in skip)
    if not keys:
        print("*Empty*")
        return
    width = max(len(key) for key in keys)
    for key in keys:
        print(f"{key:{width}}: {msgdata[key]}")


def dump_list(items: Iterable[Any], key: Callable[[Any], Any] | None = None) -> None:
    """Print *items* one a line, sorted (by *key* if given), or ``*Empty*``."""
    ordered = sorted(items, key=key) if key is not None else sorted(items)
    if not ordered:
        print("*Empty*")
    for item in ordered:
        print(item)


def create_list(fqdn_listname: str, *, config: Site | None = None, **kws: Any) -> MailingList:
    """Create a mailing list in the current (or given) configuration's database.

    Keyword arguments go to :meth:`runnerkit.lists.ListManager.create`.
    """
    return (config or current_site()).lists.create(fqdn_listname, **kws)


def get_queue_messages(
    name: str,
    *,
    sort_on: str | None = None,
    expected_count: int | None = None,
    config: Site | None = None,
) -> list[QueueItem]:
    """Take every message out of queue *name* and return them, oldest first.

    :param sort_on: sort by the value of this header instead.
    :param expected_count: check that there were exactly this many.
    :raises QueueCountError: the count is not the expected one.
    """
    switchboard = (config or current_site()).switchboards[name]
    items = []
    for filebase in switchboard.files:
        msg, msgdata = switchboard.dequeue(filebase)
        switchboard.finish(filebase)
        items.append(QueueItem(msg, msgdata))
    if expected_count is not None and len(items) != expected_count:
        raise QueueCountError(
            f"queue {name!r} held {len(items)} messages, expected {expected_count}"
        )
    if sort_on is not None:
        items.sort(key=lambda item: str(item.msg.get(sort_on, "")))
    return items


def make_testable_runner(
    runner_class: type[R],
    name: str | None = None,
    predicate: Callable[[R], bool] | None = None,
    *,
    config: Site | None = None,
) -> R:
    """Build a runner whose :meth:`~Runner.run` returns once its work is done.

    The runner is an ordinary instance of *runner_class*: it never sleeps
    (``sleep_time`` is zero) and its :attr:`~Runner.until` is *predicate*, called with
    the runner after every message and every pass; by default, the queue is empty.

    :param name: the runner's section name; by default the class name, lower-cased,
        without a ``Runner`` suffix.
    """
    if name is None:
        name = runner_class.__name__.removesuffix("Runner").lower() or "runner"
    runner = runner_class(name, config=config)
    runner.sleep_time = timedelta(0)
    runner.until = predicate or _queue_is_empty  # type: ignore[assignment]
    return runner


def _queue_is_empty(runner: Runner) -> bool:
    return runner.switchboard is None or not runner.switchboard.files
