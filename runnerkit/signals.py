"""Signals handled outside signal-handler context.

A Python signal handler runs in the main thread between two bytecodes, possibly while
that thread holds a lock that the handler would need (``threading.Event.set`` takes
one).  So runnerkit's handlers do nothing at all: the interpreter writes each signal's
number to a wake-up pipe, and a dispatcher thread reads the pipe and calls the action
for that signal, as ordinary code in an ordinary thread.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType

log = logging.getLogger("runnerkit.signals")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up pipe carries the signal instead."""


class SignalDispatcher:
    """Call an action for each signal received, from a dedicated thread.

    Must be created in the main thread.  :meth:`close` restores the previous handlers.

    :param actions: signal number -> callable taking the signal number.
    """

    def __init__(self, actions: Mapping[int, Callable[[int], object]]) -> None:
        self._actions = dict(actions)
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(self._read_fd, True)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _ignore) for signum in self._actions}
        self._thread = threading.Thread(target=self._dispatch, name="signals", daemon=True)
        self._thread.start()

    def _dispatch(self) -> None:
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                action = self._actions.get(signum)
                if action is None:
                    continue
                try:
                    action(signum)
                except Exception:
                    log.exception("the action for signal %d failed", signum)

    def close(self) -> None:
        """Restore the previous handlers and stop the dispatcher thread."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._write_fd)
        self._thread.join(timeout=5)
        os.close(self._read_fd)

    def __enter__(self) -> SignalDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
