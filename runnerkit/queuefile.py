"""The on-disk format of one queue file: a message and its metadata, checked end to end.

A queue file never holds code.  Its layout is::

    RKQ2 <document bytes> <recoveries> <crc32, 8 hex digits>\\n
    <document: one MessagePack array>
    \\nRKQ-END\\n

The document is ``[metadata, kind, message, raw, original size]``:

- ``metadata``: a map of plain values; types MessagePack lacks (tuples, sets, dates,
  integers beyond 64 bits, dicts with keys other than text ...) are tagged maps, decoded
  by :func:`_from_wire`, never by anything the file names;
- ``kind`` ``"tree"``: ``message`` is the message as data (:mod:`runnerkit.msgtree`),
  rebuilt without the email parser, and ``raw`` the exact bytes it was received as, with
  the header edits made since (:meth:`runnerkit.message.Message.exact_bytes`), or nil;
- ``kind`` ``"text"`` or ``"bytes"``: ``message`` is a message to parse on dequeue, as
  ``_plaintext`` and text messages are queued (``_parsemsg: True``).

Loading never executes anything: MessagePack yields only data, every extension type is
refused, and the tree is checked as it is rebuilt.  The lengths, the CRC-32 of the header
fields and the document, and the end record tell a whole file from a truncated, damaged
or foreign one: CRC-32 detects every error burst of up to 32 bits, so every single and
double bit flip of a file this size, and the length and end record catch every
truncation.  Files of the earlier format (``RKQ1``: JSON metadata and the message as
text, SHA-256) are still read, so an upgrade loses no queued message.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.errors import HeaderParseError
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from runnerkit.errors import MetadataError, QueueFileError
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.msgtree import from_tree, to_tree
from runnerkit.typing import MsgData

MAGIC = b"RKQ2 "
END = b"\nRKQ-END\n"
#: The magic of the earlier format, still read.
MAGIC_RKQ1 = b"RKQ1 "
_MAX_HEADER = 256
_TAG = "__rk__"
#: Metadata values stored as they are; anything else goes through :func:`_to_wire`.
_PLAIN = frozenset({str, int, bool, float, type(None), bytes})
_INT64 = range(-(2**63), 2**64)
_INT64_MIN, _INT64_MAX = _INT64[0], _INT64[-1]
_TEXT_KEYS = frozenset({str})
#: A well-formed header line: the fields the CRC covers, each field, the CRC.
_FRAME = re.compile(rb"RKQ2 (([0-9]{1,19}) ([0-9]{1,19})) ([0-9a-f]{8})\n")

_packer = msgpack.Packer(use_bin_type=True, strict_types=True, unicode_errors="surrogatepass")


@dataclass(frozen=True)
class QueueEntry:
    """What a queue file holds, decoded."""

    message: Message
    metadata: MsgData
    #: How many times the file was recovered from ``.bak`` after a crash.
    recoveries: int


def encode(
    message: email.message.Message | str | bytes, metadata: MsgData, recoveries: int = 0
) -> bytes:
    """Serialize *message* and *metadata* into the bytes of one queue file.

    :raises MetadataError: a metadata value, or something the message holds, cannot be
        stored exactly; the message names what and why.
    """
    stored: Any
    if type(message) is str:
        kind, stored, raw = "text", message, None
        size = len(message.encode("utf-8", "surrogateescape"))
    elif type(message) is bytes:
        kind, stored, raw, size = "bytes", message, None, len(message)
    elif isinstance(message, email.message.Message):
        kind, stored = "tree", to_tree(message)
        try:
            raw = message.exact_bytes(True) if isinstance(message, Message) else None
        except HeaderParseError as error:
            # A header value with a line of its own in it: written, it would be two.
            raise MetadataError(f"a header of the message cannot be written: {error}") from None
        if raw is not None and isinstance(message, Message) and message._payload_is_suffix:
            # The text payload is the tail of the raw bytes: stored once, as its length.
            stored[1] = len(stored[1])
        known = getattr(message, "_original_size", None)
        size = -1 if known is None else known
    else:
        raise MetadataError(
            f"cannot queue a {type(message).__name__}: give an email.message.Message, "
            "its text or its bytes"
        )
    try:
        document = [_metadata_to_wire(metadata), kind, stored, raw, size]
        body = _packer.pack(document)
    except RecursionError:
        raise MetadataError("the metadata is nested too deep to store") from None
    except (TypeError, ValueError, OverflowError) as error:  # pragma: no cover - checked above
        raise MetadataError(f"the message or its metadata cannot be stored: {error}") from error
    return _frame(body, recoveries)


def decode(data: bytes, source: str = "queue file") -> QueueEntry:
    """Parse the bytes of one queue file, of this format or of the earlier ``RKQ1``.

    :param source: names the file in error messages.
    :raises QueueFileError: the bytes are not a whole, undamaged queue file.
    """
    if data.startswith(MAGIC_RKQ1):
        return _decode_rkq1(data, source)
    body, recoveries = _unframe(data, source)
    try:
        document = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            unicode_errors="surrogatepass",
            ext_hook=_refuse_extension,
            object_hook=_from_wire,
        )
        raw_metadata, kind, stored, raw, size = document
    except (ValueError, TypeError, KeyError, RecursionError, msgpack.UnpackException) as error:
        reason = str(error) or type(error).__name__
        raise _bad(source, f"its document does not decode: {reason}") from error
    try:
        plain = _plain_data(raw_metadata)
    except RecursionError:
        raise _bad(source, "its metadata is nested too deep") from None
    if not plain:
        raise _bad(source, "its metadata holds a MessagePack extension (a queue file uses none)")
    if type(raw_metadata) is not dict or not _TEXT_KEYS.issuperset(map(type, raw_metadata)):
        raise _bad(source, "its metadata is not a mapping of text keys")
    if type(size) is not int:
        raise _bad(source, "its original size is not a number")
    try:
        if kind == "tree":
            if raw is not None and type(raw) is not bytes:
                raise QueueFileError("the raw message is not bytes")
            tail = stored[1] if type(stored) is list and stored else None
            if type(tail) is int:
                if raw is None or not 0 <= tail <= len(raw):
                    raise QueueFileError("the message's body points outside its raw bytes")
                stored[1] = raw[len(raw) - tail :].decode("ascii", "surrogateescape")
            message = from_tree(stored)
            if raw is not None:
                message.parsed_from_bytes = True
                message.keep_raw(raw)
                message._payload_is_suffix = type(tail) is int
        elif kind == "text" and type(stored) is str:
            message = message_from_string(stored)
        elif kind == "bytes" and type(stored) is bytes:
            message = message_from_bytes(stored)
        else:
            raise QueueFileError(f"an unknown kind of message {kind!r}")
    except QueueFileError as error:
        raise _bad(source, str(error)) from error
    except Exception as error:  # the email parser is lenient; this is belt and braces
        raise _bad(source, f"its message does not parse: {error}") from error
    if size >= 0:
        message.original_size = size
    return QueueEntry(message, raw_metadata, recoveries)


def with_recoveries(data: bytes, recoveries: int) -> bytes:
    """Return the queue file *data* with its recovery count set to *recoveries*.

    The document is kept byte for byte; only the header line is written anew.  A file of
    the earlier format is written in this one.

    :raises QueueFileError: *data* is not a valid queue file.
    """
    if data.startswith(MAGIC_RKQ1):
        entry = _decode_rkq1(data, "queue file")
        return encode(entry.message, entry.metadata, recoveries)
    body, _ = _unframe(data, "queue file")
    return _frame(bytes(body), recoveries)


def salvage_metadata(data: bytes) -> MsgData | None:
    """The metadata of a queue file that does not decode whole, as far as it reads.

    For showing what is left of a damaged file (``runnerkit qfile``, ``runnerkit
    queue list``): the metadata comes first in both formats, so a file damaged or cut
    after it still tells its list and its ``whichq``.  Nothing is checked against the
    CRC-32 (or RKQ1's SHA-256), which covers the whole document: the result is a
    best effort, never to be queued as it is.  It is decoded as :func:`decode` decodes
    metadata, executing nothing.

    :returns: the metadata, a mapping of text keys; None if that part does not decode.
    """
    newline = data.find(b"\n", 0, _MAX_HEADER)
    if newline < 0:
        return None
    metadata: Any = None
    try:
        if data.startswith(MAGIC_RKQ1):
            length = int(data[len(MAGIC_RKQ1) : newline].split(b" ")[0])
            metadata = json.loads(
                data[newline + 1 : newline + 1 + length].decode("utf-8"), object_hook=_from_wire
            )
        elif data.startswith(MAGIC):
            unpacker = msgpack.Unpacker(
                raw=False,
                unicode_errors="surrogatepass",
                ext_hook=_refuse_extension,
                object_hook=_from_wire,
                max_buffer_size=max(len(data), 1),
            )
            unpacker.feed(data[newline + 1 :])
            if unpacker.read_array_header() >= 1:
                metadata = unpacker.unpack()
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, msgpack.UnpackException):
        return None
    if type(metadata) is not dict or not _TEXT_KEYS.issuperset(map(type, metadata)):
        return None
    try:
        return metadata if _plain_data(metadata) else None
    except RecursionError:
        return None


# Framing.


def _frame(body: bytes, recoveries: int) -> bytes:
    fields = b"%d %d" % (len(body), recoveries)
    check = zlib.crc32(body, zlib.crc32(fields))
    return b"".join((MAGIC, fields, b" %08x\n" % check, body, END))


def _bad(source: str, reason: str) -> QueueFileError:
    return QueueFileError(f"{source} is not a valid runnerkit queue file: {reason}")


def _unframe(data: bytes, source: str) -> tuple[memoryview, int]:
    """The document and the recovery count of a framed file, checked."""
    header = _FRAME.match(data)
    if header is not None:  # the usual case: one match instead of the steps below
        length, recoveries, check = int(header[2]), int(header[3]), int(header[4], 16)
        start = header.end()
        if len(data) == start + length + len(END) and data.endswith(END):
            body = memoryview(data)[start : start + length]  # no copy: read in place
            if zlib.crc32(body, zlib.crc32(header[1])) == check:
                return body, recoveries
    # Something is wrong: find out what, to say so.
    if not data.startswith(MAGIC):
        raise _bad(source, f"it does not start with {MAGIC!r} (nor {MAGIC_RKQ1!r})")
    newline = data.find(b"\n", 0, _MAX_HEADER)
    if newline < 0:
        raise _bad(source, "its header line is missing or too long")
    parts = data[len(MAGIC) : newline].split(b" ")
    if len(parts) != 3 or len(parts[2]) != 8:
        raise _bad(source, "its header line is malformed")
    try:
        length, recoveries = int(parts[0]), int(parts[1])
        check = int(parts[2], 16)
    except ValueError:
        raise _bad(source, "its header line holds a bad number") from None
    if not (parts[0].isdigit() and parts[1].isdigit()):
        raise _bad(source, "its header line holds a negative or signed number")
    start = newline + 1
    _check_whole(data, source, start + length)
    body = memoryview(data)[start : start + length]  # no copy: read in place
    if zlib.crc32(body, zlib.crc32(data[len(MAGIC) : newline - 9])) != check:
        raise _bad(source, "its CRC-32 does not match its contents (damaged)")
    return body, recoveries


def _check_whole(data: bytes, source: str, end: int) -> None:
    """Refuse *data* unless its contents end at *end*, followed by the end record."""
    if len(data) != end + len(END):
        raise _bad(
            source,
            f"it is {len(data)} bytes long, but its header promises {end + len(END)} "
            "(truncated or damaged)",
        )
    if not data.endswith(END):
        raise _bad(source, "its end record is missing")


def _plain_data(value: Any) -> bool:
    """Whether *value* holds only plain data: no MessagePack Timestamp anywhere.

    The decoder turns extension type -1 into a Timestamp before any hook sees it.
    """
    kind = type(value)
    if kind is dict:
        return all(_plain_data(key) and _plain_data(item) for key, item in value.items())
    if kind in (list, tuple, set, frozenset):
        return all(map(_plain_data, value))
    return kind is not msgpack.Timestamp


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ValueError(f"MessagePack extension type {code} (a queue file uses none)")


# Metadata.


def _metadata_to_wire(metadata: MsgData) -> dict[str, Any]:
    if _TAG in metadata:
        raise MetadataError(f"metadata key {_TAG!r} is reserved for the queue file's own use")
    values = metadata.values()
    kinds = set(map(type, values))
    if kinds <= _PLAIN and (int not in kinds or _all_int64(values)):
        return dict(metadata)
    return {key: _to_wire(value, key) for key, value in metadata.items()}


def _all_int64(values: Any) -> bool:
    """Whether every int among *values* fits MessagePack's 64 bits, signed or not."""
    ints = [value for value in values if type(value) is int]
    return min(ints) >= _INT64_MIN and max(ints) <= _INT64_MAX


def _to_wire(value: Any, key: str) -> Any:
    """Turn one metadata value into MessagePack data, tagging the types it lacks."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is bytes or kind is float:
        return value
    if kind is int:
        if value in _INT64:
            return value
        return {_TAG: "int", "value": str(value)}
    if kind is list:
        return [_to_wire(item, key) for item in value]
    if kind is tuple:
        return {_TAG: "tuple", "items": [_to_wire(item, key) for item in value]}
    if kind is frozenset:
        return {_TAG: "frozenset", "items": [_to_wire(item, key) for item in value]}
    if kind is set:
        return {_TAG: "set", "items": [_to_wire(item, key) for item in value]}
    if kind is datetime:
        return _datetime_to_wire(value, key)
    if kind is date:
        return {_TAG: "date", "value": value.isoformat()}
    if kind is timedelta:
        return {_TAG: "timedelta", "value": [value.days, value.seconds, value.microseconds]}
    if kind is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _to_wire(v, key) for k, v in value.items()}
        return {
            _TAG: "dict",
            "items": [[_to_wire(k, key), _to_wire(v, key)] for k, v in value.items()],
        }
    raise MetadataError(
        f"metadata key {key!r} holds a {kind.__name__}, which a queue file cannot store; "
        "use str, int, float, bool, None, list, tuple, set, dict, bytes, datetime, date "
        "or timedelta"
    )


def _datetime_to_wire(value: datetime, key: str) -> dict[str, Any]:
    """A datetime, exactly: its wall time, its fold, and its time zone.

    A fixed offset (or UTC) is kept in the ISO text; a :class:`zoneinfo.ZoneInfo` by its
    key, so that arithmetic across a daylight-saving change still gives what it gave.
    Other time zone classes cannot be rebuilt from data, and are refused.
    """
    zone = value.tzinfo
    wire: dict[str, Any] = {_TAG: "datetime", "value": value.isoformat()}
    if isinstance(zone, ZoneInfo) and zone.key:
        wire["value"] = value.replace(tzinfo=None).isoformat()
        wire["zone"] = zone.key
    elif zone is not None and type(zone) is not timezone:
        raise MetadataError(
            f"metadata key {key!r} holds a datetime in a time zone of type "
            f"{type(zone).__name__}, which a queue file cannot rebuild; use "
            "zoneinfo.ZoneInfo or a fixed offset (datetime.timezone)"
        )
    if value.fold:
        wire["fold"] = 1
    return wire


def _datetime_from_wire(obj: dict[str, Any]) -> datetime:
    value = datetime.fromisoformat(obj["value"])
    if "zone" in obj:
        value = value.replace(tzinfo=ZoneInfo(obj["zone"]))
    return value.replace(fold=obj.get("fold", 0))


def _from_wire(obj: dict[Any, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "tuple":
        return tuple(obj["items"])
    if tag == "set":
        return set(obj["items"])
    if tag == "frozenset":
        return frozenset(obj["items"])
    if tag == "int":
        return int(obj["value"])
    if tag == "bytes":  # RKQ1
        return base64.b64decode(obj["b64"], validate=True)
    if tag == "datetime":
        return _datetime_from_wire(obj)
    if tag == "date":
        return date.fromisoformat(obj["value"])
    if tag == "timedelta":
        days, seconds, microseconds = obj["value"]
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if tag == "float":  # RKQ1
        return float(obj["value"])
    if tag == "dict":
        return {_hashable(k): v for k, v in obj["items"]}
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


# The earlier format, RKQ1: read only.


def _decode_rkq1(data: bytes, source: str) -> QueueEntry:
    """Read a file of the earlier format: JSON metadata, the message as text, SHA-256."""
    newline = data.find(b"\n", 0, _MAX_HEADER)
    if newline < 0:
        raise _bad(source, "its header line is missing or too long")
    parts = data[len(MAGIC_RKQ1) : newline].split(b" ")
    if len(parts) != 6 or parts[2] not in (b"b", b"t"):
        raise _bad(source, "its header line is malformed")
    try:
        meta_len, body_len, recoveries, size = (int(parts[i]) for i in (0, 1, 3, 4))
    except ValueError:
        raise _bad(source, "its header line holds a bad number") from None
    if min(meta_len, body_len, recoveries) < 0:
        raise _bad(source, "its header line holds a negative number")
    start = newline + 1
    _check_whole(data, source, start + meta_len + body_len)
    meta = data[start : start + meta_len]
    body = data[start + meta_len : start + meta_len + body_len]
    digest = hashlib.sha256(b" ".join(parts[:5]))
    digest.update(meta)
    digest.update(body)
    if digest.hexdigest().encode("ascii") != parts[5]:
        raise _bad(source, "its checksum does not match its contents (damaged)")
    try:
        raw = json.loads(meta.decode("utf-8"), object_hook=_from_wire)
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise _bad(source, f"its metadata does not decode: {error}") from error
    if not isinstance(raw, dict):
        raise _bad(source, "its metadata is not a mapping")
    try:
        if parts[2] == b"b":
            message = message_from_bytes(body)
        else:
            message = message_from_string(body.decode("utf-8", "surrogateescape"))
    except Exception as error:  # the email parser is lenient; this is belt and braces
        raise _bad(source, f"its message does not parse: {error}") from error
    if size >= 0:
        message.original_size = size
    return QueueEntry(message, raw, recoveries)
