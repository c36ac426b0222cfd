"""Console sessions: ``console`` blocks whose commands run, checked against their output.

The plugin is tested as a user meets it: a small project written with pytester, whose
conftest collects its documents with ``collect_specs``, run with pytest.  The block
reading and the directives are tested as plain functions.
"""

from __future__ import annotations

import doctest
import os
import textwrap
import time
from pathlib import Path

import pytest

from runnerkit.config import Configuration
from runnerkit.errors import ConfigurationError, ConsoleSyntaxError
from runnerkit.testing import World
from runnerkit.testing.console_check import written_want
from runnerkit.testing.console_session import (
    Command,
    parse_directives,
    shell_comments,
    split_session,
)

pytest_plugins = ["pytester"]

SPECS_CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["*.rst", "*.md"])
"""


def write(pytester: pytest.Pytester, name: str, text: str, conftest: str = SPECS_CONFTEST) -> Path:
    """Write *conftest* and the document *name*, returning the document's path."""
    pytester.makeconftest(conftest)
    path = pytester.path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# Reading blocks.


def test_a_session_is_split_into_commands_with_their_output() -> None:
    parts = split_session(
        [
            "# a comment for the reader",
            "",
            "$ echo one",
            "one",
            "",
            "two",
            "",
            "",
            "$ printf 'a b' \\",
            "    'c'",
            "a b",
            "c",
            "$ cat <<EOF",
            "> x",
            ">",
            "> EOF",
            "$ false",
            "[exit 1]",
        ]
    )

    assert [(p.line, p.command_lines, p.output_lines) for p in parts] == [
        (2, 1, 3),
        (8, 2, 2),
        (12, 4, 0),
        (16, 1, 1),
    ]
    assert [p.source for p in parts] == [
        "echo one",
        "printf 'a b' \\\n    'c'",
        "cat <<EOF\nx\n\nEOF",
        "false",
    ]
    assert parts[0].want == "one\n\ntwo\n"
    assert parts[2].want == ""


def test_text_before_the_first_command_is_refused() -> None:
    with pytest.raises(ConsoleSyntaxError, match=r"line 2 of the block, 'output\?'"):
        split_session(["# fine", "output?", "$ echo"])


def test_a_prompt_without_a_command_is_refused() -> None:
    with pytest.raises(ConsoleSyntaxError, match="line 1 of the block is a prompt without"):
        split_session(["$", "out"])


def test_a_block_without_commands_has_no_examples() -> None:
    assert split_session(["# only", "# comments"]) == []
    # Output shown on its own, or a prompt of another shape, is a block to read.
    assert split_session(["total 0", "drwxr-xr-x 2 anne anne 40 ."]) == []
    assert split_session(["user@host:~$ echo hi", "hi"]) == []
    assert split_session([">>> 1 + 1", "2"]) == []


def test_directives_set_flags_and_a_timeout() -> None:
    options, timeout = parse_directives(
        ["runnerkit status  # timeout: 2.5; doctest: -ELLIPSIS, +REPORT_UDIFF"]
    )

    assert options == {doctest.ELLIPSIS: False, doctest.REPORT_UDIFF: True}
    assert timeout == 2.5
    assert parse_directives(["echo '# a plain comment'  # not: a directive"]) == ({}, None)


@pytest.mark.parametrize(
    ("line", "goes_on"),
    [
        ("echo a \\", True),
        ('echo "a \\', True),
        ("echo C:\\\\", False),
        ("echo hi  # a note that ends in a backslash \\", False),
        ("echo 'a \\", False),
        ('echo "a"#b \\', True),
    ],
)
def test_a_backslash_goes_on_to_the_next_line_only_where_the_shell_says(
    line: str, goes_on: bool
) -> None:
    parts = split_session([f"$ {line}", "next", "$ echo done", "done"])
    if goes_on:
        assert [p.source for p in parts] == [f"{line}\nnext", "echo done"]
    else:
        assert [(p.source, p.want) for p in parts] == [(line, "next\n"), ("echo done", "done\n")]


@pytest.mark.parametrize(
    ("source", "comments"),
    [
        ("echo hi  # doctest: +ELLIPSIS", ["# doctest: +ELLIPSIS"]),
        ("echo a;# after a semicolon", ["# after a semicolon"]),
        ("# alone", ["# alone"]),
        # Quoted, escaped or inside a word: no comment.
        ("echo 'a # doctest: +SKIP'", []),
        ('echo "wait # timeout: 5"', []),
        ("echo \\# x", []),
        ("echo a#b", []),
        ("x=$((16#ff)); echo ${#x}", []),
        ("echo ${x:-a #b} # c", ["# c"]),
        ('echo "${x#*/}" ${y##* } # c', ["# c"]),
        # Quotes that span lines, as a '> ' line goes on with them.
        ("printf '%s\\n' 'a # doctest: +SKIP\nb'; exit 3", []),
        ("echo \"$(echo 'a # b') # c\"  # d", ["# d"]),
        # A here-document's lines are data; the shell goes on after its delimiter.
        ("cat <<EOF\n# timeout: 1\nEOF\necho x # timeout: 2", ["# timeout: 2"]),
        ("cat <<-'EOF'\n\t# data\n\tEOF\necho # code", ["# code"]),
        ('cat << "END" # code\n# data\nEND', ["# code"]),
        ("cat <<< '# a here-string' # code", ["# code"]),
        ("cat <<EOF\n# data, and no delimiter", []),
        ('cat <<E"OF"\nE\n# data\nEOF\necho # code', ["# code"]),
        ("echo $((1<<2))\nsleep 3 # timeout: 1", ["# timeout: 1"]),
        ('echo "$( (sleep 2); echo " # text\n" )"', []),
        ("echo $(echo a) # code", ["# code"]),
        # Right after a closing quote or substitution, # goes on with the word.
        ('echo "a"# x', []),
        ("echo $(echo a)# x", []),
        ('echo "${x}"#y "$(echo a)"#z', []),
        ('x=; echo "${x:-"a # b"}"', []),
        ("(echo a)# code", ["# code"]),
    ],
)
def test_comments_are_read_as_the_shell_reads_them(source: str, comments: list[str]) -> None:
    assert shell_comments(source) == comments


def test_a_registered_flag_can_be_named() -> None:
    flag = doctest.register_optionflag("RUNNERKIT_CONSOLE_TEST_FLAG")

    assert parse_directives(["x  # doctest: +RUNNERKIT_CONSOLE_TEST_FLAG"]) == (
        {flag: True},
        None,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x  # doctest: +BOGUS", "unknown doctest option '\\+BOGUS'"),
        ("x  # doctest: ELLIPSIS", "unknown doctest option 'ELLIPSIS'"),
        ("x  # timeout: soon", "timeout 'soon' is not a number of seconds"),
        ("x  # timeout: 0", "timeout '0' is not a number of seconds above 0"),
        ("x  # timeout: 5; colour: red", "cannot read the directive 'colour: red'"),
    ],
)
def test_bad_directives_are_refused(line: str, message: str) -> None:
    with pytest.raises(ConsoleSyntaxError, match=message):
        parse_directives([line])


def test_expected_status_and_output() -> None:
    command = Command(source="false", want="no\n[exit 3]\n")

    assert (command.status, command.output) == (3, "no\n")
    assert (Command(source="true", want="ok\n").status, Command("true", "").output) == (0, "")


def test_output_is_written_back_with_blank_lines_kept_inside_and_marked_at_the_end() -> None:
    assert written_want("a  \n\nb\n\n", 0) == ("a\n\nb\n<BLANKLINE>\n", None)
    assert written_want("$ not a command\n", 0) == (
        None,
        "its output holds a line starting with '$ ', a command",
    )
    assert written_want("50%\r100%\n", 0) == (
        None,
        "its output holds a carriage return, which a text file cannot keep",
    )
    assert written_want("", 0) == ("", None)


def test_a_layer_is_written_as_text_that_reads_back_the_same(tmp_path: Path) -> None:
    config = Configuration()
    config.push("fast", "[runner.out]\ninstances: 2\n[runnerkit]\nimport_path: plugins\n")
    text = config.layer_text("fast")
    other = Configuration()
    other.push_file(tmp_path / "elsewhere.ini", text=text)

    assert other.runner("out").instances == 2
    assert other.import_path[-1].path == Path.cwd() / "plugins"
    with pytest.raises(ConfigurationError, match="no pushed layer 'slow'"):
        config.layer_text("slow")


def test_a_world_writes_its_layers_as_files_and_removes_them_with_its_work_dir() -> None:
    with World() as world:
        assert world.config_files() == []
        world.config.push("a", "[master]\nstop_timeout: 5s\n")
        world.config.push("b/c", "[master]\nstop_timeout: 6s\n")
        first, second = world.config_files()
        assert (first.name, second.name) == ("a.ini", "b_c.ini")
        assert second.read_text() == "[master]\nstop_timeout: 6s\n"
        world.config.pop("b/c")
        assert world.config_files() == [first]
        assert not second.exists()
        work_dir = world.work_dir
        assert work_dir.is_dir()
        assert list(work_dir.iterdir()) == []
    assert not work_dir.exists()
    assert not first.exists()


# Running sessions.

PASSING = """\
Sessions
========

.. code-block:: console

    $ echo hello
    hello
    $ printf 'one\\n\\ntwo\\n'
    one

    two

    $ echo 'to stderr' >&2; echo 'to stdout'
    to stderr
    to stdout

.. code:: console

    $ sh -c 'exit 3'
    [exit 3]

.. sourcecode:: console

    $ echo one \\
        two
    one two
    $ cat <<EOF
    > a here-document
    >
    > EOF
    a here-document
    <BLANKLINE>

A ``sh`` block is a script to show, not a session to run:

.. code-block:: sh

    $ exit 1
"""


def test_commands_run_and_their_output_is_checked(pytester: pytest.Pytester) -> None:
    write(pytester, "doc.rst", PASSING)

    result = pytester.runpytest("-v")

    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["doc.rst::line:6,column:5 PASSED*"])


def test_markdown_console_fences_are_sessions(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.md",
        """\
        # Sessions

        ```console
        $ echo hello
        hello
        ```

        > ```console
        > $ echo quoted
        > quoted
        > ```

        ```sh
        $ exit 1
        ```
        """,
    )

    pytester.runpytest().assert_outcomes(passed=2)


def test_shell_session_is_another_name_of_a_console_block(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.md",
        """\
        ```shell-session
        $ echo hi
        ho
        ```
        """,
    )
    (pytester.path / "doc.rst").write_text(
        ".. code-block:: shell-session\n\n    $ echo hi\n    hi\n", encoding="utf-8"
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED doc.md::line:2,column:1"])


def test_a_different_output_fails_with_what_was_expected_and_what_came(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            $ echo hello; echo world
            hello
        """,
    )

    result = pytester.runpytest()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*doc.rst, line 3, column 5 did not evaluate as expected:",
            "$ echo hello; echo world",
            "Expected:",
            "    hello",
            "Got:",
            "    hello",
            "    world",
        ]
    )


def test_a_non_zero_exit_fails_unless_expected(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            $ echo trouble; exit 2
            trouble
            $ echo trouble; exit 2
            trouble
            [exit 2]
            $ exit 2
            [exit 1]
        """,
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "$ echo trouble; exit 2",
            "exit status 2, expected 0 (a last line '[exit 2]' expects it)",
            "Its output, as expected:",
            "    trouble",
        ]
    )
    result.stdout.fnmatch_lines(["$ exit 2", "exit status 2, expected 1*"])


def test_flags_default_to_the_sybils_and_a_comment_changes_them(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            $ echo 'pid 1234 started'
            pid ... started
            $ echo 'a    b'
            a b
            $ echo 'pid 1234 started'  # doctest: -ELLIPSIS
            pid ... started
            $ echo 'a    b'  # doctest: -NORMALIZE_WHITESPACE
            a b
        """,
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["FAILED doc.rst::line:7,column:5", "FAILED doc.rst::line:9,column:5"]
    )


def test_an_unknown_flag_is_a_collection_error_naming_the_command(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        Title
        =====

        .. code-block:: console

            $ echo hi  # doctest: +ELIPSIS
            hi
        """,
    )

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*doc.rst, command at line 6, column 5: unknown doctest option '+ELIPSIS'*"]
    )


def test_a_directive_in_quotes_is_text_of_the_command(pytester: pytest.Pytester) -> None:
    # Were these read as directives, the first command would be skipped and pass, the
    # second refused as unknown, the third killed after 0.2 s.
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            $ printf '%s\\n' 'a # doctest: +SKIP
            > b'; exit 3
            wrong
            $ echo 'a # doctest: +SKIP'
            a # doctest: +SKIP
            $ printf '%s\\n' 'c # timeout: 0.2
            > d'; sleep 1; echo done
            c # timeout: 0.2
            d
            done
        """,
    )

    result = pytester.runpytest("-rA")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["exit status 3, expected 0*", "FAILED doc.rst::line:3,*"])


def test_text_before_the_first_command_is_a_collection_error(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            runnerkit status
            $ runnerkit queues
        """,
    )

    result = pytester.runpytest()

    # (A block with no command at all is only shown: see split_session's tests.)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*console block at line 1, column 1: line 1 of the block, 'runnerkit status'*"]
    )


def _gone(pid: int) -> bool:
    """Whether *pid* is gone: no such process, or one that exited (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_a_hung_command_fails_and_its_process_group_is_killed(
    pytester: pytest.Pytester,
) -> None:
    pid_file = pytester.path / "child.pid"
    write(
        pytester,
        "doc.rst",
        f"""\
        .. code-block:: console

            $ sleep 60 & echo $! > {pid_file}; echo waiting; wait  # timeout: 1
            waiting
            $ echo next
            next
        """,
    )
    started = time.monotonic()

    result = pytester.runpytest()

    assert time.monotonic() - started < 30
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "$ sleep 60 & echo $! > *; echo waiting; wait  # timeout: 1",
            "timed out after 1 s; its process group was killed. Its output until then:",
            "    waiting",
        ]
    )
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_command_interrupted_by_a_time_limit_has_its_process_group_killed(
    pytester: pytest.Pytester,
) -> None:
    # pytest-timeout raises in the test's thread while the command runs: the command is
    # stopped then, not left running after pytest exits.
    pid_file = pytester.path / "child.pid"
    write(
        pytester,
        "doc.rst",
        f"""\
        .. code-block:: console

            $ sleep 60 & echo $! > {pid_file}; wait
            $ echo next
            next
        """,
    )

    result = pytester.runpytest_subprocess("--timeout", "2")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout*"])
    assert "IsolationWarning" not in result.stdout.str()
    assert _gone(int(pid_file.read_text()))


def test_a_frozen_clock_does_not_stop_the_time_limit(pytester: pytest.Pytester) -> None:
    # freezegun replaces the clock subprocess keeps: the limit is on the real clock, and
    # so is the grace before SIGKILL, for a command that ignores SIGTERM.
    write(
        pytester,
        "doc.rst",
        """\
        >>> frozen = freeze_time('2020-01-01 00:00')
        >>> _ = frozen.start()

        Then:

        .. code-block:: console

            $ trap '' TERM; sleep 30  # timeout: 0.5
            $ echo next
            next

        And:

        >>> frozen.stop()
        """,
    )
    started = time.monotonic()

    result = pytester.runpytest_subprocess("--timeout", "60")

    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["timed out after 0.5 s; its process group was killed.*"])
    assert time.monotonic() - started < 30


def test_the_timeout_is_an_option_of_the_sybil(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.md",
        """\
        ```console
        $ sleep 10
        ```
        """,
        conftest=SPECS_CONFTEST.replace('"*.md"])', '"*.md"], console_timeout=0.5)'),
    )

    result = pytester.runpytest()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["timed out after 0.5 s*"])


def test_a_command_left_in_the_background_does_not_hold_up_the_session(
    pytester: pytest.Pytester,
) -> None:
    pid_file = pytester.path / "child.pid"
    write(
        pytester,
        "doc.md",
        f"""\
        ```console
        $ sleep 30 & echo $! > {pid_file}; echo started
        started
        $ kill -0 "$(cat {pid_file})" && echo still running
        still running
        ```
        """,
    )
    started = time.monotonic()

    result = pytester.runpytest("-W", "always::runnerkit.testing.isolation.IsolationWarning")

    result.assert_outcomes(passed=2)
    assert time.monotonic() - started < 20
    # Left running by the document, it is stopped at its end, and named.
    child = int(pid_file.read_text())
    assert _gone(child)
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: doc.md left changes behind, which runnerkit undid when it ended:",
            f"*- process {child}, left running by '$ sleep 30 & echo $! > *; echo started'"
            " (line 2), killed",
            "*A process a console command left running is stopped by a later command*",
        ]
    )


def test_what_several_commands_left_is_stopped_together_and_named_by_command(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "doc.md",
        f"""\
        ```console
        $ sleep 61 >/dev/null 2>&1 & echo $! > {pytester.path}/one.pid
        $ sleep 62 >/dev/null 2>&1 & echo $! > {pytester.path}/two.pid
        $ sleep 63 >/dev/null 2>&1 & echo $! > {pytester.path}/three.pid
        ```
        """,
    )

    result = pytester.runpytest("-W", "always::runnerkit.testing.isolation.IsolationWarning")

    result.assert_outcomes(passed=3)
    pids = [int((pytester.path / f"{n}.pid").read_text()) for n in ("one", "two", "three")]
    assert all(_gone(pid) for pid in pids)
    result.stdout.fnmatch_lines(
        [
            f"*- process {pid}, left running by '$ sleep {61 + n} *' (line {2 + n}), killed"
            for n, pid in enumerate(pids)
        ]
    )


def test_what_a_command_leaves_in_its_session_is_stopped_even_in_a_group_of_its_own(
    pytester: pytest.Pytester,
) -> None:
    # A process may leave the command's process group (a shell with job control does),
    # but not its session, unless it makes one of its own.
    pid_file = pytester.path / "child.pid"
    grandchild = (
        "import os, time, sys; os.setpgid(0, 0); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    write(
        pytester,
        "doc.rst",
        f"""\
        .. code-block:: console

            $ python -c "{grandchild}" >/dev/null 2>&1 &
            $ while [ ! -s {pid_file} ]; do sleep 0.05; done
        """,
    )

    result = pytester.runpytest("-W", "always::runnerkit.testing.isolation.IsolationWarning")

    result.assert_outcomes(passed=2)
    child = int(pid_file.read_text())
    assert _gone(child)
    result.stdout.fnmatch_lines(
        [f"*- process {child}, left running by '$ python -c *' (line 3), killed"]
    )


def test_a_daemon_a_command_started_is_stopped_by_the_var_dir_in_its_environment(
    pytester: pytest.Pytester,
) -> None:
    # In a session of its own, it is found by the RUNNERKIT_VAR_DIR it was given.
    daemon = (
        "import os, sys, time; os.fork() and sys.exit(0); os.setsid();"
        " os.fork() and os._exit(0); print(os.getpid(), flush=True); time.sleep(60)"
    )
    write(
        pytester,
        "doc.md",
        f"""\
        ```console
        $ python -c "{daemon}" > daemon.pid; while [ ! -s daemon.pid ]; do sleep 0.05; done
        $ cp daemon.pid {pytester.path}/daemon.pid; echo "$RUNNERKIT_VAR_DIR" > {pytester.path}/var
        ```
        """,
    )

    result = pytester.runpytest("-W", "always::runnerkit.testing.isolation.IsolationWarning")

    result.assert_outcomes(passed=2)
    daemon_pid = int((pytester.path / "daemon.pid").read_text())
    assert _gone(daemon_pid)
    var_dir = (pytester.path / "var").read_text().strip()
    result.stdout.fnmatch_lines(
        [
            f"*- process {daemon_pid} (*python -c*), with RUNNERKIT_VAR_DIR={var_dir} in its"
            " environment, killed"
        ]
    )


def test_a_process_the_document_stopped_itself_is_not_warned_about(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "doc.md",
        """\
        ```console
        $ sleep 30 >/dev/null 2>&1 & echo $! > sleeper.pid
        $ kill "$(cat sleeper.pid)"
        ```
        """,
    )

    result = pytester.runpytest("-W", "error::runnerkit.testing.isolation.IsolationWarning")

    result.assert_outcomes(passed=2)


def test_commands_run_in_the_documents_world(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        A document's world
        ==================

        Commands run in the world's work directory, with its var dir and its layers.

            >>> _ = (world.work_dir / 'var-dir').write_text(str(world.var_dir))
            >>> config.push('slow', '[master]\\nstop_timeout: 17s\\n')

        .. code-block:: console

            $ test "$RUNNERKIT_VAR_DIR" = "$(cat var-dir)" && pwd
            /.../work
            $ runnerkit conf master stop_timeout
            17s
            $ runnerkit conf master stop_timeout --json  # doctest: +ELLIPSIS
            {"value": 17.0, "text": "17s", "layer": "/.../slow.ini", "inherited": false}
            $ echo "$PYTHONUNBUFFERED $(command -v runnerkit)"
            1 .../bin/runnerkit

        Once the layer is popped, commands no longer see it.

            >>> config.pop('slow')

        .. code-block:: console

            $ runnerkit conf master stop_timeout
            30s
            $ runnerkit lists create ant@example.com
            created ant@example.com (list id ant.example.com)

        The document sees the same var dir.

            >>> print(config.lists.get('ant@example.com').list_id)
            ant.example.com
        """,
    )

    pytester.runpytest().assert_outcomes(passed=10)


def test_documents_keep_their_worlds_apart_under_xdist(pytester: pytest.Pytester) -> None:
    for name in ("one", "two", "three"):
        write(
            pytester,
            f"{name}.rst",
            f"""\
            .. code-block:: console

                $ runnerkit lists create {name}@example.com
                created {name}@example.com (list id {name}.example.com)
                $ echo {name} > file; sleep 0.2; cat file
                {name}
                $ runnerkit lists list
                LIST ... MEMBERS
                {name}@example.com ... 0
            """,
        )

    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=9)


def test_only_the_console_parser_runs_sessions(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        "doc.rst",
        """\
        .. code-block:: console

            $ exit 1

            >>> 1 + 1
            2
        """,
        conftest=SPECS_CONFTEST.replace('"*.md"])', '"*.md"], parsers=["doctest"])'),
    )

    pytester.runpytest().assert_outcomes(passed=1)


# Accept mode.

BROKEN = """\
Broken
======

.. code-block:: console

    $ printf 'one\\n\\ntwo\\n'; exit 3
    one
    $ echo fine
    fine

Prose that stays.
"""


def test_accept_rewrites_a_commands_output_and_exit_status(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", BROKEN)

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["doc.rst: rewrote 1 example (line 6)"])
    assert path.read_text() == BROKEN.replace("    one\n", "    one\n\n    two\n    [exit 3]\n")
    pytester.runpytest().assert_outcomes(passed=2)


def test_control_characters_are_output_as_text_that_accept_writes_and_reads_back(
    pytester: pytest.Pytester,
) -> None:
    # A progress line, a colour, a NUL byte, a form feed: escaped as Python writes
    # them, so the failure shows them, and the accepted document is text.
    path = write(
        pytester,
        "doc.md",
        """\
        ```console
        $ printf '50%%\\r100%%\\n\\033[31mred\\033[0m\\n\\000\\014\\n'
        wrong
        $ printf 'a\\r\\n'
        a
        ```
        """,
    )

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=1)
    written = path.read_bytes()
    assert b"\n50%\\r100%\n\\x1b[31mred\\x1b[0m\n\\x00\\x0c\n$ printf" in written
    assert not any(byte < 0x20 and byte not in b"\n" for byte in written)
    pytester.runpytest().assert_outcomes(passed=2)


def test_accept_rewrites_markdown_fences_under_xdist(pytester: pytest.Pytester) -> None:
    text = """\
    # Broken

    > ```console
    > $ echo new
    > old
    > ```

    ```console
    $ echo 'a  '; echo
    ```
    """
    path = write(pytester, "doc.md", text)

    result = pytester.runpytest_subprocess("-n", "2", "--spec-accept", "-p", "no:cacheprovider")

    result.assert_outcomes(failed=2)
    assert path.read_text() == textwrap.dedent(text).replace("> old", "> new").replace(
        "echo\n", "echo\na\n<BLANKLINE>\n"
    )
    pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_accept_diff_shows_the_rewrite_and_changes_nothing(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", BROKEN)

    result = pytester.runpytest("--spec-accept-diff")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "doc.rst: would rewrite 1 example (line 6)",
            "--- a/doc.rst",
            "+++ b/doc.rst",
            "@@ *",
            "     $ printf *",
            "     one",
            "+",
            "+    two",
            "+    [exit 3]",
            "     $ echo fine",
        ]
    )
    assert path.read_text() == BROKEN


def test_accept_does_not_rewrite_a_timeout(pytester: pytest.Pytester) -> None:
    text = """\
    .. code-block:: console

        $ sleep 5  # timeout: 0.2
        done
    """
    path = write(pytester, "doc.rst", text)

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["doc.rst:3: not accepted: the command timed out"])
    assert path.read_text() == textwrap.dedent(text)


# Normalisers.

NORMALIZING_CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(
    ["*.rst"], normalizers={"ticket": (r"T-[0-9]+", "T-<N>")}
)
"""


def test_normalisers_apply_to_commands_by_directive_and_by_document_line(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "normal.rst",
        """\
        .. runnerkit-normalize: var-dir

        .. code-block:: console

            $ echo "$RUNNERKIT_VAR_DIR/queue/in"
            $VAR_DIR/queue/in
            $ echo "pid: $$ T-123"  # doctest: +NORMALIZE_PIDS, +NORMALIZE_TICKET
            pid: <PID> T-<N>
            $ echo "$RUNNERKIT_VAR_DIR"  # doctest: -NORMALIZE_VAR_DIR
            $VAR_DIR
        """,
        NORMALIZING_CONFTEST,
    )
    result = pytester.runpytest("-p", "no:randomly")
    # The last command turned the document's normaliser off: its output is the path.
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Got:*", "*/runnerkit-*"])


def test_accept_writes_a_commands_normalised_output(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "accepted.rst",
        """\
        .. runnerkit-normalize: var-dir, pids

        .. code-block:: console

            $ echo "$RUNNERKIT_VAR_DIR pid=$$"
            somewhere else
        """,
    )
    pytester.runpytest("-p", "no:randomly", "--spec-accept").assert_outcomes(failed=1)
    assert "    $VAR_DIR pid=<PID>\n" in path.read_text(encoding="utf-8")
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_output_past_the_limit_is_dropped_and_said_to_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runnerkit.testing import console_run

    monkeypatch.setattr(console_run, "MAX_OUTPUT", 10)
    completed = console_run.run_shell(
        "printf '0123456789abcdef'; echo; echo tail", cwd=tmp_path, env=os.environ, timeout=10
    )
    assert completed.status == 0
    assert completed.output == (
        "0123456789\n[runnerkit: output cut after 10 bytes; 12 more bytes dropped]\n"
    )


def test_accept_writes_an_exit_line_looking_output_with_its_status_after_it(
    pytester: pytest.Pytester,
) -> None:
    path = write(
        pytester,
        "literal.rst",
        """\
        .. code-block:: console

            $ echo "[exit 3]"
            wrong
            $ echo "[exit three]"
            wrong
        """,
    )
    pytester.runpytest("--spec-accept").assert_outcomes(failed=2)
    text = path.read_text(encoding="utf-8")
    assert "    [exit 3]\n    [exit 0]\n" in text
    assert "    [exit three]\n    [exit 0]\n" in text
    pytester.runpytest().assert_outcomes(passed=2)


@pytest.mark.parametrize("line", ["[exit one]", "[exit  1]", "[exit 256]", "[exit]"])
def test_an_exit_line_that_is_not_one_is_refused(line: str) -> None:
    with pytest.raises(ConsoleSyntaxError, match=r"line 3 of the block, .* is not an exit"):
        split_session(["$ false", "output", line])
    # Inside the output, or with more on its line, it is output.
    assert split_session(["$ x", line, "end"])[0].want == f"{line}\nend\n"
    assert split_session(["$ x", f"{line} done"])[0].want == f"{line} done\n"


def test_doctest_lines_inside_a_console_block_are_a_clear_collection_error(
    pytester: pytest.Pytester,
) -> None:
    write(
        pytester,
        "overlap.rst",
        """\
        .. code-block:: console

            $ echo hi
            hi

            >>> 1 + 1
            2
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*two examples overlap*end the block*"])


def test_examples_indented_under_a_skip_comment_are_a_clear_collection_error(
    pytester: pytest.Pytester,
) -> None:
    # In reStructuredText, lines indented under a comment belong to it: Sybil's skip
    # directive then covers the examples that it should only skip.
    write(
        pytester,
        "overlap.rst",
        """\
        .. skip: next

            >>> 1 / 0
            0
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*two examples overlap*under a comment such as '.. skip: next'*"])
