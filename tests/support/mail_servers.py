"""Real mail servers for tests of the list addresses: the LMTP runner in a thread, and a
local aiosmtpd SMTP server that records what the ``out`` runner hands it.

Nothing here sends mail anywhere but 127.0.0.1.  Every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from runnerkit.runners.lmtp import LMTPRunner

#: The bound on every wait.
DEADLINE = 15.0


class LMTPServerThread:
    """An LMTP runner whose run() is in a thread; any error it raised is kept."""

    def __init__(self, runner: LMTPRunner) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lmtp-test")

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:
            self.error = error

    def start(self) -> None:
        """Start the runner; raise unless it listens within :data:`DEADLINE`."""
        self.thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self.runner.ready.wait(0.01):
            if not self.thread.is_alive():
                raise RuntimeError(f"the LMTP runner ended before listening: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the LMTP runner did not listen within {DEADLINE} s")

    def stop(self) -> None:
        """Stop the runner; raise unless run() returns in time, without error."""
        self.runner.stop()
        self.thread.join(DEADLINE)
        if self.thread.is_alive():
            raise RuntimeError(f"run() still running {DEADLINE} s after stop()")
        if self.error is not None:
            raise self.error


@dataclass
class Received:
    """One message an SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that records what it accepts, and refuses as told."""

    #: Replies to RCPT TO for these addresses instead of accepting them.
    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


class AnyPortController(Controller):
    """A Controller that may listen on port 0: it learns its port before using it."""

    def _trigger_server(self) -> None:
        if self.server is None:
            raise RuntimeError("the SMTP server has no socket")
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
