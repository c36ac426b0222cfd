"""The durations file: how many real seconds each work unit of a suite took to run.

Sharding (:mod:`runnerkit.testing.sharding`) balances shards by these figures, and
``--spec-store-durations`` records them.  A work unit is a spec file, whose examples run
together, or any other test by itself; its duration is the sum of the setup, call and
teardown durations of its tests, as pytest reports them.  Those come from pytest's own
clock, which runnerkit keeps real while time is frozen (from the start of a run that
stores durations; see :mod:`runnerkit.testing.timecontrol`), so a spec frozen at a date
years ago is still recorded in the seconds it really took.  Without that, a freeze that
begins and ends within one unit would mostly cancel out, since the unit's phases add up
to about the time from its start to its end; but a freeze that spans units, as a
module-scoped one does, would record some as taking no time and others as taking decades.

The file is JSON, written with sorted keys and one unit a line, so that a change to it
reads well in a diff::

    {
      "format": "runnerkit durations",
      "units": {
        "docs/guide.rst": 2.417,
        "tests/test_queue.py::test_fifo": 0.012
      },
      "version": 1
    }
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runnerkit.errors import DurationsFileError
from runnerkit.fsio import replace_file

#: What the ``format`` key of a durations file says.
FORMAT = "runnerkit durations"
#: The version of the format this runnerkit writes, and the newest it reads.
VERSION = 1

#: The test phases whose durations add up to a test's.
_PHASES = ("setup", "call", "teardown")


def read_durations(path: Path) -> dict[str, float]:
    """The recorded seconds of each unit in the durations file at *path*.

    A file that does not exist holds no records: the first run that stores durations
    creates it.

    :raises DurationsFileError: the file cannot be read, is not JSON, or is not a
        durations file of a version this runnerkit reads.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise DurationsFileError(f"cannot read the durations file {path}: {reason}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        message = _not_ours(path, f"it is not JSON ({error})")
        raise DurationsFileError(message) from error
    return _units(path, data)


def _not_ours(path: Path, reason: str) -> str:
    return f"{path} is not a runnerkit durations file: {reason}"


def _units(path: Path, data: Any) -> dict[str, float]:
    """The ``units`` of a parsed durations file, each checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DurationsFileError(_not_ours(path, f'it lacks "format": "{FORMAT}"'))
    version = data.get("version")
    if type(version) is not int or version < 1:
        raise DurationsFileError(
            _not_ours(path, f'"version" must be a whole number from 1, not {version!r}')
        )
    if version > VERSION:
        raise DurationsFileError(
            f"{path} is a durations file of version {version}, written by a newer "
            f"runnerkit; this one reads versions up to {VERSION}"
        )
    units = data.get("units")
    if not isinstance(units, dict):
        raise DurationsFileError(_not_ours(path, '"units" must map unit names to seconds'))
    for name, seconds in units.items():
        if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
            raise DurationsFileError(
                _not_ours(path, f"unit {name!r} has {seconds!r}, not a number of seconds >= 0")
            )
    return {name: float(seconds) for name, seconds in units.items()}


def durations_text(durations: Mapping[str, float]) -> str:
    """The contents of a durations file holding *durations*, to the millisecond."""
    # Never below zero: a file with a negative record would refuse to be read again.
    units = {name: max(round(seconds, 3), 0.0) for name, seconds in durations.items()}
    data = {"format": FORMAT, "units": units, "version": VERSION}
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def store_durations(path: Path, durations: Mapping[str, float]) -> None:
    """Merge *durations* into the durations file at *path*, atomically.

    Units the file holds and *durations* does not keep their records.  The file is
    read again here, not when the run began, so a record stored meanwhile survives.

    :raises DurationsFileError: the file now there cannot be read, or is not a
        durations file; it is left as it is.
    :raises OSError: the file could not be written; it is as it was.
    """
    merged = read_durations(path)
    merged.update(durations)
    replace_file(path, durations_text(merged).encode("utf-8"))


class DurationLog:
    """The durations of the tests of one run, from their reports.

    A test that reports a phase twice (a rerun, or every worker under
    ``--dist each``) counts with its latest report, so nothing is counted twice.
    """

    def __init__(self) -> None:
        self._seconds: dict[tuple[str, str], float] = {}
        #: Tests that were skipped: a unit holding one did not really run whole.
        self._skipped: set[str] = set()

    def add(self, report: pytest.TestReport) -> None:
        """Keep the duration of *report*'s phase of its test."""
        if report.when in _PHASES:
            self._seconds[(report.nodeid, report.when)] = report.duration
            if report.skipped:
                self._skipped.add(report.nodeid)

    def whole_units(self, units: Mapping[str, str], sizes: Mapping[str, int]) -> dict[str, float]:
        """The seconds of each unit that ran whole: every one of its tests, to teardown.

        A unit some tests of which did not run (deselected, skipped, or after ``-x``
        stopped the run) is left out, so that a partial run never records a unit as
        quicker than it is: a skip-marked slow test would otherwise overwrite its real
        time with a millisecond.

        :param units: the unit of each test's node id.
        :param sizes: how many tests each unit has.
        """
        seconds: dict[str, float] = {}
        finished: dict[str, int] = {}
        for (nodeid, when), duration in self._seconds.items():
            unit = units.get(nodeid)
            if unit is None:
                continue
            seconds[unit] = seconds.get(unit, 0.0) + duration
            if when == "teardown":
                finished[unit] = finished.get(unit, 0) + 1
        skipped = {units[nodeid] for nodeid in self._skipped if nodeid in units}
        return {
            unit: seconds[unit]
            for unit, done in finished.items()
            if done == sizes.get(unit) and unit not in skipped
        }
