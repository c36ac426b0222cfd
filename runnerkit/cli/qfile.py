"""``qfile``: show a queue file, whatever state it is in."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from runnerkit import queuefile
from runnerkit.cli.common import (
    CommandError,
    UsageProblem,
    config_options,
    load_config,
    main,
    opened,
)
from runnerkit.cli.entries import find_entry
from runnerkit.errors import QueueFileError
from runnerkit.fsio import max_queue_file_size, read_queue_file
from runnerkit.message import Message
from runnerkit.site import Site
from runnerkit.streams import describe, redis_url
from runnerkit.typing import MsgData

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
@config_options
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
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def qfile(
    config_files: tuple[Path, ...],
    var_dir: Path | None,
    path: Path,
    raw: bool,
    hex_dump: bool,
    max_bytes: int,
    verbose: bool,
) -> None:
    """Print the message and metadata of the queue file PATH, without executing anything.

    PATH is any file, or the name of a file in a queue of the site (-C, --var-dir):
    its base name, with or without .pck, .bak or .psv, found in whichever queue holds it.
    A .psv file (preserved in bad) is a queue file like any other.  Of a damaged file,
    the metadata is shown if it still reads, then the reason it is damaged (exit 1).

    The message is shown as it is stored: 8-bit text as text, never re-encoded; bytes
    that are not UTF-8, and control characters, as \\xNN escapes.  --raw writes its
    exact bytes, for a pipe; --hex dumps the file, which works for any file.
    """
    ctx = click.get_current_context()
    # The layers are checked, as every command does; they also say how big a queue
    # file may be, which is checked before reading (a file of gigabytes is refused).
    settings = load_config(config_files, var_dir)
    limit = max_queue_file_size(settings.lmtp.max_message_size)
    settings.close()
    if not os.path.lexists(path):
        path = find_in_queues(config_files, var_dir, path)
    if raw and hex_dump:
        raise UsageProblem("--raw and --hex do not go together; give one of them")
    if raw and verbose:
        raise UsageProblem("--raw writes the message's bytes alone; drop --verbose")
    if not hex_dump and ctx.get_parameter_source("max_bytes") is not ParameterSource.DEFAULT:
        raise UsageProblem("--max-bytes only limits --hex")
    try:
        data = read_queue_file(path, max_size=None if hex_dump else limit)
    except QueueFileError as error:
        raise CommandError(str(error)) from error
    try:
        entry = queuefile.decode(data, source=str(path))
    except QueueFileError as error:
        if not hex_dump:
            salvaged = None if raw else queuefile.salvage_metadata(data)
            if salvaged is not None:
                if verbose:
                    click.echo(f"# {error}")
                click.echo("\n".join(salvaged_lines(salvaged)))
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
    if raw:
        click.echo(
            stored_bytes(entry.message), nl=False
        )  # bytes go to the binary stream as they are
        return
    if verbose:
        click.echo(f"# {verdict}")
    click.echo("\n".join(entry_lines(entry)))


#: The line between a message and its metadata.
METADATA_RULE = "-" * 20 + " metadata " + "-" * 20


def entry_lines(entry: queuefile.QueueEntry) -> list[str]:
    """A queue file's message (see :func:`readable`), a rule, then its metadata.

    The metadata is one ``key: repr(value)`` line a key, sorted, then ``recoveries``.
    """
    lines = [readable(stored_bytes(entry.message)), METADATA_RULE]
    lines += metadata_lines({**entry.metadata}, {"recoveries": str(entry.recoveries)})
    return lines


def salvaged_lines(metadata: MsgData) -> list[str]:
    """What is shown of a damaged file whose metadata still reads: a note, then that."""
    return [
        "(the message cannot be read: the file is damaged; its metadata, as far as it "
        "reads, unchecked:)",
        METADATA_RULE,
        *metadata_lines(metadata),
    ]


def metadata_lines(metadata: MsgData, after: dict[str, str] | None = None) -> list[str]:
    """``key: value`` lines, keys padded alike: *metadata* sorted with ``repr`` values
    (controls escaped), then *after* as it is."""
    after = after or {}
    width = max((len(key) for key in [*metadata, *after]), default=0)
    lines = [f"{key:{width}}: {readable_text(repr(metadata[key]))}" for key in sorted(metadata)]
    return lines + [f"{key:{width}}: {value}" for key, value in after.items()]


def readable_text(text: str) -> str:
    """*text* with controls escaped, as :func:`readable` shows a message."""
    return _CONTROL.sub(_escape_control, text)


#: The extensions of a queue file: waiting, being processed, preserved in ``bad``.
QUEUE_FILE_EXTENSIONS = (".pck", ".bak", ".psv")


def find_in_queues(config_files: tuple[Path, ...], var_dir: Path | None, name: Path) -> Path:
    """The file called *name* in one of the site's queues, looked for without a change.

    :param name: a file base name, with or without one of :data:`QUEUE_FILE_EXTENSIONS`.
    :raises UsageProblem: *name* is a path, or no queue (or more than one) holds it.
    """
    text = str(name)
    if os.sep in text or text in ("", ".", ".."):
        raise UsageProblem(f"{text!r} does not exist")
    names = [text] if text.endswith(QUEUE_FILE_EXTENSIONS) else []
    names = names or [text + extension for extension in QUEUE_FILE_EXTENSIONS]
    with opened(config_files, var_dir, read_only=True) as site:
        if site.queues.backend == "redis":
            _point_to_queue_show(site, text)
        directories = {
            switchboard.queue_directory
            for switchboard in site.switchboards.values()
            if switchboard.queue_directory is not None
        }
        found = sorted(
            directory / candidate
            for directory in directories
            for candidate in names
            if os.path.lexists(directory / candidate)
        )
        queue_dir = site.paths.queue_dir
    if not found:
        raise UsageProblem(
            f"{text!r} does not exist, here or as a file in a queue under {str(queue_dir)!r}"
        )
    if len(found) > 1:
        raise UsageProblem(
            f"{text!r} names {len(found)} queue files: "
            + ", ".join(str(path) for path in found)
            + "; give one of them"
        )
    return found[0]


def _point_to_queue_show(site: Site, text: str) -> NoReturn:
    """On a site whose queues are on Redis there are no queue files: say which
    ``runnerkit queue show`` shows the entry *text* names.

    :raises UsageProblem: always; the message names the command, or says that no
        queue holds the entry.
    """
    server = describe(redis_url(site.queues.url))
    filebase = text
    for extension in QUEUE_FILE_EXTENSIONS:
        filebase = filebase.removesuffix(extension)
    holders = [
        name
        for name, switchboard in sorted(site.switchboards.items())
        if find_entry(switchboard, filebase) is not None
    ]
    intro = f"{text!r} is not a file, and this site's queues are on Redis ({server}), not in files"
    if not holders:
        raise UsageProblem(f"{intro}; no queue holds an entry {filebase!r}")
    commands = " or ".join(f"'runnerkit queue show {name} {filebase}'" for name in holders)
    raise UsageProblem(f"{intro}; its entry is shown by {commands}")


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
