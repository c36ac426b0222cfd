"""Reading bounces: which recipients a delivery report says have failed.

Two forms are understood:

**RFC 3464 delivery status notifications** (``dsn``): a ``multipart/report`` with
``report-type=delivery-status`` (RFC 6522) whose ``message/delivery-status`` part (or
``message/global-delivery-status``, RFC 6533) holds one block of fields per recipient.
A recipient has failed when its ``Action`` is ``failed`` (RFC 3464, section 2.3.3:
the message could not be delivered; its ``Status``, section 2.3.4, is then a 5.x.x
code of RFC 3463).  ``delayed``, ``delivered``, ``relayed`` and ``expanded`` are not
failures: a report that holds only those is a notice, not a bounce.  The address is
the block's ``Original-Recipient`` (the one the list sent to, when the MTA kept it,
section 2.3.1) and then its ``Final-Recipient`` (section 2.3.2), each of address-type
``rfc822``.

**qmail's bounce message format** (``qsbmf``, D. J. Bernstein's QSBMF,
https://cr.yp.to/proto/qsbmf.txt), which qmail and its descendants send instead of a
DSN, and which is the most common report without a machine-readable part: the body
(of the message, or of its first ``text/plain`` part) starts with a paragraph
beginning ``Hi. This is the``; each following paragraph that begins ``<address>:``
is one failed recipient, until the paragraph beginning ``--- `` that introduces the
returned message.  An RFC 3463 code in the paragraph (``Remote host said: 550 5.1.1
...``) is kept as its status.

Every other message yields no recipient: free-text reports in other wordings are not
guessed at, since a wrong guess would count a bounce against the wrong member.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import quopri
import re
from dataclasses import dataclass, field
from email.parser import HeaderParser

#: The actions of RFC 3464, section 2.3.3, that say a message was not lost.
NOT_FAILED = ("delayed", "delivered", "relayed", "expanded")
#: The content types of a report's machine-readable part.
STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
#: The first words of a QSBMF report.
QSBMF_START = "Hi. This is the"
#: An RFC 3463 enhanced status code.
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
#: A QSBMF recipient paragraph's first line.
_QSBMF_RECIPIENT = re.compile(r"<([^<>\s]+@[^<>\s]+)>:")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
#: An RFC 5322 comment (not nested), as some MTAs put after a field's value.
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a report says has failed."""

    #: The addresses the report gives for it, the most useful first (for a DSN the
    #: ``Original-Recipient``, then the ``Final-Recipient``), without duplicates.
    addresses: tuple[str, ...]
    #: The RFC 3463 status code, such as ``5.1.1``; ``''`` when the report gives none.
    status: str
    #: The report's form: ``dsn`` or ``qsbmf``.
    context: str


@dataclass
class BounceReport:
    """What a message says about the delivery of an earlier one."""

    #: The report's form: ``dsn``, ``qsbmf``, or None when it is not a recognized report.
    context: str | None = None
    #: The recipients that failed, in the report's order.
    failed: list[FailedRecipient] = field(default_factory=list)
    #: The other recipients of a DSN, as (address, action): delays, deliveries ...
    other: list[tuple[str, str]] = field(default_factory=list)


def scan(msg: email.message.Message) -> BounceReport:
    """Read *msg* as a delivery report; see the module's documentation for the forms.

    Never raises for a malformed message: what cannot be read is not a recipient.
    """
    for part in msg.walk():
        if part.get_content_type() == "multipart/report":
            report_type = str(part.get_param("report-type", "") or "").lower()
            if report_type == "delivery-status":
                return _scan_dsn(part)
    return _scan_qsbmf(msg)


def _scan_dsn(report: email.message.Message) -> BounceReport:
    result = BounceReport("dsn")
    payload = report.get_payload()
    parts = payload if isinstance(payload, list) else []
    for part in parts:
        if not isinstance(part, email.message.Message):
            continue
        if part.get_content_type() not in STATUS_TYPES:
            continue
        # Each recipient's block; the per-message block has no recipient fields (a
        # report that runs both together in one block still names its recipient).
        for block in _blocks(part):
            addresses = _dsn_addresses(block)
            if not addresses:
                continue
            action = action_of(block)
            if action == "failed":
                status = str(block.get("Status", "")).strip()
                match = _STATUS.match(status)
                result.failed.append(
                    FailedRecipient(addresses, match.group(1) if match else "", "dsn")
                )
            else:
                result.other.append((addresses[0], action or "(no action)"))
    return result


def action_of(block: email.message.Message) -> str:
    """A recipient block's ``Action``, lower-cased, without the comments some MTAs add
    (``failed (bad destination mailbox address)``: RFC 5322 comments, section 3.2.2);
    ``''`` when it has none."""
    value = _COMMENT.sub(" ", str(block.get("Action", ""))).strip().lower()
    return value.split()[0] if value else ""


def _blocks(part: email.message.Message) -> list[email.message.Message]:
    """The field blocks of a delivery-status part: per-message first, then recipients."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    payload = part.get_payload()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [block for block in payload if isinstance(block, email.message.Message)]
    # Not split by the parser (a global part), or split before it was decoded (an
    # encoded part, which the parser takes for one block of no fields): split it here.
    if isinstance(payload, list):
        body = part.as_string().replace("\r\n", "\n").partition("\n\n")[2]
        encoded = body.encode("ascii", "replace")
        raw: object
        try:
            raw = (
                base64.b64decode(encoded) if encoding == "base64" else quopri.decodestring(encoded)
            )
        except (binascii.Error, ValueError):
            raw = b""
    else:
        raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    text = text.replace("\r\n", "\n").strip("\n")
    parser = HeaderParser()
    return [parser.parsestr(block + "\n") for block in _PARAGRAPH_BREAK.split(text) if block]


def _dsn_addresses(block: email.message.Message) -> tuple[str, ...]:
    addresses: list[str] = []
    for name in ("Original-Recipient", "Final-Recipient"):
        address_type, _, address = str(block.get(name, "")).partition(";")
        address = address.strip().strip("<>").strip()
        is_new = address.lower() not in (known.lower() for known in addresses)
        if address_type.strip().lower() == "rfc822" and "@" in address and is_new:
            addresses.append(address)
    return tuple(addresses)


def _scan_qsbmf(msg: email.message.Message) -> BounceReport:
    body = _first_text(msg)
    if body is None or not body.lstrip().startswith(QSBMF_START):
        return BounceReport()
    result = BounceReport("qsbmf")
    for paragraph in _PARAGRAPH_BREAK.split(body.replace("\r\n", "\n").lstrip())[1:]:
        if paragraph.startswith("--- "):
            break
        match = _QSBMF_RECIPIENT.match(paragraph)
        if match is None:
            continue
        status = _STATUS.search(paragraph)
        result.failed.append(
            FailedRecipient((match.group(1),), status.group(1) if status else "", "qsbmf")
        )
    return result


def _first_text(msg: email.message.Message) -> str | None:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                charset = part.get_content_charset() or "us-ascii"
                try:
                    return raw.decode(charset, "replace")
                except LookupError:
                    return raw.decode("latin-1")
            return None
        if part.get_content_maintype() != "multipart":
            return None
    return None
