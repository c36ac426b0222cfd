"""How the demo shows its progress: a bar on a terminal, plain lines anywhere else.

A bar redraws one line in place with ``\\r``, which only a terminal understands: in a
pipe or a log file every frame would pile up on one endless line.  So the display is
chosen by what the stream is (:func:`progress_for`): on a terminal, a bar fitted to the
terminal's width each time it is drawn (the window may be resized); elsewhere, a plain
line now and then, and always one at the end.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Protocol, TextIO

#: The widest the bar itself gets, between its brackets.
BAR_WIDTH = 30
#: The narrowest bar worth drawing; below it the bar is left out.
MIN_BAR_WIDTH = 5
#: Seconds between two plain progress lines.
LINE_INTERVAL = 5.0


@dataclass(frozen=True)
class FlowStatus:
    """Where the demo stands at one moment."""

    #: Messages the demo was asked to send.
    requested: int
    #: Messages the LMTP server accepted so far.
    sent: int
    #: Messages in the list's Maildir.
    delivered: int
    #: Queue name -> how many messages wait in it.
    depths: dict[str, int]
    #: Seconds since sending started.
    elapsed: float

    @property
    def rate(self) -> float:
        """Deliveries a second so far."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> list[str]:
        """The status as parts, most important first; a narrow line keeps a prefix."""
        flow = " ".join(f"{name} {depth}" for name, depth in self.depths.items())
        return [
            f"delivered {self.delivered}/{self.requested}",
            f"sent {self.sent}",
            f"| {flow} |" if flow else "|",
            f"{self.rate:.0f} msg/s",
        ]


class Progress(Protocol):
    """A progress display: shown repeatedly while the demo runs, then finished once."""

    def show(self, status: FlowStatus) -> None: ...

    def finish(self, status: FlowStatus) -> None: ...


def bar_frame(status: FlowStatus, width: int) -> str:
    """One frame of the bar, at most ``width - 1`` characters.

    The last column stays empty: writing into it makes some terminals wrap, and the
    next ``\\r`` would then return to the wrong line.  What does not fit is dropped
    from the end, the bar before the counts, so a narrow terminal still shows how many
    messages were delivered.

    :param width: the terminal's width in columns.
    """
    room = max(width - 1, 0)
    parts = status.describe()
    for keep in range(len(parts), 0, -1):
        text = " ".join(parts[:keep])
        bar_width = min(BAR_WIDTH, room - len(text) - 3)
        if bar_width >= MIN_BAR_WIDTH:
            done = bar_width * min(status.delivered, status.requested) // status.requested
            return f"[{'#' * done}{'.' * (bar_width - done)}] {text}"
    for keep in range(len(parts), 0, -1):
        text = " ".join(parts[:keep])
        if len(text) <= room:
            return text
    return parts[0][:room]


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal *stream* writes to; ``$COLUMNS`` wins, as for ``ls``."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns


class TerminalBar:
    """A bar redrawn in place on a terminal, as wide as the terminal allows.

    :param stream: a terminal.
    :param width: the width to fit; the terminal's own, asked anew each frame, by default.
    """

    def __init__(self, stream: TextIO, width: int | None = None) -> None:
        self.stream = stream
        self.width = width

    def show(self, status: FlowStatus) -> None:
        width = self.width or terminal_width(self.stream)
        # Padding to the room wipes out the end of a longer previous frame.
        self.stream.write("\r" + bar_frame(status, width).ljust(max(width - 1, 0)))
        self.stream.flush()

    def finish(self, status: FlowStatus) -> None:
        self.show(status)
        self.stream.write("\n")
        self.stream.flush()


class PlainLines:
    """A line of progress every *interval* seconds, and one at the end: for pipes and logs.

    :param stream: where the lines go.
    :param interval: seconds of demo time between two lines.
    """

    def __init__(self, stream: TextIO, interval: float = LINE_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self._next = interval

    def show(self, status: FlowStatus) -> None:
        if status.elapsed >= self._next:
            self._write(status)
            while self._next <= status.elapsed:
                self._next += self.interval

    def finish(self, status: FlowStatus) -> None:
        self._write(status)

    def _write(self, status: FlowStatus) -> None:
        self.stream.write(f"demo: {status.elapsed:.1f}s {' '.join(status.describe())}\n")
        self.stream.flush()


def progress_for(stream: TextIO) -> Progress:
    """A :class:`TerminalBar` if *stream* is a terminal, else :class:`PlainLines`."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return TerminalBar(stream) if interactive else PlainLines(stream)
