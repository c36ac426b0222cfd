"""Output normalisers: what each one rewrites and leaves alone, how documents and
examples turn them on and off, their errors, and accept mode writing their output.

The rules are documented in :mod:`runnerkit.testing.normalize`; the pytester tests
run small projects with ``collect_specs`` as a downstream project would.
"""

from __future__ import annotations

import doctest
import os
import textwrap
from pathlib import Path

import pytest

from runnerkit.errors import HarnessError
from runnerkit.streams import foreign_filebase
from runnerkit.switchboard import QueueClock, check_filebase, new_filebase
from runnerkit.testing import NormalizingOutputChecker, World, output_checker
from runnerkit.testing.normalize import (
    BUILTIN_FLAGS,
    NORMALIZE_ALL,
    NORMALIZE_FILEBASES,
    NORMALIZE_MESSAGE_IDS,
    NORMALIZE_PIDS,
    NORMALIZE_TIMESTAMPS,
    NORMALIZE_VAR_DIR,
    NORMALIZE_WORK_DIR,
    expand_all,
    flag_name,
    normalize_filebases,
    normalize_message_ids,
    normalize_pids,
    normalize_timestamps,
    normalize_var_dir,
    user_normalizers,
)

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")


# What each built-in normaliser rewrites, and what it leaves alone.


def test_filebases_of_every_kind_runnerkit_makes() -> None:
    made = new_filebase(QueueClock())
    foreign = foreign_filebase("runnerkit:in:0", "1764491453123-0")
    mailman = "1764491453.1234567+" + "ab" * 20
    for filebase in (made, foreign, mailman, "1764491453+" + "0" * 40):
        check_filebase(filebase)
        assert normalize_filebases(f"{filebase}.pck") == "<FILEBASE>.pck"
    assert normalize_filebases(f"in: {made}, {foreign}") == "in: <FILEBASE>, <FILEBASE>"


def test_filebases_leave_near_misses_alone() -> None:
    for text in (
        "1764491453.5+" + "a" * 39,  # 39 digits
        "1764491453.5+" + "A" * 40,  # upper case: not a file base
        "1764491453.5+" + "a" * 41,
        "v1.2+" + "a" * 40 + "z",
    ):
        assert normalize_filebases(text) == text


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-30T08:30:53",
        "2026-11-30T08:30",
        "2026-11-30 08:30:53.123456",
        "2026-11-30 08:30:53,123",
        "2026-11-30T08:30:53Z",
        "2026-11-30T08:30:53+00:00",
        "2026-11-30T08:30:53.5-0530",
        "Mon, 30 Nov 2026 08:30:53 +0000",
        "30 Nov 2026 08:30 -0000",
        "Mon, 30 Nov 2026 08:30:53 GMT",
        "20261130T083053Z",
        "20261130T083053,5+0100",
        "20261130T0830Z",
        "2026-11-30t08:30:53z",
        "2026-11-30 08:30:53 +0000",
        "2026-11-30T08:30:53-05:00",
        "30/Nov/2026:08:30:53 +0000",
    ],
)
def test_timestamps(stamp: str) -> None:
    assert normalize_timestamps(f'"time": "{stamp}".') == '"time": "<TIMESTAMP>".'


def test_timestamps_in_file_names_and_after_labels() -> None:
    text = (
        "backup-20261130T151534Z.tar app_20261130T151534Z.log ts:2026-11-30T08:30:53Z"
        " app.log.20261130T162731Z"
    )
    assert normalize_timestamps(text) == (
        "backup-<TIMESTAMP>.tar app_<TIMESTAMP>.log ts:<TIMESTAMP> app.log.<TIMESTAMP>"
    )


def test_what_follows_a_timestamp_is_its_zone_only_when_it_can_be_one() -> None:
    # A range's end, or a number after a basic-format time, is not a zone offset.
    assert normalize_timestamps("2026-11-30 15:15-17:45") == "<TIMESTAMP>-17:45"
    assert normalize_timestamps("run-20261130T151534-12.log") == "run-<TIMESTAMP>-12.log"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30",
        "08:30:53",
        "1764491453.123456789",
        "30 Nov 2026",
        "v2026-11-30T08",
        "20261130",
        "x20261130T083053Z",
        "30/Nov/2026",
        "12345678T123456",
        "20261330T083053Z",
        "20261130T253053Z",
        "1234-56-78 90:12",
        "1.2026-11-30T08:30",
    ],
)
def test_timestamps_leave_dates_times_and_seconds_alone(text: str) -> None:
    assert normalize_timestamps(text) == text


def test_message_ids_after_their_labels_only() -> None:
    text = textwrap.dedent(
        """\
        From: Anne <anne@example.com>
        Message-ID: <1.2.3@host.example.com>
        In-Reply-To: <a@b>
        References: <one@x> <two@x>
         <three@x>
        Reply-To: <anne@example.com>
        message_id     : <m@x>
        {'message-id': '<d@x>', 'sender': '<anne@example.com>'}
        outcome=delivered message_id=<log@x> list=ants.example.com
        resent_message_id = <r@x>
        """
    )
    assert normalize_message_ids(text) == textwrap.dedent(
        """\
        From: Anne <anne@example.com>
        Message-ID: <MESSAGE-ID>
        In-Reply-To: <MESSAGE-ID>
        References: <MESSAGE-ID> <MESSAGE-ID>
         <MESSAGE-ID>
        Reply-To: <anne@example.com>
        message_id     : <MESSAGE-ID>
        {'message-id': '<MESSAGE-ID>', 'sender': '<anne@example.com>'}
        outcome=delivered message_id=<MESSAGE-ID> list=ants.example.com
        resent_message_id = <MESSAGE-ID>
        """
    )


def test_message_ids_leave_unlabelled_ones_and_lookalike_labels_alone() -> None:
    for text in (
        "<abc@example.com>",
        "Message-ID-ish: <a@b>",
        "x_message_id: <a@b>",
        "Message-ID: not-a-msg-id",
        "Message-ID:\n<a@b>",
    ):
        assert normalize_message_ids(text) == text


def test_pids() -> None:
    assert normalize_pids("master started with pid 4242") == "master started with pid <PID>"
    assert normalize_pids("(pid=17) PID: 9 Pid 3") == "(pid=<PID>) PID: <PID> Pid <PID>"
    assert normalize_pids('{"master_pid": 12, "pid": 13}') == '{"master_pid": <PID>, "pid": <PID>}'
    assert normalize_pids("{'runner_pid': 12}") == "{'runner_pid': <PID>}"
    assert normalize_pids("2026-11-30 08:30:53,123 4242 runnerkit INFO: x") == (
        "2026-11-30 08:30:53,123 <PID> runnerkit INFO: x"
    )
    assert (
        normalize_pids("<TIMESTAMP> 4242 runnerkit INFO: x")
        == "<TIMESTAMP> <PID> runnerkit INFO: x"
    )


def test_pids_leave_unlabelled_numbers_alone() -> None:
    for text in ("4242", "rapid 5", "pids 5", "pid x5", "pid 12abc", "copid 3", "at 2026 4242 x"):
        assert normalize_pids(text) == text


def test_var_dir_as_written_and_as_its_real_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    text = f"{link}/queue {real}/logs {link}-old {link}.bak {link}. ({link}), {link}"
    assert normalize_var_dir(text, link) == (
        f"$VAR_DIR/queue $VAR_DIR/logs {link}-old {link}.bak $VAR_DIR. ($VAR_DIR), $VAR_DIR"
    )
    assert normalize_var_dir(text, None) == text


def test_every_normaliser_is_idempotent_and_leaves_placeholders_alone(tmp_path: Path) -> None:
    checker = output_checker(var_dir=lambda: tmp_path)
    text = (
        f"{tmp_path}/queue/in/{new_filebase(QueueClock())}.pck\n"
        "Message-ID: <x@y>\nDate: Mon, 30 Nov 2026 08:30:53 +0000\n(pid 12)\n"
    )
    once = checker.normalize(text, NORMALIZE_ALL)
    assert once == (
        "$VAR_DIR/queue/in/<FILEBASE>.pck\n"
        "Message-ID: <MESSAGE-ID>\nDate: <TIMESTAMP>\n(pid <PID>)\n"
    )
    assert checker.normalize(once, NORMALIZE_ALL) == once


def test_each_flag_turns_on_its_own_normaliser_only(tmp_path: Path) -> None:
    checker = output_checker(var_dir=lambda: tmp_path)
    text = f"{tmp_path} 1+{'a' * 40} 2026-11-30T08:30 Message-ID: <a@b> pid 7"
    assert checker.normalize(text, 0) == text
    assert checker.normalize(text, NORMALIZE_VAR_DIR).startswith("$VAR_DIR 1+")
    assert "<FILEBASE>" in checker.normalize(text, NORMALIZE_FILEBASES)
    assert "<TIMESTAMP>" in checker.normalize(text, NORMALIZE_TIMESTAMPS)
    assert "<MESSAGE-ID>" in checker.normalize(text, NORMALIZE_MESSAGE_IDS)
    assert checker.normalize(text, NORMALIZE_PIDS).endswith("pid <PID>")
    assert checker.normalize(text, NORMALIZE_ALL) == (
        "$VAR_DIR <FILEBASE> <TIMESTAMP> Message-ID: <MESSAGE-ID> pid <PID>"
    )


def test_expand_all_replaces_the_all_flag_by_each_builtin_flag() -> None:
    flags = expand_all(doctest.ELLIPSIS | NORMALIZE_ALL)
    assert not flags & NORMALIZE_ALL
    assert flags == doctest.ELLIPSIS | sum(BUILTIN_FLAGS.values())
    assert expand_all(doctest.ELLIPSIS) == doctest.ELLIPSIS


# The checker, with and without a world.


def test_the_checker_compares_normalised_outputs_and_reports_them(tmp_path: Path) -> None:
    checker = output_checker(var_dir=lambda: tmp_path)
    flags = NORMALIZE_VAR_DIR | doctest.ELLIPSIS
    assert checker.check_output("$VAR_DIR/queue\n", f"{tmp_path}/queue\n", flags)
    assert checker.check_output("$VAR_DIR/...\n", f"{tmp_path}/logs/x\n", flags)
    assert not checker.check_output("$VAR_DIR/queue\n", f"{tmp_path}/logs\n", flags)
    assert not checker.check_output("$VAR_DIR/queue\n", f"{tmp_path}/queue\n", doctest.ELLIPSIS)
    example = doctest.Example("print(path)\n", "$VAR_DIR/queue\n")
    report = checker.output_difference(example, f"{tmp_path}/logs\n", flags)
    assert "$VAR_DIR/logs" in report
    assert str(tmp_path) not in report


def test_the_var_dir_is_the_current_worlds_and_none_without_one() -> None:
    checker = NormalizingOutputChecker()
    with World() as world:
        assert checker.normalize(f"{world.var_dir}/x", NORMALIZE_VAR_DIR) == "$VAR_DIR/x"
        path = str(world.var_dir)
    assert checker.normalize(f"{path}/x", NORMALIZE_VAR_DIR) == f"{path}/x"


def test_the_work_dir_is_the_current_worlds_once_made() -> None:
    checker = NormalizingOutputChecker()
    with World() as world:
        outside = world.var_dir.parent / "x"
        # Not made yet: nothing to replace, and nothing is made by looking.
        assert checker.normalize(f"{outside}", NORMALIZE_WORK_DIR) == f"{outside}"
        work_dir = world.work_dir
        text = f"{work_dir}/t.py {os.path.realpath(work_dir)} {work_dir}-old {world.var_dir}"
        assert checker.normalize(text, NORMALIZE_WORK_DIR) == (
            f"$WORK_DIR/t.py $WORK_DIR {work_dir}-old {world.var_dir}"
        )
    assert checker.normalize(f"{work_dir}/x", NORMALIZE_WORK_DIR) == f"{work_dir}/x"


def test_user_normalizers_apply_after_the_builtin_ones_in_their_order() -> None:
    checker = output_checker(
        {"ticket": (r"T-\d+", "T-<N>"), "order-id": (r"T-<N>", r"ticket")}, var_dir=lambda: None
    )
    ticket = doctest.OPTIONFLAGS_BY_NAME["NORMALIZE_TICKET"]
    order = doctest.OPTIONFLAGS_BY_NAME["NORMALIZE_ORDER_ID"]
    assert flag_name("order-id") == "NORMALIZE_ORDER_ID"
    assert checker.normalize("T-12 pid 3", ticket) == "T-<N> pid 3"
    assert checker.normalize("T-12", ticket | order) == "ticket"
    assert checker.normalize("T-12 pid 3", order | NORMALIZE_PIDS) == "T-12 pid <PID>"


@pytest.mark.parametrize(
    ("normalizers", "message"),
    [
        ({"ticket": (r"T-(\d+", "x")}, "normalizer 'ticket' has a pattern that is not a regular"),
        ({"ticket": (r"T-\d+", r"\1")}, "normalizer 'ticket' has a replacement that re.sub"),
        ({"ticket": (r"T-\d+", r"\g<n>")}, "normalizer 'ticket' has a replacement that re.sub"),
        ({"Ticket": (r"T", "x")}, "normalizer name 'Ticket' is malformed"),
        ({"a_b": (r"T", "x")}, "normalizer name 'a_b' is malformed"),
        ({"pids": (r"T", "x")}, "normalizer name 'pids' is a built-in one's"),
        ({"all": (r"T", "x")}, "normalizer name 'all' is a built-in one's"),
        ({"ticket": r"T-\d+"}, "normalizer 'ticket' must be a (pattern, replacement) pair"),
        ({"whitespace": (r"x", "y")}, "normalizer name 'whitespace' would be doctest's own"),
        ({"num": (r"\d+", "<N1>")}, "normalizer 'num' changes its own replacement '<N1>'"),
    ],
)
def test_user_normalizer_errors_name_the_normalizer(normalizers: object, message: str) -> None:
    """(A replacement the pattern matches but leaves as it is, as 0x[0-9a-f]+ leaves
    0xdeadbeef, is allowed.)"""
    user_normalizers({"addr": (r"0x[0-9a-f]+", "0xdeadbeef")})
    with pytest.raises(HarnessError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        user_normalizers(normalizers)  # type: ignore[arg-type]


# Documents and examples, through collect_specs.


def project(pytester: pytest.Pytester, documents: dict[str, str], options: str = "") -> None:
    """A project whose conftest collects ``*.rst`` and ``*.md`` with *options*."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        f'pytest_collect_file = collect_specs(["*.rst", "*.md"]{options})\n'
    )
    for name, text in documents.items():
        (pytester.path / name).write_text(textwrap.dedent(text), encoding="utf-8")


VAR_DIR_DOC = """\
The var dir
===========

.. runnerkit-normalize: var-dir

    >>> print(world.var_dir / 'queue')
    $VAR_DIR/queue
    >>> print(world.var_dir)  # doctest: -NORMALIZE_VAR_DIR
    $VAR_DIR
    >>> print(world.var_dir)  # doctest: -NORMALIZE_VAR_DIR +ELLIPSIS
    /...
    >>> print(config.switchboards['in'].enqueue('Subject: x\\n\\nx\\n'))
    <FILEBASE>
"""


def test_a_document_line_turns_a_normaliser_on_and_an_example_turns_it_off(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, {"doc.rst": VAR_DIR_DOC})

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["FAILED doc.rst::line:8,column:1", "FAILED doc.rst::line:12,column:1"]
    )
    # The failure report of the example with the normaliser on shows normalised output.
    result.stdout.fnmatch_lines(["*Expected:*", "*<FILEBASE>", "*Got:*", "*.*+*"])


def test_markdown_line_all_and_an_example_that_turns_one_off(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        {
            "doc.md": """\
            <!-- runnerkit-normalize: all -->

            ```python
            >>> import os
            >>> print(f'pid {os.getpid()} in {world.var_dir}')
            pid <PID> in $VAR_DIR
            >>> print(f'pid {os.getpid()}')  # doctest: -NORMALIZE_PIDS
            pid <PID>
            ```

            ```python
            >>> print(config.switchboards['in'].enqueue('Subject: x\\n\\nx\\n'))
            <FILEBASE>
            ```
            """
        },
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED doc.md::line:7,column:1"])


def test_normalize_all_in_a_directive_and_one_turned_off_after_it(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        {
            "doc.rst": """\
                >>> import os
                >>> print(f'pid {os.getpid()} {world.var_dir}')  # doctest: +NORMALIZE_ALL
                pid <PID> $VAR_DIR
                >>> print(f'pid {os.getpid()} {world.var_dir}')
                ... # doctest: +NORMALIZE_ALL -NORMALIZE_PIDS
                pid <PID> $VAR_DIR
            """
        },
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED doc.rst::line:4,column:1"])


def test_normalize_all_in_optionflags_can_be_turned_off_by_an_example(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        {
            "doc.rst": """\
                >>> print(world.var_dir)
                $VAR_DIR
                >>> print(world.var_dir)  # doctest: -NORMALIZE_VAR_DIR
                $VAR_DIR
            """
        },
        options=(
            ", optionflags=__import__('doctest').ELLIPSIS"
            " | __import__('runnerkit.testing.normalize').testing.normalize.NORMALIZE_ALL"
        ),
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED doc.rst::line:3,column:1"])


def test_a_user_normalizer_in_a_document_line_and_a_directive(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        {
            "doc.rst": """\
                .. runnerkit-normalize: ticket

                >>> print('opened T-4711')
                opened T-<N>
            """,
            "other.md": """\
            ```python
            >>> print('opened T-4711')  # doctest: +NORMALIZE_TICKET
            opened T-<N>
            >>> print('opened T-4711')
            opened T-<N>
            ```
            """,
        },
        options=', normalizers={"ticket": (r"T-\\d+", "T-<N>")}',
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED other.md::line:4,column:1"])


def test_an_unknown_name_in_a_document_line_is_a_collection_error(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        {
            "doc.rst": """\
                Text.

                .. runnerkit-normalize: var-dir, filebase

                >>> 1
                1
            """
        },
        options=', normalizers={"ticket": ("T", "t")}',
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*HarnessError: *doc.rst, line 3: unknown normalizer 'filebase' in"
            " runnerkit-normalize: known ones are all, filebases, message-ids, pids,"
            " ticket, timestamps, var-dir, work-dir"
        ]
    )


def test_an_unknown_name_is_an_error_in_a_document_without_doctests_too(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        {"doc.md": "<!-- runnerkit-normalize: -->\n\n```python\nx = 1\n```\n"},
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*HarnessError: *doc.md, line 1: runnerkit-normalize names no normalizer: name one*"]
    )


def test_a_directive_naming_an_unregistered_normaliser_is_doctests_error(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, {"doc.rst": "    >>> 1  # doctest: +NORMALIZE_NOTHING_SUCH\n    1\n"})

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*has an invalid option: '+NORMALIZE_NOTHING_SUCH'*"])


def test_a_bad_user_pattern_stops_the_run_naming_it(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        {"doc.rst": "    >>> 1\n    1\n"},
        options=', normalizers={"ticket": ("T-(", "x")}',
    )

    result = pytester.runpytest(*QUIET)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*HarnessError: normalizer 'ticket' has a pattern that is not a regular expression:*"]
    )


ACCEPT_DOC = """\
The queue
=========

.. runnerkit-normalize: var-dir, filebases

    >>> filebase = config.switchboards['in'].enqueue('Subject: x\\n\\nx\\n')
    >>> print(config.switchboards['in'].queue_directory / f'{filebase}.pck')
    somewhere
    >>> import os
    >>> print(f'started (pid {os.getpid()})')  # doctest: +NORMALIZE_PIDS
    started
"""


def test_accept_writes_the_normalised_output_and_the_next_run_passes(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, {"doc.rst": ACCEPT_DOC})

    result = pytester.runpytest(*QUIET, "--spec-accept")

    result.assert_outcomes(passed=2, failed=2)
    text = (pytester.path / "doc.rst").read_text()
    assert text == ACCEPT_DOC.replace("somewhere", "$VAR_DIR/queue/in/<FILEBASE>.pck").replace(
        "    started\n", "    started (pid <PID>)\n"
    )
    pytester.runpytest(*QUIET).assert_outcomes(passed=4)


def test_accept_writes_a_normalised_exception_message(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        {
            "doc.rst": """\
                >>> raise ValueError(f'no such file: {world.var_dir}/x')
                ... # doctest: +NORMALIZE_VAR_DIR
            """
        },
    )

    pytester.runpytest(*QUIET, "--spec-accept", "--spec-accept-exceptions")

    assert (
        (pytester.path / "doc.rst")
        .read_text()
        .endswith(
            "\nTraceback (most recent call last):\n...\nValueError: no such file: $VAR_DIR/x\n"
        )
    )
    pytester.runpytest(*QUIET).assert_outcomes(passed=1)


@pytest.mark.slow
def test_normalisers_and_accept_under_xdist(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        {"first.rst": ACCEPT_DOC, "second.md": "```python\n>>> print(world.var_dir)\nx\n```\n"},
        options=', normalizers={"ticket": (r"T-\\d+", "T-<N>")}',
    )
    (pytester.path / "second.md").write_text(
        "<!-- runnerkit-normalize: var-dir ticket -->\n\n"
        "```python\n>>> print(world.var_dir, 'T-1')\nx\n```\n"
    )

    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--spec-accept")

    result.assert_outcomes(passed=2, failed=3)
    assert "$VAR_DIR/queue/in/<FILEBASE>.pck" in (pytester.path / "first.rst").read_text()
    assert (
        ">>> print(world.var_dir, 'T-1')\n$VAR_DIR T-<N>\n```"
        in (pytester.path / "second.md").read_text()
    )
    pytester.runpytest_subprocess(*QUIET, "-n", "2").assert_outcomes(passed=5)


def test_normalising_needs_no_world(tmp_path: Path) -> None:
    checker = output_checker()
    path = f"{tmp_path}{os.sep}x"
    assert checker.check_output(path, path, NORMALIZE_VAR_DIR)
    assert checker.check_output("pid <PID>\n", "pid 3\n", NORMALIZE_PIDS)


def test_a_markdown_line_inside_a_fence_is_shown_not_obeyed(pytester: pytest.Pytester) -> None:
    """A spec that teaches the line shows it in a fence: there it turns nothing on."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        'pytest_collect_file = collect_specs(["*.md"])\n'
    )
    (pytester.path / "lit.md").write_text(
        "Write:\n\n```markdown\n<!-- runnerkit-normalize: var-dir -->\n```\n\n"
        "```pycon\n>>> print(config.paths.var_dir)  # doctest: +ELLIPSIS\n/...\n```\n",
        encoding="utf-8",
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
