"""Tables for people: a header row, then one row per item, in aligned columns."""

from __future__ import annotations

from collections.abc import Sequence

import click

from runnerkit.logtext import escape

#: Spaces between two columns.
GAP = "  "


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print *rows* under *headers*, each column as wide as its widest cell.

    Cells are shown with :func:`str` and escaped (:func:`runnerkit.logtext.escape`), so
    that a value from outside (a display name, a header field) can neither break a row
    nor act on the terminal.  The last column is not padded.  Nothing is printed for
    no rows: the caller says so in words.

    :param headers: one title per column, upper case by convention (as ``ps`` and
        ``postqueue -p`` head theirs).
    :param rows: each as many cells as *headers*.
    :raises ValueError: a row has a different number of cells.
    """
    if not rows:
        return
    table = [list(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns: {row!r}")
        table.append([escape(str(cell)) for cell in row])
    widths = [max(len(line[column]) for line in table) for column in range(len(headers))]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths[:-1], strict=True)]
        click.echo(GAP.join([*cells, line[-1]]))
