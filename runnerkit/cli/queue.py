"""``queue``: list, show, requeue and discard the entries of a queue, shunt and bad above all.

``runnerkit queue list NAME`` lists a queue's entries (:mod:`runnerkit.cli.entries`),
``show NAME ID`` shows one, ``requeue NAME ...`` puts entries back to work and
``discard NAME ...`` removes them, as ``postqueue -p``, ``postcat -q`` and
``postsuper -r``/``-d`` do for postfix's queues, and ``rq``'s registries for its failed
jobs.  Entries that cannot be read are listed and shown, never requeued.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from runnerkit.cli.common import (
    EXIT_FAILED,
    CommandError,
    UsageProblem,
    config_options,
    main,
    opened,
)
from runnerkit.cli.entries import (
    TAKEN,
    Entry,
    find_entry,
    format_age,
    is_filebase,
    iso_time,
    queue_entries,
    select_entries,
)
from runnerkit.cli.qfile import METADATA_RULE, entry_lines, metadata_lines, readable, stored_bytes
from runnerkit.cli.table import echo_table
from runnerkit.entries import NOT_TARGETS, discard_entry, requeue_entry
from runnerkit.errors import EntryRefusedError, QueueError, QueueUnavailableError
from runnerkit.site import AnySwitchboard, Site

#: The widest a cell of ``queue list`` grows, in characters, but for the last (reason).
MAX_CELL = 40


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
                metavar="SUBSTRING",
                help="Only entries whose reason, subject or sender holds SUBSTRING (any case).",
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
        chosen = select_entries(site, queue_entries(switchboard), listname, older_than, match, now)
    if as_json:
        entries = [item.as_json(now) for item in chosen]
        click.echo(json.dumps({"queue": name, "entries": entries}, sort_keys=True))
        return
    if not chosen:
        click.echo(f"no entries in queue {name!r}")
        return
    echo_table(
        ("ID", "AGE", "LIST", "SENDER", "SUBJECT", "REASON"),
        [
            (
                item.filebase,
                format_age(item.age(now)),
                _cell(item.listname),
                _cell(item.sender),
                _cell(item.subject),
                item.reason or "-",
            )
            for item in chosen
        ],
    )


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
    place = ("file", str(item.path)) if item.path is not None else ("stored", item.where)
    fields = {
        "id": item.filebase,
        "queue": f"{item.queue} ({item.state})",
        place[0]: readable(place[1].encode("utf-8", "surrogateescape")),
        "age": f"{format_age(item.age(now))} (since {iso_time(item.since)})",
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
    if item.path is not None:
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

    An entry goes to the queue --to names, else to the one it came from: its whichq
    (a shunted entry's), else the queue it was preserved in bad from.
    The message is queued there before it is removed from QUEUE, so nothing is lost;
    the runner's record of why it was shunted is dropped.  An entry that cannot be
    read is not requeued: it stays where it is, and the reason is given.  An ID that
    is not in QUEUE is an error (exit 1), after the others are done.  --json prints
    {"requeued": [{"id", "from", "to", "new_id"}, ...], "refused": [{"id", "reason"},
    ...], "missing": [ID, ...]}.
    """
    with opened(config_files, var_dir, existing=True) as site:
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
    are done.  --json prints {"discarded": [ID, ...], "missing": [ID, ...]}.
    """
    if not yes and not sys.stdin.isatty():
        raise UsageProblem(
            "discard removes messages for good and asks first, but standard input is not "
            "a terminal; give --yes to discard without asking"
        )
    with opened(config_files, var_dir, existing=True) as site:
        switchboard = _switchboard(site, name)
        chosen, missing = _selection(
            site, switchboard, entry_ids, everything, listname, older_than, match, "discard"
        )
        orphans: list[str] = []
        if name == "bad":
            # A reason whose entry was removed by hand goes when its id is discarded.
            for filebase in [entry for entry in missing if is_filebase(entry)]:
                if switchboard.remove_orphaned_reason(filebase):
                    missing.remove(filebase)
                    orphans.append(filebase)
                    if not as_json:
                        click.echo(f"removed the reason of {filebase}, whose entry was gone")
        if chosen and not yes:
            count = f"{len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}"
            if not click.confirm(f"Discard {count} of queue {name!r} for good?"):
                raise CommandError("nothing discarded")
        done: list[str] = []
        busy: list[str] = []
        for item in chosen:
            if item.state == TAKEN:
                busy.append(item.filebase)  # a runner has it: never pulled from under it
                continue
            try:
                _discard(switchboard, item)
            except QueueUnavailableError:
                raise
            except QueueError:
                missing.append(item.filebase)  # gone since it was read
                continue
            done.append(item.filebase)
            if not as_json:
                click.echo(f"discarded {item.filebase} from {name!r}")
    if as_json:
        document: dict[str, list[str]] = {"discarded": done, "missing": missing}
        if busy:
            document["refused"] = busy
        click.echo(json.dumps(document, sort_keys=True))
    else:
        if not done and not missing and not orphans and not busy:
            click.echo(f"nothing to discard in queue {name!r}")
        for filebase in busy:
            click.echo(
                f"runnerkit: error: {filebase}: not discarded: it is being processed; "
                "left to its runner",
                err=True,
            )
        _report_missing(missing, name)
    if missing or busy:
        sys.exit(EXIT_FAILED)


# Helpers.


def _switchboard(site: Site, name: str) -> AnySwitchboard:
    switchboard = site.switchboards.get(name)
    if switchboard is None:
        raise UsageProblem(
            f"no queue {name!r}; queues are: {', '.join(sorted(site.switchboards))}"
        )
    return switchboard


def _check_target(site: Site, target: str) -> None:
    if target not in site.switchboards or target in NOT_TARGETS:
        choices = ", ".join(sorted(set(site.switchboards) - set(NOT_TARGETS)))
        raise UsageProblem(f"--to: no queue {target!r} to requeue to; queues are: {choices}")


def _selection(
    site: Site,
    switchboard: AnySwitchboard,
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
    return select_entries(site, queue_entries(switchboard), listname, older_than, match, now), []


def _requeue(
    site: Site, switchboard: AnySwitchboard, item: Entry, target: str | None
) -> tuple[str, str]:
    """Queue *item* in its destination, then remove it from *switchboard*
    (:func:`runnerkit.entries.requeue_entry`).

    :returns: the destination's name and the new file base.
    :raises CommandError: it is not requeued (unreadable, no destination, gone); it
        is left where it was.
    """
    try:
        return requeue_entry(site.switchboards, switchboard, item, target)
    except EntryRefusedError as error:
        raise CommandError(str(error)) from error


def _discard(switchboard: AnySwitchboard, item: Entry) -> None:
    """Remove *item* (and a preserved one's reason): :func:`runnerkit.entries.discard_entry`.

    :raises QueueError: it is gone, or taken (being processed).
    """
    discard_entry(switchboard, item)


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
