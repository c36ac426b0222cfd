"""The results as a Markdown table, and the README section that holds it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.plots import PLOTS_DIR, RATIOS, SCALING
from bench.stats import Measurement

#: The comments between which ``--update-readme`` writes the table.
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

#: The comments between which ``--update-readme`` writes the Redis backend's table, right
#: after the main one: ``python -m bench --redis-only --update-readme`` replaces it alone.
REDIS_BEGIN, REDIS_END = "<!-- bench:redis:begin -->", "<!-- bench:redis:end -->"

#: Where the README's plots are, relative to the README: ``--update-readme`` redraws them.
RATIOS_IMAGE = f"{PLOTS_DIR.as_posix()}/{RATIOS}"
SCALING_IMAGE = f"{PLOTS_DIR.as_posix()}/{SCALING}"

#: The README section written the first time; later runs only replace the tables (and
#: redraw the plots, which the section shows beside them).
SECTION = f"""\
## Performance

`python -m bench` measures the queues, the runners and the harness on the machine it
runs on; `python -m bench --update-readme` rewrites the tables below and redraws the
plots beside them, from the same run. With the `bench` extra installed
(`pip install -e '.[bench]'`, which brings GNU Mailman 3.3.10 and matplotlib) it also
measures Mailman's `Switchboard` in the same run. Each round runs every contestant once,
in an order that rotates from round to round; a figure is the median over the rounds
and a ratio (runnerkit ÷ the other) is the median of the per-round ratios, so load from
other work on the machine falls on both sides. Rates are higher-is-better, times
lower-is-better. The enqueue "floor" is a bare `os.open`/`write`/`fsync`/`rename` of a
file of the same size, "+ dir fsync" also fsyncs the directory, as a durable queue
must; the drain "floor" lists, renames, reads and removes each file, parsing nothing.
The listing test lists empty files: a listing reads names, never contents. The second
table puts the Redis backend beside the file backend, on a private Valkey whose data are
on the same disk (`python -m bench --redis-only --update-readme` rewrites it alone, and
redraws the scaling plot alone).

{BEGIN}
{END}

![runnerkit ÷ Mailman and ÷ the floor, per measurement]({RATIOS_IMAGE})

The ratios of the table above at a glance, redrawn with the tables by
`python -m bench --update-readme`: each bar runs from 1x to runnerkit ÷ Mailman or ÷ a
floor (the table's figure), its whiskers from the smallest to the largest per-round
ratio, and the red mark is the target; rates above (higher is better), times below
(lower is better).

{REDIS_BEGIN}
{REDIS_END}

![Drain rate by 1, 2 and 4 runner processes, file backend and Valkey]({SCALING_IMAGE})

The scaling rows of the table above, redrawn with it by
`python -m bench --update-readme`: messages per second drained by 1, 2 and 4 runner
processes sharing one queue of 4 slices, on the file backend and on Valkey, the median
over rounds with bars from the slowest round to the fastest; the title gives the
machine's cores.
"""


def format_figure(value: float, unit: str) -> str:
    """*value* rounded for reading: whole numbers from 100 up, then 3 digits."""
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[met]


def table(measurements: Sequence[Measurement], targets: bool = True) -> str:
    """One row per measurement: runnerkit's median, the others' with ratios, and the
    targets (unless *targets* is false: then the columns are left out)."""
    if targets:
        rows = [
            "| measurement | runnerkit | compared with: median (runnerkit ÷ it) | target | met |",
            "| --- | --- | --- | --- | --- |",
        ]
    else:
        rows = [
            "| measurement | figure | compared with: median (figure ÷ it) |",
            "| --- | --- | --- |",
        ]
    for measurement in measurements:
        subject = measurement.subject
        others = " · ".join(
            f"{name} {format_figure(measurement.median(name), measurement.unit)} "
            f"({measurement.ratio(name):.2f}x)"
            for name in measurement.figures
            if name != subject
        )
        title = measurement.title
        if measurement.note:
            title += f" ({measurement.note})"
        figure = format_figure(measurement.median(subject), measurement.unit)
        if subject != "runnerkit":
            figure = f"{subject}: {figure}"
        if not targets:
            rows.append(f"| {title} | {figure} | {others or '—'} |")
            continue
        goals = "; ".join(target.text for target in measurement.targets) or "—"
        met = "; ".join(_verdict(target.met(measurement)) for target in measurement.targets)
        rows.append(f"| {title} | {figure} | {others or '—'} | {goals} | {met or '—'} |")
    return "\n".join(rows)


def notes(measurements: Sequence[Measurement]) -> list[str]:
    """What the figures of this run say about targets set against Mailman."""
    found = []
    for measurement in measurements:
        mailman = next((name for name in measurement.figures if name.startswith("Mailman")), None)
        if mailman is None or "floor" not in measurement.figures or "tmpfs" not in measurement.key:
            continue
        floor = measurement.paired("floor", mailman)
        if measurement.key.startswith("enqueue"):
            found.append(
                f"{measurement.title}: the enqueue floor, which serializes nothing and skips "
                f"the directory fsync, runs at {floor:.2f}x {mailman}, so 1.3x {mailman} is "
                f"{1.3 / floor:.0%} of the floor. Mailman pickles the message object and does "
                "not fsync the directory; runnerkit stores the message as data and the bytes "
                "it was received as, checks them with a CRC-32, and fsyncs the directory."
            )
        else:
            found.append(
                f"{measurement.title}: the drain floor runs at {floor:.2f}x {mailman}, so "
                f"1.25x {mailman} is {1.25 / floor:.0%} of the floor. Mailman unpickles "
                "message objects; runnerkit never unpickles: it checks the CRC-32, decodes "
                "one MessagePack document and builds the message from it, without the parser."
            )
    return found


def update_readme(path: Path, block: str, begin: str = BEGIN, end: str = END) -> None:
    """Put *block* between the markers *begin* and *end* of *path*, adding them if they
    are missing: the main table's with the Performance section, the Redis table's right
    after the main table's end."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        section = SECTION
        if REDIS_BEGIN in text and REDIS_END in text:
            section = section.replace(f"{REDIS_BEGIN}\n{REDIS_END}\n\n", "")
        text = text.rstrip("\n") + "\n\n" + section
    if begin not in text or end not in text:
        before, after = text.split(END, 1)
        text = f"{before}{END}\n\n{begin}\n{end}{after}"
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{begin}\n{block.strip()}\n{end}{after}", encoding="utf-8")
