"""The harness's overhead, the spec suite's wall time, and the demo's throughput."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.places import Place
from bench.queues import BenchError
from bench.stats import Measurement, Target, alternate
from runnerkit.testing import World
from runnerkit.testing.documents import setup_document, teardown_document

#: The repository's root, where ``doctests/`` lives.
ROOT = Path(__file__).resolve().parent.parent


def _document_world() -> float:
    """One document's world set up and torn down, as Sybil does it; in ms."""
    namespace: dict[str, Any] = {}
    start = time.perf_counter()
    setup_document(namespace)
    teardown_document(namespace)
    return (time.perf_counter() - start) * 1000


def _bare_world() -> float:
    """A :class:`World` opened and closed, without a document's namespace; in ms."""
    start = time.perf_counter()
    World().open().close()
    return (time.perf_counter() - start) * 1000


def measure_world(samples: int, progress: Callable[[str], None]) -> Measurement:
    _document_world()  # the first one imports what every later one reuses
    figures = alternate(
        {"document world": _document_world, "bare World": _bare_world}, samples, None
    )
    progress(f"{samples} rounds")
    return Measurement(
        "world",
        "per-document world, set-up + tear-down",
        "ms",
        figures,
        [Target("≤ 10 ms", "value", 10.0, False)],
    )


_SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$")


def measure_suite(runs: int, progress: Callable[[str], None]) -> Measurement:
    """The wall time of ``pytest doctests/ -q -p no:cacheprovider``, in seconds."""
    if not (ROOT / "doctests").is_dir():
        raise BenchError(f"no doctests/ in {ROOT}: run the benchmark from a source tree")
    seconds: list[float] = []
    summary = ""
    for number in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "doctests/", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds.append(time.perf_counter() - start)
        lines = [_SUMMARY.match(line) for line in result.stdout.splitlines()]
        found = [match.group(1) for match in lines if match]
        if found:
            summary = found[-1]
        else:
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            summary = f"pytest exited with {result.returncode}: {said[-1] if said else ''}"
        progress(f"run {number + 1}/{runs}: {summary}")
    return Measurement(
        "suite",
        "spec suite: pytest doctests/ -q -p no:cacheprovider",
        "s",
        {"wall time": seconds},
        note=summary,
    )


def run_demo(place: Place, count: int, config: Sequence[Path] = ()) -> tuple[float, str]:
    """One ``runnerkit demo -n COUNT --json`` in a fresh var dir, with the layers
    *config* (``-C``) pushed over the demo's own: its rate in messages per second, and
    how many it delivered (``FAILED`` added if it failed)."""
    var_dir = place.fresh("demo")
    command = [sys.executable, "-m", "runnerkit", "demo", "-n", str(count), "--json"]
    for layer in config:
        command += ["-C", str(layer)]
    result = subprocess.run(
        [*command, "--var-dir", str(var_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        summary = json.loads(result.stdout)
    except ValueError as error:
        raise BenchError(
            f"runnerkit demo exited with {result.returncode} and printed no JSON: "
            f"{result.stderr[-2000:]}"
        ) from error
    shutil.rmtree(var_dir, ignore_errors=True)
    delivered = f"{summary['delivered']}/{summary['sent']} delivered"
    return (
        float(summary["messages_per_second"]),
        delivered if result.returncode == 0 else f"{delivered}, FAILED",
    )


def measure_demo(
    place: Place, count: int, runs: int, progress: Callable[[str], None]
) -> Measurement:
    """``runnerkit demo -n COUNT --json``: messages per second, LMTP to the Maildir."""
    rates: list[float] = []
    notes = []
    for number in range(runs):
        rate, outcome = run_demo(place, count)
        rates.append(rate)
        notes.append(outcome)
        progress(f"run {number + 1}/{runs}: {rates[-1]:.0f} msg/s, {notes[-1]}")
    return Measurement(
        "demo",
        f"demo: {count} messages, LMTP → in → pipeline → out",
        "msg/s",
        {"runnerkit demo": rates},
        note="; ".join(sorted(set(notes))),
    )
