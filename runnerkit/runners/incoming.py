"""The ``in`` runner: checks each incoming message and passes it on to ``pipeline``.

A message that cannot be handled (no ``From``, no list) is not an error of runnerkit
but of the message: it goes to the ``bad`` queue with a ``reason``, for an operator,
instead of being shunted.

A message sent to the list's ``-owner`` address (metadata ``toowner``) is for the
list's owners, not its members: it skips the pipeline (it is not list traffic, and
gets no list headers or subject prefix) and goes straight to ``out`` with
``recipients`` set to the addresses of the members with role ``owner``.  A list
without owners has nobody to give it to: it goes to ``bad`` with the reason.
"""

from __future__ import annotations

import logging
from email.utils import getaddresses
from typing import TYPE_CHECKING

from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.lists import MailingList

log = logging.getLogger(__name__)

#: The queue that accepted messages go to.
PIPELINE_QUEUE = "pipeline"
#: The queue that messages for the owners go to, bypassing the pipeline.
OUT_QUEUE = "out"


def check_message(mlist: MailingList | None, msg: Message) -> str | None:
    """Why *msg* cannot be processed for *mlist*, as a sentence; None when it can."""
    if mlist is None:
        return "The message's metadata names no mailing list."
    values = [str(value) for value in msg.get_all("From", [])]
    if not values:
        return "The message has no From header."
    if not any(address for _, address in getaddresses(values)):
        return "The message's From header names no address."
    return None


class IncomingRunner(Runner):
    """Check messages queued to ``in`` and pass the usable ones to ``pipeline``.

    The metadata travels unchanged.  An unusable message goes to ``bad`` with the
    metadata key ``reason`` saying why, and the reason is logged.
    """

    is_queue_runner = True

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        reason = check_message(mlist, msg)
        if reason is None and mlist is not None and msgdata.get("toowner"):
            owners = [owner.address for owner in mlist.owners]
            if owners:
                self.config.switchboards[OUT_QUEUE].enqueue(msg, msgdata, recipients=owners)
                return False
            reason = f"The message is for the owners of {mlist.fqdn_listname}, which has none."
        if reason is None:
            self.config.switchboards[PIPELINE_QUEUE].enqueue(msg, msgdata)
            return False
        self._move_to_bad(msg, msgdata, reason)
        return False
