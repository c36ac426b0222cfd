"""The entries of a queue, as the ``runnerkit queue`` commands and the operator page see them.

An entry is a queue file: ``<filebase>.pck`` waiting in its queue, or
``<filebase>.psv`` preserved in ``bad`` (on Redis, the entry of the queue's stream, or
of the preserved stream: :mod:`runnerkit.streams`); one being processed (``.bak``, a
pending entry) is *taken*.  Its id is its file base, ``<time>+<40 hex
digits>``.  Its reason is the one the runner recorded: a shunted message's
``shunt_reason`` (:meth:`runnerkit.runner.Runner._enqueue_shunt`), the ``reason`` of
a message a runner put in ``bad`` itself (``in``, ``bounces``, ``command``), or the
``<filebase>.reason`` kept for a preserved one in ``bad.reasons``
(:meth:`runnerkit.switchboard.Switchboard.finish`).  A file that does not decode is
an entry too, with the reason it cannot be read and what still reads of it
(:func:`runnerkit.queuefile.salvage_metadata`).  Reading an entry changes nothing.

:func:`requeue_entry` puts an entry back to work and :func:`discard_entry` removes it:
the one way both the ``runnerkit queue`` commands and the REST runner's operator page
(:mod:`runnerkit.runners.operator_page`) do it.  Neither touches an entry that is
taken, and a requeue that is refused leaves the entry where it was.  :func:`entry_page`
reads one page of a queue's entries: the names of all, the contents of the page's only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runnerkit import queuefile
from runnerkit.errors import (
    EntryRefusedError,
    MetadataError,
    QueueError,
    QueueFileError,
    QueueUnavailableError,
)
from runnerkit.logtext import header_for_log, one_line
from runnerkit.message import shown_sender
from runnerkit.runner import SHUNT_KEYS
from runnerkit.site import AnySwitchboard
from runnerkit.streams import StreamSwitchboard
from runnerkit.typing import MsgData

#: The switchboards of a site, by queue name.
Switchboards = Mapping[str, AnySwitchboard]

#: Where an entry is: waiting in its queue, or preserved (in ``bad``).
WAITING, PRESERVED = "waiting", "preserved"
#: An entry being processed (``.bak``; on Redis, pending): shown, never changed.
TAKEN = "taken"
_EXTENSIONS = {".pck": WAITING, ".psv": PRESERVED}
_STATES = {**_EXTENSIONS, ".bak": TAKEN}
#: The longest list name an entry shows, in characters.
MAX_LISTNAME = 40


@dataclass
class Entry:
    """One entry of a queue, read without changing anything."""

    #: The queue's name.
    queue: str
    #: Its file base, ``<time>+<40 hex digits>``: its id.
    filebase: str
    #: :data:`WAITING` (``.pck``), :data:`PRESERVED` (``.psv``) or :data:`TAKEN`.
    state: str
    #: Its file; None on Redis (see :attr:`where`).
    path: Path | None
    #: When it entered this queue, in seconds since the epoch: when it was preserved,
    #: as its reason says, else the time in its file base.
    since: float
    #: The decoded file, or None if it does not decode.
    entry: queuefile.QueueEntry | None = None
    #: Its metadata: decoded, or as far as it reads of a damaged file, or None.
    metadata: MsgData | None = None
    #: Why the file cannot be read, or None.
    damage: str | None = None
    #: The ``<filebase>.reason`` record of a preserved entry, or None.
    preserved: dict[str, str] | None = field(default=None)
    #: Where it is, for people: its file's path, or its Redis stream and entry id.
    where: str = ""
    #: Its Redis stream entry's id, when the listing that found it said (else None).
    entry_id: str | None = None

    @property
    def reason(self) -> str:
        """Why it is here: the recorded reason, else why it cannot be read, else ``''``."""
        metadata = self.metadata or {}
        # A shunted message's, or the one a runner gave when it put it in bad.
        recorded = metadata.get("shunt_reason", metadata.get("reason"))
        if recorded is None and self.preserved is not None:
            recorded = self.preserved.get("reason")
        if recorded is None and self.damage is not None:
            recorded = f"unreadable: {self.damage}"
        return "" if recorded is None else one_line(recorded)

    @property
    def listname(self) -> str:
        metadata = self.metadata or {}
        return one_line(metadata.get("listname") or metadata.get("listid") or "", MAX_LISTNAME)

    @property
    def sender(self) -> str:
        return "" if self.entry is None else one_line(shown_sender(self.entry.message), 200)

    @property
    def subject(self) -> str:
        return self.header("subject")

    @property
    def message_id(self) -> str:
        return self.header("message-id")

    def header(self, name: str) -> str:
        """The header field *name* of its message as every view of an entry shows it
        (the operator page, ``queue list``, ``queue show``): 8-bit bytes read as UTF-8
        where they are, each other byte as ``\\xNN``, control characters escaped
        (:func:`~runnerkit.logtext.header_for_log`); ``''`` when there is none."""
        if self.entry is None:
            return ""
        return header_for_log(self.entry.message, name, "", keep_undecodable=True)

    @property
    def origin(self) -> str | None:
        """The queue it came from: its ``whichq``, else the queue it was preserved from."""
        whichq = (self.metadata or {}).get("whichq")
        if isinstance(whichq, str) and whichq:
            return whichq
        if self.preserved is not None:
            return self.preserved.get("queue") or None
        return None

    def age(self, now: float) -> float:
        """Its age at *now*, in seconds (0 for a time in the future)."""
        return max(0.0, now - self.since)

    def as_json(self, now: float) -> dict[str, Any]:
        """Its fields as a JSON object (the layout of ``queue list --json``).

        On Redis, ``path`` is null and ``where`` says where it is.
        """
        document: dict[str, Any] = {
            "id": self.filebase,
            "queue": self.queue,
            "state": self.state,
            "path": None if self.path is None else str(self.path),
            "since": iso_time(self.since),
            "age": round(self.age(now), 3),
            "list": self.listname or None,
            "sender": self.sender or None,
            "subject": self.subject or None,
            "reason": self.reason or None,
            "whichq": self.origin,
            "damaged": self.damage,
        }
        if self.path is None:
            document["where"] = self.where
        return document


def read_entry(switchboard: AnySwitchboard, filebase: str, extension: str) -> Entry:
    """The entry ``<filebase><extension>`` of *switchboard*'s queue, read as it is
    (through its backend: a file, or a stream entry).

    One that cannot be read or decoded makes an entry with :attr:`Entry.damage`.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    state = _STATES[extension]
    preserved = switchboard.preserved_reason(filebase) if state == PRESERVED else None
    directory = switchboard.queue_directory
    path = None if directory is None else directory / f"{filebase}{extension}"
    try:
        where = switchboard.entry_location(filebase, extension)
    except QueueUnavailableError:
        raise
    except QueueError as error:
        where = f"gone: {error}"
    data: bytes | QueueError
    try:
        data = switchboard.read_document(filebase, extension)
    except QueueUnavailableError:
        raise
    except QueueError as error:
        data = error
    return _entry(switchboard.name, filebase, state, path, where, preserved, data)


def _entry(
    queue: str,
    filebase: str,
    state: str,
    path: Path | None,
    where: str,
    preserved: dict[str, str] | None,
    data: bytes | QueueError,
    entry_id: str | None = None,
) -> Entry:
    """The entry whose bytes are *data*, or which could not be read (the error)."""
    item = Entry(queue, filebase, state, path, _since(filebase, preserved))
    item.preserved = preserved
    item.where = where
    item.entry_id = entry_id
    if isinstance(data, QueueError):
        item.damage = str(data)
        return item
    try:
        item.entry = queuefile.decode(data, source=item.where)
    except QueueFileError as error:
        item.damage = str(error)
        item.metadata = queuefile.salvage_metadata(data)
    else:
        item.metadata = item.entry.metadata
    return item


def queue_entries(switchboard: AnySwitchboard) -> list[Entry]:
    """Every entry of *switchboard*'s queue, waiting and preserved, oldest first.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    if isinstance(switchboard, StreamSwitchboard):
        return _stream_entries(switchboard)
    names = [(fb, ext) for ext in _EXTENSIONS for fb in switchboard.get_files(ext)]
    names.sort(key=lambda name: (_stamp(name[0]), name[0]))
    return [read_entry(switchboard, filebase, extension) for filebase, extension in names]


def _stream_entries(switchboard: StreamSwitchboard) -> list[Entry]:
    """Every entry of a queue on Redis: the preserved ones read in one go."""
    items = [read_entry(switchboard, filebase, ".pck") for filebase in switchboard.files]
    limit = switchboard.max_file_size
    for record in switchboard.preserved_entries():
        data: bytes | QueueError = record["document"]
        if limit is not None and len(record["document"]) > limit:
            data = QueueFileError(
                f"{record['where']} holds {len(record['document'])} bytes, more than the "
                f"largest a queue entry may be ({limit})"
            )
        items.append(
            _entry(
                switchboard.name,
                record["filebase"],
                PRESERVED,
                None,
                record["where"],
                record["reason"],
                data,
                record["id"],
            )
        )
    items.sort(key=lambda item: (_stamp(item.filebase), item.filebase))
    return items


def find_entry(switchboard: AnySwitchboard, entry_id: str) -> Entry | None:
    """The entry *entry_id* (a file base, with or without ``.pck``/``.psv``/``.bak``):
    waiting, preserved, or else taken; None when it is none of them.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    filebase, extension = entry_id, None
    for known in _STATES:
        if entry_id.endswith(known):
            filebase, extension = entry_id[: -len(known)], known
    if not is_filebase(filebase):
        return None
    try:
        found = switchboard.entry_extension(filebase)
    except QueueUnavailableError:
        raise
    except QueueError:
        return None
    if extension is not None and found != extension:
        directory = switchboard.queue_directory
        if directory is None or not os.path.lexists(directory / f"{filebase}{extension}"):
            return None
        found = extension
    if found is None:
        return None
    return read_entry(switchboard, filebase, found)


def format_age(seconds: float) -> str:
    """*seconds* in the duration syntax of the configuration, in its two largest units:
    ``45s``, ``5m3s``, ``3h5m``, ``2d3h``."""
    whole = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts[:2])


def is_filebase(text: str) -> bool:
    head, plus, digest = text.partition("+")
    seconds, _, fraction = head.partition(".")
    return (
        bool(plus)
        and seconds.isdigit()
        and (fraction == "" or fraction.isdigit())
        and len(digest) == 40
        and all(char in "0123456789abcdef" for char in digest)
    )


def _stamp(filebase: str) -> float:
    """The time in *filebase*, in seconds since the epoch: when it was queued."""
    head = filebase.partition("+")[0]
    return float(head) if head.replace(".", "", 1).isdigit() else 0.0


def _since(filebase: str, preserved: dict[str, str] | None) -> float:
    if preserved is not None and "time" in preserved:
        try:
            return datetime.fromisoformat(preserved["time"]).timestamp()
        except ValueError:
            pass
    return _stamp(filebase)


def iso_time(seconds: float) -> str:
    """*seconds* since the epoch as UTC, ISO 8601, to the second."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


# A page of entries.


def entry_names(switchboard: AnySwitchboard) -> list[tuple[str, str]]:
    """The ``(file base, extension)`` of every entry :func:`queue_entries` lists, waiting
    (``.pck``) and preserved (``.psv``), oldest first; only names are read.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    names = [(fb, ext) for ext in _EXTENSIONS for fb in switchboard.get_files(ext)]
    names.sort(key=lambda name: (_stamp(name[0]), name[0]))
    return names


def entry_page(
    switchboard: AnySwitchboard, start: int, count: int, *, newest_first: bool = False
) -> tuple[int, list[Entry]]:
    """How many entries the queue has, and the *count* of them from position *start*
    (0 is the oldest, or with *newest_first* the newest): only those are read.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    names = entry_names(switchboard)
    if newest_first:
        names.reverse()
    chosen = names[max(0, start) : max(0, start) + max(0, count)]
    return len(names), [read_entry(switchboard, fb, extension) for fb, extension in chosen]


def oldest_time(switchboard: AnySwitchboard) -> float | None:
    """When the queue's oldest entry (waiting or preserved) was queued, in seconds since
    the epoch (its name's time); None for an empty queue.

    :raises QueueUnavailableError: the queue's server cannot be reached.
    """
    names = entry_names(switchboard)
    return _stamp(names[0][0]) if names else None


# Requeue and discard.

#: The queues an entry is never requeued to.
NOT_TARGETS = ("bad",)
#: What a refusal tells to do to requeue an entry elsewhere, by default (the CLI's).
CHOOSE_TARGET = "name one with --to"


def requeue_targets(switchboards: Switchboards) -> list[str]:
    """The queues an entry may be requeued to, sorted."""
    return sorted(set(switchboards) - set(NOT_TARGETS))


def requeue_refusal(
    switchboards: Switchboards,
    item: Entry,
    target: str | None = None,
    *,
    choose: str = CHOOSE_TARGET,
) -> str | None:
    """Why :func:`requeue_entry` would refuse to requeue *item* (to *target*, else to
    the queue it came from), as the entry reads now; None when it would try.

    The one check both :func:`requeue_entry` and the operator page's confirmation page
    make: taken, unreadable, no queue it came from, a destination that is no queue to
    requeue to (``bad``, a runner without a queue such as ``lmtp``, a name that is
    none), or the queue it is waiting in already.
    """
    if item.state == TAKEN:
        return f"it is being processed ({item.where}); left to its runner"
    if item.entry is None:
        see = (
            f"see 'runnerkit qfile --hex {item.path}'"
            if item.path is not None
            else f"see 'runnerkit queue show {item.queue} {item.filebase}'"
        )
        return f"it cannot be read ({item.damage}); left in {item.queue!r} ({see})"
    destination = target or item.origin
    if destination is None:
        return f"its metadata names no queue it came from; {choose}; left in {item.queue!r}"
    if destination not in switchboards or destination in NOT_TARGETS:
        return (
            f"it came from queue {destination!r}, which is not one to requeue to; "
            f"{choose}; left in {item.queue!r}"
        )
    if destination == item.queue and item.state == WAITING:
        return f"it is already waiting in {destination!r}"
    return None


def requeue_entry(
    switchboards: Switchboards,
    switchboard: AnySwitchboard,
    item: Entry,
    target: str | None = None,
    *,
    choose: str = CHOOSE_TARGET,
) -> tuple[str, str]:
    """Queue *item* of *switchboard* in its destination, then remove it from *switchboard*.

    The destination is *target*, else the queue it came from (:attr:`Entry.origin`).
    The message is queued there before it leaves its queue, so nothing is lost; the
    runner's record of why it was shunted is dropped.

    :param switchboards: the site's switchboards, the destination's among them.
    :param choose: what a refusal for want of a destination tells to do.
    :returns: the destination's name and the new file base.
    :raises EntryRefusedError: it is not requeued (taken, unreadable, no destination,
        gone); it is left where it was, and the message says why.
    :raises QueueUnavailableError: the queues' server cannot be reached.
    """
    refusal = requeue_refusal(switchboards, item, target, choose=choose)
    if refusal is not None:
        raise EntryRefusedError(refusal)
    destination = target or item.origin
    assert destination is not None
    if item.state == PRESERVED:
        return destination, _requeue_preserved(switchboards, switchboard, item, destination)
    try:
        msg, msgdata = switchboard.dequeue(item.filebase)
    except QueueFileError as error:
        # Changed since it was read: keep it, with the reason, for an operator.
        switchboard.finish(item.filebase, preserve=True, reason=str(error))
        raise EntryRefusedError(f"it cannot be read ({error}); preserved in bad") from error
    except QueueUnavailableError:
        raise
    except QueueError as error:
        raise EntryRefusedError(f"it is gone: {error}") from error
    try:
        new_id = _enqueue(switchboards, destination, msg, for_requeue(msgdata), item)
    except EntryRefusedError as error:
        try:
            switchboard.put_back(item.filebase)
        except QueueError as stuck:
            where = (
                f"as {item.filebase}.bak in {str(switchboard.queue_directory)!r}"
                if switchboard.queue_directory is not None
                else "taken (pending in its stream)"
            )
            raise EntryRefusedError(
                f"{error}; and then {stuck}: it waits {where}, for the queue's runner to recover"
            ) from stuck
        raise
    switchboard.finish(item.filebase)
    return destination, new_id


def _requeue_preserved(
    switchboards: Switchboards, switchboard: AnySwitchboard, item: Entry, destination: str
) -> str:
    """Requeue the preserved *item* to *destination*; its new file base."""
    assert item.entry is not None
    metadata = for_requeue(item.entry.metadata)
    target_switchboard = switchboards[destination]
    if isinstance(switchboard, StreamSwitchboard) and isinstance(
        target_switchboard, StreamSwitchboard
    ):
        # One step on the server: of two requests, one moves it, the other finds it gone.
        try:
            return switchboard.requeue_preserved(
                item.filebase,
                target_switchboard,
                item.entry.message,
                metadata,
                entry_id=item.entry_id,
            )
        except MetadataError as error:
            raise EntryRefusedError(
                f"cannot queue it in {destination!r}: {error}; left in {item.queue!r}"
            ) from error
        except QueueUnavailableError:
            raise
        except QueueError as error:
            raise EntryRefusedError(f"not taken: {error}") from error
    try:
        # Held, so that two requests never both queue a copy.
        with switchboard.preserved_held(item.filebase):
            new_id = _enqueue(switchboards, destination, item.entry.message, metadata, item)
            try:
                switchboard.remove_preserved(item.filebase)
            except QueueError as error:
                raise EntryRefusedError(
                    f"queued in {destination!r} as {new_id}, but {error}"
                ) from error
    except QueueError as error:
        raise EntryRefusedError(f"not taken: {error}") from error
    return new_id


def _enqueue(
    switchboards: Switchboards, destination: str, msg: Any, metadata: MsgData, item: Entry
) -> str:
    try:
        return switchboards[destination].enqueue(msg, metadata)
    except (QueueError, MetadataError) as error:
        raise EntryRefusedError(
            f"cannot queue it in {destination!r}: {error}; left in {item.queue!r}"
        ) from error


def for_requeue(metadata: MsgData) -> MsgData:
    """*metadata* without what shunting (or a runner that put it in bad) recorded: it
    goes back to work."""
    return {
        key: value
        for key, value in metadata.items()
        if key not in ("whichq", "reason", *SHUNT_KEYS)
    }


def discard_entry(switchboard: AnySwitchboard, item: Entry) -> None:
    """Remove *item* for good (and a preserved one's reason); a damaged one too.

    :raises QueueError: it is gone, or taken (being processed): then it is not touched.
    :raises QueueUnavailableError: the queues' server cannot be reached.
    """
    if item.state == TAKEN:
        raise QueueError(f"{item.filebase} is being processed; left to its runner")
    if item.state == PRESERVED and isinstance(switchboard, StreamSwitchboard):
        switchboard.discard_preserved(item.filebase, item.entry_id)  # one step: once
        return
    if item.state == PRESERVED:
        with switchboard.preserved_held(item.filebase):
            switchboard.remove_preserved(item.filebase)
        return
    # Damaged, it is taken all the same (now .bak), and removed like any other.
    with contextlib.suppress(QueueFileError):
        switchboard.dequeue(item.filebase)
    switchboard.finish(item.filebase)
