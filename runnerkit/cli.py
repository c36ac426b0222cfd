"""The ``runnerkit`` command: run, inspect and feed a runnerkit installation.

Every subcommand takes ``-C FILE`` (repeatable; default ``$RUNNERKIT_CONFIG``) and
``--var-dir DIR`` (default ``$RUNNERKIT_VAR_DIR``, else ``./var``).  Exit status: 0 on
success, 1 when the command could not do its job, 2 for bad usage or configuration.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from runnerkit import queuefile
from runnerkit.config import use_config
from runnerkit.errors import QueueError, QueueFileError, RunnerkitError
from runnerkit.fsio import read_queue_file
from runnerkit.lists import ROLES, MailingList
from runnerkit.master import (
    UNKNOWN_PID,
    Master,
    read_status,
    running_master_pid,
    signal_master,
    start_in_background,
    stop_master,
)
from runnerkit.message import Message, message_from_bytes
from runnerkit.runner import check_runner_classes
from runnerkit.site import Site
from runnerkit.switchboard import queue_depths

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status when the command could not do its job.
EXIT_FAILED = 1
#: Exit status for bad usage or configuration.
EXIT_USAGE = 2


class CommandError(click.ClickException):
    """A failure the user can act on: printed as ``runnerkit: error: ...`` on stderr."""

    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        click.echo(f"runnerkit: error: {self.format_message()}", err=True)


class UsageProblem(CommandError):
    exit_code = EXIT_USAGE


class UsageMistake(UsageProblem):
    """A usage error click found (a missing argument, an unknown option), shown like ours."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message())
        self.ctx = error.ctx

    def show(self, file: Any = None) -> None:
        super().show(file)
        if self.ctx is not None:
            click.echo(self.ctx.get_usage(), err=True)
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


@contextmanager
def runnerkit_usage_errors() -> Iterator[None]:
    """Turn click's usage errors into :class:`UsageMistake`; help stays help."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as error:
        raise UsageMistake(error) from error


class RunnerkitGroup(click.Group):
    """The ``runnerkit`` group: every error, click's own included, reads ``runnerkit: error:``."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with runnerkit_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with runnerkit_usage_errors():
            return super().invoke(ctx)


def config_options(function: F) -> F:
    """Add ``-C/--config`` and ``--var-dir`` to a subcommand."""
    function = click.option(
        "--var-dir",
        envvar="RUNNERKIT_VAR_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="The var dir (default: $RUNNERKIT_VAR_DIR, else ./var).",
    )(function)
    return click.option(
        "-C",
        "--config",
        "config_files",
        multiple=True,
        envvar="RUNNERKIT_CONFIG",
        type=click.Path(dir_okay=False, path_type=Path),
        help="An INI file over the defaults; repeat for more layers ($RUNNERKIT_CONFIG).",
    )(function)


def load_config(config_files: tuple[Path, ...], var_dir: Path | None) -> Site:
    """Build the site the options describe."""
    try:
        config = Site.load(config_files, var_dir)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    return config


@contextmanager
def opened(config_files: tuple[Path, ...], var_dir: Path | None) -> Iterator[Site]:
    """The site, current and closed afterwards; runnerkit errors become exits."""
    config = load_config(config_files, var_dir)
    try:
        with config, use_config(config):
            yield config
    except RunnerkitError as error:
        raise CommandError(str(error)) from error


@click.group(cls=RunnerkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runnerkit")
def main() -> None:
    """Run and inspect runnerkit queues, runners and lists."""


# The master.


@main.command()
@config_options
@click.option("--foreground", is_flag=True, help="Run the master in this process.")
def start(config_files: tuple[Path, ...], var_dir: Path | None, foreground: bool) -> None:
    """Start the master, which starts every runner."""
    config = load_config(config_files, var_dir)
    try:
        # A runner class that cannot be loaded is reported now, not by a runner
        # process that the master would restart in vain.
        check_runner_classes(config)
    except RunnerkitError as error:
        raise UsageProblem(str(error)) from error
    pid = running_master_pid(config)
    if pid is not None:
        raise CommandError(
            f"a master is already running with pid {pid}; use 'runnerkit stop' or "
            "'runnerkit restart'"
        )
    if foreground:
        try:
            with config:
                sys.exit(Master(config, config_files).run())
        except RunnerkitError as error:
            raise CommandError(str(error)) from error
    try:
        pid = start_in_background(config, config_files)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    click.echo(f"master started with pid {pid}")


@main.command()
@config_options
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def stop(config_files: tuple[Path, ...], var_dir: Path | None, timeout: float) -> None:
    """Stop the master and every runner, after their current messages."""
    config = load_config(config_files, var_dir)
    try:
        pid = stop_master(config, timeout)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if pid is None:
        raise CommandError(f"the master did not stop within {timeout:.0f}s")
    click.echo(f"master {pid} stopped")


@main.command()
@config_options
def restart(config_files: tuple[Path, ...], var_dir: Path | None) -> None:
    """Restart every runner (the master stays), without spending restart budgets."""
    config = load_config(config_files, var_dir)
    try:
        pid = signal_master(config, signal.SIGUSR1)
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    click.echo(f"asked master {pid} to restart its runners")


@main.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_files: tuple[Path, ...], var_dir: Path | None, as_json: bool) -> None:
    """Show the master, its runners and the depth of every queue."""
    with opened(config_files, var_dir) as config:
        pid = running_master_pid(config)
        master_status = read_status(config) if pid is not None else None
        runners = master_status.runners if master_status is not None else ()
        depths = queue_depths(config.switchboards)
        if as_json:
            listed = [runner.to_dict() for runner in runners]
            click.echo(json.dumps({"master_pid": pid, "runners": listed, "queues": depths}))
            return
        if pid is None:
            click.echo("master: not running")
        elif pid == UNKNOWN_PID:
            click.echo("master: lock held by a process that wrote no pid")
        else:
            click.echo(f"master: running, pid {pid}")
        if runners:
            click.echo(
                f"{'runner':<12} {'slice':<7} {'pid':>8} {'state':<9} {'restarts':>8} {'queue':>7}"
            )
        for runner in runners:
            where = "-" if runner.slice is None else f"{runner.slice}/{runner.count}"
            depth = depths.get(runner.name, "-")
            reason = f"  ({runner.reason})" if runner.reason else ""
            click.echo(
                f"{runner.name:<12} {where:<7} {runner.pid or '-':>8} "
                f"{runner.state:<9} {runner.restarts:>8} {depth:>7}{reason}"
            )
        if pid is None:
            for name, depth in depths.items():
                click.echo(f"{name:<12} {depth:>7}")


# Queues.


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


#: How much of a file ``qfile --hex`` dumps unless told otherwise.
HEX_DUMP_LIMIT = 64 * 1024
#: Characters ``qfile`` shows escaped: controls, which would act on the terminal (or be
#: dropped by click when piped), all but tab, newline and the CR of a CRLF.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
#: A byte of a bytes-parsed message kept as text (``surrogateescape``).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


class DamagedQueueFile(CommandError):
    """A queue file that does not decode: the reason, then how to look at its bytes."""

    def __init__(self, error: QueueFileError, path: Path) -> None:
        super().__init__(str(error))
        self.path = path

    def show(self, file: Any = None) -> None:
        super().show(file)
        click.echo(
            f"runnerkit: hint: use 'runnerkit qfile --hex {click.format_filename(self.path)}' "
            "to see its bytes",
            err=True,
        )


@main.command()
@click.option("--raw", is_flag=True, help="Write the message's exact bytes, nothing else.")
@click.option(
    "--hex",
    "hex_dump",
    is_flag=True,
    help="Dump the whole file in hex, even a damaged one, after a line saying what it is.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=HEX_DUMP_LIMIT,
    show_default=True,
    metavar="N",
    help="With --hex, dump at most the first N bytes.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Begin with a line naming the format and recoveries."
)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def qfile(path: Path, raw: bool, hex_dump: bool, max_bytes: int, verbose: bool) -> None:
    """Print the message and metadata of the queue file PATH, without executing anything.

    The message is shown as it is stored: 8-bit text as text, never re-encoded; bytes
    that are not UTF-8, and control characters, as \\xNN escapes.  --raw writes its
    exact bytes, for a pipe; --hex dumps the file, which works for any file.
    """
    ctx = click.get_current_context()
    if raw and hex_dump:
        raise UsageProblem("--raw and --hex do not go together; give one of them")
    if raw and verbose:
        raise UsageProblem("--raw writes the message's bytes alone; drop --verbose")
    if not hex_dump and ctx.get_parameter_source("max_bytes") is not ParameterSource.DEFAULT:
        raise UsageProblem("--max-bytes only limits --hex")
    try:
        data = read_queue_file(path)
    except QueueFileError as error:
        raise CommandError(str(error)) from error
    try:
        entry = queuefile.decode(data, source=str(path))
    except QueueFileError as error:
        if not hex_dump:
            raise DamagedQueueFile(error, path) from error
        verdict = str(error)
    else:
        verdict = (
            f"{path} is a whole runnerkit queue file ({data[:4].decode('ascii')}, "
            f"{len(data)} bytes), recovered {entry.recoveries} "
            f"time{'' if entry.recoveries == 1 else 's'}"
        )
    # Shown as a comment line, before the dump or the message it describes.
    if hex_dump:
        click.echo(f"# {verdict}")
        click.echo(hex_lines(data, max_bytes))
        return
    message = stored_bytes(entry.message)
    if raw:
        click.echo(message, nl=False)  # bytes go to the binary stream as they are
        return
    if verbose:
        click.echo(f"# {verdict}")
    click.echo(readable(message))
    click.echo("-" * 20 + " metadata " + "-" * 20)
    width = max(len(key) for key in [*entry.metadata, "recoveries"])
    for key in sorted(entry.metadata):
        click.echo(f"{key:{width}}: {entry.metadata[key]!r}")
    click.echo(f"{'recoveries':{width}}: {entry.recoveries}")


def stored_bytes(message: Message) -> bytes:
    """*message* as bytes, as it was received or queued, with its envelope line if any.

    A message that was bytes (parsed from them, or holding bytes the parser kept as
    surrogates) is written by :meth:`Message.as_bytes`, which gives back its 8-bit bytes
    as they are; the text generators would re-encode such a body as base64 or
    quoted-printable.  A message that was text is written by :meth:`Message.as_text`,
    which keeps non-ASCII header text as it is, then encoded as UTF-8.  So is one that
    mixes both (bytes, and text a handler added), which the bytes generator refuses.
    """
    unixfrom = bool(message.get_unixfrom())
    if message.parsed_from_bytes or _holds_bytes(message):
        try:
            return message.as_bytes(unixfrom=unixfrom)
        except UnicodeEncodeError:
            pass
    return message.as_text(unixfrom=unixfrom).encode("utf-8", "surrogateescape")


def _holds_bytes(message: Message) -> bool:
    """Whether any header, payload, preamble or epilogue of *message* holds raw bytes."""
    for part in message.walk():
        texts: list[object] = [value for _, value in part.raw_items()]
        # The payload as stored: get_payload() would already have replaced raw bytes.
        texts += [part._payload, part.preamble, part.epilogue]  # type: ignore[attr-defined]
        if any(isinstance(text, str) and _ESCAPED_BYTE.search(text) for text in texts):
            return True
    return False


def readable(data: bytes) -> str:
    """*data* as text for a terminal: UTF-8 where it is, ``\\xNN`` for any other byte.

    Controls are escaped too (``\\xNN``, or ``\\uNNNN`` beyond ASCII), so a message can
    neither drive the terminal nor hide a line behind a bare carriage return.
    """
    text = data.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def hex_lines(data: bytes, limit: int) -> str:
    """A dump of the first *limit* bytes of *data* in the layout of ``hexdump -C``.

    Each line holds an offset, 16 bytes in hex and those bytes as printable ASCII (``.``
    for any other); a last line gives the offset of the end, and a note what was cut.
    """
    shown = data[:limit]
    lines = []
    for offset in range(0, len(shown), 16):
        row = shown[offset : offset + 16]
        left = " ".join(f"{byte:02x}" for byte in row[:8])
        right = " ".join(f"{byte:02x}" for byte in row[8:])
        text = "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in row)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{text}|")
    lines.append(f"{len(shown):08x}")
    if len(data) > len(shown):
        lines.append(
            f"({len(data) - len(shown)} more bytes not shown, of {len(data)}; "
            f"--max-bytes {len(data)} shows them all)"
        )
    return "\n".join(lines)


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


# Lists and members.


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
    with opened(config_files, var_dir) as config:
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


def find_list(config: Site, name: str) -> MailingList:
    mlist = config.lists.find(name)
    if mlist is None:
        raise CommandError(f"no mailing list {name!r}; see 'runnerkit lists list'")
    return mlist


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
    with opened(config_files, var_dir) as config:
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


# The demo.


@main.command()
@click.option("-n", "--count", default=1000, show_default=True, help="Messages to send.")
@click.option(
    "--var-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run in this (empty or new) directory instead of a fresh temporary one.",
)
@click.option("--members", default=3, show_default=True, help="Members of the demo list.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait at most.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(count: int, var_dir: Path | None, members: int, timeout: float, as_json: bool) -> None:
    """Start everything, send COUNT messages over LMTP, and account for each one.

    Exits with status 1 if any message was lost.
    """
    from runnerkit.demo import Demo, print_summary

    try:
        runner = Demo(
            count,
            var_dir,
            members=members,
            timeout=timeout,
            out=None if as_json else sys.stderr,
        )
        result = runner.run()
    except RunnerkitError as error:
        raise CommandError(str(error)) from error
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_summary(result)
    if result.lost:
        sys.exit(EXIT_FAILED)
