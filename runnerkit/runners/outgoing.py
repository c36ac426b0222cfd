"""The ``out`` runner: delivers each list message to its recipients.

``[delivery] method`` chooses how:

``maildir``
    One Maildir per list at ``<[delivery] maildir>/<list id>/``, holding one copy of
    each message in ``new/``, written durably.  It stands in for the members' mailboxes
    in the embedded default, which needs no mail server.  A message for chosen
    recipients (``msgdata['recipients']``: mail to the owners, replies to requests)
    is not for the members: it gets one copy in each recipient's own Maildir,
    ``<[delivery] maildir>/<address>/`` (lower-cased, and with any character but
    letters, digits and ``@.+-_=`` %-escaped, so it is one directory name; a list id
    has no ``@``, so the two never meet).

``smtp``
    One SMTP transaction per message to ``[delivery] smtp_host``:``smtp_port``, every
    recipient in it, from the list's ``-bounces`` address.  Recipients refused with a
    4xx reply, or all of them when the server cannot be reached, go to ``retry`` with
    ``recipients`` set to just them and ``attempts`` counted up.  A 5xx reply is a
    permanent failure, as is a temporary one on the ``[delivery] max_attempts``-th
    attempt: it is logged and recorded in the ``delivery_failure`` table, and that
    recipient is not tried again.

The recipients are ``msgdata['recipients']`` when present, else the list's members.

The delivery log
----------------
Each delivery attempt writes one line to the delivery log (``[logging] delivery_path``,
``$LOG_DIR/delivery.log`` by default, reopened on SIGHUP like the main log), as an
operator greps Mailman's ``smtp.log``: one line per outcome, so a message that some
recipients took and others refused has a line for each.  After the time and the pid
(:data:`~runnerkit.logs.DELIVERY_FORMAT`) come ``key=value`` fields in this order, a
value with a space, ``"`` or ``=`` in double quotes with ``\\`` and ``\"`` escaped (the
*logfmt* convention).  Two lines, each shown here over two::

    2026-11-30 02:31:00,123 4242 outcome=delivered message_id=<hello@example.com>
      list=ant.example.com recipients=2 seconds=0.004
    2026-11-30 02:31:05,456 4242 outcome=deferred message_id=<x@example.com>
      list=ant.example.com recipients=1 attempt=1/5 seconds=0.031 reply="451 4.3.0 later"

``outcome``
    ``delivered`` (to the Maildir, or accepted by the smarthost), ``deferred`` (a
    temporary failure: queued to ``retry``, to be tried again), or ``failed`` (a
    permanent failure, or the last attempt: recorded, not tried again);
``message_id``
    the Message-ID, as :func:`~runnerkit.logtext.header_for_log` shows a header
    field (unfolded, escaped, bounded), ``-`` when there is none;
``list``
    the list's RFC 2919 list id;
``recipients``
    how many recipients had this outcome;
``attempt``
    SMTP only: this attempt's number and ``[delivery] max_attempts``;
``seconds``
    how long the delivery took, the whole SMTP transaction or Maildir write;
``reply``
    ``deferred`` and ``failed`` only: the SMTP reply (code and text) or, when there
    was none, why (``cannot deliver through HOST:PORT: ...``).
"""

from __future__ import annotations

import logging
import mailbox
import os
import smtplib
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from runnerkit.database import Database
from runnerkit.errors import RunnerError
from runnerkit.fsio import (
    FILE_MODE,
    fsync_directory,
    make_directories,
    path_in,
    remove_stale_temporary,
)
from runnerkit.logs import DELIVERY_LOGGER
from runnerkit.logtext import header_for_log
from runnerkit.message import Message
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.config import Configuration
    from runnerkit.lists import MailingList

log = logging.getLogger(__name__)
delivery_log = logging.getLogger(DELIVERY_LOGGER)

#: The delivery methods ``[delivery] method`` may name.
METHODS = ("maildir", "smtp")
#: The queue that temporarily failed deliveries go to.
RETRY_QUEUE = "retry"
#: Seconds to wait for the smarthost before the attempt counts as a temporary failure.
SMTP_TIMEOUT = 60.0

#: The outcomes of the delivery log: accepted, to be tried again, and given up.
DELIVERED, DEFERRED, FAILED = "delivered", "deferred", "failed"

#: A failed recipient's SMTP reply code (None: no reply, such as a refused connection)
#: and the reply's text.
Failure = tuple[int | None, str]


@dataclass(frozen=True)
class DeliveryFailure:
    """One recorded permanent delivery failure: a row of ``delivery_failure``."""

    list_id: str
    recipient: str
    #: The SMTP reply code, or None when there was no reply.
    code: int | None
    response: str
    message_id: str
    #: Delivery attempts made, the last one included.
    attempts: int
    #: When it failed, in ISO 8601, UTC.
    failed_at: str


def record_failure(database: Database, failure: DeliveryFailure) -> None:
    """Add *failure* to the ``delivery_failure`` table, in the current transaction."""
    database.connection.execute(
        "INSERT INTO delivery_failure (list_id, recipient, code, response, message_id,"
        " attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            failure.list_id,
            failure.recipient,
            failure.code,
            failure.response,
            failure.message_id,
            failure.attempts,
            failure.failed_at,
        ),
    )


def delivery_failures(database: Database) -> list[DeliveryFailure]:
    """Every recorded permanent delivery failure, oldest first."""
    rows = database.connection.execute(
        "SELECT list_id, recipient, code, response, message_id, attempts, failed_at"
        " FROM delivery_failure ORDER BY id"
    ).fetchall()
    return [DeliveryFailure(*row) for row in rows]


def wire_bytes(msg: Message) -> bytes:
    """*msg* as the bytes to deliver.

    A message parsed from text may hold non-ASCII characters that
    :meth:`~email.message.Message.as_bytes` cannot write; they are sent as UTF-8,
    as the queue stores them.
    """
    try:
        return msg.as_bytes()
    except UnicodeEncodeError:
        return msg.as_string().encode("utf-8", "surrogateescape")


def mailbox_name(address: str) -> str:
    """The name of *address*'s own Maildir under ``[delivery] maildir``: the address
    lower-cased, every character but letters, digits and ``@.+-_=`` %-escaped, and a
    leading dot too (never ``.`` or ``..``, never hidden)."""
    name = quote(address.lower(), safe="@.+-_=")
    return "%2E" + name[1:] if name.startswith(".") else name or "%00"


def is_permanent(code: int | None) -> bool:
    """Whether an SMTP reply code says that trying again cannot help (5xx)."""
    return code is not None and 500 <= code <= 599


#: How old a file in a Maildir's ``tmp/`` must be before it counts as abandoned (a
#: delivery killed half-way), in seconds: 36 hours, the age the Maildir convention
#: gives (D. J. Bernstein, "Using maildir format", cr.yp.to/proto/maildir.html).
MAILDIR_TMP_AGE = 36 * 3600.0
#: How often the out runner looks for abandoned ``tmp/`` files, in seconds.
MAILDIR_CLEAN_INTERVAL = 3600.0


def clean_maildir_tmp(maildir: Path, now: float, min_age: float = MAILDIR_TMP_AGE) -> int:
    """Remove the abandoned files in the ``tmp/`` of each list's Maildir under *maildir*.

    A file counts as abandoned when it was last modified *min_age* seconds or more
    before *now* (wall-clock time) and no process holds a lock on it.

    :returns: how many files were removed.
    """
    removed = 0
    try:
        folders = list(os.scandir(maildir))
    except OSError:
        return 0
    for folder in folders:
        tmp = Path(folder.path) / "tmp"
        try:
            entries = list(os.scandir(tmp))
        except OSError:
            continue
        for entry in entries:
            if remove_stale_temporary(entry.path, min_age, now):
                log.info("removed an abandoned Maildir file %s", entry.path)
                removed += 1
    return removed


class OutgoingRunner(Runner):
    """Deliver list messages by ``[delivery] method``; see the module's documentation.

    The settings come from ``[delivery]``, whose method and attempts the schema checked
    when their layer was pushed.
    """

    is_queue_runner = True

    def __init__(
        self, name: str, slice: int | None = None, *, config: Configuration | None = None
    ) -> None:
        super().__init__(name, slice, config=config)
        delivery = self.config.delivery
        #: ``maildir`` or ``smtp``.
        self.method = delivery.method
        #: Attempts after which a temporary failure counts as permanent.
        self.max_attempts = delivery.max_attempts
        #: The directory holding one Maildir per list.
        self.maildir: Path = delivery.maildir
        #: The smarthost.
        self.smtp_host = delivery.smtp_host
        #: The smarthost's port.
        self.smtp_port = delivery.smtp_port
        #: When to look for abandoned Maildir ``tmp/`` files next (monotonic time).
        self._next_maildir_clean = 0.0

    def _do_periodic(self) -> None:
        """Once an hour (the first time at once), remove abandoned Maildir ``tmp/``
        files (:func:`clean_maildir_tmp`); only the first slice's process looks."""
        super()._do_periodic()
        if self.method != "maildir" or self.slice not in (None, 0):
            return
        now = time.monotonic()
        if now >= self._next_maildir_clean:
            self._next_maildir_clean = now + MAILDIR_CLEAN_INTERVAL
            clean_maildir_tmp(self.maildir, time.time())

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        if mlist is None:
            raise RunnerError(f"{self}: the message's metadata names no list (no listid)")
        recipients = self._recipients(mlist, msgdata)
        if not recipients:
            log.info("%s: %s has no recipients; nothing to deliver", self, _describe(msg))
            return False
        started = time.monotonic()
        if self.method == "maildir":
            if msgdata.get("recipients") is None:
                self._deliver_to_maildir(mlist.list_id, msg)
            else:
                for recipient in recipients:
                    self._deliver_to_maildir(mailbox_name(recipient), msg)
            self._log_delivery(DELIVERED, mlist, msg, len(recipients), started)
            return False
        failures = self._deliver_by_smtp(mlist, msg, recipients)
        attempt = (int(msgdata.get("attempts", 0)) + 1, self.max_attempts)
        delivered = len([rcpt for rcpt in recipients if rcpt not in failures])
        if delivered:
            self._log_delivery(DELIVERED, mlist, msg, delivered, started, attempt=attempt)
        if failures:
            temporary, permanent = self._handle_failures(mlist, msg, msgdata, failures)
            for outcome, refused in ((DEFERRED, temporary), (FAILED, permanent)):
                by_reply: dict[str, int] = {}
                for code, response in refused.values():
                    reply = _reply(code, response)
                    by_reply[reply] = by_reply.get(reply, 0) + 1
                for reply, count in by_reply.items():
                    self._log_delivery(
                        outcome, mlist, msg, count, started, attempt=attempt, reply=reply
                    )
        return False

    def _log_delivery(
        self,
        outcome: str,
        mlist: MailingList,
        msg: Message,
        recipients: int,
        started: float,
        *,
        attempt: tuple[int, int] | None = None,
        reply: str | None = None,
    ) -> None:
        """Write one line to the delivery log; see the module's documentation."""
        delivery_log.info(
            "%s",
            delivery_line(
                outcome,
                header_for_log(msg, "Message-ID", "-"),
                mlist.list_id,
                recipients,
                time.monotonic() - started,
                attempt=attempt,
                reply=reply,
            ),
        )

    def _recipients(self, mlist: MailingList, msgdata: MsgData) -> list[str]:
        given = msgdata.get("recipients")
        if given is None:
            return [member.address for member in mlist.members]
        if isinstance(given, str):
            return [given]
        return [str(recipient) for recipient in given]

    # Maildir.

    def _deliver_to_maildir(self, name: str, msg: Message) -> None:
        """Add one copy of *msg* to the Maildir *name* (a list id or a
        :func:`mailbox_name`), and flush it to disk."""
        make_directories(self.maildir)
        # A name from an older database may not be a safe name: then this raises, and
        # the message is shunted with the reason.
        folder = path_in(self.maildir, name)
        # All three, even in a folder that exists (one made half-way, or by hand).
        for part in ("tmp", "new", "cur"):
            make_directories(folder / part)
        box = mailbox.Maildir(folder, factory=None, create=True)
        key = box.add(wire_bytes(msg))
        new = folder / "new"
        fd = os.open(new / key, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # mailbox makes it 0666 less the umask; it holds mail (the folders are
            # 0750, so no one else could reach it meanwhile).
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(new)
        log.debug("%s: delivered %s to %s", self, _describe(msg), new / key)

    # SMTP.

    def _deliver_by_smtp(
        self, mlist: MailingList, msg: Message, recipients: list[str]
    ) -> dict[str, Failure]:
        """Send *msg* to *recipients* in one transaction; return the refused recipients."""
        sender = f"{mlist.list_name}-bounces@{mlist.mail_host}"
        try:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT)
        except smtplib.SMTPResponseException as error:
            return dict.fromkeys(recipients, (error.smtp_code, _text(error.smtp_error)))
        except (smtplib.SMTPException, OSError) as error:
            return dict.fromkeys(recipients, (None, _connection_problem(self, error)))
        try:
            refused = smtp.sendmail(sender, recipients, wire_bytes(msg))
        except smtplib.SMTPRecipientsRefused as error:
            refused = error.recipients
        except smtplib.SMTPResponseException as error:
            # The sender or the message itself was refused: every recipient shares it.
            return dict.fromkeys(recipients, (error.smtp_code, _text(error.smtp_error)))
        except (smtplib.SMTPException, OSError) as error:
            return dict.fromkeys(recipients, (None, _connection_problem(self, error)))
        finally:
            # The message is delivered or not by now; a failing QUIT changes nothing.
            with suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()
        return {
            recipient: (code, _text(response)) for recipient, (code, response) in refused.items()
        }

    def _handle_failures(
        self, mlist: MailingList, msg: Message, msgdata: MsgData, failures: dict[str, Failure]
    ) -> tuple[dict[str, Failure], dict[str, Failure]]:
        """Queue the temporary failures to ``retry``; record the permanent ones.

        :returns: the recipients queued to retry, and those given up, each with its
            failure (after the last attempt, the reply says so).
        """
        attempts = int(msgdata.get("attempts", 0)) + 1
        temporary = [rcpt for rcpt, (code, _) in failures.items() if not is_permanent(code)]
        permanent = {
            rcpt: failure for rcpt, failure in failures.items() if is_permanent(failure[0])
        }
        if temporary and attempts >= self.max_attempts:
            for rcpt in temporary:
                code, response = failures[rcpt]
                permanent[rcpt] = (code, f"{response} (gave up after {attempts} attempts)")
            temporary = []
        if temporary:
            filebase = self.config.switchboards[RETRY_QUEUE].enqueue(
                msg, msgdata, recipients=temporary, attempts=attempts
            )
            log.warning(
                "%s: %s: %d recipient(s) failed for now (attempt %d of %d), queued to "
                "retry as %s: %s",
                self,
                _describe(msg),
                len(temporary),
                attempts,
                self.max_attempts,
                filebase,
                "; ".join(f"{rcpt}: {_reply(*failures[rcpt])}" for rcpt in temporary),
            )
        failed_at = datetime.now(UTC).isoformat()
        for rcpt, (code, response) in permanent.items():
            log.error(
                "%s: %s: delivery to %s failed permanently: %s",
                self,
                _describe(msg),
                rcpt,
                _reply(code, response),
            )
            record_failure(
                self.config.database,
                DeliveryFailure(
                    list_id=mlist.list_id,
                    recipient=rcpt,
                    code=code,
                    response=response,
                    message_id=str(msg.get("Message-ID", "")),
                    attempts=attempts,
                    failed_at=failed_at,
                ),
            )
        return {rcpt: failures[rcpt] for rcpt in temporary}, permanent


def delivery_line(
    outcome: str,
    message_id: str,
    list_id: str,
    recipients: int,
    seconds: float,
    *,
    attempt: tuple[int, int] | None = None,
    reply: str | None = None,
) -> str:
    """The fields of one delivery log line, after its time and pid.

    :param outcome: :data:`DELIVERED`, :data:`DEFERRED` or :data:`FAILED`.
    :param message_id: the Message-ID as a log shows it
        (:func:`~runnerkit.logtext.header_for_log`).
    :param recipients: how many recipients had this outcome.
    :param seconds: how long the delivery took.
    :param attempt: the attempt's number and the most there may be (SMTP only).
    :param reply: the SMTP reply, or why there was none.
    :returns: ``outcome=... message_id=... list=... recipients=N [attempt=A/M]
        seconds=S [reply=...]``, each value quoted as :func:`logfmt_value` quotes it.
    """
    fields = [
        ("outcome", outcome),
        ("message_id", message_id),
        ("list", list_id),
        ("recipients", str(recipients)),
    ]
    if attempt is not None:
        fields.append(("attempt", f"{attempt[0]}/{attempt[1]}"))
    fields.append(("seconds", f"{seconds:.3f}"))
    if reply is not None:
        fields.append(("reply", reply))
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields)


def logfmt_value(value: str) -> str:
    """*value* as a logfmt value: as it is, or in double quotes when it holds a space,
    ``"``, ``=`` or nothing, with ``\\`` and ``"`` escaped by a backslash."""
    if value and not any(char in value for char in ' "='):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _describe(msg: Message) -> str:
    return f"message {header_for_log(msg, 'Message-ID', '(without a Message-ID)')}"


def _text(response: bytes | str) -> str:
    if isinstance(response, bytes):
        return response.decode("utf-8", "replace")
    return str(response)


def _reply(code: int | None, response: str) -> str:
    return response if code is None else f"{code} {response}"


def _connection_problem(runner: OutgoingRunner, error: BaseException) -> str:
    return (
        f"cannot deliver through {runner.smtp_host}:{runner.smtp_port}: "
        f"{str(error) or type(error).__name__}"
    )
