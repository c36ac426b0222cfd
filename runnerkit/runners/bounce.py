"""The ``bounces`` runner: records each bounce against the member whose address failed.

List mail goes out with the envelope sender ``<list>-bounces@<host>``, so reports of
failed deliveries come back there, and the LMTP runner queues them to ``bounces``.
For each one the runner finds the failed recipients (:func:`runnerkit.bounces.scan`:
RFC 3464 reports and qmail's QSBMF) and, for each that is a member of the list (role
``member``; a DSN's ``Original-Recipient`` or ``Final-Recipient``, in any case):

* adds a row to the ``bounce_event`` table: list id, the member's address, when
  (ISO 8601, UTC), the RFC 3463 status and action, the bounce's own ``Message-ID``,
  and the report's form (``dsn``, ``qsbmf``) as its context;
* adds one to the member's ``bounce_score`` and sets its ``last_bounce_received`` to
  the same time.

What is not a bounce is dealt with so that nothing is lost:

* a DSN whose recipients were only delayed, relayed, delivered or expanded is a notice,
  not a bounce: it is logged and dropped;
* a message in which no failed recipient can be found, or whose failed recipients are
  none of them members, goes to the ``bad`` queue with the metadata key ``reason``
  saying why, and the reason is logged, for an operator to look at.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runnerkit.bounces import NOT_FAILED, FailedRecipient, scan
from runnerkit.database import Database
from runnerkit.logtext import header_for_log, one_line
from runnerkit.message import Message, read_header
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.lists import MailingList

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BounceEvent:
    """One bounce of one member's address: a row of ``bounce_event``."""

    #: The list's RFC 2919 identifier.
    list_id: str
    #: The member's address, lower-cased, as members are matched.
    email: str
    #: When the bounce was processed, in ISO 8601, UTC.
    timestamp: str
    #: The RFC 3463 status code, such as ``5.1.1``; ``''`` when the report gave none.
    status: str
    #: The RFC 3464 action (always ``failed`` for a recorded bounce).
    action: str
    #: The Message-ID of the bounce itself; ``''`` when it had none.
    message_id: str
    #: The report's form: ``dsn`` or ``qsbmf``.
    context: str


@dataclass(frozen=True)
class BounceState:
    """A member's bounce record: the columns of ``member`` that bounces change."""

    #: Bounces recorded against the member, one per bounce message (a repeat of one
    #: already recorded, by its Message-ID, is not counted again).
    bounce_score: int
    #: When the last one was, in ISO 8601, UTC; None if there was none.
    last_bounce_received: str | None


def record_bounce(database: Database, event: BounceEvent) -> bool:
    """Add *event* to ``bounce_event`` and count it against the member with role
    ``member``, in the current transaction.

    A report with a Message-ID already recorded for this member of this list is the
    same bounce again (an MTA that sends once more after a lost LMTP reply, RFC 2033
    section 4.2): it is not counted twice.

    :returns: whether it was recorded; False for such a repeat.
    """
    if event.message_id:
        seen = database.connection.execute(
            "SELECT 1 FROM bounce_event WHERE list_id = ? AND email = ? AND message_id = ?",
            (event.list_id, event.email, event.message_id),
        ).fetchone()
        if seen is not None:
            return False
    database.connection.execute(
        "INSERT INTO bounce_event (list_id, email, timestamp, status, action, message_id,"
        " context) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event.list_id,
            event.email,
            event.timestamp,
            event.status,
            event.action,
            event.message_id,
            event.context,
        ),
    )
    database.connection.execute(
        "UPDATE member SET bounce_score = bounce_score + 1, last_bounce_received = ?"
        " WHERE email = ? AND role = 'member'"
        " AND mailing_list = (SELECT id FROM mailing_list WHERE list_id = ?)",
        (event.timestamp, event.email, event.list_id),
    )
    return True


def records_bounces(database: Database) -> bool:
    """Whether *database* has the tables and columns of bounces: a read-only connection
    to a file made before them, which it may not migrate, has not."""
    connection = database.connection
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    columns = {row[1] for row in connection.execute("PRAGMA table_info(member)")}
    return "bounce_event" in tables and "bounce_score" in columns


def bounce_events(database: Database, list_id: str | None = None) -> list[BounceEvent]:
    """Every recorded bounce (of the list *list_id*, if given), oldest first; none in a
    database that does not :func:`records_bounces`."""
    if not records_bounces(database):
        return []
    rows = database.connection.execute(
        "SELECT list_id, email, timestamp, status, action, message_id, context"
        " FROM bounce_event WHERE ? IS NULL OR list_id = ? ORDER BY id",
        (list_id, list_id),
    ).fetchall()
    return [BounceEvent(*row) for row in rows]


def bouncing_members(database: Database, mlist: MailingList) -> list[tuple[str, BounceState]]:
    """The members (role ``member``) of *mlist* with a bounce score above 0, by address;
    none in a database that does not :func:`records_bounces`."""
    if not records_bounces(database):
        return []
    rows = database.connection.execute(
        "SELECT email, bounce_score, last_bounce_received FROM member"
        " WHERE role = 'member' AND bounce_score > 0"
        " AND mailing_list = (SELECT id FROM mailing_list WHERE list_id = ?) ORDER BY email",
        (mlist.list_id,),
    ).fetchall()
    return [(email, BounceState(score, last)) for email, score, last in rows]


def bounce_state(database: Database, mlist: MailingList, email: str) -> BounceState | None:
    """The bounce record of *email* as a member (role ``member``) of *mlist*, or None if
    it is not one."""
    row = database.connection.execute(
        "SELECT bounce_score, last_bounce_received FROM member"
        " WHERE email = ? AND role = 'member'"
        " AND mailing_list = (SELECT id FROM mailing_list WHERE list_id = ?)",
        (email.lower(), mlist.list_id),
    ).fetchone()
    return None if row is None else BounceState(row[0], row[1])


class BounceRunner(Runner):
    """Record the bounces queued to ``bounces``; see the module's documentation."""

    is_queue_runner = True

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        if mlist is None:
            self._keep(msg, msgdata, "The bounce's metadata names no mailing list.")
            return False
        report = scan(msg)
        if report.context is None:
            self._keep(
                msg,
                msgdata,
                "No failed recipient found: the message is neither an RFC 3464 delivery "
                "status notification nor a qmail (QSBMF) bounce.",
            )
            return False
        if not report.failed:
            unknown = [
                (address, action) for address, action in report.other if action not in NOT_FAILED
            ]
            if unknown:
                # Neither a failure nor a notice RFC 3464 names: an operator decides.
                address, action = unknown[0]
                self._keep(
                    msg,
                    msgdata,
                    f"The {report.context} report gives {one_line(address)} the action "
                    f"{one_line(action)!r}, which is not one of RFC 3464's.",
                )
                return False
            if report.other:
                log.info(
                    "%s: %s for %s is a notice, not a bounce (%s); dropped",
                    self,
                    _describe(msg),
                    mlist.fqdn_listname,
                    "; ".join(
                        f"{one_line(address)}: {one_line(action)}"
                        for address, action in report.other
                    ),
                )
                return False
            self._keep(msg, msgdata, f"No failed recipient found in the {report.context} report.")
            return False
        timestamp = datetime.now(UTC).isoformat()
        message_id = (read_header(msg, "Message-ID") or "").strip()
        recorded, strangers, repeats = [], [], []
        for failed in report.failed:
            email = _member_email(mlist, failed)
            if email is None:
                strangers.append(failed.addresses[0])
                continue
            event = BounceEvent(
                mlist.list_id,
                email,
                timestamp,
                failed.status,
                "failed",
                message_id,
                failed.context,
            )
            if record_bounce(self.config.database, event):
                recorded.append(f"{email} ({failed.status or 'no status'})")
            else:
                repeats.append(email)
        if repeats and not recorded:
            log.info(
                "%s: %s: a bounce already recorded on %s for %s; not counted again",
                self,
                _describe(msg),
                mlist.fqdn_listname,
                one_line(", ".join(repeats)),
            )
            return False
        if not recorded:
            self._keep(
                msg,
                msgdata,
                f"No failed recipient is a member of {mlist.fqdn_listname}: "
                f"{', '.join(strangers)}.",
            )
            return False
        log.info(
            "%s: %s: recorded a bounce on %s for %s%s",
            self,
            _describe(msg),
            mlist.fqdn_listname,
            one_line(", ".join(recorded)),
            f"; not members: {one_line(', '.join(strangers))}" if strangers else "",
        )
        return False

    def _keep(self, msg: Message, msgdata: MsgData, reason: str) -> None:
        """Move *msg* to ``bad`` with *reason*, and log it."""
        self._move_to_bad(msg, msgdata, reason, what="bounce")


def _member_email(mlist: MailingList, failed: FailedRecipient) -> str | None:
    """The first of *failed*'s addresses that is a member of *mlist*, lower-cased."""
    for address in failed.addresses:
        member = mlist.get_member(address)
        if member is not None:
            return member.email
    return None


def _describe(msg: Message) -> str:
    return f"bounce {header_for_log(msg, 'Message-ID', '(without a Message-ID)')}"
