"""The runner that the tests' runner processes run.

A :class:`TallyRunner` appends one line, ``<pid> <tag>``, to ``<var dir>/records/disposed``
for every message that reaches :meth:`~runnerkit.runner.Runner._dispose`, so that a test
in another process can tell exactly which messages were processed as valid, and by which
process.
"""

from __future__ import annotations

import os
import time

from runnerkit.lists import MailingList
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

#: The record of disposed messages, under the var dir.
DISPOSED = "records/disposed"


class TallyRunner(Runner):
    """Records every message it disposes of, and does nothing else with it."""

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        path = self.config.paths.var_dir / DISPOSED
        path.parent.mkdir(mode=0o750, exist_ok=True)
        line = f"{os.getpid()} {msgdata.get('tag', '-')}\n".encode("ascii", "replace")
        # One short O_APPEND write: a reader never sees half a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return False


class SlowTallyRunner(TallyRunner):
    """A :class:`TallyRunner` whose every message takes a while: signals land mid-message."""

    #: Seconds each message takes.
    work_seconds = 0.05

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        time.sleep(self.work_seconds)
        return super()._dispose(mlist, msg, msgdata)
