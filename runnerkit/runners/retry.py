"""The ``retry`` runner: moves messages whose delivery failed for now back to ``out``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.lists import MailingList

#: The queue that retried messages go back to.
OUT_QUEUE = "out"


class RetryRunner(Runner):
    """Each pass, move every message in ``retry`` back to ``out``, metadata and all.

    Its ``sleep_time`` is the retry interval: it sleeps that long after every pass,
    even a busy one, and a new file in its queue does not wake it, or a message that
    keeps failing would bounce between ``out`` and ``retry`` without pause.
    """

    is_queue_runner = True

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        self.config.switchboards[OUT_QUEUE].enqueue(msg, msgdata)
        return False

    def wake(self) -> None:
        """Ignore the news of new files: the retry interval is :attr:`sleep_time`."""

    def _snooze(self, filecnt: int) -> None:
        """Sleep :attr:`sleep_time` after every pass; :meth:`stop` ends the sleep."""
        if self.sleep_float > 0:
            self._wake.wait(self.sleep_float)
            self._wake.clear()
