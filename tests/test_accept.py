"""Accept mode rewrites the expected output of failing examples, and nothing else.

Each test builds a small project with pytester, breaks some expected outputs on
purpose, runs ``pytest --spec-accept`` (or ``--spec-accept-diff``), and compares the document's
bytes before and after: only the broken outputs may change, and a second run passes.
"""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: runnerkit's own wiring, as a user's conftest would have it.
SPECS_CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["*.rst", "*.md"])
"""

#: Plain Sybil, without runnerkit's wiring and without option flags.
PLAIN_SYBIL_CONFTEST = """\
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser
from sybil.parsers.rest import DocTestParser

pytest_collect_file = (
    Sybil(parsers=[DocTestParser()], patterns=["*.rst"])
    + Sybil(parsers=[PythonCodeBlockParser()], patterns=["*.md"])
).pytest()
"""

BROKEN = """\
Arithmetic
==========

Some prose that must survive.

    >>> 1 + 1
    3
    >>> print("unchanged")
    unchanged

The end.
"""


def write(pytester: pytest.Pytester, name: str, text: str, conftest: str = SPECS_CONFTEST) -> Path:
    """Write *conftest* and the document *name*, returning the document's path."""
    pytester.makeconftest(conftest)
    path = pytester.path / name
    path.write_bytes(textwrap.dedent(text).encode("utf-8"))
    return path


def changed_lines(before: bytes, after: bytes) -> list[tuple[str, str]]:
    """The lines that differ between two versions of a file, as (old, new) blocks."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    blocks = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            blocks.append((b"".join(old[i1:i2]).decode(), b"".join(new[j1:j2]).decode()))
    return blocks


def test_accept_rewrites_only_the_broken_output(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", BROKEN)
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*runnerkit accept*", "doc.rst: rewrote 1 example (line 6)"])
    assert changed_lines(before, path.read_bytes()) == [("    3\n", "    2\n")]
    pytester.runpytest().assert_outcomes(passed=2)


def test_several_failures_in_one_file_with_outputs_that_grow_and_shrink(
    pytester: pytest.Pytester,
) -> None:
    path = write(
        pytester,
        "doc.rst",
        """\
        Several
        =======

            >>> for n in range(3):
            ...     print(n)
            0
            >>> print("one line")
            first
            second
            third
            >>> x = 5
            >>> x
            6

        And a last one:

            >>> x * 2
            0
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines(["doc.rst: rewrote 4 examples (line 4, 7, 12, 17)"])
    expected = (
        before.replace(b"    0\n    >>> print", b"    0\n    1\n    2\n    >>> print")
        .replace(b"    first\n    second\n    third\n", b"    one line\n")
        .replace(b"    6\n", b"    5\n")
        .replace(b"    >>> x * 2\n    0\n", b"    >>> x * 2\n    10\n")
    )
    assert path.read_bytes() == expected
    pytester.runpytest().assert_outcomes(passed=5)


def test_blank_lines_become_blankline_markers(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.rst",
        """\
        Blank lines
        ===========

            >>> print("top\\n\\n   \\nbottom   ")
            top
            bottom
        """,
        conftest=PLAIN_SYBIL_CONFTEST,
    )
    before = path.read_bytes()

    pytester.runpytest("--spec-accept").assert_outcomes(failed=1)

    assert path.read_bytes() == before.replace(
        b"    top\n    bottom\n", b"    top\n    <BLANKLINE>\n    <BLANKLINE>\n    bottom\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_indentation_of_each_example_is_kept(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.rst",
        """\
        Indents
        =======

        >>> "flush"
        'left'

        ::

                >>> "deep"
                'shallow'

        - a list item

          >>> print("two\\nlines")
          one
        """,
    )
    before = path.read_bytes()

    pytester.runpytest("--spec-accept").assert_outcomes(failed=3)

    assert changed_lines(before, path.read_bytes()) == [
        ("'left'\n", "'flush'\n"),
        ("        'shallow'\n", "        'deep'\n"),
        ("  one\n", "  two\n  lines\n"),
    ]
    pytester.runpytest().assert_outcomes(passed=3)


def test_crlf_line_endings_and_the_rest_of_the_bytes_are_kept(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SPECS_CONFTEST)
    path = pytester.path / "doc.rst"
    text = (
        "Caf\u00e9\r\n====\r\n\r\n    >>> print('a\\nb')\r\n    x\r\n\r\n"
        "Some text\r\n\r\n    >>> print('c')\r\n\r\nTrailing text\r\n"
    )
    path.write_bytes(text.encode("utf-8"))

    pytester.runpytest("--spec-accept").assert_outcomes(failed=2)

    assert path.read_bytes() == (
        text.replace("    x\r\n", "    a\r\n    b\r\n")
        .replace("('c')\r\n", "('c')\r\n    c\r\n")
        .encode("utf-8")
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_outputs_are_added_and_removed_even_at_the_end_of_the_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SPECS_CONFTEST)
    path = pytester.path / "doc.rst"
    path.write_bytes(b"Edges\n=====\n\n    >>> None\n    'gone'\n\n    >>> 'new'")

    pytester.runpytest("--spec-accept").assert_outcomes(failed=2)

    assert path.read_bytes() == b"Edges\n=====\n\n    >>> None\n\n    >>> 'new'\n    'new'"
    pytester.runpytest().assert_outcomes(passed=2)


def test_ellipsis_output_is_replaced_by_the_whole_output(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.rst",
        """\
        Ellipsis
        ========

            >>> print("alpha\\nbeta\\ngamma")
            alpha
            ...
            delta
        """,
    )
    before = path.read_bytes()

    pytester.runpytest("--spec-accept").assert_outcomes(failed=1)

    assert changed_lines(before, path.read_bytes()) == [
        ("    ...\n    delta\n", "    beta\n    gamma\n")
    ]


def test_markdown_documents_are_rewritten(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.md",
        """\
        # Markdown

        ```python
        >>> print("fenced")
        wrong
        ```

        Prose.
        """,
    )
    before = path.read_bytes()

    pytester.runpytest("--spec-accept").assert_outcomes(failed=1)

    assert changed_lines(before, path.read_bytes()) == [("wrong\n", "fenced\n")]
    pytester.runpytest().assert_outcomes(passed=1)


def test_markdown_fences_in_lists_are_found_and_quoted_ones_reported(
    pytester: pytest.Pytester,
) -> None:
    path = write(
        pytester,
        "doc.md",
        """\
        # Nested fences

        - an item

          ```python
          >>> 1
          1
          >>> 2
          3
          ```

        > ```python
        > >>> 5
        > 6
        > ```
        """,
        conftest=PLAIN_SYBIL_CONFTEST,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.md: rewrote 1 example (line 8)",
            "doc.md:13: not accepted: its expected output cannot be located",
        ]
    )
    assert changed_lines(before, path.read_bytes()) == [("  3\n", "  2\n")]


def test_repeated_examples_in_markdown_fences_are_told_apart(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.md",
        """\
        # Counting

        ```python
        >>> calls = []
        >>> def count():
        ...     calls.append(1)
        ...     return len(calls)
        >>> count()
        1
        ```

        Again:

        ```python
        >>> count()
        1
        >>> count()
        1
        ```
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["doc.md: rewrote 2 examples (line 15, 17)"])
    assert path.read_bytes() == before.replace(
        b">>> count()\n1\n>>> count()\n1\n", b">>> count()\n2\n>>> count()\n3\n"
    )
    pytester.runpytest().assert_outcomes(passed=5)


def test_dry_run_prints_the_diff_and_changes_nothing(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", BROKEN)
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept-diff")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "doc.rst: would rewrite 1 example (line 6)",
            "--- a/doc.rst",
            "+++ b/doc.rst",
            "@@ -4,7 +4,7 @@",
            "     >>> 1 + 1",
            "-    3",
            "+    2",
            '     >>> print("unchanged")',
        ]
    )
    assert path.read_bytes() == before


EXCEPTIONS = """\
Exceptions
==========

    >>> int("seven")
    7
    >>> {}["key"]
    Traceback (most recent call last):
    ...
    IndexError: wrong
"""


def test_unexpected_exceptions_are_reported_not_accepted(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", EXCEPTIONS)
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.rst: rewrote 1 example (line 6)",
            "doc.rst:4: not accepted: raised ValueError: invalid literal for int() with "
            "base 10: 'seven'; use --spec-accept-exceptions to accept exceptions",
        ]
    )
    # An expected exception that changed is an output like any other.
    assert changed_lines(before, path.read_bytes()) == [
        ("    IndexError: wrong\n", "    KeyError: 'key'\n")
    ]


def test_accept_exceptions_writes_them_as_doctest_tracebacks(pytester: pytest.Pytester) -> None:
    path = write(pytester, "doc.rst", EXCEPTIONS)
    before = path.read_bytes()

    pytester.runpytest("--spec-accept", "--spec-accept-exceptions").assert_outcomes(failed=2)

    assert changed_lines(before, path.read_bytes()) == [
        (
            "    7\n",
            "    Traceback (most recent call last):\n"
            "    ...\n"
            "    ValueError: invalid literal for int() with base 10: 'seven'\n",
        ),
        ("    IndexError: wrong\n", "    KeyError: 'key'\n"),
    ]
    pytester.runpytest().assert_outcomes(passed=2)


def test_outputs_doctest_cannot_read_back_are_reported(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.rst",
        """\
        Unwritable
        ==========

            >>> print(">>> not a prompt")
            nothing
            >>> print("Traceback (most recent call last):\\nno exception here")
            nothing
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.rst:4: not accepted: its output holds a line starting with >>>*",
            "doc.rst:6: not accepted: its output starts like a traceback*",
        ]
    )
    assert path.read_bytes() == before


def test_an_output_starting_with_dots_is_reported_not_written(pytester: pytest.Pytester) -> None:
    # Doctest reads a first output line starting with "..." as more source.
    path = write(
        pytester,
        "doc.rst",
        """\
        Progress
        ========

            >>> def drain():
            ...     print("...3 messages left")
            >>> drain()
            3 messages left
            >>> print("  ...indented")
            wrong
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.rst:6: not accepted: its output starts with ..., which doctest would read"
            " as more source",
            "doc.rst:8: not accepted: its output starts with ...*",
        ]
    )
    assert path.read_bytes() == before
    pytester.runpytest().assert_outcomes(passed=1, failed=2)


def test_an_example_ending_with_a_bare_continuation_line_is_rewritten(
    pytester: pytest.Pytester,
) -> None:
    # As pasted from the interpreter: the bare "..." ends the compound statement.
    path = write(
        pytester,
        "doc.rst",
        """\
        Loop
        ====

            >>> for name in ["in", "out"]:
            ...     print(name, len(name))
            ...
            in 5
            out 5

        Done.
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["doc.rst: rewrote 1 example (line 4)"])
    assert changed_lines(before, path.read_bytes()) == [
        ("    in 5\n    out 5\n", "    in 2\n    out 3\n")
    ]
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_rewrite_that_would_not_read_back_is_not_written(pytester: pytest.Pytester) -> None:
    # Written back, this output would close the fence: the example would read as
    # having no output.  Nothing but reading the rewrite back can tell.
    path = write(
        pytester,
        "doc.md",
        """\
        # Fences

        ```python
        >>> print("```")
        wrong
        ```

        ```python
        >>> 1 + 1
        3
        ```
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.md: rewrote 1 example (line 9)",
            "doc.md:4: not accepted: the rewritten document would not read back: *",
        ]
    )
    assert changed_lines(before, path.read_bytes()) == [("3\n", "2\n")]


def test_the_documents_encoding_is_kept(pytester: pytest.Pytester) -> None:
    path = write(
        pytester,
        "doc.rst",
        "",
        conftest=PLAIN_SYBIL_CONFTEST.replace(
            'patterns=["*.rst"]', 'patterns=["*.rst"], encoding="latin-1"'
        ),
    )
    text = (
        "Caf\u00e9\n====\n\n    >>> print('cr\u00e8me')\n    lait\n\n"
        "    >>> print('\\u20ac')\n    euro\n"
    )
    path.write_bytes(text.encode("latin-1"))

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "doc.rst: rewrote 1 example (line 4)",
            "doc.rst:7: not accepted: its output cannot be written in the document's"
            " encoding, latin-1",
        ]
    )
    assert path.read_bytes() == text.replace("lait", "cr\u00e8me").encode("latin-1")


def test_python_docstrings_are_reported_not_rewritten(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from sybil import Sybil\n"
        "from sybil.parsers.rest import DocTestParser\n"
        "pytest_collect_file = Sybil(parsers=[DocTestParser()], patterns=['mod.py']).pytest()\n"
    )
    path = pytester.makepyfile(mod='def f():\n    """\n    >>> 1\n    2\n    """\n')
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept", "mod.py")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["mod.py:3: not accepted: examples in Python docstrings are not rewritten"]
    )
    assert path.read_bytes() == before


def test_a_document_edited_during_the_run_is_left_alone(pytester: pytest.Pytester) -> None:
    path = pytester.path / "doc.rst"
    write(
        pytester,
        "doc.rst",
        f"""\
        Self-editing
        ============

            >>> 1
            2
            >>> with open({str(path)!r}, "a") as me:
            ...     _ = me.write("An edit.\\n")
        """,
    )
    before = path.read_bytes()

    result = pytester.runpytest("--spec-accept")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["doc.rst:4: not accepted: the document changed during the run"])
    assert path.read_bytes() == before + b"An edit.\n"


def test_the_flags_are_checked(pytester: pytest.Pytester) -> None:
    write(pytester, "doc.rst", BROKEN)

    both = pytester.runpytest("--spec-accept", "--spec-accept-diff")
    alone = pytester.runpytest("--spec-accept-exceptions")

    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--spec-accept and --spec-accept-diff exclude each other*"])
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(
        ["*--spec-accept-exceptions needs --spec-accept or --spec-accept-diff*"]
    )


def test_the_options_come_with_the_installed_plugin(pytester: pytest.Pytester) -> None:
    # No conftest: the entry point plugin loads accept mode through ``pytest_plugins``.
    result = pytester.runpytest("--help")

    result.stdout.fnmatch_lines(
        ["*--spec-accept *rewrite the expected output*", "*--spec-accept-diff*"]
    )


@pytest.mark.slow
def test_accept_under_xdist_writes_each_document_once(pytester: pytest.Pytester) -> None:
    first = write(pytester, "first.rst", BROKEN)
    second = write(pytester, "second.rst", BROKEN.replace("1 + 1", "2 + 2").replace("3", "5"))
    before = first.read_bytes(), second.read_bytes()

    result = pytester.runpytest_subprocess("-n", "2", "--spec-accept", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        ["first.rst: rewrote 1 example (line 6)", "second.rst: rewrote 1 example (line 6)"]
    )
    assert changed_lines(before[0], first.read_bytes()) == [("    3\n", "    2\n")]
    assert changed_lines(before[1], second.read_bytes()) == [("    5\n", "    4\n")]
    pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=4)


@pytest.mark.slow
def test_dry_run_under_xdist_reports_the_diff_in_the_controller(
    pytester: pytest.Pytester,
) -> None:
    path = write(pytester, "doc.rst", BROKEN)
    before = path.read_bytes()

    result = pytester.runpytest_subprocess(
        "-n", "2", "--spec-accept-diff", "-p", "no:cacheprovider"
    )

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["--- a/doc.rst", "+++ b/doc.rst", "-    3", "+    2"])
    assert path.read_bytes() == before
