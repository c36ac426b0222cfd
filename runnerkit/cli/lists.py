"""``lists`` and ``members``: the mailing lists of the site."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runnerkit.cli.common import (
    config_options,
    find_list,
    main,
    opened,
)
from runnerkit.cli.table import echo_table
from runnerkit.lists import ROLES
from runnerkit.logtext import one_line
from runnerkit.runners.bounce import bounce_events, bouncing_members

#: ``--json``: print JSON instead of a table.
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


@main.group()
def lists() -> None:
    """Create, list and delete mailing lists."""


@lists.command("create")
@config_options
@click.option("--language", metavar="CODE", help="The list's preferred language (en, fr ...).")
@click.option("--display-name", metavar="NAME", help="The list's display name.")
@click.argument("fqdn_listname")
def lists_create(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    language: str | None,
    display_name: str | None,
    fqdn_listname: str,
) -> None:
    """Create the list FQDN_LISTNAME (its posting address)."""
    with opened(config_files, var_dir) as config:
        mlist = config.lists.create(
            fqdn_listname, preferred_language=language, display_name=display_name
        )
        click.echo(f"created {mlist.fqdn_listname} (list id {mlist.list_id})")


@lists.command("list")
@config_options
@json_option
def lists_list(config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool) -> None:
    """Print every list: posting address, list id, language and number of members.

    With --json: {"lists": [{"fqdn_listname", "list_id", "display_name",
    "preferred_language", "members"}, ...]}.
    """
    with opened(config_files, var_dir, read_only=True) as config:
        found = [
            {
                "fqdn_listname": mlist.fqdn_listname,
                "list_id": mlist.list_id,
                "display_name": mlist.display_name,
                "preferred_language": mlist.preferred_language,
                "members": len(mlist.members),
            }
            for mlist in config.lists
        ]
    if as_json:
        click.echo(json.dumps({"lists": found}, sort_keys=True))
    elif not found:
        click.echo("no mailing lists")
    else:
        keys = ("fqdn_listname", "list_id", "preferred_language", "members")
        echo_table(
            ("LIST", "LIST-ID", "LANGUAGE", "MEMBERS"),
            [tuple(item[key] for key in keys) for item in found],
        )


@lists.command("delete")
@config_options
@click.argument("fqdn_listname")
def lists_delete(config_files: tuple[Path, ...], var_dir: Path | None, fqdn_listname: str) -> None:
    """Delete the list FQDN_LISTNAME and its members."""
    with opened(config_files, var_dir) as config:
        config.lists.delete(fqdn_listname)
        click.echo(f"deleted {fqdn_listname}")


@main.group()
def members() -> None:
    """Add, list and remove the members of a list."""


#: ``--role``: the role of a subscription.
role_option = click.option(
    "--role",
    type=click.Choice(ROLES),
    default="member",
    show_default=True,
    metavar="ROLE",
    help=f"The role on the list: {', '.join(ROLES)}.",
)


@members.command("add")
@config_options
@click.option(
    "--name", "display_name", default="", metavar="NAME", help="The member's display name."
)
@click.option("--language", metavar="CODE", help="The member's preferred language (en, fr ...).")
@role_option
@click.argument("listname")
@click.argument("address")
def members_add(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    display_name: str,
    language: str | None,
    role: str,
    listname: str,
    address: str,
) -> None:
    """Subscribe ADDRESS to LISTNAME."""
    with opened(config_files, var_dir) as config:
        find_list(config, listname).subscribe(
            address, display_name=display_name, preferred_language=language, role=role
        )
        click.echo(f"subscribed {address} to {listname} as {role}")


@members.command("list")
@config_options
@role_option
@json_option
@click.argument("listname")
def members_list(
    config_files: tuple[Path, ...], var_dir: Path | None, role: str, as_json: bool, listname: str
) -> None:
    """Print the members of LISTNAME in one role: address, display name, language.

    A member without a display name or a language of its own shows ``-``.  With
    --json: {"list": FQDN_LISTNAME, "role": ROLE, "members": [{"address",
    "display_name", "preferred_language"}, ...]} (null for no language of its own).
    """
    with opened(config_files, var_dir, read_only=True) as config:
        mlist = find_list(config, listname)
        found = [
            {
                "address": member.address,
                "display_name": member.display_name,
                "preferred_language": member.preferred_language,
            }
            for member in mlist.get_members(role)
        ]
        fqdn_listname = mlist.fqdn_listname
    if as_json:
        click.echo(
            json.dumps({"list": fqdn_listname, "role": role, "members": found}, sort_keys=True)
        )
    elif not found:
        click.echo(f"no {role}s of {fqdn_listname}")
    else:
        echo_table(
            ("ADDRESS", "NAME", "LANGUAGE"),
            [
                (item["address"], item["display_name"] or "-", item["preferred_language"] or "-")
                for item in found
            ],
        )


@members.command("remove")
@config_options
@role_option
@click.argument("listname")
@click.argument("address")
def members_remove(
    config_files: tuple[Path, ...], var_dir: Path | None, role: str, listname: str, address: str
) -> None:
    """Unsubscribe ADDRESS from LISTNAME."""
    with opened(config_files, var_dir) as config:
        find_list(config, listname).unsubscribe(address, role=role)
        click.echo(f"removed {address} from {listname}")


@members.command("bounces")
@config_options
@json_option
@click.argument("listname")
def members_bounces(
    config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool, listname: str
) -> None:
    """Print the bounces recorded for LISTNAME: each bouncing member with its bounce
    score and last bounce, then every bounce, oldest first (time, address, RFC 3463
    status, report form, the bounce's Message-ID).

    With --json: {"list": FQDN_LISTNAME, "members": [{"address", "bounce_score",
    "last_bounce_received"}, ...], "events": [{"timestamp", "address", "status",
    "context", "message_id"}, ...]}.
    """
    with opened(config_files, var_dir, read_only=True) as config:
        mlist = find_list(config, listname)
        if as_json:
            document = {
                "list": mlist.fqdn_listname,
                "members": [
                    {
                        "address": email,
                        "bounce_score": state.bounce_score,
                        "last_bounce_received": state.last_bounce_received,
                    }
                    for email, state in bouncing_members(config.database, mlist)
                ],
                "events": [
                    {
                        "timestamp": event.timestamp,
                        "address": event.email,
                        "status": event.status,
                        "context": event.context,
                        "message_id": event.message_id,
                    }
                    for event in bounce_events(config.database, mlist.list_id)
                ],
            }
            click.echo(json.dumps(document, sort_keys=True))
            return
        for email, state in bouncing_members(config.database, mlist):
            click.echo(f"{email}  score {state.bounce_score}  last {state.last_bounce_received}")
        for event in bounce_events(config.database, mlist.list_id):
            click.echo(
                f"{event.timestamp}  {event.email}  {event.status or '-'}  {event.context}"
                f"  {one_line(event.message_id) or '-'}"
            )
