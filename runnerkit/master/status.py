"""The status record: what a master tells about itself and its runner processes.

The master writes it to ``master.json`` in the var dir whenever it changes; ``runnerkit
status`` and the REST runner's ``/runners`` read it back.  The file is a JSON object
with sorted keys::

    {
      "draining": false,
      "master_pid": 4242,
      "runners": [
        {"count": 2, "last_error": "", "name": "in", "pid": 4243, "reason": "",
         "restarts": 0, "slice": 0, "state": "running"},
        ...
      ]
    }

``draining`` and ``last_error`` came later: a file without them (an older master's)
reads as ``false`` and ``""``.
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
#: Keys a runner's object may lack: a file of an older master.
_RUNNER_OPTIONAL = ("last_error",)
#: Keys the file's object may lack.
_MASTER_OPTIONAL = ("draining",)


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
    #: Why it is down, stuck or waiting to restart; empty otherwise.
    reason: str
    #: What ended its last failed process, as that process told it: the last line it
    #: wrote to its output file (:mod:`runnerkit.master.output`), or how it ended
    #: (``killed by SIGKILL``); empty until a process fails.  It stays after the
    #: runner is running again, as a record of its last failure.
    last_error: str = ""

    @property
    def running(self) -> bool:
        """Whether a process of this runner is at work (``running``, or ``stuck``)."""
        return self.state in ("running", "stuck")

    @property
    def where(self) -> str:
        """``SLICE/COUNT``, or ``-`` for a runner without slices."""
        return "-" if self.slice is None else f"{self.slice}/{self.count}"

    def problem(self) -> str:
        """What is wrong with this runner, for an operator; empty when it is running.

        Such as ``lmtp -: starting (backing off 0.50s before restart 3 of 10): cannot
        listen for LMTP on 127.0.0.1:8024: Address already in use``.
        """
        if self.state == "running":
            return ""
        text = f"{self.name} {self.where}: {self.state}"
        if self.reason:
            text += f" ({self.reason})"
        if self.last_error and self.state != "stuck":
            text += f": {self.last_error}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the status file, its keys sorted as the file has them."""
        return dict(sorted(asdict(self).items()))

    @classmethod
    def from_dict(cls, data: object, where: str) -> RunnerStatus:
        """Read one runner's JSON object, as :meth:`to_dict` makes it.

        :param where: how error messages name the object, such as ``master.json runners[2]``.
        :raises StatusFileError: *data* is not such an object.
        """
        record = _object(data, where, _RUNNER_KEYS, _RUNNER_OPTIONAL)
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
            last_error=_string(record, "last_error", where, default=""),
        )


@dataclass(frozen=True)
class MasterStatus:
    """The master's pid and its runner processes, in the master's order."""

    master_pid: int
    runners: tuple[RunnerStatus, ...]
    #: Whether the master is draining: it has stopped its runners without a queue
    #: (``runnerkit stop --drain``) and lets the queue runners empty their queues.
    draining: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the status file, its keys sorted as the file has them."""
        return {
            "draining": self.draining,
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
        record = _object(data, source, ("master_pid", "runners"), _MASTER_OPTIONAL)
        draining = record.get("draining", False)
        if not isinstance(draining, bool):
            raise StatusFileError(
                f"{source}: draining must be true or false, not {_shown(draining)}"
            )
        runners = record["runners"]
        if not isinstance(runners, list):
            raise StatusFileError(f"{source}: runners must be a list, not {_shown(runners)}")
        return cls(
            master_pid=_whole(record, "master_pid", source, minimum=1),
            runners=tuple(
                RunnerStatus.from_dict(runner, f"{source} runners[{index}]")
                for index, runner in enumerate(runners)
            ),
            draining=draining,
        )


def _object(
    data: object, where: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, object]:
    """*data* as a JSON object with exactly *keys*, and perhaps some of *optional*."""
    if not isinstance(data, dict):
        raise StatusFileError(f"{where} must be a JSON object, not {_shown(data)}")
    if not set(keys) <= set(data) <= set(keys) | set(optional):
        also = f" (and optionally {', '.join(sorted(optional))})" if optional else ""
        raise StatusFileError(
            f"{where} has the keys {', '.join(sorted(data)) or 'none'}; "
            f"expected {', '.join(sorted(keys))}{also}"
        )
    return data


def _string(record: Mapping[str, object], key: str, where: str, default: str | None = None) -> str:
    value = record.get(key, default)
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
