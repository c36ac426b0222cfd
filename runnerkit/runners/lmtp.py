"""The LMTP runner: receives mail for the mailing lists and queues it.

An MTA hands messages to runnerkit over LMTP (RFC 2033), on ``[lmtp] host`` and
``port``.  Only the addresses of an existing list are valid recipients: any other
address is refused at ``RCPT`` time with 550, so the server never relays.  A list
``<name>@<host>`` has these addresses (the names are Mailman's), matched in any case;
each queues the message to a queue of its own, with a flag in its metadata saying which
address it came to:

=====================================  ============  ================================
address                                queue         flag
=====================================  ============  ================================
``<name>@<host>`` (posting)            ``in``        ``tolist``
``<name>-owner@<host>``                ``in``        ``toowner``
``<name>-bounces@<host>``              ``bounces``   (none: the queue says it)
``<name>-request@<host>``              ``command``   ``torequest``
``<name>-join@``, ``-subscribe@``      ``command``   ``tojoin``
``<name>-leave@``, ``-unsubscribe@``   ``command``   ``toleave``
``<name>-confirm[+TOKEN]@<host>``      ``command``   ``toconfirm`` (and ``token``)
=====================================  ============  ================================

Only ``-confirm`` takes a ``+`` detail, the token of the request it confirms; any other
``<name>-<word>`` is refused like any unknown address.  After ``DATA`` the server
answers once per accepted recipient, as LMTP requires (RFC 2033, section 4.2), so one
address can accept a message while another defers it; an address named twice in one
transaction is queued once and answered twice.  Each queued message gets this metadata,
besides its flag:

``listid``
    the list's RFC 2919 identifier;
``listname``
    its posting address (fqdn_listname);
``original_sender``
    the envelope sender from ``MAIL FROM`` (``''`` for the null sender ``<>``);
``received_time``
    when the message was received, in seconds since the epoch (a float);
``original_size``
    the size in bytes of the message as queued.
``token``
    only for ``-confirm+TOKEN``: the TOKEN, as written.

Messages are queued in runnerkit's internal form: the wire's CRLF line endings become
LF, and nothing else changes, so 8-bit content is kept byte for byte.  A message
larger than ``[lmtp] max_message_size`` is refused with 552 5.3.4, when ``MAIL FROM``
announces its ``SIZE`` or, at the latest, after its data.  A message beyond one of the
``[limits]`` (:mod:`runnerkit.limits`: MIME depth, header fields, line length), or one
a queue file cannot hold, is refused for good with 554 5.6.0 and the reason, once per
recipient; lines longer than RFC 5322's 998 octets are accepted unless ``[limits]
max_line_length`` says otherwise.  A message that cannot be queued for a reason of
runnerkit's own is answered with 451, so the client keeps it and tries again.

aiosmtpd is imported only when the server starts, so that importing this module (as
the configuration does to check ``[runner.lmtp] class``) stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runnerkit.database import Database
from runnerkit.errors import (
    DatabaseError,
    MessageError,
    MessageLimitError,
    MetadataError,
    QueueUnavailableError,
    RunnerError,
)
from runnerkit.fsio import make_directories, replace_file
from runnerkit.limits import read_message
from runnerkit.lists import ListManager, MailingList
from runnerkit.message import Message
from runnerkit.metrics import LMTPMetrics, lmtp_metrics
from runnerkit.runner import Runner, Until, refuse_until
from runnerkit.runners.incoming import check_message

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    from runnerkit.backend import QueueBackend
    from runnerkit.config import Configuration, LimitsSettings

log = logging.getLogger(__name__)

#: The line ending of SMTP and LMTP.
CRLF = "\r\n"
#: The queue posts and messages to the owners go to.
INCOMING_QUEUE = "in"
#: The queue of delivery status notifications, sent to ``-bounces``.
BOUNCES_QUEUE = "bounces"
#: The queue of requests: ``-request``, ``-join``, ``-leave``, ``-confirm``.
COMMAND_QUEUE = "command"
#: Every queue this server writes to.
QUEUES = (INCOMING_QUEUE, BOUNCES_QUEUE, COMMAND_QUEUE)
#: The suffixes of a list's addresses, ``<name>-<suffix>@<host>``: the queue a message
#: to each goes to, and the metadata flag that says which address it came to.
SUBADDRESSES: dict[str, tuple[str, str | None]] = {
    "bounces": (BOUNCES_QUEUE, None),
    "owner": (INCOMING_QUEUE, "toowner"),
    "request": (COMMAND_QUEUE, "torequest"),
    "join": (COMMAND_QUEUE, "tojoin"),
    "subscribe": (COMMAND_QUEUE, "tojoin"),
    "leave": (COMMAND_QUEUE, "toleave"),
    "unsubscribe": (COMMAND_QUEUE, "toleave"),
    "confirm": (COMMAND_QUEUE, "toconfirm"),
}
#: The only suffix that takes a ``+`` detail (the token).
CONFIRM = "confirm"

# Replies.  RFC 3463 enhanced status codes follow the basic code.
OK_RECIPIENT = "250 2.1.5 Ok"
NO_SUCH_LIST = "550 5.1.1 {address}: no such mailing list here"
RELAY_DENIED = "550 5.7.1 {address}: relay access denied; only list addresses accepted"
LOOKUP_FAILED = "451 4.3.0 {address}: cannot check this recipient now; try again later"
QUEUED = "250 2.0.0 {address}: Ok, queued as {filebase}"
QUEUE_FAILED = "451 4.3.0 {address}: cannot queue the message now; try again later"
#: A message that can never be queued, whatever the retries: its fault (RFC 3463 5.6.0).
#: The file in the var dir where a listening LMTP runner publishes its address.
ADDRESS_FILE = "lmtp.address"
UNQUEUEABLE = "554 5.6.0 {address}: the message cannot be queued: {reason}"
#: A message beyond one of the [limits], or that the parser cannot read: its fault.
REFUSED = "554 5.6.0 {address}: the message is refused: {reason}"
#: A message larger than [lmtp] max_message_size (RFC 3463 5.3.4: too big for the system).
TOO_BIG = "552 5.3.4 {address}: the message is refused: {reason}"
#: The greeting of a session over ``[lmtp] max_connections`` (RFC 3463 4.3.2: system
#: not accepting network messages, for now).
TOO_MANY = "421 4.3.2 Too many sessions at once ([lmtp] max_connections); try again later"
#: What aiosmtpd answers, once, to data beyond its size limit (a line longer than the
#: whole limit is "too long").
_AIOSMTPD_TOO_BIG = ("552 Error: Too much mail data", "500 Line too long (see RFC5321 4.5.3.1.6)")
SHUTTING_DOWN = b"421 4.3.2 runnerkit LMTP service shutting down\r\n"


@dataclass(frozen=True)
class ListRecipient:
    """What a recipient address of a list means: see the module's documentation."""

    mlist: MailingList
    #: The queue the message goes to.
    queue: str
    #: The metadata flag set to True (``tolist``, ``toowner`` ...), or None.
    flag: str | None
    #: The ``+`` detail of a ``-confirm+TOKEN`` address, or None.
    token: str | None = None


def resolve_recipient(lists: ListManager, address: str) -> ListRecipient | None:
    """Which list *address* belongs to, and which of its addresses it is; None if none.

    The posting address wins over a sub-address: should lists ``ants`` and
    ``ants-owner`` both exist, ``ants-owner@`` is the second list's posting address.
    """
    mlist = lists.get(address)
    if mlist is not None:
        return ListRecipient(mlist, INCOMING_QUEUE, "tolist")
    local, at, domain = address.rpartition("@")
    if not at:
        return None
    local, plus, detail = local.partition("+")
    name, dash, suffix = local.rpartition("-")
    suffix = suffix.lower()
    if not (dash and name and suffix in SUBADDRESSES):
        return None
    if plus and (suffix != CONFIRM or not detail):
        return None
    mlist = lists.get(f"{name}@{domain}")
    if mlist is None:
        return None
    queue, flag = SUBADDRESSES[suffix]
    return ListRecipient(mlist, queue, flag, detail if plus else None)


def _printable(address: str) -> str:
    """*address* made safe for an ASCII reply line."""
    return address.encode("ascii", "backslashreplace").decode("ascii").replace("\r", "\\r")


class ListDelivery:
    """The aiosmtpd handler: accepts list addresses, queues each message where it goes.

    :param lists: where the lists are looked up, on the server's own thread.
    :param switchboards: the queues of :data:`QUEUES`, by name.
    :param limits: what a message may be (``[limits]``).
    :param max_size: the largest message in octets (``[lmtp] max_message_size``); 0
        for no limit.
    """

    def __init__(
        self,
        lists: ListManager,
        switchboards: Mapping[str, QueueBackend],
        *,
        limits: LimitsSettings,
        max_size: int = 0,
        reconnect: Callable[[], ListManager] | None = None,
    ) -> None:
        self.lists = lists
        #: Opens the database afresh after a database error, and gives its lists.
        self.reconnect = reconnect
        self.switchboards = switchboards
        self.limits = limits
        self.max_size = max_size

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept *address* if it is one of a list's addresses; refuse it otherwise."""
        shown = _printable(address)
        try:
            target = resolve_recipient(self.lists, address)
            # A local name, or another address at a list's domain, is a missing list;
            # anything else would be relayed.
            _, at, domain = address.rpartition("@")
            served = target is not None or not at or self.lists.serves_domain(domain)
        except Exception as error:
            log.exception("cannot look up recipient %s", shown)
            if isinstance(error, (sqlite3.Error, DatabaseError)) and self.reconnect:
                # The client tries again; by then a new connection answers.
                try:
                    self.lists = self.reconnect()
                except DatabaseError as failure:
                    log.error("cannot open the database afresh: %s", failure)
            return LOOKUP_FAILED.format(address=shown)
        if target is None:
            log.info("refused recipient %s (%s)", shown, "no such list" if served else "relay")
            return (NO_SUCH_LIST if served else RELAY_DENIED).format(address=shown)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Queue the message once per accepted address; one reply line per recipient."""
        received_time = time.time()
        content = envelope.original_content or b""
        try:
            msg = read_message(content.replace(b"\r\n", b"\n"), self.limits, self.max_size)
        except MessageError as error:
            # The message's own fault: no retry will help, so the sender hears it now.
            log.warning("refused a message: %s", error)
            too_big = isinstance(error, MessageLimitError) and error.limit == "max_message_size"
            reason = _printable(str(error))
            return CRLF.join(
                (TOO_BIG if too_big else REFUSED).format(address=_printable(rcpt), reason=reason)
                for rcpt in envelope.rcpt_tos
            )
        if not msg.keys():
            # Not an email message at all (RFC 5322, section 2.1: header fields, then a
            # body): it could only end in bad.
            reason = "it has no header fields: it is not an email message (RFC 5322 2.1)"
            log.warning("refused a message: %s", reason)
            return CRLF.join(
                REFUSED.format(address=_printable(rcpt), reason=reason)
                for rcpt in envelope.rcpt_tos
            )
        sender = envelope.mail_from or ""
        if sender == "<>":
            sender = ""
        # An address named twice in one transaction gets the message once, and two replies.
        replies: dict[str, str] = {}
        lines = []
        for address in envelope.rcpt_tos:
            key = address.lower()
            if key not in replies:
                replies[key] = self._queue(msg, address, sender, received_time)
            lines.append(replies[key])
        return CRLF.join(lines)

    def _queue(self, msg: Message, address: str, sender: str, received_time: float) -> str:
        shown = _printable(address)
        try:
            target = resolve_recipient(self.lists, address)
            if target is None:
                log.warning("list %s was deleted during the transaction", shown)
                return NO_SUCH_LIST.format(address=shown)
            mlist = target.mlist
            problem = check_message(mlist, msg) if target.queue == INCOMING_QUEUE else None
            if problem is not None:
                # The in runner would only move it to bad: the sender hears it now.
                log.warning("refused a message for %s: %s", shown, problem)
                reason = problem[:1].lower() + problem[1:].rstrip(".")
                return REFUSED.format(address=shown, reason=_printable(reason))
            extra: dict[str, Any] = {}
            if target.flag is not None:
                extra[target.flag] = True
            if target.token is not None:
                extra["token"] = target.token
            filebase = self.switchboards[target.queue].enqueue(
                msg,
                listid=mlist.list_id,
                listname=mlist.fqdn_listname,
                original_sender=sender,
                received_time=received_time,
                original_size=msg.original_size,
                **extra,
            )
        except MetadataError as error:
            # The message's own fault: no retry will help, so the sender hears it now.
            log.warning("refused a message for %s: %s", shown, error)
            return UNQUEUEABLE.format(address=shown, reason=_printable(str(error)))
        except QueueUnavailableError as error:
            # The queue server is unreachable or full: the environment's fault, said in
            # one line (the error names the server); the client keeps it and retries.
            log.error("cannot queue a message for %s, the client will retry: %s", shown, error)
            return QUEUE_FAILED.format(address=shown)
        except Exception:
            log.exception("cannot queue a message for %s; the client will retry", shown)
            return QUEUE_FAILED.format(address=shown)
        log.debug("queued %s to %s for %s from %r", filebase, target.queue, shown, sender)
        return QUEUED.format(address=shown, filebase=filebase)


def _write_address(path: Path, host: str, port: int) -> None:
    """Publish ``HOST PORT`` in *path*, atomically: a reader sees all of it or none."""
    make_directories(path.parent)
    replace_file(path, f"{host} {port}\n".encode("ascii"))


def read_address(var_dir: Path) -> tuple[str, int] | None:
    """The (host, port) a listening LMTP runner of *var_dir* published, or None."""
    try:
        host, port = (var_dir / ADDRESS_FILE).read_text(encoding="ascii").split()
    except (OSError, ValueError):
        return None
    return host, int(port)


def _protocol_class() -> type[Any]:
    """The LMTP protocol class, built on first use so that aiosmtpd loads lazily."""
    from aiosmtpd.lmtp import LMTP

    class ListLMTP(LMTP):
        """aiosmtpd's LMTP with one reply per recipient even when DATA fails.

        aiosmtpd answers an oversize or malformed DATA with a single line, but an
        LMTP client waits for one line per accepted recipient; such a one-line reply
        is repeated for each, and an oversize one says so with an enhanced status
        code.  Lines may be as long as the whole message may be (aiosmtpd's own limit
        is RFC 5321's 1,000 octets; ``[limits] max_line_length`` decides instead).
        Open sessions are tracked so that a stopping server can end them, and every
        reply sent is counted in *metrics*.
        """

        def __init__(
            self,
            handler: Any,
            sessions: set[Any],
            metrics: LMTPMetrics,
            max_connections: int = 0,
            **kws: Any,
        ) -> None:
            size = kws.get("data_size_limit")
            # Read by the base class's constructor, which makes the stream reader.
            self.line_length_limit = size + len(CRLF) if size else sys.maxsize
            super().__init__(handler, **kws)
            self._sessions = sessions
            self._metrics = metrics
            self._replies_owed = 0
            self._max_connections = max_connections
            self._turned_away = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self._max_connections and len(self._sessions) >= self._max_connections:
                # Busy: the client tries again later (RFC 5321, 3.8 and 4.2.3), and
                # nothing of it is read into memory.
                self._turned_away = True
                self._metrics.replies(TOO_MANY)
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write((TOO_MANY + CRLF).encode("ascii"))
                transport.close()
                return
            super().connection_made(transport)
            self._sessions.add(self)

        def connection_lost(self, error: Exception | None) -> None:
            if self._turned_away:
                return
            self._sessions.discard(self)
            super().connection_lost(error)

        async def push(self, status: Any) -> None:
            owed, self._replies_owed = self._replies_owed, 0
            if owed and status in _AIOSMTPD_TOO_BIG and self.envelope:
                reason = (
                    f"it is larger than [lmtp] max_message_size ({self.data_size_limit:,} octets)"
                )
                status = CRLF.join(
                    TOO_BIG.format(address=_printable(rcpt), reason=reason)
                    for rcpt in self.envelope.rcpt_tos
                )
            elif owed > 1 and isinstance(status, str) and CRLF not in status:
                status = CRLF.join([status] * owed)
            # Counted before it is sent: a client that has read it may ask for /metrics.
            self._metrics.replies(
                status if isinstance(status, str) else status.decode("ascii", "replace")
            )
            await super().push(status)
            if isinstance(status, str) and status.startswith("354") and self.envelope:
                self._replies_owed = len(self.envelope.rcpt_tos)

    return ListLMTP


class LMTPRunner(Runner):
    """Serves LMTP until stopped; see the module's documentation.

    :param name: the runner's name, as in ``[runner.NAME]``.
    :param slice: unused: the server has no queue of its own.
    :param config: the configuration to use; by default the current one.
    """

    is_queue_runner = False

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        #: The address the server listens on.
        self.host: str = self.config.lmtp.host
        #: The port it listens on: the configured one, or the bound one once
        #: :attr:`ready` is set (useful with ``port: 0``).
        self.port: int = self.config.lmtp.port
        #: The largest message accepted, in bytes; 0 for no limit.
        self.max_message_size: int = self.config.lmtp.max_message_size
        #: Sessions at once; one more is answered 421 (0: no limit).
        self.max_connections: int = self.config.lmtp.max_connections
        #: Set while the server is listening.
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def address_file(self) -> Path:
        """``$VAR_DIR/lmtp.address``: ``HOST PORT`` of the listening server, while it
        listens; with ``port: 0`` the only way for a client to learn the port."""
        return self.config.paths.var_dir / ADDRESS_FILE

    def run(self, until: Until | None = None) -> None:
        """Serve LMTP until :meth:`stop` is called, then end every session and return.

        :raises RunnerError: the server cannot listen on its address, or *until* was
            given (a server takes no condition).
        """
        refuse_until(self, until)
        # sqlite3 connections belong to the thread that opened them, and run() may not
        # be on the configuration's thread: the server has a connection of its own.
        databases = [Database(self.config.database_path)]

        def reconnect() -> ListManager:
            # A damaged, restored or replaced file is only seen whole by a new
            # connection (the chaos run: 451 for over 120 s until a restart).
            old = databases.pop()
            with contextlib.suppress(sqlite3.Error):
                old.close()
            databases.append(Database(self.config.database_path))
            log.warning("%s: opened the database afresh after an error", self)
            return self.config.lists_in(databases[0])

        try:
            lists = self.config.lists_in(databases[0])
            handler = ListDelivery(
                lists,
                {name: self.config.switchboards[name] for name in QUEUES},
                limits=self.config.limits,
                max_size=self.max_message_size,
                reconnect=reconnect,
            )
            with asyncio.Runner() as runner:
                runner.run(self._serve(handler))
        finally:
            for database in databases:
                database.close()
            self._clean_up()

    def stop(self) -> None:
        """Stop serving: end the sessions and make :meth:`run` return.

        Safe to call from any thread, before or while :meth:`run` runs.
        """
        super().stop()
        with self._lock:
            loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            # The loop may have closed in the meantime; then there is nothing to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)

    async def _serve(self, handler: ListDelivery) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        with self._lock:
            self._loop, self._stopping = loop, stopping
        # stop() reads the loop after setting the flag: one of the two sees the other.
        if self._stop.is_set():
            stopping.set()
        protocol_class = _protocol_class()
        sessions: set[Any] = set()
        hostname = socket.getfqdn()
        metrics = lmtp_metrics(self.config)

        def make_protocol() -> Any:
            return protocol_class(
                handler,
                sessions,
                metrics,
                self.max_connections,
                data_size_limit=self.max_message_size or None,
                hostname=hostname,
                ident="runnerkit LMTP",
                loop=loop,
            )

        try:
            server = await loop.create_server(make_protocol, self.host, self.port)
        except OSError as error:
            # asyncio words strerror as a sentence of its own; the errno says it plainly.
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise RunnerError(
                f"{self}: cannot listen for LMTP on {self.host}:{self.port}: "
                f"{reason}; set [lmtp] host and port to a free address"
            ) from error
        self.port = server.sockets[0].getsockname()[1]
        log.info("%s: listening for LMTP on %s:%d", self, self.host, self.port)
        address = self.address_file
        _write_address(address, self.host, self.port)
        self.ready.set()
        try:
            await stopping.wait()
        finally:
            self.ready.clear()
            with contextlib.suppress(OSError):
                address.unlink()
            server.close()
            for session in list(sessions):
                if session.transport is not None:
                    session.transport.write(SHUTTING_DOWN)
                    session.transport.close()
            await server.wait_closed()
            with self._lock:
                self._loop = self._stopping = None
            log.info("%s: LMTP server closed", self)
