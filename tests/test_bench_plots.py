"""The benchmark's plots: drawn from synthetic measurements, written as PNG files, redrawn
from a ``--json`` file, and refused with a clear message when matplotlib is missing."""

from __future__ import annotations

import datetime
import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import cli, plots
from bench.plots import Bar, PlotError, Point
from bench.report import BEGIN, END, REDIS_BEGIN, REDIS_END
from bench.stats import Measurement, Target

MAILMAN = "Mailman 3.3.10"


def enqueue(mailman: bool = True) -> Measurement:
    """Per-round ratios: ÷ Mailman 2, 2, 1.5; ÷ floor + dir fsync 0.5, 0.25, 0.5;
    ÷ floor 0.25, 0.2, 0.25."""
    figures = {"runnerkit": [10.0, 20.0, 30.0]}
    if mailman:
        figures[MAILMAN] = [5.0, 10.0, 20.0]
    figures["floor + dir fsync"] = [20.0, 80.0, 60.0]
    figures["floor"] = [40.0, 100.0, 120.0]
    return Measurement(
        "enqueue-tmpfs",
        "enqueue, tmpfs, 3 x 100 B",
        "msg/s",
        figures,
        [Target("≥ 1.3x Mailman", "ratio", 1.3, True, MAILMAN if mailman else None)],
    )


def listing() -> Measurement:
    """A time: ÷ os.listdir 1.2, 1.5, 1.0 (median 1.2); ÷ Mailman 0.5, 0.5, 0.25."""
    return Measurement(
        "listing",
        "listing slice 1 of 8 among 10 files",
        "ms",
        {"runnerkit": [6.0, 6.0, 6.0], "os.listdir": [5.0, 4.0, 6.0], MAILMAN: [12, 12, 24]},
        [Target("≤ 1.2x os.listdir", "ratio", 1.2, False, "os.listdir")],
    )


def world() -> Measurement:
    """Neither Mailman nor a floor, and no target on a ratio: not in the ratios plot."""
    return Measurement(
        "world", "per-document world", "ms", {"document world": [5.0], "bare World": [2.0]}
    )


def scaling(key: str, figures: dict[str, list[float]]) -> Measurement:
    backend = "file backend" if key == "scaling-file" else "Valkey, Unix socket"
    return Measurement(
        key,
        f"drain by 1/2/4 processes, a queue of 4 slices, 8 messages, {backend}",
        "msg/s",
        figures,
        note="ratios: speed-up over fewer processes; 2 cores",
    )


def png_size(path: Path) -> tuple[int, int]:
    """The width and height of the PNG file at *path*, which must be one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def drawn_bars(axes: Any) -> list[tuple[float, float]]:
    """Where each bar of *axes* starts and ends, top to bottom, to 9 decimals."""
    bars = sorted(axes.patches, key=lambda patch: patch.get_y())
    return [(round(bar.get_x(), 9), round(bar.get_x() + bar.get_width(), 9)) for bar in bars]


def vertical_marks(axes: Any) -> list[float]:
    """The x of each short vertical line drawn on *axes*: the targets and whisker caps."""
    found = []
    for line in axes.lines:
        xs = list(line.get_xdata())
        if len(xs) == 2 and xs[0] == xs[1]:
            found.append(float(xs[0]))
    return found


def test_the_ratios_plot_draws_the_tables_ratios_with_their_spread_and_targets() -> None:
    measurements = [enqueue(), world(), listing()]

    figure, bars = plots.draw_ratios(measurements, "2026-11-30")

    assert bars == [
        Bar("enqueue-tmpfs", "enqueue, tmpfs, 3 x 100 B", MAILMAN, 2.0, 1.5, 2.0, 1.3, True),
        Bar("enqueue-tmpfs", "enqueue, tmpfs, 3 x 100 B", "floor + dir fsync", 0.5, 0.25, 0.5,
            None, True),
        Bar("enqueue-tmpfs", "enqueue, tmpfs, 3 x 100 B", "floor", 0.25, 0.2, 0.25, None, True),
        Bar("listing", "listing slice 1 of 8 among 10 files", "os.listdir", 1.2, 1.0, 1.5, 1.2,
            False),
        Bar("listing", "listing slice 1 of 8 among 10 files", MAILMAN, 0.5, 0.25, 0.5, None,
            False),
    ]  # fmt: skip
    for bar in bars:  # the table's own figures
        measurement = next(m for m in measurements if m.key == bar.key)
        assert bar.ratio == measurement.ratio(bar.reference)
    rates, times = figure.axes[:2]
    assert "higher is better" in rates.get_title(loc="left")
    assert "lower is better" in times.get_title(loc="left")
    assert rates.get_xscale() == times.get_xscale() == "log"
    # Each bar runs from 1x to the ratio; rates and times apart, in the table's order.
    assert drawn_bars(rates) == [(1.0, 2.0), (1.0, 0.5), (1.0, 0.25)]
    assert drawn_bars(times) == [(1.0, 1.2), (1.0, 0.5)]
    # The targets: 1.3x Mailman on the rates, 1.2x os.listdir on the times.
    assert 1.3 in vertical_marks(rates)
    assert 1.2 in vertical_marks(times)
    # The whiskers' caps at the smallest and largest per-round ratio.
    assert {1.5, 2.0, 0.25, 0.2} <= set(vertical_marks(rates))
    labels = [text.get_text() for text in rates.texts]
    assert labels == ["2.00x", "0.50x", "0.25x"]
    ticks = [label.get_text() for label in rates.get_yticklabels()]
    assert ticks == ["enqueue, tmpfs, 3 x 100 B"]
    assert "2026-11-30" in figure.get_suptitle()
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [
        f"÷ {MAILMAN}",
        "÷ floor + dir fsync",
        "÷ floor",
        "÷ os.listdir",
        "the table's target",
    ]


def test_without_mailman_the_floor_ratios_are_plotted() -> None:
    figure, bars = plots.draw_ratios([enqueue(mailman=False)], "2026-11-30")

    assert [(bar.reference, bar.ratio) for bar in bars] == [
        ("floor + dir fsync", 0.5),
        ("floor", 0.25),
    ]
    assert len(figure.axes) == 1  # no times: no second panel
    assert drawn_bars(figure.axes[0]) == [(1.0, 0.5), (1.0, 0.25)]


def test_nothing_to_compare_is_nothing_to_plot() -> None:
    with pytest.raises(plots.NothingToPlot, match="compares runnerkit with Mailman or a floor"):
        plots.draw_ratios([world()], "2026-11-30")


def test_rounds_that_do_not_pair_are_refused() -> None:
    broken = enqueue()
    broken.figures["floor"].pop()

    with pytest.raises(PlotError, match="'floor' 2: ratios are paired by round"):
        plots.draw_ratios([broken], "2026-11-30")


def test_the_scaling_plot_draws_each_process_count_with_missing_rounds() -> None:
    file = scaling(
        "scaling-file",
        {"4 processes": [100.0, 120.0], "2 processes": [80.0], "1 process": [50.0, 40.0, 60.0]},
    )
    redis = scaling("scaling-redis", {"2 processes": [], "1 process": [30.0, 20.0, 25.0]})

    figure, points = plots.draw_scaling([enqueue(), redis, file], "2026-11-30", 2)

    assert points == [
        Point("scaling-redis", "Valkey, Unix socket", 1, 25.0, 20.0, 30.0, 3),
        Point("scaling-file", "file backend", 1, 50.0, 40.0, 60.0, 3),
        Point("scaling-file", "file backend", 2, 80.0, 80.0, 80.0, 1),
        Point("scaling-file", "file backend", 4, 110.0, 100.0, 120.0, 2),
    ]
    (axes,) = figure.axes
    drawn = {  # each errorbar's data line, and the bars' ends
        container.get_label(): (
            list(container.lines[0].get_xdata()),
            list(container.lines[0].get_ydata()),
            [list(segment[:, 1]) for segment in container.lines[2][0].get_segments()],
        )
        for container in axes.containers
    }
    assert drawn == {
        "Valkey, Unix socket (3 rounds)": ([1], [25.0], [[20.0, 30.0]]),
        "file backend (1/2/3 rounds)": (
            [1, 2, 4],
            [50.0, 80.0, 110.0],
            [[40.0, 60.0], [80.0, 80.0], [100.0, 120.0]],
        ),
    }
    cores = [line for line in axes.get_lines() if line.get_label() == "2 cores"]
    assert [list(line.get_xdata()) for line in cores] == [[2, 2]]
    assert "2 cores" in axes.get_title()
    assert "2026-11-30" in axes.get_title()
    assert "a queue of 4 slices, 8 messages" in axes.get_title()
    assert axes.get_ylim()[0] == 0


def test_scaling_contestants_must_be_process_counts() -> None:
    odd = scaling("scaling-file", {"4 threads": [1.0]})

    with pytest.raises(PlotError, match="'4 threads' is not a number of processes"):
        plots.draw_scaling([odd], "2026-11-30", 2)
    with pytest.raises(plots.NothingToPlot):
        plots.draw_scaling([enqueue()], "2026-11-30", 2)


def test_plots_are_small_pngs_and_an_unchanged_plot_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "ratios.png"

    figure, _ = plots.draw_ratios([enqueue(), listing()], "2026-11-30")
    assert plots.save(figure, path) is True
    first = path.stat()
    again, _ = plots.draw_ratios([enqueue(), listing()], "2026-11-30")
    assert plots.save(again, path) is False

    width, height = png_size(path)
    assert width == 10 * plots.DPI
    assert 300 < height < 2000
    assert 5_000 < first.st_size < 150_000
    assert b"matplotlib" not in path.read_bytes()  # no Software chunk: no churn on upgrades
    assert path.stat().st_mtime_ns == first.st_mtime_ns
    assert sorted(p.name for p in path.parent.iterdir()) == ["ratios.png"]
    other, _ = plots.draw_ratios([enqueue()], "2026-12-01")
    assert plots.save(other, path) is True


def test_measurements_come_back_whole_from_their_dict() -> None:
    for measurement in (enqueue(), listing(), world()):
        assert Measurement.from_dict(json.loads(json.dumps(measurement.as_dict()))) == (
            measurement
        )


# The command.


def run_with(
    monkeypatch: pytest.MonkeyPatch, measurements: Sequence[Measurement], args: Sequence[str]
) -> int:
    """``python -m bench`` in process, its measurements *measurements*, nothing measured."""
    monkeypatch.setattr(cli, "run_sections", lambda *args, **kwargs: list(measurements))
    return cli.main(list(args))


def places(tmp_path: Path) -> list[str]:
    return ["--no-mailman", "--disk-dir", str(tmp_path), "--tmpfs-dir", str(tmp_path)]


SCALING = [
    scaling("scaling-redis", {"4 processes": [3.0], "2 processes": [2.0], "1 process": [1.0]}),
    scaling("scaling-file", {"4 processes": [6.0], "2 processes": [5.0], "1 process": [4.0]}),
]


def test_plots_from_a_json_file_are_the_runs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    live, again = tmp_path / "live", tmp_path / "again"
    measurements = [enqueue(), world(), listing(), *SCALING]
    args = [*places(tmp_path), "--json", str(results), "--plots", str(live)]

    assert run_with(monkeypatch, measurements, args) == 0
    assert cli.main(["--plots-from", str(results), "--plots", str(again)]) == 0

    err = capsys.readouterr().err
    for directory in (live, again):
        assert sorted(path.name for path in directory.iterdir()) == ["ratios.png", "scaling.png"]
        assert f"wrote {directory / 'ratios.png'}" in err
        assert f"wrote {directory / 'scaling.png'}" in err
        assert png_size(directory / "scaling.png") == (800, 500)
    for name in ("ratios.png", "scaling.png"):
        assert (live / name).read_bytes() == (again / name).read_bytes()
    written = json.loads(results.read_text(encoding="utf-8"))
    assert written["cores"] >= 1
    assert written["sections"][-1] == "redis"


def test_plots_from_an_older_json_file_read_its_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "old.json"
    items = [m.as_dict() for m in SCALING]
    header = "Measured 2025-01-02 by `python -m bench` in 9 s: Python 3.11.7, 6 cores, disk"
    results.write_text(json.dumps({"header": header, "measurements": items}), "utf-8")

    loaded, sections, date, cores = cli.load_results(results)
    assert cli.main(["--plots-from", str(results), "--plots", str(tmp_path / "out")]) == 0

    assert (sections, date, cores) == (["redis"], "2025-01-02", 6)
    assert loaded == SCALING
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["scaling.png"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "is not JSON"),
        ('{"header": "x"}', "is not what `python -m bench --json` writes"),
        ('{"measurements": [{"title": "t"}]}', "measurement 1: a measurement has no 'key'"),
        (
            '{"measurements": [{"key": "k", "title": "t", "unit": "ms", '
            '"figures": {"runnerkit": ["fast"]}}]}',
            "measurement 1: measurement 'k': the figures of 'runnerkit' must be a list of numbers",
        ),
        (
            '{"measurements": [{"key": "k", "title": "t", "unit": "ms", '
            '"figures": {"runnerkit": [1, NaN]}}]}',
            "the figures of 'runnerkit' must be a list of numbers",
        ),
        (
            '{"measurements": [{"key": "k", "title": "t", "unit": "ms", '
            '"figures": {"runnerkit": [2, 4], "floor": [1, 1]}, "ratios": {"floor": 1.5}}]}',
            "the ratio over 'floor' is 1.5, but its figures give 3.0",
        ),
    ],
)
def test_plots_from_what_is_not_the_benchmarks_json_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    results = tmp_path / "results.json"
    results.write_text(content, encoding="utf-8")

    assert cli.main(["--plots-from", str(results), "--plots", str(tmp_path / "out")]) == 2

    err = capsys.readouterr().err
    assert f"error: {results}" in err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_plots_that_cannot_be_written_are_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file, not a directory", encoding="utf-8")
    args = [*places(tmp_path), "--only", "enqueue", "--plots", str(taken)]

    assert run_with(monkeypatch, [enqueue()], args) == 1

    err = capsys.readouterr().err
    assert "python -m bench: error: the plots: " in err
    assert str(taken) in err


def test_plots_from_needs_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.main(["--plots-from", "results.json"])

    assert exit.value.code == 2
    assert "--plots-from needs --plots DIR" in capsys.readouterr().err


def test_update_readme_draws_the_plots_beside_it_for_the_sections_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{BEGIN}\nold\n{END}\n\n{REDIS_BEGIN}\nold\n{REDIS_END}\n", "utf-8")
    images = tmp_path / "docs" / "images" / "bench"
    images.mkdir(parents=True)
    (images / "ratios.png").write_bytes(b"an older run's plot")
    args = [*places(tmp_path), "--redis-only", "--update-readme", "--readme", str(readme)]

    assert run_with(monkeypatch, SCALING, args) == 0

    assert (images / "ratios.png").read_bytes() == b"an older run's plot"  # not run: kept
    assert png_size(images / "scaling.png") == (800, 500)
    assert "4 processes: 3.00 msg/s" in readme.read_text(encoding="utf-8")


def test_a_section_with_nothing_to_draw_replaces_its_plot_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# t\n", "utf-8")
    images = tmp_path / "docs" / "images" / "bench"
    args = [*places(tmp_path), "--only", "world", "--update-readme", "--readme", str(readme)]

    assert run_with(monkeypatch, [world()], args) == 0

    assert sorted(path.name for path in images.iterdir()) == ["ratios.png"]
    assert png_size(images / "ratios.png") == (800, 120)
    text = readme.read_text(encoding="utf-8")
    assert "![runnerkit ÷ Mailman and ÷ the floor, per measurement](docs/images/bench/" in text
    assert "(docs/images/bench/scaling.png)" in text


def test_without_matplotlib_nothing_is_measured_and_the_install_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    def measure(*args: object, **kwargs: object) -> list[Measurement]:
        raise AssertionError("measured without a way to draw the plots")

    monkeypatch.setattr(cli, "run_sections", measure)
    readme = tmp_path / "README.md"
    readme.write_text("# t\n", "utf-8")
    out = tmp_path / "out"

    for args, said in (
        (["--plots", str(out)], "pip install -e '.[bench]'\n"),
        (
            ["--update-readme", "--readme", str(readme)],
            "pip install -e '.[bench]' (or --no-plots)",
        ),
    ):
        with pytest.raises(SystemExit) as exit:
            cli.main([*places(tmp_path), "--only", "world", *args])
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert "the plots need matplotlib, which is not installed" in err
        assert said in err

    assert not out.exists()
    assert readme.read_text(encoding="utf-8") == "# t\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["README.md"]


def test_no_plots_updates_the_readme_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    readme = tmp_path / "README.md"
    readme.write_text("# t\n", "utf-8")
    args = [*places(tmp_path), "--only", "world", "--update-readme", "--readme", str(readme)]

    assert run_with(monkeypatch, [world()], [*args, "--no-plots"]) == 0

    assert "| per-document world |" in readme.read_text(encoding="utf-8")
    assert not (tmp_path / "docs").exists()


def test_without_valkey_the_scaling_plot_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import backends

    monkeypatch.setattr(backends, "redis_unavailable", lambda: "no valkey-server here")
    drawn: list[tuple[str, str]] = []
    draw_nothing = plots.draw_nothing

    def spy(title: str, why: str) -> Any:
        drawn.append((title, why))
        return draw_nothing(title, why)

    monkeypatch.setattr(plots, "draw_nothing", spy)
    readme = tmp_path / "README.md"
    readme.write_text("# t\n", "utf-8")
    args = [*places(tmp_path), "--redis-only", "--update-readme", "--readme", str(readme)]

    assert cli.main(args) == 0

    today = datetime.date.today().isoformat()
    assert drawn == [
        (f"No scaling plot from the run of {today}", "Redis rows omitted: no valkey-server here.")
    ]
    images = tmp_path / "docs" / "images" / "bench"
    assert sorted(path.name for path in images.iterdir()) == ["scaling.png"]
    assert png_size(images / "scaling.png") == (800, 120)


@pytest.mark.parametrize("title", ["from $VAR_DIR to $HOME", r"cost $\foo{$ here", "a $ alone"])
def test_a_dollar_in_a_title_is_drawn_as_written(tmp_path: Path, title: str) -> None:
    # matplotlib reads $...$ as TeX: garbled text, or a ParseFatalException when it
    # does not parse. A measurement's title is plain text.
    measurement = enqueue()
    measurement.title = title
    figure, _ = plots.draw_ratios([measurement], "2026-11-30")
    assert plots.save(figure, tmp_path / "ratios.png") is True
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert any(title in label.replace("\n", " ") for label in labels), labels
    note = plots.draw_nothing(title, "why: $x")
    assert plots.save(note, tmp_path / "note.png") is True
