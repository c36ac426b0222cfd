"""The benchmark's results as plots: ratios per measurement, and throughput by processes.

Two PNG files, drawn with matplotlib's Agg canvas (no pyplot, no display, no global
state):

- ``ratios.png``: for each measurement of the first table that compares runnerkit with
  Mailman or a floor (or has a target on a ratio), a bar per comparison from 1x to the
  table's ratio, runnerkit ÷ it (:meth:`Measurement.ratio`, the median of the per-round
  ratios), whiskers from the smallest to the largest per-round ratio, and the target's
  bound where the table sets one.  Rates (higher is better) and times (lower is better)
  are drawn in separate panels, so that every number is the table's own, never inverted.
- ``scaling.png``: the drain rate against the number of runner processes, for the file
  backend and Valkey: the median over rounds, with bars from the slowest round to the
  fastest.

Each plot's title carries the date of the run it comes from.  matplotlib is imported
only when a plot is drawn; without it, :func:`require_matplotlib` says how to install it.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from bench.stats import Measurement, median

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Where ``--update-readme`` writes the plots, relative to the README's directory.
PLOTS_DIR = Path("docs/images/bench")
#: The plots' file names.
RATIOS, SCALING = "ratios.png", "scaling.png"
#: Dots per inch: a 10-inch-wide figure is 1,000 pixels wide.
DPI = 100
#: How to get matplotlib.
INSTALL = "pip install -e '.[bench]'"

#: Inches for one bar, and between two measurements' groups of bars.
_BAR, _GAP = 0.26, 0.22
#: The colour of the target marks and of the 1x line.
_TARGET, _ONE = "#c0172e", "#222222"
_PALETTE = (
    "#3b75af",
    "#ef8636",
    "#519e3e",
    "#8d69b8",
    "#84584e",
    "#d57dbf",
    "#7f7f7f",
    "#bcbd45",
    "#58bbcc",
)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _plain_text(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run *function* with matplotlib's mathtext off: a ``$`` in a measurement's title
    (``$VAR_DIR``) is drawn as written, never parsed as TeX (which garbles the text or
    raises on an unbalanced ``$``)."""

    @wraps(function)
    def plain(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        from matplotlib import rc_context

        with rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return plain


class PlotError(Exception):
    """A plot cannot be drawn: matplotlib is missing, or the figures do not fit."""


class NothingToPlot(PlotError):
    """The measurements hold nothing the plot draws."""


def require_matplotlib() -> None:
    """Raise :class:`PlotError` naming the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise PlotError(
            f"the plots need matplotlib, which is not installed ({error}): {INSTALL}"
        ) from error


def is_reference(name: str) -> bool:
    """Whether contestant *name* is Mailman or a floor (a bare file-system operation)."""
    return name.startswith(("Mailman", "floor")) or name == "os.listdir"


def higher_is_better(measurement: Measurement) -> bool:
    """Rates (per second) are better higher; times are better lower."""
    return measurement.unit.endswith("/s")


# The ratios.


@dataclass(frozen=True)
class Bar:
    """One comparison drawn: runnerkit ÷ *reference* in measurement *key*.

    :param ratio: the table's ratio, :meth:`Measurement.ratio`.
    :param low: the smallest per-round ratio; *high* the largest.
    :param target: the bound of the measurement's target on this ratio, if it has one.
    """

    key: str
    title: str
    reference: str
    ratio: float
    low: float
    high: float
    target: float | None
    higher_is_better: bool


def ratio_bars(measurements: Sequence[Measurement]) -> list[Bar]:
    """The bars of the ratios plot, in the table's order: every comparison the table
    shows for each measurement that compares with Mailman or a floor, or that has a
    target on a ratio."""
    bars = []
    for measurement in measurements:
        others = [name for name in measurement.figures if name != measurement.subject]
        targets = {
            target.reference: target.bound
            for target in measurement.targets
            if target.on == "ratio" and target.reference in others
        }
        if not targets and not any(is_reference(name) for name in others):
            continue
        for name in others:
            subject = measurement.figures[measurement.subject]
            reference = measurement.figures[name]
            if len(subject) != len(reference):
                raise PlotError(
                    f"{measurement.key}: {measurement.subject!r} has {len(subject)} rounds "
                    f"and {name!r} {len(reference)}: ratios are paired by round"
                )
            rounds = measurement.round_ratios(name)
            if not rounds:
                raise PlotError(f"{measurement.key}: no round to divide by {name!r}")
            bars.append(
                Bar(
                    measurement.key,
                    measurement.title,
                    name,
                    measurement.ratio(name),
                    min(rounds),
                    max(rounds),
                    targets.get(name),
                    higher_is_better(measurement),
                )
            )
    return bars


def _drawable(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _colours(bars: Sequence[Bar]) -> dict[str, str]:
    colours: dict[str, str] = {}
    for bar in bars:
        if bar.reference not in colours:
            colours[bar.reference] = _PALETTE[len(colours) % len(_PALETTE)]
    return colours


def _ratio_panel(axes: Axes, bars: Sequence[Bar], colours: dict[str, str]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    height = _BAR * 0.82
    ticks: list[float] = []
    labels: list[str] = []
    y = 0.0
    keys = list(dict.fromkeys(bar.key for bar in bars))
    values = [1.0]
    for key in keys:
        group = [bar for bar in bars if bar.key == key]
        first = y
        for bar in group:
            values += [v for v in (bar.low, bar.high, bar.ratio) if _drawable(v)]
            if bar.target is not None and _drawable(bar.target):
                values.append(bar.target)
                axes.plot(
                    [bar.target, bar.target],
                    [y - height * 0.7, y + height * 0.7],
                    color=_TARGET,
                    linewidth=2.5,
                    solid_capstyle="butt",
                    zorder=4,
                )
            if _drawable(bar.ratio):
                axes.barh(
                    y, bar.ratio - 1.0, left=1.0, height=height, color=colours[bar.reference]
                )
                if bar.low != bar.high and _drawable(bar.low) and _drawable(bar.high):
                    axes.plot([bar.low, bar.high], [y, y], color="black", linewidth=1, zorder=3)
                    for end in (bar.low, bar.high):
                        axes.plot([end, end], [y - height / 4, y + height / 4], color="black",
                                  linewidth=1, zorder=3)  # fmt: skip
                right = bar.ratio >= 1
                ends = [bar.ratio, bar.high if right else bar.low]
                if bar.target is not None and _drawable(bar.target):
                    ends.append(bar.target)  # the label clears the target's mark
                edge = max(ends) if right else min(ends)
                axes.text(
                    edge * (1.03 if right else 1 / 1.03),
                    y,
                    f"{bar.ratio:.2f}x",
                    va="center",
                    ha="left" if right else "right",
                    fontsize=8,
                )
            else:
                axes.text(1.03, y, f"{bar.ratio}", va="center", ha="left", fontsize=8)
            y += _BAR
        ticks.append((first + y - _BAR) / 2)
        labels.append(textwrap.fill(group[0].title, 44))
        y += _GAP
    axes.set_xscale("log")
    axes.set_xlim(min(values) / 1.5, max(values) * 1.5)
    axes.set_ylim(y - _GAP - _BAR / 2 - 0.05, -_BAR / 2 - 0.05)  # top to bottom, as the table
    axes.axvline(1.0, color=_ONE, linewidth=1, zorder=2)
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.tick_params(axis="y", length=0)
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.grid(axis="x", color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)


@_plain_text
def draw_ratios(measurements: Sequence[Measurement], date: str) -> tuple[Figure, list[Bar]]:
    """The ratios plot of the first table's *measurements*, and the bars it draws."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bars = ratio_bars(measurements)
    if not bars:
        raise NothingToPlot("no measurement compares runnerkit with Mailman or a floor")
    panels = [
        (
            [bar for bar in bars if bar.higher_is_better],
            "Rates: higher is better (right of 1x: runnerkit is faster)",
            "runnerkit's rate ÷ the other's (log scale)",
        ),
        (
            [bar for bar in bars if not bar.higher_is_better],
            "Times: lower is better (left of 1x: runnerkit is faster)",
            "runnerkit's time ÷ the other's (log scale)",
        ),
    ]
    panels = [panel for panel in panels if panel[0]]
    sizes = [
        len(group) * _BAR + len({bar.key for bar in group}) * _GAP + 0.9 for group, _, _ in panels
    ]
    figure = Figure(figsize=(10, sum(sizes) + 1.3), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=sizes)[:, 0]
    colours = _colours(bars)
    for ax, (group, title, xlabel) in zip(axes, panels, strict=True):
        _ratio_panel(ax, group, colours)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(xlabel, fontsize=9)
    figure.suptitle(
        f"runnerkit ÷ Mailman and ÷ the floor, per measurement (python -m bench, {date})\n"
        "bars: the table's ratio, the median of the per-round ratios; whiskers: their "
        "smallest and largest",
        fontsize=10,
    )
    handles: list[Patch | Line2D] = [
        Patch(color=colour, label=f"÷ {name}") for name, colour in colours.items()
    ]
    if any(bar.target is not None for bar in bars):
        handles.append(Line2D([], [], color=_TARGET, linewidth=2.5, label="the table's target"))
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )
    return figure, bars


# Scaling.


@dataclass(frozen=True)
class Point:
    """The drain rate of *backend* with *processes* runner processes, over *rounds*."""

    key: str
    backend: str
    processes: int
    median: float
    low: float
    high: float
    rounds: int


_PROCESSES = re.compile(r"(\d+) process(?:es)?")


def scaling_points(measurements: Sequence[Measurement]) -> list[Point]:
    """The points of the scaling plot: each scaling row's contestants, by process count;
    a contestant without figures (no round measured) has no point."""
    from bench.backends import SCALING_ROWS

    points = []
    for measurement in measurements:
        if measurement.key not in SCALING_ROWS:
            continue
        backend = SCALING_ROWS[measurement.key]
        for name, values in measurement.figures.items():
            match = _PROCESSES.fullmatch(name)
            if match is None:
                raise PlotError(f"{measurement.key}: {name!r} is not a number of processes")
            finite = [value for value in values if math.isfinite(value)]
            if not finite:
                continue
            points.append(
                Point(
                    measurement.key,
                    backend,
                    int(match.group(1)),
                    median(finite),
                    min(finite),
                    max(finite),
                    len(finite),
                )
            )
    order = list(SCALING_ROWS)
    return sorted(points, key=lambda point: (order.index(point.key), point.processes))


@_plain_text
def draw_scaling(
    measurements: Sequence[Measurement], date: str, cores: int | None
) -> tuple[Figure, list[Point]]:
    """The scaling plot of *measurements*' scaling rows, and the points it draws."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    points = scaling_points(measurements)
    if not points:
        raise NothingToPlot("no scaling measurement (the Redis section's 1/2/4 processes)")
    figure = Figure(figsize=(8, 5), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    markers = {"scaling-file": "o", "scaling-redis": "s"}
    for index, key in enumerate(dict.fromkeys(point.key for point in points)):
        line = [point for point in points if point.key == key]
        rounds = sorted({point.rounds for point in line})
        said = "/".join(map(str, rounds))
        axes.errorbar(
            [point.processes for point in line],
            [point.median for point in line],
            yerr=[
                [point.median - point.low for point in line],
                [point.high - point.median for point in line],
            ],
            marker=markers.get(key, "D"),
            capsize=4,
            color=_PALETTE[index % len(_PALETTE)],
            label=f"{line[0].backend} ({said} round{'s' if rounds != [1] else ''})",
        )
    counts = sorted({point.processes for point in points})
    if cores is not None and counts[0] <= cores <= counts[-1]:
        axes.axvline(cores, color="#888888", linestyle=":", label=f"{cores} cores")
    axes.set_xscale("log", base=2)
    axes.set_xticks(counts, [str(count) for count in counts])
    axes.set_xlim(counts[0] / 1.3, counts[-1] * 1.3)
    axes.set_ylim(0, max(point.high for point in points) * 1.12)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.set_xlabel("runner processes draining the queue")
    axes.set_ylabel("messages per second (higher is better)")
    axes.grid(color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(fontsize=9)
    title = next(m.title for m in measurements if m.key == points[0].key)
    described = title.removesuffix(f", {points[0].backend}")
    machine = f"{cores} cores" if cores is not None else "cores unknown"
    axes.set_title(
        f"Drain throughput by runner processes ({machine}; python -m bench, {date})\n"
        f"{described}\npoints: the median over rounds; bars: the slowest to the fastest round",
        fontsize=10,
    )
    return figure, points


# Files.


@_plain_text
def draw_nothing(title: str, why: str) -> Figure:
    """A small figure that says why there is no plot: a README's image stays honest."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 1.2), dpi=DPI)
    figure.text(0.5, 0.62, title, ha="center", va="center", fontsize=11)
    figure.text(0.5, 0.3, why, ha="center", va="center", fontsize=9, color="#555555")
    return figure


@_plain_text
def save(figure: Figure, path: Path) -> bool:
    """Write *figure* to *path* as PNG, unless the file already holds the same bytes.

    The PNG carries no software version and no date, so that an unchanged plot keeps its
    file; the file is replaced whole, never left half-written.

    :returns: whether the file was written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    data = buffer.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True
