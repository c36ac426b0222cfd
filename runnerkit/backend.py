"""The queue-backend seam: what a runner needs of a queue, as one small protocol.

:class:`~runnerkit.switchboard.Switchboard` (one directory of files) implements it; a
second backend implements the same operations with the same meaning, and runs the same
contract tests (``tests/test_queue_contract.py``).  The meaning, for one slice of one
queue:

- :meth:`~QueueBackend.enqueue` stores a message and its metadata durably and returns
  its *file base* (``<time>+<40 hex digits>``), whose digest decides its slice;
- :attr:`~QueueBackend.files` lists this slice's waiting file bases, oldest first;
- :meth:`~QueueBackend.dequeue` takes one for processing (a crash leaves it to be
  recovered), and :meth:`~QueueBackend.finish` removes it or preserves it in ``bad``,
  keeping the reason it is given beside it, for the operator's tools
  (``runnerkit queue list bad``);
- :meth:`~QueueBackend.recover_backup_files` puts back what a crash left taken, and
  preserves in ``bad`` what has been recovered too often;
- :meth:`~QueueBackend.depth` counts what waits, and what is preserved.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from runnerkit.message import Message
from runnerkit.typing import MsgData


@runtime_checkable
class QueueBackend(Protocol):
    """One slice of one queue, as a runner uses it."""

    #: The queue's name, such as ``in`` or ``shunt``.
    name: str
    #: This slice, or None for the whole queue.
    slice: int | None
    #: How many slices the queue is split into.
    numslices: int

    def enqueue(self, msg: Message | str, metadata: MsgData | None = None, **kws: Any) -> str:
        """Store *msg* with *metadata* (updated by *kws*); return its file base.

        :raises MetadataError: a metadata value cannot be stored.
        :raises QueueError: nothing was stored.
        """
        ...

    @property
    def files(self) -> list[str]:
        """This slice's waiting file bases, oldest first."""
        ...

    def dequeue(self, filebase: str) -> tuple[Message, MsgData]:
        """Take *filebase* for processing; :meth:`finish` must follow.

        :raises QueueError: no such waiting message.
        :raises QueueFileError: the stored message is unreadable; finish it with
            ``preserve=True``.
        """
        ...

    def finish(self, filebase: str, preserve: bool = False, reason: str | None = None) -> None:
        """Be done with a taken message: remove it, or preserve it in ``bad``.

        :param reason: with *preserve*, why, in one line: kept with the preserved
            message (the switchboard writes ``<filebase>.reason`` in ``bad.reasons``,
            beside ``bad``).
            Failing to keep it must not fail the preserving.
        :raises QueueError: *filebase* is not taken, or cannot be removed or moved.
        """
        ...

    def recover_backup_files(self) -> None:
        """Put back this slice's messages that a crash left taken (at most 3 times).

        What cannot be put back is preserved in ``bad`` with the reason (as :meth:`finish`).
        """
        ...

    def depth(self) -> int:
        """How many messages wait in this slice, preserved ones included."""
        ...
