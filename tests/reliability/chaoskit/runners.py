"""Runner classes for the child processes of the reliability tests.

Every message these runners take carries an integer ``mid`` in its metadata.  Each time a
runner has processed a message it appends one line, ``<mid> <slice> <process token>``,
to ``<var dir>/records/processed``: a single ``write`` to a file opened with
``O_APPEND``, made before :meth:`~runnerkit.runner.Runner._dispose` returns.  The token
is ``<pid>-<random>``.  A process
killed after that write and before the queue file is removed processes the message again
after its restart, so the record shows the duplicate; a process killed before it leaves
no line.  The lines are in the order of the writes, across all processes, and the token
is unique to one process, so the record also shows which process worked on which slice
and when.

Metadata keys that make a message misbehave:

- ``poison``: the runner records the attempt and then kills itself with SIGKILL, as a
  message that crashes the interpreter would;
- ``stuck``: the runner records the attempt and then sleeps without end (capped at
  :data:`STUCK_CAP` seconds, so that a failed test leaves no process for ever), deaf to
  SIGTERM, as a runner waiting on a dead server would.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.lists import MailingList
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

#: The longest a ``stuck`` message holds its runner: far longer than any test waits.
STUCK_CAP = 120.0


def records_path(var_dir: Path) -> Path:
    """The file that the runners of *var_dir* append their records to."""
    return var_dir / "records" / "processed"


class RecordingRunner(Runner):
    """Records every message it processes; ``poison`` and ``stuck`` messages misbehave."""

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        #: Names this process in the record: its pid, and a part that pids never reuse.
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._records_fd: int | None = None

    def _record(self, mid: int) -> None:
        if self._records_fd is None:
            path = records_path(self.config.paths.var_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._records_fd = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        os.write(self._records_fd, f"{mid} {self.slice} {self._token}\n".encode("ascii"))

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        self._record(int(msgdata["mid"]))
        if msgdata.get("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        if msgdata.get("stuck"):
            parent = os.getppid()
            deadline = time.monotonic() + STUCK_CAP
            while time.monotonic() < deadline and os.getppid() == parent:
                time.sleep(0.1)
        return False

    def _clean_up(self) -> None:
        if self._records_fd is not None:
            os.close(self._records_fd)
            self._records_fd = None
