"""Logging for runnerkit processes: one log file, reopened on SIGHUP for log rotation."""

from __future__ import annotations

import io
import logging
import os

from runnerkit.config import Configuration
from runnerkit.fsio import FILE_MODE, make_directories

#: The format of every log line: time, process, logger, level, message.
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"


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


def configure_logging(config: Configuration, name: str = "runnerkit") -> ReopenableFileHandler:
    """Send the ``runnerkit`` loggers to the configured log file at the configured level.

    :param name: the logger to configure; its children inherit the handler.
    :returns: the handler, which :func:`reopen_logs` reopens.
    """
    path = config.logging.path
    make_directories(path.parent)
    handler = ReopenableFileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, config.logging.level.upper()))
    return handler


def reopen_logs(name: str = "runnerkit") -> int:
    """Reopen every reopenable handler of logger *name*; return how many there were."""
    count = 0
    for handler in logging.getLogger(name).handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()
            count += 1
    return count
