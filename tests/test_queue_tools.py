"""The tools for the shunt and bad queues: reasons kept with entries, ``runnerkit queue``.

Entries are made by a real runner over a real var dir: :class:`Fragile` works the
``pipeline`` queue and raises for a message whose subject says ``poison``, so the
runner shunts it; a file damaged on disk is preserved in ``bad`` by the same runner.
The commands run as child processes of the ``runnerkit`` console script.
"""

from __future__ import annotations

import json
import os
import pty
import resource
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerkit import queuefile
from runnerkit.cli.entries import format_age
from runnerkit.config.values import as_duration
from runnerkit.lists import MailingList
from runnerkit.message import Message, message_from_bytes, message_from_string
from runnerkit.runner import Runner
from runnerkit.site import Site
from runnerkit.switchboard import reasons_directory
from runnerkit.typing import MsgData

#: The bound on every child process.
DEADLINE = 60.0
ERROR = "runnerkit: error: "
#: An old file base time: 2001-09-09, older than any duration a test asks about.
OLD = "1000000000.000000000"


class Fragile(Runner):
    """Raises for every message whose subject says ``poison``; takes the others."""

    def _dispose(self, mlist: MailingList | None, msg: Message, msgdata: MsgData) -> bool:
        if "poison" in str(msg["subject"]):
            raise ValueError(f"cannot digest\n{msg['subject']}")
        return False


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "runnerkit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "runnerkit"]


def environment(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNNERKIT_VAR_DIR", "RUNNERKIT_CONFIG")
    }
    env["RUNNERKIT_VAR_DIR"] = str(var_dir)
    return env


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def site(var_dir: Path) -> Iterator[Site]:
    with Site(var_dir) as made:
        made.lists.create("ant@example.com")
        made.lists.create("bee@example.com")
        made.commit()
        yield made


def rk(
    var_dir: Path, *args: str, stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run ``runnerkit ARGS`` over *var_dir*, as a child process, standard input not a
    terminal unless *stdin* says otherwise."""
    return subprocess.run(
        [*console_script(), *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        env=environment(var_dir),
        timeout=DEADLINE,
        check=False,
    )


def message(subject: str, sender: str = "anne@example.com") -> Message:
    return message_from_string(f"From: {sender}\nSubject: {subject}\n\nbody\n")


def run_fragile(site: Site, *messages: tuple[Message, str]) -> None:
    """Queue *messages* (each with its list) in ``pipeline``, and let a real runner work."""
    for msg, listname in messages:
        site.switchboards["pipeline"].enqueue(msg, listname=listname)
    Fragile("pipeline", config=site).run_once()


def entries(var_dir: Path, queue: str) -> list[dict[str, Any]]:
    result = rk(var_dir, "queue", "list", queue, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["queue"] == queue
    found: list[dict[str, Any]] = document["entries"]
    return found


def queued(site: Site, queue: str) -> list[tuple[Message, MsgData]]:
    switchboard = site.switchboards[queue]
    found = []
    for filebase in switchboard.files:
        data = (switchboard.queue_directory / f"{filebase}.pck").read_bytes()
        entry = queuefile.decode(data)
        found.append((entry.message, entry.metadata))
    return found


def bad_files(site: Site) -> list[str]:
    """The entries of bad, then of bad.reasons (as ``reasons/NAME``)."""
    bad = site.switchboards["bad"].queue_directory
    reasons = reasons_directory(bad)
    found = sorted(path.name for path in bad.iterdir())
    if reasons.exists():
        found += sorted(f"reasons/{path.name}" for path in reasons.iterdir())
    return found


def damage_in_pipeline(site: Site, subject: str) -> str:
    """Queue a message in ``pipeline`` and cut its file short; return its file base."""
    switchboard = site.switchboards["pipeline"]
    filebase = switchboard.enqueue(message(subject), listname="ant@example.com")
    path = switchboard.queue_directory / f"{filebase}.pck"
    path.write_bytes(path.read_bytes()[:-3])
    return filebase


def make_old(site: Site, queue: str, filebase: str) -> str:
    """Give the queue file *filebase* a file base of long ago, as if queued then."""
    directory = site.switchboards[queue].queue_directory
    old = f"{OLD}+{filebase.partition('+')[2]}"
    (directory / f"{filebase}.pck").rename(directory / f"{old}.pck")
    return old


# Reasons kept with the entry.


def test_a_shunted_message_keeps_the_reason_the_runner_and_the_time(site: Site) -> None:
    before = time.time()
    run_fragile(site, (message("poison pill"), "ant@example.com"))
    [(msg, metadata)] = queued(site, "shunt")
    assert msg["Subject"] == "poison pill"
    assert metadata["whichq"] == "pipeline"
    # One line: the error's type and message, its line break escaped.
    assert metadata["shunt_reason"] == "ValueError: cannot digest\\npoison pill"
    assert metadata["shunt_runner"] == "pipeline"
    shunted_at = metadata["shunt_time"]
    assert shunted_at.endswith("+00:00")
    from datetime import datetime

    assert before - 1 <= datetime.fromisoformat(shunted_at).timestamp() <= time.time() + 1


def test_a_long_reason_is_bounded(site: Site) -> None:
    run_fragile(site, (message("poison " + "x" * 5000), "ant@example.com"))
    [(_, metadata)] = queued(site, "shunt")
    assert len(metadata["shunt_reason"]) < 700
    assert "more characters]" in metadata["shunt_reason"]


def test_a_preserved_file_keeps_its_reason_beside_it_uncounted(site: Site, var_dir: Path) -> None:
    filebase = damage_in_pipeline(site, "broken")
    run_fragile(site)
    assert bad_files(site) == [f"{filebase}.psv", f"reasons/{filebase}.reason"]
    bad = site.switchboards["bad"].queue_directory
    record = json.loads((reasons_directory(bad) / f"{filebase}.reason").read_text())
    assert record["queue"] == "pipeline"
    assert record["reason"].startswith("QueueFileError: ")
    assert "truncated or damaged" in record["reason"]
    assert record["time"].endswith("+00:00")
    # Not an entry: the depth counts the .psv alone.
    bad = site.switchboards["bad"]
    assert bad.depth() == 1
    result = rk(var_dir, "queues", "--json")
    assert json.loads(result.stdout)["queues"]["bad"] == 1


def test_a_failed_shunt_keeps_both_errors_as_the_reason(site: Site) -> None:
    shunt_dir = site.switchboards["shunt"].queue_directory
    shunt_dir.rmdir()
    shunt_dir.write_text("in the way\n")  # the shunt queue cannot be written to
    try:
        run_fragile(site, (message("poison"), "ant@example.com"))
    finally:
        shunt_dir.unlink()
        shunt_dir.mkdir()
    [psv] = [name for name in bad_files(site) if name.endswith(".psv")]
    reason = site.switchboards["bad"].preserved_reason(psv[: -len(".psv")])
    assert reason is not None
    assert reason["reason"].startswith(
        "ValueError: cannot digest\\npoison; then shunting it failed: QueueError: "
    )


def test_a_file_recovered_too_often_keeps_the_reason(site: Site) -> None:
    switchboard = site.switchboards["pipeline"]
    filebase = switchboard.enqueue(message("crashes"), listname="ant@example.com")
    for _ in range(3):
        switchboard.dequeue(filebase)  # as a runner that then crashed
        switchboard.recover_backup_files()
    reason = site.switchboards["bad"].preserved_reason(filebase)
    assert reason is not None
    assert reason["reason"] == "recovered 3 times after crashes: processing it keeps failing"


# queue list.


def test_list_shows_shunted_entries_with_their_reasons(site: Site, var_dir: Path) -> None:
    run_fragile(
        site,
        (message("poison one"), "ant@example.com"),
        (message("fine"), "ant@example.com"),
        (message("poison \x1b[2J two", "bart@example.com"), "bee@example.com"),
    )
    result = rk(var_dir, "queue", "list", "shunt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "AGE", "LIST", "SENDER", "SUBJECT", "REASON"]
    assert len(lines) == 3
    ids = [entry.filebase for entry in _shunt_entries(site)]
    assert [line.split()[0] for line in lines[1:]] == ids
    assert "ant@example.com  anne@example.com  poison one" in lines[1]
    assert lines[1].endswith("ValueError: cannot digest\\npoison one")
    # Header text is untrusted: its controls are escaped, never written to the terminal.
    assert "\x1b" not in result.stdout
    assert "poison \\x1b[2J two" in lines[2]
    assert lines[2].split()[1].endswith("s")  # its age


def test_list_json(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison one"), "ant@example.com"))
    [entry] = entries(var_dir, "shunt")
    assert entry["list"] == "ant@example.com"
    assert entry["sender"] == "anne@example.com"
    assert entry["subject"] == "poison one"
    assert entry["reason"] == "ValueError: cannot digest\\npoison one"
    assert entry["whichq"] == "pipeline"
    assert entry["state"] == "waiting"
    assert entry["damaged"] is None
    assert 0 <= entry["age"] < 60
    assert entry["since"].endswith("+00:00")
    assert Path(entry["path"]) == site.switchboards["shunt"].queue_directory / f"{entry['id']}.pck"


def test_list_bad_shows_damaged_entries_with_the_reason(site: Site, var_dir: Path) -> None:
    filebase = damage_in_pipeline(site, "broken")
    run_fragile(site)
    # A damaged file in shunt is listed too, rather than failing the command.
    run_fragile(site, (message("poison"), "ant@example.com"))
    [shunted] = _shunt_entries(site)
    path = shunted.path
    path.write_bytes(path.read_bytes()[:40])
    [entry] = entries(var_dir, "bad")
    assert entry["id"] == filebase
    assert entry["state"] == "preserved"
    assert entry["list"] == "ant@example.com"  # the metadata still reads
    assert entry["whichq"] == "pipeline"
    assert entry["reason"].startswith("QueueFileError: ")
    assert "truncated or damaged" in entry["damaged"]
    [damaged] = entries(var_dir, "shunt")
    assert damaged["reason"].startswith("unreadable: ")
    table = rk(var_dir, "queue", "list", "bad")
    assert table.returncode == 0
    assert filebase in table.stdout


def test_list_filters(site: Site, var_dir: Path) -> None:
    run_fragile(
        site,
        (message("poison one"), "ant@example.com"),
        (message("poison two", "bart@example.com"), "bee@example.com"),
        (message("poison three"), "bee@example.com"),
    )
    one, two, three = (entry.filebase for entry in _shunt_entries(site))
    old = make_old(site, "shunt", three)

    def ids(*options: str) -> list[str]:
        return [entry["id"] for entry in _entries_with(var_dir, "shunt", *options)]

    assert ids("--list", "bee@example.com") == [old, two]
    assert ids("--list", "ant.example.com") == [one]  # the list id counts too
    assert ids("--older-than", "1d") == [old]
    assert ids("--match", "BART@") == [two]
    assert ids("--match", "digest\\npoison one") == [one]
    assert ids("--list", "bee@example.com", "--older-than", "1h") == [old]
    result = rk(var_dir, "queue", "list", "shunt", "--older-than", "soon")
    assert result.returncode == 2
    assert result.stderr.startswith(f"{ERROR}--older-than: 'soon': expected a duration")
    assert rk(var_dir, "queue", "list", "shunt", "--match", "nothing").stdout == (
        "no entries in queue 'shunt'\n"
    )


def test_list_of_an_unknown_queue(site: Site, var_dir: Path) -> None:
    result = rk(var_dir, "queue", "list", "shnut")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"{ERROR}no queue 'shnut'; queues are: bad, bounces, command, in, "
    )


@pytest.mark.parametrize("args", [("list", "shunt"), ("show", "shunt", f"{OLD}+{'a' * 40}")])
def test_looking_creates_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = tmp_path / "nowhere"
    result = rk(missing, "queue", *args)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not missing.exists()


# queue show.


def test_show_an_entry(site: Site, var_dir: Path) -> None:
    eight_bit = message_from_bytes(
        "From: Zoë <zoe@example.com>\n"
        "Subject: poison Grüße\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Grüße aus Zürich!\n".encode()
    )
    run_fragile(site, (eight_bit, "ant@example.com"))
    [shunted] = _shunt_entries(site)
    result = rk(var_dir, "queue", "show", "shunt", shunted.filebase)
    assert result.returncode == 0, result.stderr
    head, _, rest = result.stdout.partition("=" * 50 + "\n")
    assert f"id        : {shunted.filebase}\n" in head
    assert "queue     : shunt (waiting)\n" in head
    assert "reason    : ValueError: cannot digest\\npoison Gr" in head
    assert "from queue: pipeline\n" in head
    # The message as qfile shows it: 8-bit text as text, never base64.
    assert rest.startswith("From: Zoë <zoe@example.com>\nSubject: poison Grüße\n")
    assert "\nGrüße aus Zürich!\n" in rest
    assert "base64" not in rest
    assert "\nshunt_runner: 'pipeline'\n" in rest
    document = json.loads(rk(var_dir, "queue", "show", "shunt", shunted.filebase, "--json").stdout)
    assert document["id"] == shunted.filebase
    assert document["metadata"]["whichq"] == "'pipeline'"
    assert "Grüße aus Zürich!" in document["message"]


def test_show_a_damaged_entry_shows_what_reads(site: Site, var_dir: Path) -> None:
    filebase = damage_in_pipeline(site, "broken")
    run_fragile(site)
    result = rk(var_dir, "queue", "show", "bad", f"{filebase}.psv")
    assert result.returncode == 0, result.stderr
    assert "(the message cannot be read: " in result.stdout
    assert "listname : 'ant@example.com'" in result.stdout
    assert "runnerkit qfile --hex " in result.stdout


def test_show_an_entry_that_is_not_there(site: Site, var_dir: Path) -> None:
    result = rk(var_dir, "queue", "show", "shunt", f"{OLD}+{'a' * 40}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{ERROR}no entry '{OLD}+{'a' * 40}' in queue 'shunt'")


def test_qfile_shows_a_preserved_file_found_by_its_base_name(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    [shunted] = _shunt_entries(site)
    bad = site.switchboards["bad"].queue_directory
    bad.mkdir(exist_ok=True)
    shunted.path.rename(bad / f"{shunted.filebase}.psv")
    result = rk(var_dir, "qfile", shunted.filebase)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("From: anne@example.com\nSubject: poison\n")
    assert "whichq      : 'pipeline'" in result.stdout


# queue requeue.


def test_requeue_by_id_puts_a_shunted_entry_back_where_it_came_from(
    site: Site, var_dir: Path
) -> None:
    run_fragile(
        site,
        (message("poison one"), "ant@example.com"),
        (message("poison two"), "ant@example.com"),
    )
    one, two = (entry.filebase for entry in _shunt_entries(site))
    result = rk(var_dir, "queue", "requeue", "shunt", one)
    assert result.returncode == 0, result.stderr
    [(msg, metadata)] = queued(site, "pipeline")
    new_id = site.switchboards["pipeline"].files[0]
    assert result.stdout == f"requeued {one} from 'shunt' to 'pipeline' as {new_id}\n"
    assert msg["Subject"] == "poison one"
    assert metadata["listname"] == "ant@example.com"
    # Back to work: the runner's record of the failure goes.
    assert not {"whichq", "shunt_reason", "shunt_runner", "shunt_time"} & set(metadata)
    assert [entry.filebase for entry in _shunt_entries(site)] == [two]


def test_requeue_a_filtered_set_and_all(site: Site, var_dir: Path) -> None:
    run_fragile(
        site,
        (message("poison one"), "ant@example.com"),
        (message("poison two"), "bee@example.com"),
        (message("poison three"), "bee@example.com"),
    )
    result = rk(var_dir, "queue", "requeue", "shunt", "--list", "bee@example.com", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["requeued"]) == 2
    assert {item["to"] for item in document["requeued"]} == {"pipeline"}
    assert (document["refused"], document["missing"]) == ([], [])
    assert sorted(str(msg["Subject"]) for msg, _ in queued(site, "pipeline")) == [
        "poison three",
        "poison two",
    ]
    assert rk(var_dir, "queue", "requeue", "shunt", "--all").returncode == 0
    assert queued(site, "shunt") == []
    assert len(queued(site, "pipeline")) == 3


def test_requeue_needs_a_selection(site: Site, var_dir: Path) -> None:
    result = rk(var_dir, "queue", "requeue", "shunt")
    assert result.returncode == 2
    assert result.stderr.startswith(f"{ERROR}say what to requeue: IDs")
    result = rk(var_dir, "queue", "requeue", "shunt", "--all", f"{OLD}+{'a' * 40}")
    assert result.returncode == 2
    assert "not IDs and more" in result.stderr


def test_requeue_from_bad_needs_a_queue_unless_the_entry_names_one(
    site: Site, var_dir: Path
) -> None:
    # Preserved by hand (no reason, no whichq): nothing says where it belongs.
    bad = site.switchboards["bad"].queue_directory
    bad.mkdir(exist_ok=True)
    filebase = f"{OLD}+{'b' * 40}"
    (bad / f"{filebase}.psv").write_bytes(queuefile.encode(message("stray"), {"listid": "a.b"}))
    result = rk(var_dir, "queue", "requeue", "bad", filebase)
    assert result.returncode == 1
    assert result.stderr == (
        f"{ERROR}{filebase}: not requeued: its metadata names no queue it came from; "
        "name one with --to; left in 'bad'\n"
    )
    assert bad_files(site) == [f"{filebase}.psv"]
    result = rk(var_dir, "queue", "requeue", "bad", filebase, "--to", "out")
    assert result.returncode == 0, result.stderr
    assert [str(msg["Subject"]) for msg, _ in queued(site, "out")] == ["stray"]
    assert bad_files(site) == []
    assert rk(var_dir, "queue", "requeue", "bad", "--all", "--to", "nosuch").returncode == 2


def test_requeue_from_bad_goes_where_it_was_preserved_from(site: Site, var_dir: Path) -> None:
    shunt_dir = site.switchboards["shunt"].queue_directory
    shunt_dir.rmdir()
    shunt_dir.write_text("in the way\n")
    try:
        run_fragile(site, (message("poison"), "ant@example.com"))
    finally:
        shunt_dir.unlink()
        shunt_dir.mkdir()
    result = rk(var_dir, "queue", "requeue", "bad", "--match", "poison")
    assert result.returncode == 0, result.stderr
    assert " from 'bad' to 'pipeline' as " in result.stdout
    assert [str(msg["Subject"]) for msg, _ in queued(site, "pipeline")] == ["poison"]
    assert bad_files(site) == []  # the reason went with its entry


def test_requeue_refuses_a_damaged_entry_and_leaves_it(site: Site, var_dir: Path) -> None:
    filebase = damage_in_pipeline(site, "broken")
    run_fragile(site)
    result = rk(var_dir, "queue", "requeue", "bad", "--all")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{ERROR}{filebase}: not requeued: it cannot be read (")
    assert "left in 'bad'" in result.stderr
    assert bad_files(site) == [f"{filebase}.psv", f"reasons/{filebase}.reason"]
    assert queued(site, "pipeline") == []


def test_requeue_of_a_missing_id_is_an_error_after_the_rest(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    [shunted] = _shunt_entries(site)
    ghost = f"{OLD}+{'c' * 40}"
    result = rk(var_dir, "queue", "requeue", "shunt", ghost, shunted.filebase)
    assert result.returncode == 1
    assert result.stdout.startswith(f"requeued {shunted.filebase} from 'shunt' to 'pipeline'")
    assert result.stderr == (
        f"{ERROR}no entry '{ghost}' in queue 'shunt'; see 'runnerkit queue list shunt'\n"
    )
    assert len(queued(site, "pipeline")) == 1
    document = json.loads(rk(var_dir, "queue", "requeue", "shunt", ghost, "--json").stdout)
    assert document == {"missing": [ghost], "refused": [], "requeued": []}


def test_requeue_loses_nothing_when_the_target_cannot_take_it(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    [shunted] = _shunt_entries(site)
    # No file of the command's may grow beyond 64 bytes: the queue file cannot be written.
    result = subprocess.run(
        [*console_script(), "queue", "requeue", "shunt", shunted.filebase],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment(var_dir),
        timeout=DEADLINE,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64)),
    )
    assert result.returncode == 1
    assert f"{shunted.filebase}: not requeued: cannot queue it in 'pipeline': " in result.stderr
    assert "left in 'shunt'" in result.stderr
    # Where it was, as it was, under its own id.
    assert [entry.filebase for entry in _shunt_entries(site)] == [shunted.filebase]
    [(msg, metadata)] = queued(site, "shunt")
    assert msg["Subject"] == "poison"
    assert metadata["whichq"] == "pipeline"
    assert metadata["shunt_reason"] == "ValueError: cannot digest\\npoison"
    assert queued(site, "pipeline") == []
    assert sorted(p.name for p in site.switchboards["pipeline"].queue_directory.iterdir()) == []


# queue discard.


def test_discard_refuses_without_a_terminal_or_yes(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    result = rk(var_dir, "queue", "discard", "shunt", "--all")
    assert result.returncode == 2
    assert "give --yes" in result.stderr
    assert len(queued(site, "shunt")) == 1


def test_discard_with_yes_removes_entries_and_their_reasons(site: Site, var_dir: Path) -> None:
    damaged = damage_in_pipeline(site, "broken")
    run_fragile(site, (message("poison"), "ant@example.com"))
    [shunted] = _shunt_entries(site)
    result = rk(var_dir, "queue", "discard", "bad", damaged, "--yes")
    assert (result.returncode, result.stdout) == (0, f"discarded {damaged} from 'bad'\n")
    assert bad_files(site) == []
    result = rk(var_dir, "queue", "discard", "shunt", "--all", "-y", "--json")
    assert json.loads(result.stdout) == {"discarded": [shunted.filebase], "missing": []}
    assert queued(site, "shunt") == []
    assert sorted(p.name for p in site.switchboards["shunt"].queue_directory.iterdir()) == []


@pytest.mark.parametrize(("answer", "kept"), [("n", 1), ("y", 0)])
def test_discard_asks_on_a_terminal(site: Site, var_dir: Path, answer: str, kept: int) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [*console_script(), "queue", "discard", "shunt", "--all"],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=environment(var_dir),
        )
        os.close(secondary)
        seen = _read_until(primary, b"for good? [y/N]: ")
        assert b"Discard 1 entry of queue 'shunt' for good?" in seen
        os.write(primary, answer.encode() + b"\n")
        assert process.wait(timeout=DEADLINE) == (0 if answer == "y" else 1)
    finally:
        os.close(primary)
    assert len(queued(site, "shunt")) == kept


def test_unshunt_drops_the_record_of_the_failure(site: Site, var_dir: Path) -> None:
    run_fragile(site, (message("poison"), "ant@example.com"))
    result = rk(var_dir, "unshunt")
    assert (result.returncode, result.stdout) == (0, "moved 1 message(s) back; 0 left in shunt\n")
    [(_, metadata)] = queued(site, "pipeline")
    assert not {"whichq", "shunt_reason", "shunt_runner", "shunt_time"} & set(metadata)


def test_unshunt_leaves_an_entry_it_cannot_requeue_under_its_own_id(
    site: Site, var_dir: Path
) -> None:
    shunt = site.switchboards["shunt"]
    kept = shunt.enqueue(message("for a queue that went away"), whichq="digest")
    for _ in range(2):
        result = rk(var_dir, "unshunt")
        assert result.returncode == 1
        assert f"{kept}: unknown queue 'digest', left in shunt" in result.stderr
        # The same entry, not a new one: its age and --older-than still hold.
        assert shunt.files == [kept]


def test_a_preserved_entry_held_by_one_command_is_not_requeued_by_another(
    site: Site, var_dir: Path
) -> None:
    """Two requeues of bad at once queued every message twice (RQ's requeue race)."""
    filebase = site.switchboards["bad"].enqueue(message("in bad"), whichq="pipeline")
    bad = site.switchboards["bad"]
    # As a runner preserves it: a .psv, with its reason.
    bad.dequeue(filebase)
    bad.finish(filebase, preserve=True, reason="ValueError: x")
    with bad.preserved_held(filebase):
        result = rk(var_dir, "queue", "requeue", "bad", "--all", "--to", "pipeline")
        assert result.returncode == 1
        assert "is being handled by another command" in result.stderr
        assert queued(site, "pipeline") == []
    result = rk(var_dir, "queue", "requeue", "bad", "--all", "--to", "pipeline")
    assert (result.returncode, result.stderr) == (0, "")
    assert len(queued(site, "pipeline")) == 1
    assert bad_files(site) == []


def test_concurrent_requeues_of_bad_queue_each_message_once(site: Site, var_dir: Path) -> None:
    bad = site.switchboards["bad"]
    for number in range(20):
        filebase = bad.enqueue(message(f"m{number}"), whichq="pipeline")
        bad.dequeue(filebase)
        bad.finish(filebase, preserve=True, reason="ValueError: x")
    command = [*console_script(), "queue", "requeue", "bad", "--all", "--to", "pipeline"]
    children = [
        subprocess.Popen(
            command, env=environment(var_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    for child in children:
        child.communicate(timeout=DEADLINE)
    subjects = sorted(str(msg["subject"]) for msg, _ in queued(site, "pipeline"))
    assert subjects == sorted(f"m{number}" for number in range(20))
    assert bad_files(site) == []


def test_discarding_the_id_of_an_entry_removed_by_hand_removes_its_reason(
    site: Site, var_dir: Path
) -> None:
    bad = site.switchboards["bad"]
    filebase = bad.enqueue(message("removed by hand"))
    bad.dequeue(filebase)
    bad.finish(filebase, preserve=True, reason="ValueError: x")
    (bad.queue_directory / f"{filebase}.psv").unlink()
    assert bad_files(site) == [f"reasons/{filebase}.reason"]
    result = rk(var_dir, "queue", "discard", "bad", filebase, "--yes")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"removed the reason of {filebase}, whose entry was gone\n"
    assert bad_files(site) == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("inject",), ["-q, --queue QUEUE", "-l, --list LISTNAME"]),
        (("queue", "list"), ["--list LISTNAME", "--older-than DURATION", "--match SUBSTRING"]),
        (("queue", "requeue"), ["--to QUEUE", "--list LISTNAME", "[OPTIONS] QUEUE [ID]..."]),
        (("queue", "discard"), ["-y, --yes", "--older-than DURATION", "[OPTIONS] QUEUE [ID]..."]),
    ],
)
def test_metavars_are_the_same_across_commands(
    var_dir: Path, command: tuple[str, ...], shown: list[str]
) -> None:
    text = rk(var_dir, *command, "--help").stdout
    for fragment in shown:
        assert fragment in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (61, "1m1s"),
        (3600, "1h"),
        (3605, "1h5s"),
        (2 * 86400 + 7300, "2d2h"),
    ],
)
def test_ages_are_written_as_durations(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown
    assert as_duration(shown).total_seconds() <= seconds


# Helpers.


class _Shunted:
    def __init__(self, filebase: str, path: Path) -> None:
        self.filebase = filebase
        self.path = path


def _shunt_entries(site: Site) -> list[_Shunted]:
    switchboard = site.switchboards["shunt"]
    return [
        _Shunted(filebase, switchboard.queue_directory / f"{filebase}.pck")
        for filebase in switchboard.files
    ]


def _entries_with(var_dir: Path, queue: str, *options: str) -> list[dict[str, Any]]:
    result = rk(var_dir, "queue", "list", queue, "--json", *options)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)["entries"]
    return found


def _read_until(fd: int, wanted: bytes) -> bytes:
    """What the terminal *fd* shows, up to *wanted*, within the deadline."""
    seen = b""
    deadline = time.monotonic() + DEADLINE
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, seen
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            seen += os.read(fd, 1024)
    return seen


@pytest.mark.parametrize(
    "args",
    [
        ("unshunt",),
        ("queue", "requeue", "shunt", "--all"),
        ("queue", "discard", "bad", "--all", "--yes"),
    ],
)
def test_a_command_that_changes_a_site_needs_one_that_exists(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A typo in --var-dir made these report 'nothing to do' over a new empty site."""
    missing = tmp_path / "typo"
    result = rk(missing, *args)
    assert result.returncode == 2
    assert f"the var dir {str(missing)!r}" in result.stderr
    assert "does not exist; this command works on a site" in result.stderr
    assert not missing.exists()


def test_8bit_header_bytes_read_as_utf8_and_the_rest_escaped_alike_in_list_and_show(
    site: Site, var_dir: Path
) -> None:
    # Raw 8-bit bytes in the header (RFC 6532): UTF-8 where they are, two stray bytes.
    msg = message_from_bytes(
        b"From: Ren\xc3\xa9e <ren\xc3\xa9e@example.com>\n"
        b"Subject: caf\xc3\xa9 \xc3\xa9t\xc3\xa9 \xff\xfe bytes\n\nbody\n"
    )
    filebase = site.switchboards["shunt"].enqueue(msg, whichq="pipeline")
    shown = "café été \\xff\\xfe bytes"
    listed = rk(var_dir, "queue", "list", "shunt")
    assert listed.returncode == 0, listed.stderr
    assert shown in listed.stdout
    assert "\u00c3" not in listed.stdout
    assert "\ufffd" not in listed.stdout
    result = rk(var_dir, "queue", "show", "shunt", filebase)
    assert result.returncode == 0, result.stderr
    assert f"subject   : {shown}\n" in result.stdout
    assert "\u00c3" not in result.stdout
    [entry] = entries(var_dir, "shunt")
    assert entry["subject"] == shown
    # The sender's address too, as it reads, the same in the three.
    assert "renée@example.com" in listed.stdout
    assert "sender    : renée@example.com\n" in result.stdout
    assert entry["sender"] == "renée@example.com"
