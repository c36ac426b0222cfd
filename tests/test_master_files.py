"""The master's files: the typed status record, the status file, the lock and pid file.

No master runs here: the tests write and read the files as a master and its readers
(``runnerkit status``, the REST runner) do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerkit.config import Configuration
from runnerkit.errors import MasterError, MasterRunningError, StatusFileError
from runnerkit.master import (
    MasterLock,
    MasterStatus,
    RunnerStatus,
    lock_paths,
    read_status,
    running_master_pid,
    write_status,
)

STATUS = MasterStatus(
    master_pid=4242,
    runners=(
        RunnerStatus("in", 0, 2, 4243, "running", 0, ""),
        RunnerStatus(
            "in",
            1,
            2,
            None,
            "down",
            11,
            "failed 11 times within the restart window",
            "cannot connect to the database",
        ),
        RunnerStatus("out", 0, 1, 4245, "stuck", 1, "stuck on 1700000000.1+" + "a" * 40),
        RunnerStatus(
            "rest", None, 1, None, "starting", 2, "backing off 1.00s before restart 2 of 10"
        ),
    ),
    draining=True,
)

#: The first runner's object, as ``master.json`` has it: keys sorted.
FIRST_RUNNER = """\
    {
      "count": 2,
      "last_error": "",
      "name": "in",
      "pid": 4243,
      "reason": "",
      "restarts": 0,
      "slice": 0,
      "state": "running"
    },"""


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Configuration]:
    with Configuration(tmp_path / "var") as config:
        yield config


# The record.


def test_the_record_round_trips_through_json() -> None:
    assert MasterStatus.from_json(STATUS.to_json()) == STATUS


def test_the_json_layout_is_that_of_master_json() -> None:
    text = STATUS.to_json()
    assert text.startswith(
        '{\n  "draining": true,\n  "master_pid": 4242,\n  "runners": [\n' + FIRST_RUNNER
    )
    document = json.loads(text)
    assert list(document) == ["draining", "master_pid", "runners"]
    assert document["runners"][3] == {
        "count": 1,
        "last_error": "",
        "name": "rest",
        "pid": None,
        "reason": "backing off 1.00s before restart 2 of 10",
        "restarts": 2,
        "slice": None,
        "state": "starting",
    }
    assert document["runners"][1]["last_error"] == "cannot connect to the database"
    assert STATUS.to_dict() == document


def test_a_master_without_runners() -> None:
    idle = MasterStatus(7, ())
    assert idle.to_json() == '{\n  "draining": false,\n  "master_pid": 7,\n  "runners": []\n}'
    assert MasterStatus.from_json(idle.to_json()) == idle


def test_a_status_file_of_an_older_master_reads_without_the_later_keys() -> None:
    # Written before draining and last_error existed.
    text = json.dumps(
        {
            "master_pid": 9,
            "runners": [
                {
                    "count": 1,
                    "name": "out",
                    "pid": 10,
                    "reason": "",
                    "restarts": 0,
                    "slice": 0,
                    "state": "running",
                }
            ],
        }
    )
    assert MasterStatus.from_json(text) == MasterStatus(
        9, (RunnerStatus("out", 0, 1, 10, "running", 0, "", last_error=""),), draining=False
    )


def test_what_is_wrong_with_a_runner() -> None:
    running, down, stuck, starting = STATUS.runners
    assert running.problem() == ""
    assert down.problem() == (
        "in 1/2: down (failed 11 times within the restart window): cannot connect to the database"
    )
    # A stuck runner's last error is older than what is wrong with it now.
    assert stuck.problem() == "out 0/1: stuck (stuck on 1700000000.1+" + "a" * 40 + ")"
    assert starting.problem() == "rest -: starting (backing off 1.00s before restart 2 of 10)"
    assert [runner.running for runner in STATUS.runners] == [True, False, True, False]


def replace_first_runner(**changes: object) -> str:
    document = STATUS.to_dict()
    document["runners"][0].update(changes)
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{half a docu", "master.json is not a master's status: Expecting property name"),
        ("[]", "master.json must be a JSON object, not []"),
        ('{"master_pid": 1}', "master.json has the keys master_pid; expected master_pid, runners"),
        ('{"master_pid": 1, "runners": {}}', "master.json: runners must be a list, not {}"),
        (
            '{"master_pid": "1", "runners": []}',
            'master.json: master_pid must be a whole number from 1, not "1"',
        ),
        ('{"master_pid": 1, "runners": [7]}', "master.json runners[0] must be a JSON object"),
        (
            replace_first_runner(pid=True),
            "master.json runners[0]: pid must be a whole number from 0 or null, not true",
        ),
        (
            replace_first_runner(state="asleep"),
            "master.json runners[0]: state must be one of running, stuck, starting, down, "
            'not "asleep"',
        ),
        (
            replace_first_runner(count=0),
            "master.json runners[0]: count must be a whole number from 1, not 0",
        ),
        (replace_first_runner(reason=None), "master.json runners[0]: reason must be a string"),
        (
            replace_first_runner(last_error=3),
            "master.json runners[0]: last_error must be a string, not 3",
        ),
        (
            '{"master_pid": 1, "runners": [], "draining": "yes"}',
            'master.json: draining must be true or false, not "yes"',
        ),
        (
            '{"master_pid": 1, "runners": [], "mood": "good"}',
            "master.json has the keys master_pid, mood, runners; expected master_pid, runners "
            "(and optionally draining)",
        ),
        (
            replace_first_runner(colour="red"),
            "master.json runners[0] has the keys colour, count, last_error, name, pid, reason, "
            "restarts, slice, state; expected count, name, pid, reason, restarts, slice, state "
            "(and optionally last_error)",
        ),
    ],
)
def test_a_malformed_status_is_a_status_file_error(text: str, message: str) -> None:
    with pytest.raises(StatusFileError) as raised:
        MasterStatus.from_json(text, source="master.json")
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, MasterError)


# The status file.


def test_no_status_file_is_no_status(config: Configuration) -> None:
    assert read_status(config) is None


def test_the_status_file_is_written_and_read(config: Configuration) -> None:
    config.paths.var_dir.mkdir(parents=True)
    write_status(config, STATUS)
    path = lock_paths(config).status
    assert path == config.paths.var_dir / "master.json"
    assert path.read_text(encoding="utf-8") == STATUS.to_json() + "\n"
    assert read_status(config) == STATUS
    assert [entry.name for entry in config.paths.var_dir.iterdir()] == ["master.json"]


def test_a_damaged_status_file_is_an_error_naming_the_file(config: Configuration) -> None:
    path = lock_paths(config).status
    path.parent.mkdir(parents=True)
    path.write_text('{"master_pid": 12', encoding="utf-8")
    with pytest.raises(StatusFileError, match=f"^{str(path)!r} is not a master's status: "):
        read_status(config)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(StatusFileError, match="cannot read the master's status file"):
        read_status(config)


# The lock and the pid file.


def test_the_lock_names_this_process_and_refuses_a_second_holder(config: Configuration) -> None:
    paths = lock_paths(config)
    assert running_master_pid(config) is None
    with MasterLock(config) as lock:
        assert lock.held
        assert running_master_pid(config) == os.getpid()
        assert paths.pid.read_text(encoding="ascii") == f"{os.getpid()}\n"
        with pytest.raises(MasterRunningError, match=f"already running with pid {os.getpid()}"):
            MasterLock(config).acquire()
        with pytest.raises(MasterRunningError):
            lock.acquire()
        write_status(config, STATUS)
    assert not lock.held
    assert running_master_pid(config) is None
    assert not paths.pid.exists()
    assert not paths.status.exists()
    # The lock file stays, free: the next master takes it over.
    assert paths.lock.exists()
    lock.release()
