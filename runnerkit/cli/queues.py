"""``queues``, ``inject`` and ``unshunt``: what is in the queues, and putting it there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runnerkit.cli.common import (
    EXIT_FAILED,
    UsageProblem,
    config_options,
    find_list,
    main,
    opened,
)
from runnerkit.errors import QueueError, QueueFileError
from runnerkit.message import message_from_bytes
from runnerkit.switchboard import queue_depths


@main.command()
@config_options
def queues(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Show the depth of every queue, shunt and bad included."""
    with opened(config_files, var_dir) as config:
        for name, depth in queue_depths(config.switchboards).items():
            click.echo(f"{name:<12} {depth:>7}")


@main.command()
@config_options
@click.option("-q", "--queue", default="in", show_default=True, help="The queue.")
@click.option("-l", "--list", "listname", help="The list the message is for.")
@click.argument("message_file", type=click.File("rb"))
def inject(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    queue: str,
    listname: str | None,
    message_file: Any,
) -> None:
    """Queue the message in MESSAGE_FILE (or - for standard input)."""
    with opened(config_files, var_dir) as config:
        if queue not in config.switchboards:
            raise UsageProblem(
                f"no queue {queue!r}; queues are: {', '.join(sorted(config.switchboards))}"
            )
        metadata: dict[str, Any] = {}
        if listname is not None:
            mlist = find_list(config, listname)
            metadata.update(listid=mlist.list_id, listname=mlist.fqdn_listname)
        data = message_file.read()
        if not data.strip():
            raise UsageProblem(
                f"{getattr(message_file, 'name', '<stdin>')} is empty; give a file (or - for "
                "standard input) that holds an email message"
            )
        msg = message_from_bytes(data)
        filebase = config.switchboards[queue].enqueue(msg, metadata)
        click.echo(f"queued {filebase} in {queue}")


@main.command()
@config_options
def unshunt(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Move shunted messages back to the queues they came from."""
    with opened(config_files, var_dir) as config:
        shunt = config.switchboards["shunt"]
        moved = kept = preserved = 0
        for filebase in shunt.files:
            try:
                msg, msgdata = shunt.dequeue(filebase)
            except QueueFileError as error:
                # Damaged: moving it on would only fail again; an operator can inspect it.
                shunt.finish(filebase, preserve=True)
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
                msgdata["whichq"] = target
                shunt.enqueue(msg, msgdata)
                shunt.finish(filebase)
                kept += 1
                continue
            config.switchboards[target].enqueue(msg, msgdata)
            shunt.finish(filebase)
            moved += 1
        summary = f"moved {moved} message(s) back; {kept} left in shunt"
        if preserved:
            summary += f"; {preserved} unreadable preserved in bad"
        click.echo(summary)
        if kept or preserved:
            sys.exit(EXIT_FAILED)
