"""``lists`` and ``members``: the mailing lists of the site."""

from __future__ import annotations

from pathlib import Path

import click

from runnerkit.cli.common import (
    config_options,
    find_list,
    main,
    opened,
)
from runnerkit.lists import ROLES
from runnerkit.logtext import one_line
from runnerkit.runners.bounce import bounce_events, bouncing_members


@main.group()
def lists() -> None:
    """Create, list and delete mailing lists."""


@lists.command("create")
@config_options
@click.option("--language", help="The list's preferred language.")
@click.option("--display-name", help="The list's display name.")
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
def lists_list(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Print every list, one a line."""
    with opened(config_files, var_dir, read_only=True) as config:
        for mlist in config.lists:
            click.echo(f"{mlist.fqdn_listname}  {mlist.list_id}  {mlist.preferred_language}")


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
    help="The role on the list.",
)


@members.command("add")
@config_options
@click.option("--name", "display_name", default="", help="The member's display name.")
@click.option("--language", help="The member's preferred language.")
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
@click.argument("listname")
def members_list(
    config_files: tuple[Path, ...], var_dir: Path | None, role: str, listname: str
) -> None:
    """Print the members of LISTNAME."""
    with opened(config_files, var_dir, read_only=True) as config:
        for member in find_list(config, listname).get_members(role):
            language = member.preferred_language or "-"
            click.echo(f"{member.address}  {member.display_name or '-'}  {language}")


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
@click.argument("listname")
def members_bounces(config_files: tuple[Path, ...], var_dir: Path | None, listname: str) -> None:
    """Print the bounces recorded for LISTNAME: each bouncing member with its bounce
    score and last bounce, then every bounce, oldest first (time, address, RFC 3463
    status, report form, the bounce's Message-ID)."""
    with opened(config_files, var_dir, read_only=True) as config:
        mlist = find_list(config, listname)
        for email, state in bouncing_members(config.database, mlist):
            click.echo(f"{email}  score {state.bounce_score}  last {state.last_bounce_received}")
        for event in bounce_events(config.database, mlist.list_id):
            click.echo(
                f"{event.timestamp}  {event.email}  {event.status or '-'}  {event.context}"
                f"  {one_line(event.message_id) or '-'}"
            )
