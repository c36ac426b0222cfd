"""``pycon`` fences run as doctests, and a Markdown session that nothing runs is reported.

Each test builds a small project with pytester whose conftest calls ``collect_specs``,
as a downstream project's would.
"""

from __future__ import annotations

import textwrap

import pytest
from sybil import Document

from runnerkit.errors import HarnessError
from runnerkit.testing import make_sybil
from runnerkit.testing.pycon import uncollected_sessions

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")

SESSIONS = """\
# Sessions

```pycon
>>> 1 + 1
2
>>> print('wrong')
right
```

~~~python-console
>>> 2 + 2
4
~~~

```python
>>> 3 + 3
6
```
"""


def project(pytester: pytest.Pytester, documents: dict[str, str], options: str = "") -> None:
    """A project whose conftest collects ``*.md`` and ``*.rst`` with *options*."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        f'pytest_collect_file = collect_specs(["*.md", "*.rst"]{options})\n'
    )
    for name, text in documents.items():
        (pytester.path / name).write_text(textwrap.dedent(text), encoding="utf-8")


def test_pycon_and_python_console_fences_are_doctests(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": SESSIONS})

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*Expected:", "*right", "*Got:", "*wrong", "FAILED doc.md::line:6,column:1"]
    )
    assert "UncollectedSessionWarning" not in result.stdout.str()


def test_pycon_fences_are_doctests_not_code_blocks(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": SESSIONS}, options=', parsers=["codeblock"]')

    result = pytester.runpytest(*QUIET)

    # Nothing is collected, and nothing is reported: this harness runs no doctests.
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "UncollectedSessionWarning" not in result.stdout.str()


def test_pycon_examples_take_directives_and_the_documents_normalisers(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        {
            "doc.md": """\
            <!-- runnerkit-normalize: var-dir -->

            ```pycon
            >>> print(world.var_dir)
            $VAR_DIR
            >>> print(list(range(30)))  # doctest: +ELLIPSIS
            [0, 1, ..., 29]
            >>> print(world.var_dir)  # doctest: -NORMALIZE_VAR_DIR
            $VAR_DIR
            ```
            """
        },
    )

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED doc.md::line:8,column:1"])


UNCOLLECTED = """\
# Uncollected

```text
>>> 1 + 1
3
```

```

>>> 'no language'
```

~~~py
>>> 'a tilde fence'
~~~

> ```python3
> >>> 'in a quotation'
> ```

```pycon
>>> 'collected'
'collected'
```

```text
Not a session: >>> is not its first line.
>>> 1
```

````markdown
```text
>>> 'the text of another fence'
```
````
"""


def test_uncollected_sessions_are_warned_about_where_they_are(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": UNCOLLECTED})

    # In a process of its own: in this one, this suite's filterwarnings = error holds.
    result = pytester.runpytest_subprocess(*QUIET)

    result.assert_outcomes(passed=1, warnings=4)
    fix = (
        "holds a Python session (it starts with >>>) that is not collected, so its expected"
        " output is never checked: open it with ```pycon (or ```python) to run it as a"
        " doctest, or remove its >>> prompts if it is not meant to run"
    )
    result.stdout.fnmatch_lines(
        [
            "doc.md:3",
            f"*: UncollectedSessionWarning: doc.md, line 3: a 'text' fence (```text) {fix}",
            "doc.md:8",
            f"*: UncollectedSessionWarning: doc.md, line 8: a fence with no language (```) {fix}",
            "doc.md:13",
            f"*: UncollectedSessionWarning: doc.md, line 13: a 'py' fence (~~~py) {fix}",
            "doc.md:17",
            "*: UncollectedSessionWarning: doc.md, line 17: a 'python3' fence"
            f" (> ```python3) {fix}",
        ]
    )
    assert "line 27" not in result.stdout.str()
    assert "line 33" not in result.stdout.str()


def test_the_fail_option_makes_them_a_collection_error(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": UNCOLLECTED}, options=', uncollected_sessions="fail"')

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   runnerkit.testing.pycon.UncollectedSessionError:"
            " doc.md, line 3: a 'text' fence (```text) holds a Python session*",
            "E   doc.md, line 8: a fence with no language*",
            "E   doc.md, line 13: *",
            "E   doc.md, line 17: *",
            "E   (collect_specs(uncollected_sessions='warn') makes this a warning)",
        ]
    )


def test_filterwarnings_error_makes_them_a_collection_error_too(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, {"doc.md": UNCOLLECTED})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")

    result = pytester.runpytest_subprocess(*QUIET)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UncollectedSessionWarning: doc.md, line 3: a 'text' fence*"])


def test_the_ignore_option_says_nothing(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": UNCOLLECTED}, options=', uncollected_sessions="ignore"')

    result = pytester.runpytest(*QUIET)

    result.assert_outcomes(passed=1)
    assert "UncollectedSession" not in result.stdout.str()


def test_an_unknown_mode_is_refused_naming_the_modes() -> None:
    with pytest.raises(HarnessError, match=r"^uncollected_sessions='error' is not a mode: use"):
        make_sybil(uncollected_sessions="error")


def test_restructuredtext_is_not_checked(pytester: pytest.Pytester) -> None:
    # Sybil's doctest parser finds >>> anywhere in reStructuredText.
    project(pytester, {"doc.rst": ".. code-block:: text\n\n    >>> 1 + 1\n    2\n"})

    result = pytester.runpytest_subprocess(*QUIET, "-W", "error")

    result.assert_outcomes(passed=1)


def test_the_first_line_that_is_not_blank_decides() -> None:
    document = Document(
        "```text\n\n  \n>>> 1\n```\n\n```text\n>>>1\n```\n\n```\n>>>\n```\n", "doc.md"
    )

    lines = [session.line for session in uncollected_sessions(document)]

    assert lines == [1, 11]


def test_accept_rewrites_a_pycon_fence(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": SESSIONS})

    result = pytester.runpytest(*QUIET, "--spec-accept")

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["doc.md: rewrote 1 example (line 6)"])
    assert (pytester.path / "doc.md").read_text() == SESSIONS.replace(
        "print('wrong')\nright\n", "print('wrong')\nwrong\n"
    )
    pytester.runpytest(*QUIET).assert_outcomes(passed=4)


@pytest.mark.slow
def test_pycon_and_the_warning_under_xdist(pytester: pytest.Pytester) -> None:
    project(pytester, {"doc.md": SESSIONS, "other.md": UNCOLLECTED})

    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--spec-accept")

    # Each worker collects every document; only the first warns about each session.
    result.assert_outcomes(passed=4, failed=1, warnings=4)
    result.stdout.fnmatch_lines(["*UncollectedSessionWarning: other.md, line 3: *"])
    assert (
        "```pycon\n>>> 1 + 1\n2\n>>> print('wrong')\nwrong\n```"
        in (pytester.path / "doc.md").read_text()
    )
    again = pytester.runpytest_subprocess(*QUIET, "-n", "2")
    again.assert_outcomes(passed=5, warnings=4)
    assert again.stdout.str().count("UncollectedSessionWarning: other.md, line 3: ") == 1


def test_words_after_the_language_are_the_renderers(pytester: pytest.Pytester) -> None:
    """```pycon title="x.py" (as MkDocs writes it) is a pycon fence, and so is a console
    fence with words after its language: both run, and a wrong one fails."""
    project(
        pytester,
        {
            "titled.md": """\
                ```pycon title="x.py"
                >>> 1 + 1
                3
                ```

                ```python-console linenums="1"
                >>> 2 + 2
                4
                ```

                ```console title="shell"
                $ echo hi
                hi
                ```
                """
        },
    )
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Expected:*", "*3", "*Got:*", "*2"])


def test_a_python_fence_is_known_by_the_first_word_of_its_info_string(
    pytester: pytest.Pytester,
) -> None:
    """```python title="y.py", and ```python with a space after it, run: sessions and
    code alike (Sybil compares the whole info string with the language); so do fences
    with blanks before their language, or capitals in it."""
    project(
        pytester,
        {
            "titled.md": (
                '```python title="y.py"\n>>> 1\n2\n```\n\n'
                '```python {.x}\nassert False, "the code block ran"\n```\n\n'
                "```python \nassert False, 'the spaced block ran'\n```\n\n"
                "``` pycon\n>>> 'blank before'\n'not'\n```\n\n"
                "``` console\n$ echo blank before\nnot\n```\n\n"
                "```PyCon\n>>> 'capitals'\n'not'\n```\n\n"
                "```Console\n$ echo capitals\nnot\n```\n\n"
                "```python\n>>> 3\n3\n```\n"
            )
        },
    )
    result = pytester.runpytest_subprocess(*QUIET, "-W", "error::UserWarning")
    result.assert_outcomes(passed=1, failed=7)
    result.stdout.fnmatch_lines_random(
        [
            "*the code block ran*",
            "*the spaced block ran*",
            "*Expected:*",
            "*blank before*",
            "*capitals*",
        ]
    )


def test_accept_rewrites_beside_a_session_doctest_cannot_read(pytester: pytest.Pytester) -> None:
    """An uncollected fence whose ``>>>`` lines doctest cannot read (indented unevenly)
    does not stop accept mode from rewriting the examples that run."""
    text = "```pycon\n>>> 1 + 1\n3\n```\n\n```\n  >>> 5 + 5\n  11\n```\n"
    project(pytester, {"doc.md": text})
    result = pytester.runpytest_subprocess(*QUIET, "--spec-accept")
    result.assert_outcomes(failed=1, warnings=1)
    assert (pytester.path / "doc.md").read_text() == text.replace("\n3\n", "\n2\n")


@pytest.mark.slow
def test_warnings_made_errors_fail_every_workers_collection_alike(
    pytester: pytest.Pytester,
) -> None:
    """Only the first worker shows the warning, but each raises it when the filters make
    it an error: the workers' collections must agree, or xdist stops the run."""
    project(pytester, {"other.md": UNCOLLECTED})
    result = pytester.runpytest_subprocess(
        *QUIET, "-n", "2", "-W", "error::runnerkit.testing.UncollectedSessionWarning"
    )
    result.assert_outcomes(errors=2)
    assert "Different tests were collected" not in result.stdout.str()
    result.stdout.fnmatch_lines(["E   *UncollectedSessionWarning: other.md, line 3: *"])
