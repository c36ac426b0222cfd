"""Runners: long-running loops over one slice of one queue.

A runner lists its slice of the queue in FIFO order, processes each message, does its
periodic work, and snoozes until more work may have arrived, until it is stopped.
Subclasses override :meth:`Runner._dispose`, and optionally the other hooks.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from runnerkit.config.current import current_config
from runnerkit.errors import QueueError, QueueFileError
from runnerkit.message import Message
from runnerkit.switchboard import Switchboard
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.config import Configuration, RunnerSettings
    from runnerkit.lists import MailingList

log = logging.getLogger("runnerkit.runner")


class Runner:
    """The base of every runner.

    :param name: the runner's name; its settings come from ``[runner.NAME]``.
    :param slice: the slice of the queue this runner owns, of as many slices as the
        section's ``instances``; None for the whole queue.
    :param config: the configuration to use; by default the current one.
    :raises ConfigurationError: there is no ``[runner.NAME]`` section.
    """

    #: Whether the runner reads a queue.  Runners that serve a protocol set it False.
    is_queue_runner: ClassVar[bool] = True

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        #: The configuration this runner belongs to.
        self.config = config if config is not None else current_config()
        settings: RunnerSettings = self.config.runner(name)
        #: The runner's name, as in ``[runner.NAME]``.
        self.name = name
        #: The slice this runner owns, or None for the whole queue.
        self.slice = slice
        #: How long to sleep when a pass found no work.
        self.sleep_time: timedelta = settings.sleep_time
        #: How often the master may restart this runner within its window.
        self.max_restarts: int = settings.max_restarts
        #: Whether the master starts this runner.
        self.start: bool = settings.start
        #: The exit status the runner's process should report.
        self.status = 0
        #: The queue directory, or None for a runner without a queue.
        self.queue_directory: Path | None = None
        #: The switchboard of this runner's slice, or None for a runner without a queue.
        self.switchboard: Switchboard | None = None
        if self.is_queue_runner:
            self.queue_directory = settings.path
            self.switchboard = Switchboard(
                name, settings.path, slice, settings.instances, recover=True, config=self.config
            )
        self._stop = threading.Event()
        self._wake = threading.Event()

    def __repr__(self) -> str:
        where = "" if self.slice is None else f" slice {self.slice}"
        return f"<{type(self).__name__} {self.name!r}{where}>"

    @property
    def sleep_float(self) -> float:
        """:attr:`sleep_time` in seconds."""
        return self.sleep_time.total_seconds()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stop.is_set()

    # The loop.

    def run(self) -> None:
        """Process the queue until :meth:`stop` is called, then clean up."""
        try:
            while True:
                filecnt = self._one_iteration()
                self._do_periodic()
                if self._stop.is_set():
                    break
                self._snooze(filecnt)
        finally:
            self._clean_up()

    def stop(self) -> None:
        """Ask the runner to stop after the message it is processing, if any.

        Safe to call from another thread: it only sets events, and it ends a snooze
        at once.
        """
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """End the current snooze early, because new work may have arrived.

        Safe to call from another thread, such as a :mod:`runnerkit.wakeup` watcher.
        """
        self._wake.set()

    def _one_iteration(self) -> int:
        """Process every file of this slice once, oldest first.

        :returns: how many files there were when the pass began.
        """
        if self.switchboard is None:
            return 0
        files = self.switchboard.files
        for filebase in files:
            self._process_filebase(self.switchboard, filebase)
            self._do_periodic()
            if self._short_circuit():
                break
        return len(files)

    def _process_filebase(self, switchboard: Switchboard, filebase: str) -> None:
        """Dequeue, process and finish one file, shunting or preserving on failure."""
        try:
            msg, msgdata = switchboard.dequeue(filebase)
        except QueueFileError as error:
            log.error("%s: preserving unreadable queue file in bad: %s", self, error)
            self._finish(switchboard, filebase, preserve=True)
            return
        except QueueError as error:
            log.warning("%s: skipping %s: %s", self, filebase, error)
            return
        try:
            self._process_one_file(msg, msgdata)
            self.config.commit()
        except Exception as error:
            self.config.abort()
            log.exception("%s: shunting %s after an error: %s", self, filebase, error)
            self._shunt(switchboard, filebase, msg, msgdata)
        except BaseException:
            # An interrupt is not the message's fault: roll back, and leave the .bak
            # for recovery instead of shunting the message.
            self.config.abort()
            raise
        else:
            self._finish(switchboard, filebase)

    def _process_one_file(self, msg: Message, msgdata: MsgData) -> None:
        """Find the message's list and language, then dispose of the message.

        The list is looked up by ``listid``, else by ``listname``.  A message for a
        list that does not exist is shunted.  A true result from :meth:`_dispose`
        queues the message again.
        """
        listid = msgdata.get("listid")
        listname = msgdata.get("listname")
        mlist: MailingList | None = None
        if listid or listname:
            lists = self.config.lists
            if listid:
                mlist = lists.get_by_list_id(str(listid))
            if mlist is None and listname:
                mlist = lists.get(str(listname))
            if mlist is None:
                log.error(
                    "%s: shunting a message for a missing list (listid=%r, listname=%r)",
                    self,
                    listid,
                    listname,
                )
                self._enqueue_shunt(msg, msgdata)
                return
        msgdata["lang"] = self._language(mlist, msg)
        if self._dispose(mlist, msg, msgdata) and self.switchboard is not None:
            self.switchboard.enqueue(msg, msgdata)

    def _language(self, mlist: MailingList | None, msg: Message) -> str:
        """The sender's language as a member of *mlist*, else the list's, else the default."""
        if mlist is None:
            return str(self.config.get("runnerkit", "default_language"))
        sender = msg.sender
        member = mlist.get_member(sender) if sender else None
        if member is not None and member.preferred_language:
            return member.preferred_language
        return mlist.preferred_language

    # Hooks for subclasses.

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        """Process one message; return True to queue it again for a later pass.

        :raises NotImplementedError: subclasses must override it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _dispose()")

    def _do_periodic(self) -> None:
        """Work to do after each message and after each pass; nothing by default."""

    def _snooze(self, filecnt: int) -> None:
        """Sleep up to :attr:`sleep_time` when the last pass found no files.

        :meth:`stop` and :meth:`wake` end the sleep at once.
        """
        if filecnt or self.sleep_float <= 0:
            return
        self._wake.wait(self.sleep_float)
        self._wake.clear()

    def _short_circuit(self) -> bool:
        """Whether to end the current pass early; by default, once stopping."""
        return self._stop.is_set()

    def _clean_up(self) -> None:
        """Release what the runner holds, when :meth:`run` ends; nothing by default."""

    # Failure handling.

    def _shunt(
        self, switchboard: Switchboard, filebase: str, msg: Message, msgdata: MsgData
    ) -> None:
        try:
            self._enqueue_shunt(msg, msgdata)
        except Exception as error:
            log.exception(
                "%s: shunting %s failed, preserving it in bad: %s", self, filebase, error
            )
            self._finish(switchboard, filebase, preserve=True)
        else:
            self._finish(switchboard, filebase)

    def _enqueue_shunt(self, msg: Message, msgdata: MsgData) -> None:
        msgdata["whichq"] = self.name
        filebase = self.config.switchboards["shunt"].enqueue(msg, msgdata)
        log.error("%s: shunted as %s", self, filebase)

    def _finish(self, switchboard: Switchboard, filebase: str, preserve: bool = False) -> None:
        try:
            switchboard.finish(filebase, preserve=preserve)
        except QueueError as error:
            log.error("%s: %s", self, error)
