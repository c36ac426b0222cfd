"""``runnerkit demo``: the whole system at work, on a fresh var dir, with nothing to set up.

The demo starts a master with the built-in runners, creates a list with members, sends
messages over LMTP, shows them flowing through ``in``, ``pipeline`` and ``out`` into the
list's Maildir, and accounts for every one of them at the end.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from runnerkit import queuefile
from runnerkit.errors import DemoError, RunnerkitError
from runnerkit.fsio import make_directories, read_queue_file
from runnerkit.master import start_in_background, stop_master
from runnerkit.runners.lmtp import read_address
from runnerkit.site import Site

#: The list the demo posts to.
DEMO_LIST = "demo@example.com"
#: Queues a message may still wait in when the demo ends.
FLOW_QUEUES = ("in", "pipeline", "out", "retry")


@dataclass
class DemoResult:
    """Where every message sent by the demo ended up."""

    sent: int = 0
    delivered: int = 0
    shunted: int = 0
    bad: int = 0
    queued: int = 0
    lost: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    messages_per_second: float = 0.0
    var_dir: str = ""
    send_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def demo_config_text(port: int) -> str:
    """The configuration layer the demo runs with."""
    return (
        f"[lmtp]\nport: {port}\n\n"
        "[runner.in]\nsleep_time: 200ms\n\n"
        "[runner.pipeline]\nsleep_time: 200ms\n\n"
        "[runner.out]\ninstances: 2\nsleep_time: 200ms\n\n"
        "[runner.retry]\nsleep_time: 2s\n\n"
        "[master]\nstop_timeout: 20s\n"
    )


class Demo:
    """One run of the demo.

    :param count: how many messages to send.
    :param var_dir: where to run; a fresh temporary directory by default.
    :param members: how many members the demo list gets.
    :param timeout: give up waiting for the messages after this many seconds.
    :param out: where the progress bar goes (nothing when None).
    """

    def __init__(
        self,
        count: int = 1000,
        var_dir: Path | None = None,
        *,
        members: int = 3,
        timeout: float = 300.0,
        out: TextIO | None = None,
    ) -> None:
        if count < 1:
            raise DemoError(f"the demo needs at least 1 message, got {count}")
        self.count = count
        self.var_dir = (
            Path(var_dir) if var_dir else Path(tempfile.mkdtemp(prefix="runnerkit-demo-"))
        )
        if var_dir is not None and self.var_dir.exists() and any(self.var_dir.iterdir()):
            raise DemoError(
                f"--var-dir {str(self.var_dir)!r} is not empty; the demo needs a fresh one"
            )
        self.members = members
        self.timeout = timeout
        self.out = out
        #: The LMTP port: the system picks a free one (``port: 0``), and the runner
        #: publishes it; a port picked here could be taken before the runner binds it.
        self.port = 0
        self.config_file = self.var_dir / "demo.cfg"
        self._sent = 0
        self._send_errors: list[str] = []
        self._failed_sends: set[int] = set()

    def run(self) -> DemoResult:
        """Run the demo from start to clean stop, and account for every message."""
        make_directories(self.var_dir)
        self.config_file.write_text(demo_config_text(0), encoding="utf-8")
        config = Site(self.var_dir)
        config.push_file(self.config_file)
        with config:
            mlist = config.lists.create(DEMO_LIST, display_name="Demo")
            for index in range(self.members):
                mlist.subscribe(
                    f"member{index + 1}@example.com", display_name=f"Member {index + 1}"
                )
            maildir = config.delivery.maildir / mlist.list_id / "new"
            start_in_background(config, (self.config_file,))
            try:
                self._wait_for_lmtp()
                started = time.monotonic()
                sender = threading.Thread(target=self._send_all, name="demo-sender", daemon=True)
                sender.start()
                result = self._watch(config, maildir, started, sender)
            finally:
                stop_master(config, timeout=60.0)
            found: set[int] = set()
            result.queued = self._account(config, FLOW_QUEUES, found)
            result.shunted = self._account(config, ("shunt",), found)
            result.bad = self._account(config, ("bad",), found, ".psv")
            delivered = _maildir_ids(maildir)
            result.delivered = len(delivered)
            result.duplicates = sum(delivered.values()) - len(delivered)
            found.update(delivered)
            result.lost = len(set(range(1, self.count + 1)) - self._failed_sends - found)
        result.var_dir = str(self.var_dir)
        return result

    def _wait_for_lmtp(self, wait: float = 30.0) -> None:
        """Wait until the LMTP runner listens, and learn its port from what it publishes."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            address = read_address(self.var_dir)
            if address is not None:
                self.port = address[1]
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise DemoError(f"the LMTP runner did not start listening in {wait:.0f}s")

    def _send_all(self) -> None:
        client = smtplib.LMTP("127.0.0.1", self.port)
        try:
            client.ehlo("demo.example.com")
            for number in range(1, self.count + 1):
                text = (
                    f"From: sender@example.org\nTo: {DEMO_LIST}\n"
                    f"Subject: demo message {number}\nMessage-ID: <demo-{number}@example.org>\n\n"
                    f"This is demo message {number} of {self.count}.\n"
                )
                try:
                    client.sendmail("sender@example.org", [DEMO_LIST], text)
                except smtplib.SMTPException as error:
                    self._send_errors.append(f"message {number}: {error}")
                    self._failed_sends.add(number)
                    continue
                self._sent += 1
        finally:
            try:
                client.quit()
            except smtplib.SMTPException:
                client.close()

    def _watch(
        self, config: Site, maildir: Path, started: float, sender: threading.Thread
    ) -> DemoResult:
        deadline = started + self.timeout
        delivered = 0
        while time.monotonic() < deadline:
            delivered = _count(maildir)
            depths = {name: len(config.switchboards[name].files) for name in FLOW_QUEUES}
            self._draw(delivered, depths, time.monotonic() - started)
            stuck = self._stuck(config)
            idle = not sender.is_alive() and not any(depths.values())
            if idle and delivered + stuck >= self._sent:
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()
        return DemoResult(
            sent=self._sent,
            seconds=round(seconds, 3),
            messages_per_second=round(delivered / seconds, 1) if seconds else 0.0,
            send_errors=list(self._send_errors),
        )

    def _stuck(self, config: Site) -> int:
        bad = config.switchboards["bad"]
        return (
            len(config.switchboards["shunt"].files) + len(bad.files) + len(bad.get_files(".psv"))
        )

    def _draw(self, delivered: int, depths: dict[str, int], elapsed: float) -> None:
        if self.out is None:
            return
        width = 30
        done = min(width, width * delivered // self.count)
        rate = delivered / elapsed if elapsed > 0 else 0.0
        flow = " ".join(f"{name} {depth}" for name, depth in depths.items())
        self.out.write(
            f"\r[{'#' * done}{'.' * (width - done)}] sent {self._sent}/{self.count} "
            f"delivered {delivered} | {flow} | {rate:.0f} msg/s "
        )
        self.out.flush()

    def _account(self, config: Site, names: tuple[str, ...], found: set[int], *extra: str) -> int:
        """Count the files left in queues *names*, adding their demo numbers to *found*."""
        total = 0
        for name in names:
            switchboard = config.switchboards[name]
            for extension in (".pck", *extra):
                for filebase in switchboard.get_files(extension):
                    total += 1
                    path = switchboard.queue_directory / f"{filebase}{extension}"
                    try:
                        entry = queuefile.decode(read_queue_file(path), source=str(path))
                    except RunnerkitError:
                        continue
                    number = _demo_number(str(entry.message.get("Message-ID", "")))
                    if number is not None:
                        found.add(number)
        return total


_DEMO_ID = re.compile(r"<demo-(\d+)@example\.org>")


def _demo_number(message_id: str) -> int | None:
    match = _DEMO_ID.search(message_id)
    return int(match.group(1)) if match else None


def _maildir_ids(maildir: Path) -> Counter[int]:
    """How many copies of each demo message the Maildir holds."""
    copies: Counter[int] = Counter()
    try:
        names = os.listdir(maildir)
    except FileNotFoundError:
        return copies
    for name in names:
        with open(maildir / name, "rb") as message_file:
            head = message_file.read(4096).decode("ascii", "replace")
        number = _demo_number(head)
        if number is not None:
            copies[number] += 1
    return copies


def _count(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir))
    except FileNotFoundError:
        return 0


def print_summary(result: DemoResult, out: TextIO = sys.stdout) -> None:
    """Print where every message ended, and the throughput."""
    rows = [
        ("sent over LMTP", result.sent),
        ("delivered to the list's Maildir", result.delivered),
        ("shunted (errors)", result.shunted),
        ("in bad (unusable)", result.bad),
        ("still queued", result.queued),
        ("lost", result.lost),
        ("delivered twice (after a crash)", result.duplicates),
    ]
    for label, value in rows:
        out.write(f"{label:<34} {value:>7}\n")
    out.write(
        f"{'seconds':<34} {result.seconds:>7.2f}\n"
        f"{'throughput (messages/second)':<34} {result.messages_per_second:>7.1f}\n"
        f"var dir: {result.var_dir}\n"
    )
    for error in result.send_errors[:5]:
        out.write(f"send error: {error}\n")
