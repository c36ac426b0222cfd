"""The ``command`` runner: join and leave requests, confirmed by a mailed token.

The LMTP runner queues here what comes to a list's ``-join`` (``-subscribe``),
``-leave`` (``-unsubscribe``), ``-confirm[+TOKEN]`` and ``-request`` addresses, with
the flags ``tojoin``, ``toleave``, ``toconfirm`` (and ``token``) and ``torequest``.
The requester is the address in the message's ``From``.

A ``From`` is easily forged, so nobody is subscribed or unsubscribed on its strength:
a request is only *pended*.  The runner stores a token (40 hexadecimal digits from
:func:`secrets.token_hex`) in the ``pended`` table with the list, the address, the
action and an expiration date :data:`PENDING_LIFETIME` ahead, and mails the token to
the address, from and with ``Reply-To`` ``<list>-confirm+TOKEN@<host>`` and with the
Subject ``confirm TOKEN``.  Whoever can read that mailbox confirms by replying (to the
``-confirm+TOKEN`` address, or with ``confirm TOKEN`` in the Subject or the body
sent to ``-request`` or ``-confirm``); only then is the address subscribed (role
``member``) or unsubscribed, the token is used up, and the address is told.  An
unknown or expired token is answered with a note saying so; expired tokens are
deleted whenever a token is looked up.

A message to ``-request`` holds commands, one per line: the Subject (a leading
``Re:`` ignored), then the first :data:`MAX_COMMAND_LINES` lines of its first
``text/plain`` part, up to the first line that is no command (a signature, a quoted
text) or ``end``.  The commands are ``join`` (``subscribe``), ``leave``
(``unsubscribe``), ``confirm TOKEN`` and ``help``; a message without any is answered
with the help.  Several commands of one message get one reply with a line each.

Replies go through ``out`` with ``recipients`` set, so they leave with the envelope
sender ``<list>-bounces@<host>``; they carry ``Auto-Submitted: auto-replied`` (RFC
3834, section 5).  Following RFC 3834, section 2, the runner answers no automatic
message: one with ``Auto-Submitted`` other than ``no``, a null envelope sender
(``<>``), a ``List-Id`` (RFC 2919), or ``Precedence`` ``bulk``, ``junk`` or ``list``.
Such a message is not acted on either; like a message without a usable ``From``, it
goes to the ``bad`` queue with the metadata key ``reason`` saying why, and is logged.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, getaddresses, make_msgid
from typing import TYPE_CHECKING

from runnerkit.database import Database
from runnerkit.errors import InvalidAddressError
from runnerkit.lists import check_address
from runnerkit.logtext import header_for_log, one_line
from runnerkit.message import Message, message_from_string, read_header
from runnerkit.runner import Runner
from runnerkit.typing import MsgData

if TYPE_CHECKING:
    from runnerkit.lists import MailingList

log = logging.getLogger(__name__)

#: How long a mailed token can confirm its request.
PENDING_LIFETIME = timedelta(days=3)
#: How many lines of a ``-request`` message's body are read for commands.
MAX_COMMAND_LINES = 10
#: The queue replies go to.
OUT_QUEUE = "out"
#: The actions a token can confirm.
ACTIONS = ("join", "leave")
#: Command words and the command each means.
COMMANDS = {
    "join": "join",
    "subscribe": "join",
    "leave": "leave",
    "unsubscribe": "leave",
    "confirm": "confirm",
    "help": "help",
    "end": "end",
}
#: A token as :func:`secrets.token_hex` makes it.
_TOKEN = re.compile(r"[0-9a-f]{40}")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv)\s*:\s*", re.IGNORECASE)

HELP = """\
This is the request address of the list {list}.

Send these commands in the Subject or the first lines of a message to
{request}, one per line:

    join            subscribe your address (the From of your message)
    leave           unsubscribe it
    confirm TOKEN   confirm a join or leave with the token we mailed you
    help            this text

Or send any message to {join} to join, or to {leave} to leave.
A join or leave takes effect only once you confirm it by replying to the
message we send to your address.
"""


@dataclass(frozen=True)
class Pended:
    """A request waiting for its confirmation: a row of ``pended``."""

    token: str
    #: The list's RFC 2919 identifier.
    list_id: str
    #: The address to join or leave, as given.
    email: str
    display_name: str
    #: ``join`` or ``leave``.
    action: str
    #: When it was made, and when it expires, in ISO 8601, UTC.
    created_at: str
    expiration_date: str


def pend(
    database: Database,
    mlist: MailingList,
    email: str,
    display_name: str,
    action: str,
    now: datetime,
) -> Pended:
    """Store a new request of *action* (``join`` or ``leave``) in the current transaction.

    :raises ValueError: *action* is not one of :data:`ACTIONS`.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions are: {', '.join(ACTIONS)}")
    pended = Pended(
        secrets.token_hex(20),
        mlist.list_id,
        email,
        display_name,
        action,
        now.isoformat(timespec="seconds"),
        (now + PENDING_LIFETIME).isoformat(timespec="seconds"),
    )
    database.connection.execute(
        "INSERT INTO pended (token, list_id, email, display_name, action, created_at,"
        " expiration_date) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            pended.token,
            pended.list_id,
            pended.email,
            pended.display_name,
            pended.action,
            pended.created_at,
            pended.expiration_date,
        ),
    )
    return pended


def pendings(database: Database) -> list[Pended]:
    """Every request waiting for its confirmation, oldest first."""
    rows = database.connection.execute(
        "SELECT token, list_id, email, display_name, action, created_at, expiration_date"
        " FROM pended ORDER BY created_at, token"
    ).fetchall()
    return [Pended(*row) for row in rows]


def confirm(database: Database, token: str, now: datetime) -> Pended | None:
    """Take the request of *token* out of ``pended``, if it is there and not expired.

    Expired requests are deleted first, all of them; all in the current transaction.
    """
    database.connection.execute(
        "DELETE FROM pended WHERE expiration_date <= ?", (now.isoformat(timespec="seconds"),)
    )
    row = database.connection.execute(
        "SELECT token, list_id, email, display_name, action, created_at, expiration_date"
        " FROM pended WHERE token = ?",
        (token.lower(),),
    ).fetchone()
    if row is None:
        return None
    database.connection.execute("DELETE FROM pended WHERE token = ?", (row[0],))
    return Pended(*row)


def why_not_answer(msg: Message, msgdata: MsgData) -> str | None:
    """Why RFC 3834, section 2, forbids an automatic reply to *msg*; None if it allows one."""
    auto = (read_header(msg, "Auto-Submitted") or "").strip()
    keyword = auto.split(";")[0].strip().lower()
    if auto and keyword != "no":
        return f"it is an automatic message (Auto-Submitted: {auto})"
    if msgdata.get("original_sender") == "":
        return "its envelope sender is null (<>)"
    if msg.get("List-Id") is not None:
        return "it came from a mailing list (it has a List-Id)"
    precedence = (read_header(msg, "Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"it is bulk mail (Precedence: {precedence})"
    return None


class CommandRunner(Runner):
    """Handle join, leave, confirm and help requests; see the module's documentation."""

    is_queue_runner = True

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        if mlist is None:
            self._keep(msg, msgdata, "The request's metadata names no mailing list.")
            return False
        refusal = why_not_answer(msg, msgdata)
        if refusal is not None:
            self._keep(msg, msgdata, f"Not acted on or answered (RFC 3834): {refusal}.")
            return False
        requester = self._requester(msg)
        if isinstance(requester, str):
            self._keep(msg, msgdata, requester)
            return False
        email, display_name = requester
        now = datetime.now(UTC)
        if msgdata.get("tojoin"):
            commands = [("join", "")]
        elif msgdata.get("toleave"):
            commands = [("leave", "")]
        elif msgdata.get("toconfirm") and msgdata.get("token"):
            commands = [("confirm", str(msgdata["token"]))]
        else:
            commands = _commands(msg)
        results = []
        # A mailed confirmation answers its request: a summary is sent only when
        # there is more to say.
        more = False
        for command, argument in commands:
            if command == "help":
                results.append(self._help(mlist))
                more = True
            elif command == "confirm":
                results.append(self._confirm(mlist, msg, argument, now))
                more = more or bool(results[-1])
            else:
                text, mailed = self._pend(mlist, msg, email, display_name, command, now)
                results.append(text)
                more = more or not mailed
        if not commands:
            results.append("No command found in your message.\n\n" + self._help(mlist))
            more = True
        answer = "\n".join(result for result in results if result)
        if more:
            self._reply(mlist, msg, email, f"Re: your request to {mlist.fqdn_listname}", answer)
        log.info(
            "%s: %s from %s for %s: %s",
            self,
            _describe(msg),
            one_line(email),
            mlist.fqdn_listname,
            ", ".join(command for command, _ in commands) or "no command",
        )
        return False

    def _requester(self, msg: Message) -> tuple[str, str] | str:
        """(address, display name) from *msg*'s From, or why there is none usable."""
        values = [str(value) for value in msg.get_all("From", [])]
        pairs = [(name, address) for name, address in getaddresses(values) if address]
        if not pairs:
            return "The request has no From address to answer."
        name, address = pairs[0]
        try:
            check_address(address)
        except InvalidAddressError as error:
            return f"The request's From address is unusable: {error}."
        return address, name

    def _help(self, mlist: MailingList) -> str:
        return HELP.format(
            list=mlist.fqdn_listname,
            request=mlist.request_address,
            join=mlist.join_address,
            leave=mlist.leave_address,
        )

    def _pend(
        self,
        mlist: MailingList,
        msg: Message,
        email: str,
        display_name: str,
        action: str,
        now: datetime,
    ) -> tuple[str, bool]:
        """Pend *action* for *email* and mail it the token.

        :returns: the line for the summary, and whether a confirmation was mailed.
        """
        is_member = mlist.get_member(email) is not None
        if action == "join" and is_member:
            return f"join: {email} is already a member of {mlist.fqdn_listname}.", False
        if action == "leave" and not is_member:
            return f"leave: {email} is not a member of {mlist.fqdn_listname}.", False
        pended = pend(self.config.database, mlist, email, display_name, action, now)
        verb = "join" if action == "join" else "leave"
        body = (
            f"Someone, perhaps you, asked for {email} to {verb} the list\n"
            f"{mlist.fqdn_listname}.\n\n"
            "To confirm, reply to this message (its Reply-To address holds the token),\n"
            f"or send a message to {mlist.request_address} with this line:\n\n"
            f"    confirm {pended.token}\n\n"
            f"The request expires at {pended.expiration_date}.\n"
            "If you did not ask for it, ignore this message and nothing will happen.\n"
        )
        self._reply(
            mlist,
            msg,
            email,
            f"confirm {pended.token}",
            body,
            sender=mlist.confirm_address(pended.token),
        )
        return f"{action}: a confirmation has been mailed to {email}.", True

    def _confirm(self, mlist: MailingList, msg: Message, token: str, now: datetime) -> str:
        """Carry out the request of *token*; the line for the reply."""
        token = token.strip().lower()
        pended = confirm(self.config.database, token, now) if _TOKEN.fullmatch(token) else None
        if pended is None or pended.list_id != mlist.list_id:
            return f"confirm: the token {token[:40]} is unknown or has expired."
        if pended.action == "join":
            if mlist.get_member(pended.email) is None:
                # subscribe() commits: the used token goes with it.
                mlist.subscribe(pended.email, display_name=pended.display_name)
            text = f"{pended.email} has joined {mlist.fqdn_listname}. Welcome!\n"
        else:
            if mlist.get_member(pended.email) is not None:
                mlist.unsubscribe(pended.email)
            text = f"{pended.email} has left {mlist.fqdn_listname}.\n"
        log.info(
            "%s: confirmed: %s %s %s",
            self,
            one_line(pended.email),
            pended.action,
            mlist.fqdn_listname,
        )
        # The address that was confirmed hears of it, whoever sent the confirmation.
        self._reply(mlist, msg, pended.email, f"Re: your request to {mlist.fqdn_listname}", text)
        return ""

    def _reply(
        self,
        mlist: MailingList,
        msg: Message,
        to: str,
        subject: str,
        body: str,
        *,
        sender: str | None = None,
    ) -> None:
        """Queue a reply to *to* in ``out``; *sender* is its From (and Reply-To)."""
        sender = sender or mlist.request_address
        lines = [
            f"From: {sender}",
            f"To: {to}",
            f"Subject: {subject}",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: {make_msgid(domain=mlist.mail_host)}",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ]
        if sender != mlist.request_address:
            lines.append(f"Reply-To: {sender}")
        original = (read_header(msg, "Message-ID") or "").strip()
        if _MSG_ID.fullmatch(original):
            lines += [f"In-Reply-To: {original}", f"References: {original}"]
        reply = message_from_string("\n".join(lines) + "\n\n" + body.rstrip("\n") + "\n")
        self.config.switchboards[OUT_QUEUE].enqueue(
            reply,
            listid=mlist.list_id,
            listname=mlist.fqdn_listname,
            recipients=[to],
        )

    def _keep(self, msg: Message, msgdata: MsgData, reason: str) -> None:
        """Move *msg* to ``bad`` with *reason*, and log it."""
        self._move_to_bad(msg, msgdata, reason, what="request")


def _commands(msg: Message) -> list[tuple[str, str]]:
    """The (command, argument) pairs of a ``-request`` message, in order."""
    found: list[tuple[str, str]] = []
    subject = _REPLY_PREFIX.sub("", read_header(msg, "Subject") or "")
    command = _command(subject)
    if command is not None and command[0] != "end":
        found.append(command)
    for line in _body_lines(msg)[:MAX_COMMAND_LINES]:
        if not line.strip():
            continue
        command = _command(line)
        if command is None or command[0] == "end":
            break
        if command not in found:
            found.append(command)
    return found


def _command(line: str) -> tuple[str, str] | None:
    words = line.split()
    if not words or words[0].lower() not in COMMANDS:
        return None
    command = COMMANDS[words[0].lower()]
    argument = words[1] if command == "confirm" and len(words) > 1 else ""
    if command == "confirm" and not argument:
        return None
    return command, argument


def _body_lines(msg: Message) -> list[str]:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if not isinstance(raw, bytes):
                return []
            try:
                text = raw.decode(part.get_content_charset() or "us-ascii", "replace")
            except LookupError:
                text = raw.decode("latin-1")
            return text.splitlines()
        if part.get_content_maintype() != "multipart":
            return []
    return []


def _describe(msg: Message) -> str:
    return f"request {header_for_log(msg, 'Message-ID', '(without a Message-ID)')}"
