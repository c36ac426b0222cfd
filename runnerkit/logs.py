"""Logging for runnerkit processes: one log file, reopened on SIGHUP for log rotation.

Every record is one line that starts with its time (:class:`OneLineFormatter`), so
that text from a message can never split a record or forge one.  A traceback follows
its record on lines that each start with white space, as a folded header field
continues on lines that start with white space (RFC 5322, section 2.2.3): a line that
starts with a digit starts a record, any other continues the one above.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from runnerkit.config import Configuration
from runnerkit.fsio import FILE_MODE, make_directories
from runnerkit.logtext import MAX_VALUE, bounded, escape

#: The format of every log line: time, process, logger, level, message.
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"
#: The longest message of one record, in characters, before escaping.
MAX_MESSAGE = 8 * MAX_VALUE
#: The loggers of the libraries runnerkit serves with, routed to its log file:
#: aiosmtpd's (the LMTP server) and asyncio's (its event loop, which logs each failed
#: accept(): a process out of descriptors once wrote 2.4 GB of them to stderr).
LIBRARY_LOGGERS = ("mail.log", "asyncio")
#: Records of one logger let through per :data:`LOG_PERIOD` seconds.
LOG_BURST = 100
#: Seconds of a :class:`RateLimitFilter` period.
LOG_PERIOD = 10.0
#: What starts each line of a traceback (or stack) that follows a record.
CONTINUATION = "  "
#: The logger of the delivery log (``[logging] delivery_path``): one record per
#: delivery outcome, written by the ``out`` runner (:mod:`runnerkit.runners.outgoing`).
DELIVERY_LOGGER = "runnerkit.delivery"
#: The format of every delivery log line: time, process, then the runner's fields.
DELIVERY_FORMAT = "%(asctime)s %(process)d %(message)s"


class OneLineFormatter(logging.Formatter):
    """A formatter that writes each record as one line, and a traceback indented below.

    Each text argument of a record is cut after :data:`~runnerkit.logtext.MAX_VALUE`
    characters, and the whole message after :data:`MAX_MESSAGE`; then every control
    character, line separator and stray surrogate of the line is escaped
    (:func:`~runnerkit.logtext.escape`).  Each line of a traceback or stack is
    escaped and cut the same way, and starts with :data:`CONTINUATION`.  The record
    itself is left as it was, for any other handler.
    """

    def format(self, record: logging.LogRecord) -> str:
        shown = logging.makeLogRecord(record.__dict__)
        shown.args = _bounded_args(record.args)
        shown.message = bounded(shown.getMessage(), MAX_MESSAGE)
        if self.usesTime():
            shown.asctime = self.formatTime(shown, self.datefmt)
        lines = [escape(self.formatMessage(shown))]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for extra in (record.exc_text, record.stack_info):
            if extra:
                lines.extend(
                    CONTINUATION + escape(bounded(line, MAX_MESSAGE)) for line in extra.split("\n")
                )
        return "\n".join(lines)


def _bounded_args(args: Any) -> Any:
    """A record's arguments with each text (or bytes) value cut to its first part."""
    if isinstance(args, tuple):
        return tuple(_bounded_value(arg) for arg in args)
    if isinstance(args, Mapping):
        return {key: _bounded_value(value) for key, value in args.items()}
    return args


def _bounded_value(value: object) -> object:
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, bytes) and len(value) > MAX_VALUE:
        return value[:MAX_VALUE] + b"...[%d more bytes]" % (len(value) - MAX_VALUE)
    return value


class ReopenableFileHandler(logging.FileHandler):
    """A file handler whose file can be reopened, after a log rotator has moved it."""

    def _open(self) -> io.TextIOWrapper:
        # Created readable by the group, writable only by the owner, whatever the umask.
        fd = os.open(
            self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
        )
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def reopen(self) -> None:
        """Close the file; the next record opens it again at its configured path."""
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()


class RateLimitFilter(logging.Filter):
    """Let through at most *burst* records of one logger per *period* seconds.

    What a client can make a server log (bogus commands to the LMTP server, a REST
    client going away) must not fill the disk: 2,000 LMTP connections once wrote
    5.4 MB in 1.7 s.  The records over the limit are dropped and counted; the first
    record let through after them starts with how many of that logger's were dropped.

    :param burst: records let through per period, per logger.
    :param period: seconds.
    """

    def __init__(self, burst: int = LOG_BURST, period: float = LOG_PERIOD) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        #: logger name -> (start of its period, records let through in it, dropped).
        self._windows: dict[str, tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            start, passed, dropped = self._windows.get(record.name, (now, 0, 0))
            if now - start >= self.period:
                start, passed = now, 0
            if passed >= self.burst:
                self._windows[record.name] = (start, passed, dropped + 1)
                return False
            self._windows[record.name] = (start, passed + 1, 0)
        if dropped:
            record.msg = f"[{dropped} earlier record(s) of this logger dropped] {record.msg}"
        return True


def configure_logging(config: Configuration, name: str = "runnerkit") -> ReopenableFileHandler:
    """Send the ``runnerkit`` loggers to the configured log file at the configured level.

    The libraries runnerkit serves with log there too, at WARNING and above: aiosmtpd
    (``mail.log``, the LMTP server) would otherwise write to standard error, and so to
    the runner's output file without bound.  Every record passes a
    :class:`RateLimitFilter`.  A runner process also calls
    :func:`configure_delivery_log`, for the delivery log.

    :param name: the logger to configure; its children inherit the handler.
    :returns: the handler, which :func:`reopen_logs` reopens.
    """
    path = config.logging.path
    make_directories(path.parent)
    handler = ReopenableFileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    handler.addFilter(RateLimitFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, config.logging.level.upper()))
    for library in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(library)
        library_logger.addHandler(handler)
        library_logger.setLevel(logging.WARNING)
        library_logger.propagate = False
    return handler


def unconfigure_logging(handler: logging.Handler, name: str = "runnerkit") -> None:
    """Undo :func:`configure_logging`: take *handler* off logger *name* and the library
    loggers (which propagate again, at any level), and close it."""
    logging.getLogger(name).removeHandler(handler)
    for library in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(library)
        library_logger.removeHandler(handler)
        library_logger.setLevel(logging.NOTSET)
        library_logger.propagate = True
    handler.close()


def configure_delivery_log(config: Configuration) -> ReopenableFileHandler:
    """Send the records of :data:`DELIVERY_LOGGER` to ``[logging] delivery_path`` alone.

    Each is one line in :data:`DELIVERY_FORMAT`, made one line as every record is
    (:class:`OneLineFormatter`).  They are written at any ``[logging] level``, and not
    to the main log.  The file is created with the first record.

    :returns: the handler, which :func:`reopen_logs` reopens.
    """
    path = config.logging.delivery_path
    make_directories(path.parent)
    handler = ReopenableFileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(OneLineFormatter(DELIVERY_FORMAT))
    logger = logging.getLogger(DELIVERY_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def reopen_logs(name: str = "runnerkit") -> int:
    """Reopen every reopenable handler of logger *name* and of the loggers below it.

    :returns: how many handlers were reopened.
    """
    prefix = name + "."
    loggers = [logging.getLogger(name)] + [
        logger
        for logger_name, logger in list(logging.Logger.manager.loggerDict.items())
        if logger_name.startswith(prefix) and isinstance(logger, logging.Logger)
    ]
    count = 0
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, ReopenableFileHandler):
                handler.reopen()
                count += 1
    return count
