"""``queue``: the entries of one queue, shunt and bad above all, and what to do with them.

``runnerkit queue list NAME`` lists a queue's entries, ``show NAME ID`` shows one,
``requeue NAME ...`` puts entries back to work and ``discard NAME ...`` removes them,
as ``postqueue -p``, ``postcat -q`` and ``postsuper -r``/``-d`` do for postfix's queues,
and ``rq``'s registries for its failed jobs.  An entry is a queue file: ``<filebase>.pck``
waiting in the queue, or ``<filebase>.psv`` preserved in ``bad``.  Its id is its file
base, ``<time>+<40 hex digits>``.  Its reason is the one the runner recorded: a shunted
message's ``shunt_reason`` (:meth:`runnerkit.runner.Runner._enqueue_shunt`), or the
``<filebase>.reason`` kept beside a preserved one
(:meth:`runnerkit.switchboard.Switchboard.finish`).  A file that does not decode is
listed with the reason it cannot be read, never left out, and never requeued.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from runnerkit import queuefile
from runnerkit.cli.common import (
    EXIT_FAILED,
    CommandError,
    UsageProblem,
    config_options,
    main,
    opened,
)
from runnerkit.cli.qfile import METADATA_RULE, entry_lines, metadata_lines, readable, stored_bytes
from runnerkit.config.values import as_duration
from runnerkit.errors import MetadataError, QueueError, QueueFileError
from runnerkit.fsio import read_queue_file
from runnerkit.logtext import header_for_log, one_line
from runnerkit.runner import SHUNT_KEYS
from runnerkit.site import Site
from runnerkit.switchboard import Switchboard
from runnerkit.typing import MsgData

#: Where an entry is: waiting in its queue, or preserved (in ``bad``).
WAITING, PRESERVED = "waiting", "preserved"
_EXTENSIONS = {".pck": WAITING, ".psv": PRESERVED}
#: The widest a cell of ``queue list`` grows, in characters, but for the last (reason).
MAX_CELL = 40
#: The queues an entry is never requeued to.
_NOT_TARGETS = ("bad",)


@dataclass
class Entry:
    """One entry of a queue, read without changing anything."""

    #: The queue's name.
    queue: str
    #: Its file base, ``<time>+<40 hex digits>``: its id.
    filebase: str
    #: :data:`WAITING` (``.pck``) or :data:`PRESERVED` (``.psv``).
    state: str
    #: Its file.
    path: Path
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

    @property
    def reason(self) -> str:
        """Why it is here: the recorded reason, else why it cannot be read, else ``''``."""
        recorded = (self.metadata or {}).get("shunt_reason")
        if recorded is None and self.preserved is not None:
            recorded = self.preserved.get("reason")
        if recorded is None and self.damage is not None:
            recorded = f"unreadable: {self.damage}"
        return "" if recorded is None else one_line(recorded)

    @property
    def listname(self) -> str:
        metadata = self.metadata or {}
        return one_line(metadata.get("listname") or metadata.get("listid") or "", MAX_CELL)

    @property
    def sender(self) -> str:
        return "" if self.entry is None else one_line(self.entry.message.sender, 200)

    @property
    def subject(self) -> str:
        return "" if self.entry is None else header_for_log(self.entry.message, "subject", "")

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
        """Its fields as a JSON object (the layout of ``queue list --json``)."""
        return {
            "id": self.filebase,
            "queue": self.queue,
            "state": self.state,
            "path": str(self.path),
            "since": _iso(self.since),
            "age": round(self.age(now), 3),
            "list": self.listname or None,
            "sender": self.sender or None,
            "subject": self.subject or None,
            "reason": self.reason or None,
            "whichq": self.origin,
            "damaged": self.damage,
        }


def read_entry(switchboard: Switchboard, filebase: str, extension: str) -> Entry:
    """The entry ``<filebase><extension>`` of *switchboard*'s directory, read as it is.

    A file that cannot be read or decoded makes an entry with :attr:`Entry.damage`.
    """
    path = switchboard.queue_directory / f"{filebase}{extension}"
    state = _EXTENSIONS[extension]
    preserved = switchboard.preserved_reason(filebase) if state == PRESERVED else None
    item = Entry(switchboard.name, filebase, state, path, _since(filebase, preserved))
    item.preserved = preserved
    try:
        data = read_queue_file(path)
    except QueueFileError as error:
        item.damage = str(error)
        return item
    try:
        item.entry = queuefile.decode(data, source=str(path))
    except QueueFileError as error:
        item.damage = str(error)
        item.metadata = queuefile.salvage_metadata(data)
    else:
        item.metadata = item.entry.metadata
    return item


def queue_entries(switchboard: Switchboard) -> list[Entry]:
    """Every entry of *switchboard*'s queue, waiting and preserved, oldest first."""
    names = [(fb, ext) for ext in _EXTENSIONS for fb in switchboard.get_files(ext)]
    names.sort(key=lambda name: (_stamp(name[0]), name[0]))
    return [read_entry(switchboard, filebase, extension) for filebase, extension in names]


def find_entry(switchboard: Switchboard, entry_id: str) -> Entry | None:
    """The entry *entry_id* (a file base, with or without ``.pck``/``.psv``), or None."""
    filebase, extension = entry_id, None
    for known in _EXTENSIONS:
        if entry_id.endswith(known):
            filebase, extension = entry_id[: -len(known)], known
    if not _is_filebase(filebase):
        return None
    for candidate in [extension] if extension else list(_EXTENSIONS):
        if (switchboard.queue_directory / f"{filebase}{candidate}").exists() or (
            switchboard.queue_directory / f"{filebase}{candidate}"
        ).is_symlink():
            return read_entry(switchboard, filebase, candidate)
    return None


# The commands.


@main.group()
def queue() -> None:
    """List, show, requeue and discard the entries of a queue (shunt, bad, any).

    An entry's ID is its file base, <time>+<40 hex digits>, as 'queue list' shows it.
    """


def _filter_options(function: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "--list",
                "listname",
                metavar="LISTNAME",
                help="Only entries for this list (posting address or list id).",
            ),
            click.option(
                "--older-than",
                metavar="DURATION",
                help="Only entries in the queue for longer than this (30s, 10m, 2h, 1d, 1h30m).",
            ),
            click.option(
                "--match",
                metavar="TEXT",
                help="Only entries whose reason, subject or sender holds TEXT (any case).",
            ),
        ]
    ):
        function = decorator(function)
    return function


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@queue.command("list")
@config_options
@_filter_options
@_json_option
@click.argument("name", metavar="QUEUE")
def queue_list(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    name: str,
    listname: str | None,
    older_than: str | None,
    match: str | None,
    as_json: bool,
) -> None:
    """List the entries of QUEUE, oldest first: id, age, list, sender, subject, reason.

    Damaged entries are listed too, with the reason they cannot be read.  Header
    text is shown with control characters escaped.  --json prints
    {"queue": QUEUE, "entries": [{"id", "age" (seconds), "since" (UTC), "list",
    "sender", "subject", "reason", "whichq", "state", "damaged", "path"}, ...]}.
    """
    with opened(config_files, var_dir, read_only=True) as site:
        switchboard = _switchboard(site, name)
        now = datetime.now(UTC).timestamp()
        chosen = _filtered(site, queue_entries(switchboard), listname, older_than, match, now)
    if as_json:
        entries = [item.as_json(now) for item in chosen]
        click.echo(json.dumps({"queue": name, "entries": entries}, sort_keys=True))
        return
    if not chosen:
        click.echo(f"no entries in queue {name!r}")
        return
    rows = [("ID", "AGE", "LIST", "SENDER", "SUBJECT", "REASON")]
    rows += [
        (
            item.filebase,
            format_age(item.age(now)),
            _cell(item.listname),
            _cell(item.sender),
            _cell(item.subject),
            item.reason or "-",
        )
        for item in chosen
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[5]]))


@queue.command("show")
@config_options
@_json_option
@click.argument("name", metavar="QUEUE")
@click.argument("entry_id", metavar="ID")
def queue_show(
    config_files: tuple[Path, ...], var_dir: Path | None, name: str, entry_id: str, as_json: bool
) -> None:
    """Show the entry ID of QUEUE: what 'queue list' says of it, then its message and
    metadata as 'runnerkit qfile' shows them (of a damaged entry, what still reads).

    --json prints the fields of 'queue list --json', with "metadata" (each value as
    Python writes it) and "message" (the message as text, or null).
    """
    with opened(config_files, var_dir, read_only=True) as site:
        item = find_entry(_switchboard(site, name), entry_id)
    if item is None:
        raise CommandError(
            f"no entry {entry_id!r} in queue {name!r}; see 'runnerkit queue list {name}'"
        )
    now = datetime.now(UTC).timestamp()
    if as_json:
        document = item.as_json(now)
        metadata = item.metadata
        document["metadata"] = (
            None if metadata is None else {key: repr(metadata[key]) for key in sorted(metadata)}
        )
        message = None if item.entry is None else readable(stored_bytes(item.entry.message))
        document["message"] = message
        click.echo(json.dumps(document, sort_keys=True))
        return
    fields = {
        "id": item.filebase,
        "queue": f"{item.queue} ({item.state})",
        "file": readable(str(item.path).encode("utf-8", "surrogateescape")),
        "age": f"{format_age(item.age(now))} (since {_iso(item.since)})",
        "list": item.listname or "-",
        "sender": item.sender or "-",
        "subject": item.subject or "-",
        "reason": item.reason or "-",
        "from queue": item.origin or "-",
    }
    width = max(map(len, fields))
    for key, value in fields.items():
        click.echo(f"{key:{width}}: {value}")
    click.echo("=" * 50)
    if item.entry is not None:
        click.echo("\n".join(entry_lines(item.entry)))
        return
    click.echo(f"(the message cannot be read: {item.damage})")
    if item.metadata is not None:
        click.echo(METADATA_RULE)
        click.echo("\n".join(metadata_lines(item.metadata)))
    click.echo(f"(its bytes: runnerkit qfile --hex {item.path})")


@queue.command("requeue")
@config_options
@_filter_options
@click.option("--all", "everything", is_flag=True, help="Requeue every entry of QUEUE.")
@click.option(
    "--to",
    "target",
    metavar="QUEUE",
    help="The queue to put them in (default: the queue each came from, its whichq).",
)
@_json_option
@click.argument("name", metavar="QUEUE")
@click.argument("entry_ids", metavar="[ID]...", nargs=-1)
def queue_requeue(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    name: str,
    entry_ids: tuple[str, ...],
    listname: str | None,
    older_than: str | None,
    match: str | None,
    everything: bool,
    target: str | None,
    as_json: bool,
) -> None:
    """Put entries of QUEUE back to work: the IDs given, those the filters select, or --all.

    A shunted entry goes back to the queue it came from (its whichq), an entry
    preserved in bad to the queue --to names, else to the one it was preserved from.
    The message is queued there before it is removed from QUEUE, so nothing is lost;
    the runner's record of why it was shunted is dropped.  An entry that cannot be
    read is not requeued: it stays where it is, and the reason is given.  An ID that
    is not in QUEUE is an error (exit 1), after the others are done.
    """
    with opened(config_files, var_dir) as site:
        switchboard = _switchboard(site, name)
        if target is not None:
            _check_target(site, target)
        chosen, missing = _selection(
            site, switchboard, entry_ids, everything, listname, older_than, match, "requeue"
        )
        done: list[dict[str, str]] = []
        refused: list[dict[str, str]] = []
        for item in chosen:
            try:
                destination, new_id = _requeue(site, switchboard, item, target)
            except CommandError as error:
                refused.append({"id": item.filebase, "reason": error.format_message()})
                continue
            done.append({"id": item.filebase, "from": name, "to": destination, "new_id": new_id})
            if not as_json:
                click.echo(
                    f"requeued {item.filebase} from {name!r} to {destination!r} as {new_id}"
                )
    if as_json:
        click.echo(
            json.dumps({"requeued": done, "refused": refused, "missing": missing}, sort_keys=True)
        )
    else:
        if not done and not refused and not missing:
            click.echo(f"nothing to requeue in queue {name!r}")
        for problem in refused:
            click.echo(
                f"runnerkit: error: {problem['id']}: not requeued: {problem['reason']}", err=True
            )
        _report_missing(missing, name)
    if refused or missing:
        sys.exit(EXIT_FAILED)


@queue.command("discard")
@config_options
@_filter_options
@click.option("--all", "everything", is_flag=True, help="Discard every entry of QUEUE.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.argument("name", metavar="QUEUE")
@click.argument("entry_ids", metavar="[ID]...", nargs=-1)
def queue_discard(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    name: str,
    entry_ids: tuple[str, ...],
    listname: str | None,
    older_than: str | None,
    match: str | None,
    everything: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove entries of QUEUE for good: the IDs given, those the filters select, or --all.

    It asks first on a terminal; --yes does not ask, and without a terminal it is
    required.  Damaged entries can be discarded too.  A preserved entry's reason file
    goes with it.  An ID that is not in QUEUE is an error (exit 1), after the others
    are done.
    """
    if not yes and not sys.stdin.isatty():
        raise UsageProblem(
            "discard removes messages for good and asks first, but standard input is not "
            "a terminal; give --yes to discard without asking"
        )
    with opened(config_files, var_dir) as site:
        switchboard = _switchboard(site, name)
        chosen, missing = _selection(
            site, switchboard, entry_ids, everything, listname, older_than, match, "discard"
        )
        if chosen and not yes:
            count = f"{len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}"
            if not click.confirm(f"Discard {count} of queue {name!r} for good?"):
                raise CommandError("nothing discarded")
        done: list[str] = []
        for item in chosen:
            try:
                _discard(switchboard, item)
            except QueueError:
                missing.append(item.filebase)  # gone since it was read
                continue
            done.append(item.filebase)
            if not as_json:
                click.echo(f"discarded {item.filebase} from {name!r}")
    if as_json:
        click.echo(json.dumps({"discarded": done, "missing": missing}, sort_keys=True))
    else:
        if not done and not missing:
            click.echo(f"nothing to discard in queue {name!r}")
        _report_missing(missing, name)
    if missing:
        sys.exit(EXIT_FAILED)


# Helpers.


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


def _switchboard(site: Site, name: str) -> Switchboard:
    switchboard = site.switchboards.get(name)
    if not isinstance(switchboard, Switchboard):
        raise UsageProblem(
            f"no queue {name!r}; queues are: {', '.join(sorted(site.switchboards))}"
        )
    return switchboard


def _check_target(site: Site, target: str) -> None:
    if target not in site.switchboards or target in _NOT_TARGETS:
        choices = ", ".join(sorted(set(site.switchboards) - set(_NOT_TARGETS)))
        raise UsageProblem(f"--to: no queue {target!r} to requeue to; queues are: {choices}")


def _selection(
    site: Site,
    switchboard: Switchboard,
    entry_ids: tuple[str, ...],
    everything: bool,
    listname: str | None,
    older_than: str | None,
    match: str | None,
    verb: str,
) -> tuple[list[Entry], list[str]]:
    """The entries to act on, and the IDs given that are not in the queue.

    :raises UsageProblem: no IDs, filters or --all; or IDs with either of them.
    """
    filtered = any(value is not None for value in (listname, older_than, match))
    if entry_ids and (everything or filtered):
        raise UsageProblem(
            f"give IDs, or filters (--list, --older-than, --match), or --all to {verb}; "
            "not IDs and more"
        )
    if entry_ids:
        found = [
            (entry_id, find_entry(switchboard, entry_id)) for entry_id in dict.fromkeys(entry_ids)
        ]
        return [item for _, item in found if item is not None], [
            entry_id for entry_id, item in found if item is None
        ]
    if not (everything or filtered):
        raise UsageProblem(
            f"say what to {verb}: IDs (see 'runnerkit queue list {switchboard.name}'), "
            "filters (--list, --older-than, --match), or --all"
        )
    now = datetime.now(UTC).timestamp()
    return _filtered(site, queue_entries(switchboard), listname, older_than, match, now), []


def _filtered(
    site: Site,
    items: Iterable[Entry],
    listname: str | None,
    older_than: str | None,
    match: str | None,
    now: float,
) -> list[Entry]:
    """The *items* that every filter given lets through.

    *listname* matches an entry's ``listname`` or ``listid``; a list of *site* named
    by either matches by both.

    :raises UsageProblem: *older_than* is not a duration (the configuration's syntax,
        :func:`runnerkit.config.values.as_duration`).
    """
    minimum: timedelta | None = None
    if older_than is not None:
        try:
            minimum = as_duration(older_than)
        except ValueError as error:
            raise UsageProblem(f"--older-than: {older_than!r}: {error}") from None
    wanted = None if listname is None else _list_names(site, listname)
    needle = None if match is None else match.casefold()
    chosen = []
    for item in items:
        metadata = item.metadata or {}
        names = {str(metadata.get(key, "")).lower() for key in ("listname", "listid")}
        if wanted is not None and not wanted & names:
            continue
        if minimum is not None and item.age(now) < minimum.total_seconds():
            continue
        text = " ".join((item.reason, item.subject, item.sender)).casefold()
        if needle is not None and needle not in text:
            continue
        chosen.append(item)
    return chosen


def _list_names(site: Site, listname: str) -> set[str]:
    """The names *listname* goes by: itself, and its list's posting address and id."""
    names = {listname.lower()}
    mlist = site.lists.find(listname)
    if mlist is not None:
        names |= {mlist.fqdn_listname.lower(), mlist.list_id.lower()}
    return names


def _requeue(
    site: Site, switchboard: Switchboard, item: Entry, target: str | None
) -> tuple[str, str]:
    """Queue *item* in its destination, then remove it from *switchboard*.

    :returns: the destination's name and the new file base.
    :raises CommandError: it is not requeued (unreadable, no destination, gone); it
        is left where it was.
    """
    if item.entry is None:
        raise CommandError(
            f"it cannot be read ({item.damage}); left in {item.queue!r} "
            f"(see 'runnerkit qfile --hex {item.path}')"
        )
    destination = target or item.origin
    if destination is None:
        raise CommandError(
            f"its metadata names no queue it came from; name one with --to; left in {item.queue!r}"
        )
    if destination not in site.switchboards or destination in _NOT_TARGETS:
        raise CommandError(
            f"it came from queue {destination!r}, which is not one to requeue to; name "
            f"one with --to; left in {item.queue!r}"
        )
    if destination == item.queue and item.state == WAITING:
        raise CommandError(f"it is already waiting in {destination!r}")
    if item.state == PRESERVED:
        metadata = _for_requeue(item.entry.metadata)
        new_id = _enqueue(site, destination, item.entry.message, metadata, item)
        try:
            switchboard.remove_preserved(item.filebase)
        except QueueError as error:
            raise CommandError(f"queued in {destination!r} as {new_id}, but {error}") from error
        return destination, new_id
    try:
        msg, msgdata = switchboard.dequeue(item.filebase)
    except QueueFileError as error:
        # Changed since it was read: keep it, with the reason, for an operator.
        switchboard.finish(item.filebase, preserve=True, reason=str(error))
        raise CommandError(f"it cannot be read ({error}); preserved in bad") from error
    except QueueError as error:
        raise CommandError(f"it is gone: {error}") from error
    try:
        new_id = _enqueue(site, destination, msg, _for_requeue(msgdata), item)
    except CommandError as error:
        try:
            switchboard.put_back(item.filebase)
        except QueueError as stuck:
            raise CommandError(
                f"{error.format_message()}; and then {stuck}: it waits as {item.filebase}.bak "
                f"in {str(switchboard.queue_directory)!r}, for the queue's runner to recover"
            ) from stuck
        raise
    switchboard.finish(item.filebase)
    return destination, new_id


def _enqueue(site: Site, destination: str, msg: Any, metadata: MsgData, item: Entry) -> str:
    try:
        return site.switchboards[destination].enqueue(msg, metadata)
    except (QueueError, MetadataError) as error:
        raise CommandError(
            f"cannot queue it in {destination!r}: {error}; left in {item.queue!r}"
        ) from error


def _for_requeue(metadata: MsgData) -> MsgData:
    """*metadata* without what shunting recorded: it goes back to work."""
    return {key: value for key, value in metadata.items() if key not in ("whichq", *SHUNT_KEYS)}


def _discard(switchboard: Switchboard, item: Entry) -> None:
    """Remove *item* (and a preserved one's reason).

    :raises QueueError: it is gone.
    """
    if item.state == PRESERVED:
        switchboard.remove_preserved(item.filebase)
        return
    # Damaged, it is taken all the same (now .bak), and removed like any other.
    with contextlib.suppress(QueueFileError):
        switchboard.dequeue(item.filebase)
    switchboard.finish(item.filebase)


def _report_missing(missing: list[str], name: str) -> None:
    for entry_id in missing:
        click.echo(
            f"runnerkit: error: no entry {entry_id!r} in queue {name!r}; see "
            f"'runnerkit queue list {name}'",
            err=True,
        )


def _cell(text: str) -> str:
    text = text or "-"
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _is_filebase(text: str) -> bool:
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
    head = filebase.partition("+")[0]
    return float(head) if head.replace(".", "", 1).isdigit() else 0.0


def _since(filebase: str, preserved: dict[str, str] | None) -> float:
    if preserved is not None and "time" in preserved:
        try:
            return datetime.fromisoformat(preserved["time"]).timestamp()
        except ValueError:
            pass
    return _stamp(filebase)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
