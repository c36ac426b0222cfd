"""Runners: long-running loops over one slice of one queue.

A runner lists its slice of the queue in FIFO order, processes each message, does its
periodic work, and snoozes until more work may have arrived, until it is stopped.
Subclasses override :meth:`Runner._dispose`, and optionally the other hooks.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from runnerkit.backend import QueueBackend
from runnerkit.config import Configuration, RunnerSettings
from runnerkit.errors import (
    ConfigurationError,
    DatabaseError,
    QueueError,
    QueueFileError,
    QueueUnavailableError,
    RunnerError,
)
from runnerkit.logtext import header_for_log, one_line
from runnerkit.message import Message
from runnerkit.metrics import NOTHING, RunnerMetrics, runner_metrics
from runnerkit.site import Site, current_site
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.lists import MailingList

log = logging.getLogger("runnerkit.runner")

#: A condition on a runner, checked after every message and every pass.
Until = Callable[["Runner"], bool]
#: The longest reason kept with a shunted or preserved message, in characters.
MAX_REASON = 500
#: What :meth:`Runner._enqueue_shunt` records in a shunted message's metadata, beside
#: ``whichq``; a message put back in its queue leaves them behind.
SHUNT_KEYS = ("shunt_reason", "shunt_runner", "shunt_time")


#: The errors of the environment, not of the message (errno(3)): a full disk or quota,
#: an I/O error, no descriptors or memory left, a read-only file system.  A message
#: that meets one waits to be tried again; it is not shunted, nor put in bad.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ENOBUFS,
        errno.EROFS,
    }
)
#: SQLite's primary result codes of the same kind (sqlite.org/rescode.html): busy or
#: locked past the timeout, an I/O error, a full disk, a file it cannot open.
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 10, 13, 14})
#: The longest pause after a transient error, in seconds; it doubles from
#: ``sleep_time`` (at least 0.1 s) on each one in a row.
MAX_BACKOFF = 60.0


def transient_error(error: BaseException) -> Exception | None:
    """The error of the environment behind *error* (itself, or a cause of it), if any.

    :returns: an :class:`OSError` whose errno is in :data:`TRANSIENT_ERRNOS`, an
        :class:`sqlite3.OperationalError` whose primary code is in
        :data:`TRANSIENT_SQLITE_CODES`, or a
        :class:`~runnerkit.errors.QueueUnavailableError` (a queue server unreachable or
        full); None when *error* is the message's own fault (or nobody knows).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return current
        if isinstance(current, QueueUnavailableError):
            return current
        if isinstance(current, sqlite3.OperationalError):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in TRANSIENT_SQLITE_CODES:
                return current
        current = current.__cause__ or current.__context__
    return None


def error_reason(error: BaseException | None) -> str:
    """*error* as the one-line reason kept with a message: ``Type: message``, bounded.

    At most :data:`MAX_REASON` characters before escaping (:func:`runnerkit.logtext.one_line`).
    """
    if error is None:
        return "no error was given"
    text = str(error)
    return one_line(
        f"{type(error).__name__}: {text}" if text else type(error).__name__, MAX_REASON
    )


def takes_work_in(settings: RunnerSettings) -> bool:
    """Whether a drain stops the runner of *settings*: it has no queue, and its class's
    :attr:`Runner.intake` is true (or the class cannot be loaded: then its process
    cannot be doing any work either, and stopping it loses nothing).

    The import path must be in place (:func:`runnerkit.importpath.use_import_path`).
    """
    if settings.queue:
        return False
    try:
        return load_runner_class(settings).intake
    except ConfigurationError as error:
        log.warning("%s; a drain stops runner %r", error, settings.name)
        return True


def load_runner_class(settings: RunnerSettings) -> type[Runner]:
    """Import and return the runner class that *settings* names in its ``class`` key.

    Configuration never imports runner classes; this is the one place that does, when a
    runner is about to be built (by a runner process, or by a check before starting).

    :raises ConfigurationError: the class cannot be imported, is not a Runner, or its
        ``is_queue_runner`` disagrees with the section's ``queue`` key (the message
        names layer, section, key and value).
    """
    place = (
        f"layer {settings.class_layer!r}, section [runner.{settings.name}], "
        f"key 'class', value {settings.class_name!r}"
    )
    module_name, _, attribute = settings.class_name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a module may raise anything while it is imported
        raise ConfigurationError(
            f"{place}: cannot import module {module_name!r}: {error}"
        ) from error
    try:
        cls = getattr(module, attribute)
    except AttributeError as error:
        raise ConfigurationError(
            f"{place}: module {module_name!r} has no attribute {attribute!r}"
        ) from error
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise ConfigurationError(f"{place}: not a subclass of runnerkit.runner.Runner")
    _check_queue_key(cls, settings)
    if cls is Runner:
        raise ConfigurationError(
            f"{place}: runnerkit.runner.Runner is only the base class (the default): it "
            "implements no _dispose(), so every message would be shunted; name your "
            "runner class, or set start: no for a queue that no runner works"
        )
    return cls


def check_runner_classes(config: Configuration) -> None:
    """Load the class of every runner that the master would start, to fail before it does.

    :raises ConfigurationError: a class cannot be loaded (see :func:`load_runner_class`).
    """
    for settings in config.runners.values():
        if settings.start:
            load_runner_class(settings)


def refuse_until(runner: Runner, until: Until | None) -> None:
    """For servers, whose :meth:`~Runner.run` serves until stopped: refuse a condition.

    :raises RunnerError: *until* was given.
    """
    if until is not None:
        raise RunnerError(
            f"{runner!r} serves until stop() is called; it takes no until= condition"
        )


def _check_queue_key(cls: type[Runner], settings: RunnerSettings) -> None:
    """Refuse a class whose ``is_queue_runner`` disagrees with its section's ``queue`` key.

    The key is what the site and the master go by (a switchboard, one process a slice);
    the class is what the process runs.  They must say the same.
    """
    if cls.is_queue_runner == settings.queue:
        return
    name = f"{cls.__module__}.{cls.__qualname__}"
    place = (
        f"layer {settings.class_layer!r}, section [runner.{settings.name}], key 'class', "
        f"value {settings.class_name!r}"
    )
    if cls.is_queue_runner:
        problem = f"{name} reads a queue, but the section says queue: no; set queue: yes"
    else:
        problem = (
            f"{name} reads no queue (is_queue_runner = False), but the section says "
            "queue: yes (the default); set queue: no"
        )
    raise ConfigurationError(f"{place}: {problem}")


class Runner:
    """The base of every runner.

    :param name: the runner's name; its settings come from ``[runner.NAME]``.
    :param slice: the slice of the queue this runner owns, of as many slices as the
        section's ``instances``; None for the whole queue.
    :param config: the :class:`~runnerkit.site.Site` to use; by default the current one.
    :raises ConfigurationError: there is no ``[runner.NAME]`` section, its ``queue``
        key disagrees with :attr:`is_queue_runner`, or *config* is a plain
        :class:`~runnerkit.config.Configuration` (settings only) instead of a site.
    """

    #: Whether the runner reads a queue.  Runners that serve a protocol set it False,
    #: and their sections say ``queue: no``.
    is_queue_runner: ClassVar[bool] = True
    #: Whether a runner without a queue takes work in from outside (as the LMTP
    #: runner does), so that a drain (``runnerkit stop --drain``) stops it first.  One
    #: that only serves what is there (the REST runner) sets it False and keeps
    #: running through a drain.  Queue runners are never stopped by a drain.
    intake: ClassVar[bool] = True

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        if config is None:
            config = current_site()
        elif not isinstance(config, Site):
            raise ConfigurationError(
                f"a runner needs a runnerkit.site.Site, not the settings-only {config!r}: "
                "build it with Site(var_dir) instead of Configuration(var_dir)"
            )
        #: The site this runner belongs to: its configuration, queues and database.
        self.config: Site = config
        settings: RunnerSettings = self.config.runner(name)
        _check_queue_key(type(self), settings)
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
        #: When set, :meth:`run` returns once this is true of the runner.
        self.until: Until | None = None
        #: The queue directory, or None for a runner without a queue.
        self.queue_directory: Path | None = None
        #: The switchboard of this runner's slice, or None for a runner without a queue.
        self.switchboard: QueueBackend | None = None
        if self.is_queue_runner:
            self.queue_directory = settings.path
            self.switchboard = self.config.switchboard(
                name, slice, settings.instances, recover=True
            )
        #: What the runner counts (:mod:`runnerkit.metrics`): nothing unless it runs in
        #: a process of a master's.
        self.metrics: RunnerMetrics = (
            runner_metrics(self.config, name) if self.is_queue_runner else NOTHING
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._until: Until | None = None
        #: Whether a set stop flag is left from an earlier run, not asked for since.
        self._stop_is_stale = False
        #: Errors of the environment in a row, and the pause they ask for (monotonic).
        self._transient_failures = 0
        self._backoff_until = 0.0
        #: Taken messages whose put-back met an unreachable queue server, in order.
        self._not_put_back: list[str] = []

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

    def run(self, until: Until | None = None) -> None:
        """Process the queue until :meth:`stop` is called, then clean up.

        A stop asked for before :meth:`run` still counts (a signal that arrives while a
        process sets its runner up).  After :meth:`run` returns, :attr:`stopping` stays
        true until the runner is run again, which starts afresh.

        :param until: also stop once this returns true of the runner; it is checked
            after every message and after every pass (default: :attr:`until`).  Tests
            and specs drive a runner this way, instead of overriding its hooks.
        """
        condition = until if until is not None else self.until
        self._start_afresh()
        try:
            while True:
                filecnt = self._pass(condition)
                if self._stop.is_set():
                    break
                self._snooze(filecnt)
        finally:
            self._stop_is_stale = True
            self._clean_up()

    def run_once(self, until: Until | None = None) -> int:
        """Make one pass over this slice, oldest file first, then do the periodic work.

        The pass ends early when :meth:`_short_circuit` says so (by default, once
        stopping), or once *until* is true after a message.  The next pass, or run,
        starts afresh: a stop asked for during this pass ends this pass only.

        :returns: how many files there were when the pass began.
        """
        self._start_afresh()
        try:
            return self._pass(until)
        finally:
            self._stop_is_stale = True

    def _start_afresh(self) -> None:
        """Forget a stop that ended an earlier run or pass; keep one asked for since."""
        if self._stop_is_stale:
            self._stop.clear()
            self._wake.clear()
            self._stop_is_stale = False

    def _pass(self, until: Until | None) -> int:
        """One pass and the periodic work after it; *until* stops the runner when true."""
        self._until = until
        try:
            filecnt = self._one_iteration()
            self._do_periodic()
            self._check_until()
        finally:
            self._until = None
        return filecnt

    def stop(self) -> None:
        """Ask the runner to stop after the message it is processing, if any.

        Safe to call from another thread: it only sets events, and it ends a snooze
        at once.
        """
        self._stop_is_stale = False
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """End the current snooze early, because new work may have arrived.

        Safe to call from another thread, such as a :mod:`runnerkit.wakeup` watcher.
        """
        self._wake.set()

    def _one_iteration(self) -> int:
        """Process every file of this slice once, oldest first.

        A queue server that cannot be reached ends the pass: the runner pauses, as
        after any error of the environment, and tries again.

        :returns: how many files there were when the pass began.
        """
        if self.switchboard is None:
            return 0
        try:
            self._put_back_left()
            files = self.switchboard.files
        except QueueUnavailableError as error:
            self._back_off(error, "listing its queue")
            return 0
        for filebase in files:
            if not self._process_filebase(self.switchboard, filebase):
                # Preserved unreadable, or gone: no message was processed, so there is
                # nothing for the periodic work to follow, and the pass goes on.
                if self._short_circuit():
                    break
                continue
            self._do_periodic()
            self._check_until()
            if self._short_circuit():
                break
        return len(files)

    def _back_off(self, error: Exception, doing: str) -> None:
        """Pause before the next pass after *error* of the environment met while *doing*:
        ``sleep_time`` doubled for each such error in a row, at most
        :data:`MAX_BACKOFF` seconds."""
        pause = self._next_pause()
        log.error("%s: %s failed (%s); trying again in %.1fs", self, doing, error, pause)
        self._backoff_until = time.monotonic() + pause

    def _next_pause(self) -> float:
        """Count one more error of the environment in a row, and return the pause it
        asks for: ``sleep_time`` (at least 0.1 s) doubled for each, at most
        :data:`MAX_BACKOFF` seconds."""
        self._transient_failures += 1
        return float(
            min(MAX_BACKOFF, max(self.sleep_float, 0.1) * 2 ** (self._transient_failures - 1))
        )

    def _put_back_left(self) -> None:
        """Put back what could not be put back when its error came (the queue server
        was gone too): it waits again in its place, for this pass.

        :raises QueueUnavailableError: the server still cannot be reached.
        """
        if self.switchboard is None:
            return
        while self._not_put_back:
            filebase = self._not_put_back[0]
            try:
                self.switchboard.put_back(filebase)  # type: ignore[attr-defined]
            except QueueUnavailableError:
                raise
            except QueueError as error:
                log.error("%s: %s", self, error)
            self._not_put_back.pop(0)

    def _check_until(self) -> None:
        if self._until is not None and not self._stop.is_set() and self._until(self):
            self.stop()

    def _process_filebase(self, switchboard: QueueBackend, filebase: str) -> bool:
        """Dequeue, process and finish one file, shunting or preserving on failure.

        :returns: whether a message was processed (or shunted): False for a file that
            was unreadable (and preserved in ``bad``) or gone.
        """
        try:
            msg, msgdata = switchboard.dequeue(filebase)
        except QueueUnavailableError as error:
            self._back_off(error, f"taking {filebase}")
            return False
        except QueueFileError as error:
            log.error("%s: preserving unreadable queue file in bad: %s", self, error)
            self._finish(switchboard, filebase, preserve=True)
            return False
        except QueueError as error:
            log.warning("%s: skipping %s: %s", self, filebase, error)
            return False
        started = time.monotonic()
        try:
            self._process_one_file(msg, msgdata)
            self.config.commit()
        except Exception as error:
            self.config.abort()
            if isinstance(error, (sqlite3.Error, DatabaseError)):
                # A damaged, restored or replaced database: only a new connection
                # sees it whole again.
                self.config.reconnect()
            if transient_error(error) is not None:
                self._wait_and_retry(switchboard, filebase, error)
                return True
            log.exception("%s: shunting %s after an error: %s", self, filebase, error)
            self._shunt(switchboard, filebase, msg, msgdata)
            self.metrics.shunted()
        except BaseException:
            # An interrupt is not the message's fault: roll back, and leave the .bak
            # for recovery instead of shunting the message.
            self.config.abort()
            raise
        else:
            self._finish(switchboard, filebase)
        self._transient_failures = 0
        self.metrics.processed(time.monotonic() - started)
        return True

    def _wait_and_retry(self, switchboard: QueueBackend, filebase: str, error: Exception) -> None:
        """Keep a message that met an error of the environment for another try.

        The taken file waits in the queue again, under its own name (or, if even that
        fails, stays ``.bak`` for the next start's recovery), and the runner pauses
        before its next pass: ``sleep_time`` doubled for each such error in a row, at
        most :data:`MAX_BACKOFF` seconds.
        """
        pause = self._next_pause()
        log.error(
            "%s: %s met an error of the environment, not of the message (%s); it waits "
            "to be tried again in %.1fs",
            self,
            filebase,
            error_reason(error),
            pause,
        )
        put_back = getattr(switchboard, "put_back", None)
        if put_back is not None:
            try:
                put_back(filebase)
            except QueueUnavailableError as stuck:
                log.error("%s: %s; it is put back once the server answers", self, stuck)
                self._not_put_back.append(filebase)
            except QueueError as stuck:
                log.error("%s: %s; it is recovered at the next start", self, stuck)
        self._backoff_until = time.monotonic() + pause

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
                self._enqueue_shunt(
                    msg, msgdata, reason=f"no such list (listid={listid!r}, listname={listname!r})"
                )
                self.metrics.shunted()
                return
        msgdata["lang"] = self._language(mlist, msg)
        if self._dispose(mlist, msg, msgdata) and self.switchboard is not None:
            self.switchboard.enqueue(msg, msgdata)

    def _language(self, mlist: MailingList | None, msg: Message) -> str:
        """The sender's language as a member of *mlist*, else the list's, else the default."""
        if mlist is None:
            return self.config.general.default_language
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
        backoff = self._backoff_until - time.monotonic()
        if backoff > 0:
            # After an error of the environment: a pause, whatever waits.
            self._stop.wait(backoff)
            return
        if filecnt or self.sleep_float <= 0:
            return
        self._wake.wait(self.sleep_float)
        self._wake.clear()

    def _short_circuit(self) -> bool:
        """Whether to end the current pass early; by default, once stopping, or after
        an error of the environment (the runner then pauses before the next pass)."""
        return self._stop.is_set() or self._backoff_until > time.monotonic()

    def _clean_up(self) -> None:
        """Release what the runner holds, when :meth:`run` ends; nothing by default."""

    # Failure handling.

    def _shunt(
        self, switchboard: QueueBackend, filebase: str, msg: Message, msgdata: MsgData
    ) -> None:
        """Move a message whose processing failed to ``shunt``, with the reason.

        Called from the handler of the error that failed it (:meth:`_process_filebase`):
        that error is the reason.  Should the shunting fail, the file is preserved in
        ``bad`` instead, with both errors as the reason.
        """
        failure = sys.exc_info()[1]
        try:
            # Its reason by default is the error being handled: this one.
            self._enqueue_shunt(msg, msgdata)
        except Exception as error:
            if transient_error(error) is not None:
                # shunt cannot be written for now (a full disk): not the message's
                # fault, so not bad either; it is tried again.
                self._wait_and_retry(switchboard, filebase, error)
                return
            log.exception(
                "%s: shunting %s failed, preserving it in bad: %s", self, filebase, error
            )
            reason = f"{error_reason(failure)}; then shunting it failed: {error_reason(error)}"
            self._finish(switchboard, filebase, preserve=True, reason=reason)
        else:
            self._finish(switchboard, filebase)

    def _move_to_bad(
        self, msg: Message, msgdata: MsgData, reason: str, *, what: str = "message"
    ) -> str:
        """Put *msg* in ``bad`` for a fault of its own, and log it, in the runner's
        module's logger.

        Its metadata gets ``reason`` and ``whichq`` (this runner's queue: where an
        operator who fixed the cause requeues it, ``runnerkit queue requeue``).

        :param what: what the log calls it (``message``, ``bounce``, ``request``).
        :returns: its file base in ``bad``.
        :raises QueueError: it could not be queued in ``bad``.
        """
        filebase = self.config.switchboards["bad"].enqueue(
            msg, msgdata, reason=reason, whichq=self.name
        )
        logging.getLogger(type(self).__module__).warning(
            "%s: moved %s %s (list %s) to bad as %s: %s",
            self,
            what,
            header_for_log(msg, "Message-ID", "(without a Message-ID)"),
            one_line(str(msgdata.get("listid", "-"))),
            filebase,
            one_line(reason),
        )
        return filebase

    def _enqueue_shunt(self, msg: Message, msgdata: MsgData, reason: str | None = None) -> None:
        """Queue *msg* in ``shunt``, recording where from, why, by whom and when.

        The metadata gets ``whichq`` (this runner's queue, where ``runnerkit unshunt``
        and ``runnerkit queue requeue`` put it back), ``shunt_reason`` (one line, at
        most :data:`MAX_REASON` characters; by default the error being handled),
        ``shunt_runner`` (this runner's name) and ``shunt_time`` (UTC, ISO 8601).

        :raises QueueError: the message could not be queued (nor was anything).
        :raises MetadataError: its metadata cannot be stored.
        """
        if reason is None:
            reason = error_reason(sys.exc_info()[1])
        msgdata["whichq"] = self.name
        msgdata["shunt_reason"] = one_line(reason, MAX_REASON)
        msgdata["shunt_runner"] = self.name
        msgdata["shunt_time"] = datetime.now(UTC).isoformat(timespec="seconds")
        filebase = self.config.switchboards["shunt"].enqueue(msg, msgdata)
        log.error("%s: shunted as %s", self, filebase)

    def _finish(
        self,
        switchboard: QueueBackend,
        filebase: str,
        preserve: bool = False,
        reason: str | None = None,
    ) -> None:
        """Finish *filebase*, logging a failure; preserved, it keeps *reason*.

        Preserving from the handler of an error (an unreadable file), with no *reason*,
        keeps that error as the reason.
        """
        if preserve and reason is None:
            reason = error_reason(sys.exc_info()[1])
        pause = max(self.sleep_float, 0.1)
        while True:
            try:
                switchboard.finish(
                    filebase, preserve=preserve, reason=reason if preserve else None
                )
            except QueueUnavailableError as error:
                # The message was processed: finishing it is all that is left, and
                # recovering it instead would process it again.  Wait for the server.
                if self._stop.is_set():
                    log.error("%s: %s; it is recovered at the next start", self, error)
                    return
                log.error("%s: %s; trying again in %.1fs", self, error, pause)
                self._stop.wait(pause)
                pause = min(MAX_BACKOFF, pause * 2)
                continue
            except QueueError as error:
                log.error("%s: %s", self, error)
            else:
                if preserve:
                    self.metrics.preserved()
            return
