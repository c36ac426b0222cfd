"""The status record: what a master tells about itself and its runner processes.

The master writes it to ``master.json`` in the var dir whenever it changes; ``runnerkit
status`` and the REST runner's ``/runners`` read it back.  The file is a JSON object
with sorted keys::

    {
      "master_pid": 4242,
      "runners": [
        {"count": 2, "name": "in", "pid": 4243, "reason": "", "restarts": 0,
         "slice": 0, "state": "running"},
        ...
      ]
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from runnerkit.errors import StatusFileError

#: The states a runner process can be in, as :attr:`RunnerStatus.state` names them.
STATES = ("running", "stuck", "starting", "down")
#: The keys of a runner's object, in the order of :class:`RunnerStatus`'s fields.
_RUNNER_KEYS = ("name", "slice", "count", "pid", "state", "restarts", "reason")


@dataclass(frozen=True)
class RunnerStatus:
    """One runner process that the master keeps: one slice of a runner, or the runner."""

    name: str
    #: The slice, or None for a runner without slices.
    slice: int | None
    #: The runner's number of slices (1 for a runner without slices).
    count: int
    #: The process's pid, or None while there is none.
    pid: int | None
    #: One of :data:`STATES`.
    state: str
    #: Restarts so far.
    restarts: int
    #: Why it is down or stuck; empty otherwise.
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the status file, its keys sorted as the file has them."""
        return dict(sorted(asdict(self).items()))

    @classmethod
    def from_dict(cls, data: object, where: str) -> RunnerStatus:
        """Read one runner's JSON object, as :meth:`to_dict` makes it.

        :param where: how error messages name the object, such as ``master.json runners[2]``.
        :raises StatusFileError: *data* is not such an object.
        """
        record = _object(data, where, _RUNNER_KEYS)
        state = _string(record, "state", where)
        if state not in STATES:
            raise StatusFileError(
                f"{where}: state must be one of {', '.join(STATES)}, not {_shown(state)}"
            )
        return cls(
            name=_string(record, "name", where),
            slice=_optional_whole(record, "slice", where),
            count=_whole(record, "count", where, minimum=1),
            pid=_optional_whole(record, "pid", where),
            state=state,
            restarts=_whole(record, "restarts", where),
            reason=_string(record, "reason", where),
        )


@dataclass(frozen=True)
class MasterStatus:
    """The master's pid and its runner processes, in the master's order."""

    master_pid: int
    runners: tuple[RunnerStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the status file."""
        return {
            "master_pid": self.master_pid,
            "runners": [runner.to_dict() for runner in self.runners],
        }

    def to_json(self) -> str:
        """The text of the status file, without the final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "the status file") -> MasterStatus:
        """Read the text of a status file, as :meth:`to_json` writes it.

        :param source: how error messages name the text, such as the file's name.
        :raises StatusFileError: *text* is not JSON, or not the layout above; the
            message names *source*, the bad key and value, and what was expected.
        """
        try:
            data = json.loads(text)
        except ValueError as error:
            raise StatusFileError(f"{source} is not a master's status: {error}") from error
        record = _object(data, source, ("master_pid", "runners"))
        runners = record["runners"]
        if not isinstance(runners, list):
            raise StatusFileError(f"{source}: runners must be a list, not {_shown(runners)}")
        return cls(
            master_pid=_whole(record, "master_pid", source, minimum=1),
            runners=tuple(
                RunnerStatus.from_dict(runner, f"{source} runners[{index}]")
                for index, runner in enumerate(runners)
            ),
        )


def _object(data: object, where: str, keys: tuple[str, ...]) -> Mapping[str, object]:
    """*data* as a JSON object with exactly *keys*."""
    if not isinstance(data, dict):
        raise StatusFileError(f"{where} must be a JSON object, not {_shown(data)}")
    if set(data) != set(keys):
        raise StatusFileError(
            f"{where} has the keys {', '.join(sorted(data)) or 'none'}; "
            f"expected {', '.join(sorted(keys))}"
        )
    return data


def _string(record: Mapping[str, object], key: str, where: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise StatusFileError(f"{where}: {key} must be a string, not {_shown(value)}")
    return value


def _whole(record: Mapping[str, object], key: str, where: str, minimum: int = 0) -> int:
    value = record[key]
    # bool is a subclass of int, but true is no count.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise StatusFileError(
            f"{where}: {key} must be a whole number from {minimum}, not {_shown(value)}"
        )
    return value


def _optional_whole(record: Mapping[str, object], key: str, where: str) -> int | None:
    value = record[key]
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StatusFileError(
            f"{where}: {key} must be a whole number from 0 or null, not {_shown(value)}"
        )
    return value


def _shown(value: object) -> str:
    """*value* as JSON, shortened, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
