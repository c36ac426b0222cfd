"""The on-disk format of one queue file: a message and its metadata, checked end to end.

A queue file never holds code.  Its layout is::

    RKQ1 <metadata bytes> <message bytes> <kind> <recoveries> <original size> <sha256>\\n
    <metadata: JSON, UTF-8>
    <message: bytes>
    \\nRKQ-END\\n

The lengths, the SHA-256 of the header fields and both payloads, and the end record let
:func:`decode` tell a whole file from a truncated, damaged or foreign one.  ``kind`` says
how the message was serialized: ``b`` for :meth:`~email.message.Message.as_bytes`, ``t``
for UTF-8 text (messages whose headers hold non-ASCII text).  ``recoveries`` counts how
often the file was recovered from a ``.bak`` after a crash.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import io
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.generator import BytesGenerator
from email.policy import Compat32, compat32
from typing import Any

from runnerkit.errors import MetadataError, QueueFileError
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.typing import MsgData

MAGIC = b"RKQ1 "
END = b"\nRKQ-END\n"
_MAX_HEADER = 256
_TAG = "__rk__"
_KINDS = (b"b", b"t")
#: A line end inside a folded header that does not continue it: a header of its own.
_BARE_NEWLINE = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")
#: Header text that compat32 leaves as it is: printable ASCII lines without trailing
#: white space, each line after the first starting with a space or a tab.
_FOLDED = re.compile(r"[\t\x20-\x7e]*[\x21-\x7e](?:\n[ \t][\t\x20-\x7e]*[\x21-\x7e])*")


def _folds_to_itself(name: str, value: object, limit: int) -> bool:
    """Whether compat32's folding would give header *value* back exactly as it is.

    It does for text that :data:`_FOLDED` matches and whose lines fit in *limit*
    characters (the first after ``name: ``): the folding algorithm then finds nothing
    to change.  Parsed headers, already folded by their sender, nearly all qualify,
    and skipping the algorithm is most of the cost of writing a message.
    """
    if type(value) is not str or not _FOLDED.fullmatch(value):
        return False
    if len(name) + 2 + len(value) <= limit:
        return True
    first, *rest = value.split("\n")
    return len(name) + 2 + len(first) <= limit and max(map(len, rest), default=0) <= limit


def _header_block(message: email.message.Message, policy: Compat32) -> bytes | None:
    """The message's header lines and the blank line after them, as the generator writes them.

    Headers that fold to themselves are written as they are, without the folding
    algorithm; *policy* folds the others.  None when a folded header fails the check
    that newer Pythons' generators make (``verify_generated_headers``): the stock
    generator then raises its own error.
    """
    limit = policy.max_line_length or 1_000_000  # compat32's own "no limit"
    verify = getattr(policy, "verify_generated_headers", False)
    parts = []
    for name, value in message.raw_items():
        if _folds_to_itself(name, value, limit):
            parts.append(f"{name}: {value}\n".encode("ascii", "surrogateescape"))
            continue
        folded = policy.fold_binary(name, value)
        if verify and not (folded.endswith(b"\n") and not _BARE_NEWLINE.search(folded[:-1])):
            return None
        parts.append(folded)
    parts.append(b"\n")
    return b"".join(parts)


class _QueueGenerator(BytesGenerator):
    """A BytesGenerator that skips work whose result it knows: the same bytes, sooner.

    It writes headers with :func:`_header_block`, and text without a carriage return
    in one piece instead of line by line, when the line end is ``\\n``.
    """

    def _write_headers(self, msg: email.message.Message) -> None:
        policy = self.policy
        block = None
        if isinstance(policy, Compat32) and policy.linesep == "\n":  # as _as_bytes uses it
            block = _header_block(msg, policy)
        if block is None:
            super()._write_headers(msg)  # type: ignore[misc]
            return
        self._fp.write(block)  # type: ignore[attr-defined]

    def _write_lines(self, lines: str) -> None:
        if self._NL == "\n" and "\r" not in lines:  # type: ignore[attr-defined]
            if lines:
                self.write(lines)
            return
        super()._write_lines(lines)  # type: ignore[misc]


def _as_bytes(message: Message, unixfrom: bool) -> bytes:
    """``message.as_bytes(unixfrom)``: the same bytes, written faster under compat32.

    A message of one part whose text has no carriage return is written directly: the
    generator would write its headers, a blank line and the text as it is.
    """
    if message.policy is not compat32:
        return message.as_bytes(unixfrom=unixfrom)
    payload = message._payload  # type: ignore[attr-defined]
    if (
        isinstance(payload, str)
        and "\r" not in payload
        and message.get_content_maintype() not in ("multipart", "message")
    ):
        # In the generator's order, so that a message it cannot write fails the same way.
        ufrom = b""
        if unixfrom:
            line = message.get_unixfrom() or f"From nobody {time.ctime(time.time())}"
            ufrom = f"{line}\n".encode("ascii", "surrogateescape")
        body = payload.encode("ascii", "surrogateescape")
        headers = _header_block(message, compat32)
        if headers is None:
            return message.as_bytes(unixfrom=unixfrom)
        return b"".join((ufrom, headers, body))
    buffer = io.BytesIO()
    _QueueGenerator(buffer, mangle_from_=False, policy=compat32).flatten(
        message, unixfrom=unixfrom
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class QueueEntry:
    """What a queue file holds, decoded."""

    message: Message
    metadata: MsgData
    #: How many times the file was recovered from ``.bak`` after a crash.
    recoveries: int


def _checksum(fields: bytes, metadata: bytes, message: bytes) -> bytes:
    digest = hashlib.sha256(fields)
    digest.update(metadata)
    digest.update(message)
    return digest.hexdigest().encode("ascii")


def serialize_message(message: Message | str | bytes) -> tuple[bytes, bytes, int]:
    """Return (kind, data, original size) for *message*."""
    if isinstance(message, bytes):
        return b"b", message, len(message)
    if isinstance(message, str):
        data = message.encode("utf-8", "surrogateescape")
        return b"t", data, len(data)
    known: int | None = getattr(message, "_original_size", None)
    size = -1 if known is None else known
    # Write a Unix From line only when the message has one: the generator would
    # otherwise invent "From nobody <date>", which then reads as the sender.
    unixfrom = bool(message.get_unixfrom())
    if getattr(message, "parsed_from_bytes", False):
        data = _as_bytes(message, unixfrom)
        return b"b", data, len(data) if size < 0 else size
    if isinstance(message, Message):
        text = message.as_text(unixfrom=unixfrom)
    else:
        text = message.as_string(unixfrom=unixfrom)
    if text.isascii():
        data, kind = text.encode("ascii"), b"b"
    else:
        data, kind = text.encode("utf-8", "surrogateescape"), b"t"
    return kind, data, len(data) if size < 0 else size


def encode(message: Message | str | bytes, metadata: MsgData, recoveries: int = 0) -> bytes:
    """Serialize *message* and *metadata* into the bytes of one queue file.

    :raises MetadataError: a metadata value has a type that cannot be stored.
    """
    kind, body, size = serialize_message(message)
    meta = json.dumps(
        {key: _to_json(value, key) for key, value in metadata.items()},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")
    fields = b"%d %d %s %d %d" % (len(meta), len(body), kind, recoveries, size)
    return b"".join((MAGIC, fields, b" ", _checksum(fields, meta, body), b"\n", meta, body, END))


def decode(data: bytes, source: str = "queue file") -> QueueEntry:
    """Parse the bytes of one queue file.

    :param source: names the file in error messages.
    :raises QueueFileError: the bytes are not a whole, undamaged queue file.
    """

    def bad(reason: str) -> QueueFileError:
        return QueueFileError(f"{source} is not a valid runnerkit queue file: {reason}")

    if not data.startswith(MAGIC):
        raise bad(f"it does not start with {MAGIC!r}")
    newline = data.find(b"\n", 0, _MAX_HEADER)
    if newline < 0:
        raise bad("its header line is missing or too long")
    parts = data[len(MAGIC) : newline].split(b" ")
    if len(parts) != 6 or parts[2] not in _KINDS:
        raise bad("its header line is malformed")
    try:
        meta_len, body_len, recoveries, size = (int(parts[i]) for i in (0, 1, 3, 4))
    except ValueError:
        raise bad("its header line holds a bad number") from None
    if min(meta_len, body_len, recoveries) < 0:
        raise bad("its header line holds a negative number")
    start = newline + 1
    if len(data) != start + meta_len + body_len + len(END):
        raise bad(
            f"it is {len(data)} bytes long, but its header promises "
            f"{start + meta_len + body_len + len(END)} (truncated or damaged)"
        )
    if not data.endswith(END):
        raise bad("its end record is missing")
    meta = data[start : start + meta_len]
    body = data[start + meta_len : start + meta_len + body_len]
    fields = b" ".join(parts[:5])
    if _checksum(fields, meta, body) != parts[5]:
        raise bad("its checksum does not match its contents (damaged)")
    try:
        raw = json.loads(meta.decode("utf-8"), object_hook=_from_json)
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise bad(f"its metadata does not decode: {error}") from error
    if not isinstance(raw, dict):
        raise bad("its metadata is not a mapping")
    try:
        if parts[2] == b"b":
            message = message_from_bytes(body)
        else:
            message = message_from_string(body.decode("utf-8", "surrogateescape"))
    except Exception as error:  # the email parser is lenient; this is belt and braces
        raise bad(f"its message does not parse: {error}") from error
    if size >= 0:
        message.original_size = size
    return QueueEntry(message, raw, recoveries)


def _to_json(value: Any, key: str) -> Any:
    """Turn one metadata value into JSON-able data, tagging the types JSON lacks."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {_TAG: "float", "value": repr(value)}
        return value
    if isinstance(value, list):
        return [_to_json(item, key) for item in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_to_json(item, key) for item in value]}
    if isinstance(value, frozenset):
        return {_TAG: "frozenset", "items": [_to_json(item, key) for item in value]}
    if isinstance(value, set):
        return {_TAG: "set", "items": [_to_json(item, key) for item in value]}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return {_TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {_TAG: "date", "value": value.isoformat()}
    if isinstance(value, timedelta):
        return {
            _TAG: "timedelta",
            "value": [value.days, value.seconds, value.microseconds],
        }
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: _to_json(v, key) for k, v in value.items()}
        return {
            _TAG: "dict",
            "items": [[_to_json(k, key), _to_json(v, key)] for k, v in value.items()],
        }
    raise MetadataError(
        f"metadata key {key!r} holds a {type(value).__name__}, which a queue file cannot "
        "store; use str, int, float, bool, None, list, tuple, set, dict, bytes, datetime, "
        "date or timedelta"
    )


def _from_json(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "tuple":
        return tuple(obj["items"])
    if tag == "set":
        return set(obj["items"])
    if tag == "frozenset":
        return frozenset(obj["items"])
    if tag == "bytes":
        return base64.b64decode(obj["b64"], validate=True)
    if tag == "datetime":
        return datetime.fromisoformat(obj["value"])
    if tag == "date":
        return date.fromisoformat(obj["value"])
    if tag == "timedelta":
        days, seconds, microseconds = obj["value"]
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if tag == "float":
        return float(obj["value"])
    if tag == "dict":
        return {_hashable(k): v for k, v in obj["items"]}
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


def with_recoveries(data: bytes, recoveries: int) -> bytes:
    """Return the queue file *data* with its recovery count set to *recoveries*.

    The message and metadata bytes are kept exactly; only the header is rewritten.

    :raises QueueFileError: *data* is not a valid queue file.
    """
    decode(data)
    newline = data.index(b"\n")
    parts = data[len(MAGIC) : newline].split(b" ")
    parts[3] = b"%d" % recoveries
    fields = b" ".join(parts[:5])
    meta_len, body_len = int(parts[0]), int(parts[1])
    meta = data[newline + 1 : newline + 1 + meta_len]
    body = data[newline + 1 + meta_len : newline + 1 + meta_len + body_len]
    return b"".join((MAGIC, fields, b" ", _checksum(fields, meta, body), b"\n", meta, body, END))
