"""Runners for the child processes of ``tests/test_process.py`` and ``tests/test_master.py``.

The tests put this directory on the children's ``PYTHONPATH`` (a master passes it on to
its runner processes) and name these classes in ``[runner.NAME] class``.
:class:`RecordingRunner` leaves *records* under ``<var dir>/records/`` so that the test,
in another process, can see what happened and when:

- ``started-<tag>`` and ``done-<tag>`` get one line per attempt at the message tagged
  *tag* (the ``tag`` key of its metadata), naming the process and its slice;
- ``snoozing`` appears when the runner is about to sleep after a pass with no work.

Metadata keys the runners obey:

- ``gate``: after recording the start, wait until the test creates ``release-<tag>``, so
  that the test controls exactly what happens in the middle of a message;
- ``poison``: die at once with ``os._exit(1)``, as a crash in mid-message would.

The other classes each behave in one way a master must cope with:

- :class:`PausedRunner` never takes a message, so its queue keeps its depth.
- :class:`ServiceRunner` reads no queue; it serves until stopped, as LMTP would.
- :class:`CrashingRunner` dies with ``os._exit(1)`` as soon as it runs.
- :class:`FinishingRunner` returns from :meth:`run` at once: its process exits 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from runnerkit.lists import MailingList
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.runners.lmtp import LMTPRunner
from runnerkit.typing import MsgData

#: How long a gated message waits for its release before going on regardless, so that
#: a test that fails never leaves a child waiting for ever.
GATE_TIMEOUT = 30.0


def records_dir(runner: Runner) -> Path:
    """The directory holding *runner*'s records."""
    return runner.config.paths.var_dir / "records"


def add_record(runner: Runner, name: str, line: str) -> None:
    """Add *line* to the record *name*, atomically: a reader sees the old text or the new."""
    directory = records_dir(runner)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(f"{text}{line}\n", encoding="utf-8")
    os.replace(tmp, path)


class RecordingRunner(Runner):
    """Records the start and the end of every message; see the module's docstring."""

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        tag = str(msgdata["tag"])
        who = f"pid {os.getpid()} slice {self.slice}"
        add_record(self, f"started-{tag}", who)
        if msgdata.get("poison"):
            os._exit(1)
        if msgdata.get("gate"):
            release = records_dir(self) / f"release-{tag}"
            deadline = time.monotonic() + GATE_TIMEOUT
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        add_record(self, f"done-{tag}", who)
        return False

    def _snooze(self, filecnt: int) -> None:
        if not filecnt:
            marker = records_dir(self) / "snoozing"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        super()._snooze(filecnt)


class PausedRunner(Runner):
    """A queue runner that leaves its queue alone: what waits there stays."""

    def _one_iteration(self) -> int:
        return 0


class ServiceRunner(Runner):
    """A runner without a queue, serving until it is stopped."""

    is_queue_runner = False

    def run(self) -> None:
        self._stop.wait()


class CrashingRunner(Runner):
    """Dies at once, as a runner with a broken dependency would."""

    def run(self) -> None:
        os._exit(1)


class FinishingRunner(Runner):
    """Returns at once: its process exits with status 0, which means 'stopped on purpose'."""

    def run(self) -> None:
        return


class SlowLMTPRunner(LMTPRunner):
    """An LMTP runner that takes 30 s to set up, so that ``start --wait`` waits."""

    def __init__(self, *args: Any, **kws: Any) -> None:
        time.sleep(30)
        super().__init__(*args, **kws)
