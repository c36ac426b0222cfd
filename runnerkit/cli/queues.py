"""``queues``, ``inject`` and ``unshunt``: what is in the queues, and putting it there."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import click

from runnerkit.cli.common import (
    EXIT_FAILED,
    CommandError,
    UsageProblem,
    config_options,
    find_list,
    main,
    opened,
    warn_other_queues,
)
from runnerkit.errors import MessageError, QueueError, QueueFileError
from runnerkit.limits import read_message
from runnerkit.lists import MailingList
from runnerkit.logtext import escape
from runnerkit.message import Message
from runnerkit.runner import SHUNT_KEYS
from runnerkit.runners.incoming import check_message
from runnerkit.switchboard import read_depths

#: The queue whose runner (``in``) needs a list and a sender.
INCOMING = "in"


@main.command()
@config_options
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON: {"queues": {NAME: DEPTH, ...}}.'
)
def queues(config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool) -> None:
    """Show the depth of every queue, shunt and bad included.

    A depth that cannot be read (the Redis server cannot be reached, say) shows as ?
    (null in the JSON, with "problems" saying why), and the exit status is 1.
    """
    with opened(config_files, var_dir, read_only=True) as config:
        warn_other_queues(config)
        depths, problems = read_depths(config.switchboards)
        if as_json:
            # The layout of the REST runner's /queues; a depth that cannot be read is
            # null, and "problems" says why.
            document: dict[str, Any] = {"queues": depths}
            if problems:
                document["problems"] = problems
            click.echo(json.dumps(document, sort_keys=True))
        else:
            for name, depth in depths.items():
                click.echo(f"{name:<12} {'?' if depth is None else depth:>7}")
        for problem in problems:
            click.echo(f"runnerkit: error: {problem}", err=True)
        if problems:
            sys.exit(EXIT_FAILED)


@main.command()
@config_options
@click.option("-q", "--queue", default="in", show_default=True, metavar="QUEUE", help="The queue.")
@click.option(
    "-l",
    "--list",
    "listname",
    metavar="LISTNAME",
    help="The list the message is for (its posting address or list id).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Queue it even if it would end in bad: no header, or for 'in' no list or sender.",
)
@click.argument("message_file", type=click.File("rb"))
def inject(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    queue: str,
    listname: str | None,
    force: bool,
    message_file: Any,
) -> None:
    """Queue the message in MESSAGE_FILE (or - for standard input).

    The message is held to the limits the LMTP server applies ([limits] and [lmtp]
    max_message_size), always.  Unless --force is given, it must also have a header,
    and a message for 'in' must name a list (-l) and have a From address, as the in
    runner requires: otherwise it would only end in bad.
    """
    with opened(config_files, var_dir) as config:
        if queue not in config.switchboards:
            raise UsageProblem(
                f"no queue {queue!r}; queues are: {', '.join(sorted(config.switchboards))}"
            )
        metadata: dict[str, Any] = {}
        mlist = None
        if listname is not None:
            mlist = find_list(config, listname)
            metadata.update(listid=mlist.list_id, listname=mlist.fqdn_listname)
        name = escape(str(getattr(message_file, "name", "<stdin>")))
        # At most one byte over the limit: enough to refuse it, never the whole of a
        # huge file in memory (a file's size is known before reading; a stream's not).
        limit = config.lmtp.max_message_size
        size = _file_size(message_file)
        if limit and size is not None and size > limit:
            raise CommandError(
                f"{name}: the message is refused: the message is {size} octets, more than "
                f"[lmtp] max_message_size ({limit})"
            )
        data = message_file.read(limit + 1) if limit else message_file.read()
        if limit and len(data) > limit:
            raise CommandError(
                f"{name}: the message is refused: the message is more than [lmtp] "
                f"max_message_size ({limit} octets); it was not read further"
            )
        if not data.strip():
            raise UsageProblem(
                f"{name} is empty; give a file (or - for standard input) that holds an "
                "email message"
            )
        try:
            msg = read_message(data, config.limits, config.lmtp.max_message_size)
        except MessageError as error:
            raise CommandError(f"{name}: the message is refused: {error}") from error
        if not force:
            _check_usable(name, queue, mlist, msg)
        filebase = config.switchboards[queue].enqueue(msg, metadata)
        click.echo(f"queued {filebase} in queue {queue!r}")


def _file_size(stream: Any) -> int | None:
    """The size of *stream*'s file in bytes if it is a regular file, else None."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _check_usable(name: str, queue: str, mlist: MailingList | None, msg: Message) -> None:
    """Refuse a message that would only end in bad, saying why and how to insist.

    :raises UsageProblem: the queue is ``in`` and no list was named.
    :raises CommandError: *msg* has no header field (RFC 5322, section 2.1: a message
        is header fields, then optionally a body), or, for the ``in`` queue, the in
        runner would move it to bad (no From address).
    """
    if queue == INCOMING and mlist is None:
        raise UsageProblem(
            f"the {INCOMING} queue needs a list: name it with -l/--list (or give --force "
            "to queue the message anyway; the in runner moves it to bad)"
        )
    if not msg.keys():
        raise CommandError(
            f"{name}: it has no header fields: it is not an email message (RFC 5322 "
            "section 2.1: header fields, a blank line, the body); give --force to queue it "
            "anyway"
        )
    problem = check_message(mlist, msg) if queue == INCOMING else None
    if problem is not None:
        raise CommandError(
            f"{name}: {problem[:1].lower()}{problem[1:].rstrip('.')}; the {queue} runner "
            "would move it to bad (give --force to queue it anyway)"
        )


@main.command()
@config_options
def unshunt(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Move shunted messages back to the queues they came from.

    What 'runnerkit queue requeue shunt --all' does, all at once; the metadata the runner
    recorded when it shunted a message (whichq, shunt_reason ...) is dropped.
    """
    with opened(config_files, var_dir, existing=True) as config:
        shunt = config.switchboards["shunt"]
        moved = kept = preserved = 0
        for filebase in shunt.files:
            try:
                msg, msgdata = shunt.dequeue(filebase)
            except QueueFileError as error:
                # Damaged: moving it on would only fail again; an operator can inspect it.
                shunt.finish(filebase, preserve=True, reason=f"unreadable in shunt: {error}")
                click.echo(f"{filebase}: {error}; preserved in bad", err=True)
                preserved += 1
                continue
            except QueueError as error:
                # Gone since the listing: another unshunt took it.
                click.echo(f"{filebase}: skipped: {error}", err=True)
                continue
            target = msgdata.pop("whichq", "in")
            if target not in config.switchboards or target == "shunt":
                click.echo(f"{filebase}: unknown queue {target!r}, left in shunt", err=True)
                # As it was, under its own id: its age and the filters still hold.
                shunt.put_back(filebase)
                kept += 1
                continue
            for key in SHUNT_KEYS:
                msgdata.pop(key, None)
            config.switchboards[target].enqueue(msg, msgdata)
            shunt.finish(filebase)
            moved += 1
        summary = f"moved {moved} message(s) back; {kept} left in shunt"
        if preserved:
            summary += f"; {preserved} unreadable preserved in bad"
        click.echo(summary)
        if kept or preserved:
            sys.exit(EXIT_FAILED)
