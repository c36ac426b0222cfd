"""Runner classes for the processes of ``tests/test_redis_hosts.py`` and
``tests/test_redis_faults.py``: hosts that share one Valkey server.

Every message these runners take carries an integer ``mid`` in its metadata.  For each
message, :class:`HostRecordingRunner` appends two lines to ``<var dir>/records/processed``
(the var dir is the host's: each host has its own file):

- ``S <mid> <host> <pid> <time>`` when it begins the message,
- ``E <mid> <host> <pid> <time>`` when it is done with it, before ``_dispose`` returns;

each one ``write`` to a file opened with ``O_APPEND``, followed by ``fsync``, so that a
line that was written survives whatever kills the process next.  *host* is the name of
the var dir; *time* is ``time.time()`` (one clock for every process of the machine).

Metadata keys the runner obeys:

- ``work``: seconds to spend on the message (between the two lines), so that kills
  land in the middle of messages;
- ``poison``: after the ``S`` line, SIGKILL its own process, as a message that crashes
  the interpreter would;
- ``forward``: queue the message again in the queue this names (to meet a full server).
"""

from __future__ import annotations

import os
import signal
import time

from runnerkit.config import Configuration
from runnerkit.lists import MailingList
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData


def records_file(var_dir: os.PathLike[str] | str) -> str:
    """The file the runners of the host over *var_dir* append their records to."""
    return os.path.join(var_dir, "records", "processed")


class HostRecordingRunner(Runner):
    """Records the start and the end of every message; see the module's docstring."""

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        self._host = os.path.basename(os.path.normpath(self.config.paths.var_dir))
        self._fd: int | None = None

    def _record(self, kind: str, mid: int) -> None:
        if self._fd is None:
            path = records_file(self.config.paths.var_dir)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        line = f"{kind} {mid} {self._host} {os.getpid()} {time.time():.6f}\n"
        os.write(self._fd, line.encode("ascii"))
        os.fsync(self._fd)

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        mid = int(msgdata["mid"])
        self._record("S", mid)
        if msgdata.get("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        work = float(msgdata.get("work", 0) or 0)
        if work:
            time.sleep(work)
        forward = msgdata.get("forward")
        if forward:
            self.config.switchboards[str(forward)].enqueue(msg, mid=mid)
        self._record("E", mid)
        return False

    def _clean_up(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
