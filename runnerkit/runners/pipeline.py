"""The ``pipeline`` runner: runs the handlers on each message, then queues it to out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from runnerkit.errors import RunnerError
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.runners.handlers import Handler, load_handlers
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.config import Configuration
    from runnerkit.lists import MailingList

log = logging.getLogger(__name__)

#: The queue that pipelined messages go to.
OUT_QUEUE = "out"


class PipelineRunner(Runner):
    """Prepare list messages for delivery with the handlers of ``[pipeline] handlers``.

    The handlers are built when the runner is, so a misconfigured pipeline fails at
    start-up, not on the first message.  A handler that raises shunts the message.

    :raises ConfigurationError: ``[pipeline] handlers`` names an unknown handler, or a
        handler's settings are wrong.
    """

    is_queue_runner = True

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        #: The handlers, by name, in the order they run.
        self.handlers: list[tuple[str, Handler]] = load_handlers(self.config)

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        if mlist is None:
            raise RunnerError(f"{self}: the message's metadata names no list (no listid)")
        for _name, handler in self.handlers:
            handler(mlist, msg, msgdata)
        self.config.switchboards[OUT_QUEUE].enqueue(msg, msgdata)
        return False
