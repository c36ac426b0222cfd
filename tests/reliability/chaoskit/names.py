"""The child processes of the names test: each queues the same message many times.

:func:`enqueue_identical` runs in a process of its own (``multiprocessing``, spawn), with
no configuration: its :class:`~runnerkit.switchboard.Switchboard` has its own clock, as
a separate program queueing into a shared directory would.
"""

from __future__ import annotations

import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

from runnerkit.message import message_from_string
from runnerkit.switchboard import Switchboard

#: The message every process queues, with the same metadata, every time.
MESSAGE = """\
From: same@example.com
To: list@example.com
Subject: the same message
Message-ID: <same@example.com>

Always the same.
"""


def enqueue_identical(directory: str, count: int, barrier: Barrier, results: str) -> None:
    """Queue :data:`MESSAGE` *count* times into *directory*, starting when *barrier* opens.

    The returned file base names are written to *results*, one a line, followed by a
    last line with the seconds the loop took.
    """
    queue = Switchboard("names", directory)
    msg = message_from_string(MESSAGE)
    barrier.wait()
    began = time.monotonic()
    names = [queue.enqueue(msg, listname="same@example.com") for _ in range(count)]
    took = time.monotonic() - began
    Path(results).write_text("\n".join([*names, f"{took:.3f}"]) + "\n", encoding="ascii")
