"""``pytest --spec-report DIR`` gives the specs back as HTML documents, marked in place.

Each test builds a small project with pytester, runs its specs with the option, and
reads the pages back (:mod:`spec_report_pages`): which examples are marked, with
which status, on which line, and what is written under a failure.  The browser tests
are in ``test_spec_report_browser.py``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from spec_report_pages import marked_examples, statuses

pytest_plugins = ["pytester"]

SPECS_CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["**/*.rst", "**/*.md"])
"""

#: A spec whose second example fails: it expects 3 and gets 2.
ARITHMETIC = """\
Arithmetic
==========

Adding up, in a doctest block:

>>> 1 + 1
2
>>> 1 + 2
4
>>> print("after")
after

The end.
"""


def project(pytester: pytest.Pytester, conftest: str = SPECS_CONFTEST, **documents: str) -> None:
    """A project with *conftest* and *documents*, by path (``docs__x_rst`` is ``docs/x.rst``)."""
    pytester.makeconftest(conftest)
    for name, text in documents.items():
        path = pytester.path / name.replace("__", "/").replace("_rst", ".rst").replace(
            "_md", ".md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def page(pytester: pytest.Pytester, name: str, report: str = "report") -> Path:
    return pytester.path / report / f"{name}.html"


def test_a_failing_example_is_marked_where_it_stands_with_its_diff(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC)

    result = pytester.runpytest("--spec-report", "report")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["spec report: report/index.html"])
    examples = marked_examples(page(pytester, "spec.rst"))
    assert [(e.line, e.status) for e in examples] == [(6, "passed"), (8, "failed"), (10, "passed")]
    failed = examples[1]
    assert failed.code == ">>> 1 + 2\n4"
    assert "failed" in failed.outcome
    assert "-4" in failed.outcome
    assert "+3" in failed.outcome
    assert "status-failed" in failed.classes
    assert examples[0].outcome == examples[2].outcome == ""
    # The prose around the examples is there, in order.
    text = page(pytester, "spec.rst").read_text()
    assert text.index("Adding up") < text.index("example-L6") < text.index("The end.")


def test_the_index_counts_each_document_and_says_when_and_with_what(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC, other_rst="Other\n=====\n\n>>> 2\n2\n")

    pytester.runpytest("--spec-report", "report")

    index = (pytester.path / "report" / "index.html").read_text()
    rows = re.findall(r'<tr class="status-([\w-]+)"><td><a href="([^"]+)">', index)
    assert rows == [("passed", "other.rst.html"), ("failed", "spec.rst.html")]
    assert re.search(r"<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00</time>", index)
    for name in ("Python", "pytest", "runnerkit", "sybil", "docutils", "markdown-it-py"):
        assert f"<th>{name}</th>" in index
    assert "pytest --spec-report report" in index
    totals = re.search(r"<tfoot>(.*)</tfoot>", index)
    assert totals is not None
    assert re.findall(r'<td class="count">(\d+)</td>', totals.group(1)) == [
        "1",
        "0",
        "3",
        "0",
        "0",
        "0",
    ]
    assert (pytester.path / "report" / "report.css").is_file()


def test_output_is_shown_as_text_never_as_markup(pytester: pytest.Pytester) -> None:
    spec = """\
    Escaping
    ========

    >>> print("<script>alert('x')</script><b>bold</b>")
    <i>no</i>

    <b>not bold</b> either.
    """
    project(pytester, spec_rst=spec)

    pytester.runpytest("--spec-report", "report")

    html = page(pytester, "spec.rst").read_text()
    assert "<script" not in html
    assert "<b>" not in html
    assert "<i>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    [example] = marked_examples(html)
    assert "+<script>alert('x')</script><b>bold</b>" in example.outcome
    source = (pytester.path / "report" / "spec.rst.source.html").read_text()
    assert "<script" not in source


def test_raw_html_in_markdown_is_shown_as_text(pytester: pytest.Pytester) -> None:
    spec = """\
    # Markdown

    <script>alert(1)</script>

    <!-- a comment, left out -->

    ```pycon
    >>> 1
    1
    ```
    """
    project(pytester, guide_md=spec)

    pytester.runpytest("--spec-report", "report")

    html = page(pytester, "guide.md").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a comment, left out" not in html


def test_markdown_specs_are_marked_in_their_fences(pytester: pytest.Pytester) -> None:
    spec = """\
    # A guide

    Some *prose* and a table:

    | a | b |
    |---|---|
    | 1 | 2 |

    ```pycon
    >>> 2 * 2
    4
    >>> 2 * 3
    7
    ```

    ```python
    x = 1
    assert x == 2
    ```

    ```console
    $ echo hello
    hello
    ```
    """
    project(pytester, guide_md=spec)

    pytester.runpytest("--spec-report", "report")

    html = page(pytester, "guide.md")
    examples = marked_examples(html)
    assert [(e.line, e.status) for e in examples] == [
        (10, "passed"),
        (12, "failed"),
        (16, "failed"),
        (22, "passed"),
    ]
    assert [e.code for e in examples] == [
        ">>> 2 * 2\n4",
        ">>> 2 * 3\n7",
        "x = 1\nassert x == 2",
        "$ echo hello\nhello",
    ]
    assert "-7" in examples[1].outcome
    assert "+6" in examples[1].outcome
    assert "AssertionError" in examples[2].outcome
    text = html.read_text()
    assert "<table>" in text
    assert "<em>prose</em>" in text


def test_restructuredtext_blocks_of_every_kind_are_marked_on_their_lines(
    pytester: pytest.Pytester,
) -> None:
    spec = """\
    Blocks
    ======

    A literal block::

        >>> a = 1
        >>> a
        1

    - In a list:

      >>> a + 1
      2

    .. code-block:: python

       b = a + 1

    .. sourcecode:: console

       $ echo hi
       ho

    .. note:: See :func:`print`, :class:`~x.Y` and :meth:`Z <z.z>`.

    .. versionadded:: 1.0
       Something new.

    .. toctree::
       :maxdepth: 2

    .. testcode::

       print(  "kept as code"  )

    .. invisible-code-block: python

       hidden = True

    >>> hidden
    True
    """
    project(pytester, spec_rst=spec)

    pytester.runpytest("--spec-report", "report")

    html = page(pytester, "spec.rst").read_text()
    examples = marked_examples(html)
    source = (pytester.path / "spec.rst").read_text().splitlines()
    shown = [e for e in examples if not e.hidden]
    assert [(e.line, e.status) for e in shown] == [
        (6, "passed"),
        (7, "passed"),
        (12, "passed"),
        (15, "passed"),
        (21, "failed"),
        (40, "passed"),
    ]
    # Each example's code is its text, from its line (a directive's from its content).
    for example in shown:
        first = example.code.splitlines()[0]
        line = example.line + (2 if source[example.line - 1].startswith(".. ") else 0)
        assert source[line - 1].strip() == first
    assert [(e.line, e.hidden) for e in examples if e.hidden] == [(36, True)]
    assert '<pre class="plain">print(  &quot;kept as code&quot;  )</pre>' in html
    for error in ("system-message", "problematic", "Unknown directive", "Unknown interpreted"):
        assert error not in html
    assert "Something new." in html
    assert "versionadded 1.0" in html
    assert ">print</span>" in html
    assert ">x.Y</span>" in html
    assert ">Z</span>" in html
    assert "+hi" in examples[4].outcome


def test_each_example_links_to_its_line_on_the_source_page(pytester: pytest.Pytester) -> None:
    project(pytester, docs__sub__spec_rst=ARITHMETIC)

    pytester.runpytest("--spec-report", "report")

    examples = marked_examples(page(pytester, "docs/sub/spec.rst"))
    assert [e.link for e in examples] == [f"spec.rst.source.html#L{n}" for n in (6, 8, 10)]
    source = (pytester.path / "report" / "docs" / "sub" / "spec.rst.source.html").read_text()
    row = re.search(r'<tr id="L8" class="status-failed">.*?<pre>(.*?)</pre>', source)
    assert row is not None
    assert row.group(1) == "&gt;&gt;&gt; 1 + 2"
    document = page(pytester, "docs/sub/spec.rst").read_text()
    assert 'href="../../report.css"' in document
    assert 'href="../../index.html"' in document
    index = (pytester.path / "report" / "index.html").read_text()
    assert 'href="docs/sub/spec.rst.html"' in index


def test_skipped_examples_say_why(pytester: pytest.Pytester) -> None:
    conftest = SPECS_CONFTEST + textwrap.dedent(
        """
        import pytest

        @pytest.fixture
        def network():
            pytest.skip("no network here")
        """
    )
    spec = """\
    Skips
    =====

    >>> 1 / 0  # doctest: +SKIP

    .. skip: next "not on this machine"

    >>> 2 / 0

    >>> 3
    3

    .. code-block:: console

        $ false  # doctest: +SKIP
        $ true
    """
    offline = """\
    Offline
    =======

    .. runnerkit-usefixtures: network

    >>> 4
    4
    """
    project(pytester, conftest, spec_rst=spec, offline_rst=offline)

    pytester.runpytest("--spec-report", "report")

    examples = {e.line: e for e in marked_examples(page(pytester, "spec.rst"))}
    assert {line: (e.status, e.hidden) for line, e in examples.items()} == {
        4: ("skipped", False),
        8: ("skipped", False),
        10: ("passed", False),
        # A console command skipped by its directive is not run either.
        15: ("skipped", False),
        16: ("passed", False),
        # The skip directive, a comment, is no example: it has no outcome.
    }
    assert "+SKIP" in examples[4].outcome
    assert "not on this machine" in examples[8].outcome
    [offline_example] = marked_examples(page(pytester, "offline.rst"))
    assert offline_example.status == "skipped"
    assert "no network here" in offline_example.outcome


def test_examples_left_out_of_the_run_are_marked_not_run(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC, other_rst="Other\n=====\n\n>>> 2\n2\n")

    result = pytester.runpytest("--spec-report", "report", "-k", "spec and line:6")

    result.assert_outcomes(passed=1)
    assert statuses(page(pytester, "spec.rst")) == [(6, "passed"), (8, "not run"), (10, "not run")]
    assert statuses(page(pytester, "other.rst")) == [(4, "not run")]
    index = (pytester.path / "report" / "index.html").read_text()
    assert '<tr class="status-not-run"><td><a href="other.rst.html">' in index


def languages_project(pytester: pytest.Pytester) -> None:
    """A spec run once per language, ``en`` and ``fr``, whose last example fails for ``fr``."""
    conftest = SPECS_CONFTEST + textwrap.dedent(
        """
        import pytest

        @pytest.fixture(params=["en", "fr"])
        def language(request):
            return request.param
        """
    )
    spec = """\
    Languages
    =========

    .. runnerkit-fixtures: language

    >>> language in ("en", "fr")
    True
    >>> language
    'en'
    """
    project(pytester, conftest, spec_rst=spec)


def test_each_run_of_a_parametrized_document_is_shown(pytester: pytest.Pytester) -> None:
    languages_project(pytester)

    pytester.runpytest("--spec-report", "report").assert_outcomes(passed=3, failed=1)

    first, second = marked_examples(page(pytester, "spec.rst"))
    assert (first.status, second.status) == ("passed", "failed")
    assert first.badge == "line 6 · passed [en] · passed [fr]"
    assert second.badge == "line 8 · passed [en] · failed [fr]"
    assert "failed [fr]" in second.outcome
    assert "+'fr'" in second.outcome
    assert "[en]" not in second.outcome


def test_a_document_that_cannot_be_collected_is_listed_with_why(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, good_rst=ARITHMETIC)
    (pytester.path / "bad.rst").write_bytes(b"Bad\n===\n\n>>> print('\xe9')\n\xe9\n")

    stopped = pytester.runpytest("--spec-report", "stopped")
    result = pytester.runpytest("--spec-report", "report", "--continue-on-collection-errors")

    # pytest runs nothing after a collection error, unless told to go on.
    stopped.assert_outcomes(errors=1)
    assert "cannot read spec" in (pytester.path / "stopped" / "index.html").read_text()
    assert statuses(page(pytester, "good.rst", "stopped")) == [
        (6, "not run"),
        (8, "not run"),
        (10, "not run"),
    ]
    result.assert_outcomes(passed=2, failed=1, errors=1)
    index = (pytester.path / "report" / "index.html").read_text()
    row = re.search(
        r'<tr class="status-failed"><td><a href="bad.rst.html">(.*?)</tr>', index, re.S
    )
    assert row is not None
    assert "cannot read spec" in row.group(1)
    assert "utf-8" in row.group(1)
    bad = page(pytester, "bad.rst").read_text()
    assert "Not collected" in bad
    assert "Bad</h" in bad, "the document's text is shown as far as it can be read"
    assert statuses(page(pytester, "good.rst")) == [(6, "passed"), (8, "failed"), (10, "passed")]


def test_under_xdist_a_document_that_cannot_be_collected_is_listed(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, good_rst=ARITHMETIC)
    (pytester.path / "bad.rst").write_bytes(b"Bad\n===\n\n>>> print('\xe9')\n\xe9\n")

    result = pytester.runpytest_subprocess(
        "-n", "2", "--spec-report", "report", "-p", "no:cacheprovider"
    )

    assert result.ret != 0
    index = (pytester.path / "report" / "index.html").read_text()
    assert index.count("not collected:") == 1
    assert "cannot read spec" in index
    # xdist runs what was collected, collection errors or not.
    assert statuses(page(pytester, "good.rst")) == [(6, "passed"), (8, "failed"), (10, "passed")]


def test_accept_mode_marks_what_it_accepted(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC)

    result = pytester.runpytest("--spec-report", "report", "--spec-accept")

    result.stdout.fnmatch_lines(["spec.rst: rewrote 1 example (line 8)"])
    examples = marked_examples(page(pytester, "spec.rst"))
    assert [(e.line, e.status) for e in examples] == [
        (6, "passed"),
        (8, "accepted"),
        (10, "passed"),
    ]
    accepted = examples[1]
    # The page shows the text that ran, and what accept mode wrote instead.
    assert accepted.code == ">>> 1 + 2\n4"
    assert "accept mode wrote the expected output:3" in accepted.outcome
    assert "1 accepted" in (pytester.path / "report" / "index.html").read_text()


def test_a_dry_run_of_accept_mode_leaves_the_failure_failed(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC)

    pytester.runpytest("--spec-report", "report", "--spec-accept-diff")

    examples = marked_examples(page(pytester, "spec.rst"))
    assert examples[1].status == "failed"
    assert "accept mode would write the expected output:3" in examples[1].outcome


def test_an_example_accept_mode_refuses_says_why(pytester: pytest.Pytester) -> None:
    spec = """\
    Refused
    =======

    >>> raise ValueError("boom")
    1
    """
    project(pytester, spec_rst=spec)

    pytester.runpytest("--spec-report", "report", "--spec-accept")

    [example] = marked_examples(page(pytester, "spec.rst"))
    assert example.status == "failed"
    assert "not accepted:" in example.outcome
    assert "ValueError: boom" in example.outcome


def _report_files(directory: Path) -> dict[str, str]:
    """The report's files, the run's date and command left out of the index."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            text = path.read_text()
            if path.name == "index.html":
                text = re.sub(r"<time>.*?</time>", "", text)
                text = re.sub(r"<code>pytest .*?</code>", "", text)
                text = re.sub(r"<tr><th>pytest-xdist</th><td>.*?</td></tr>", "", text)
            files[str(path.relative_to(directory))] = text
    return files


def test_under_xdist_the_controller_writes_the_same_report(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        a_rst=ARITHMETIC,
        b_rst="B\n=\n\n>>> 2\n2\n",
        c_md="# C\n\n```pycon\n>>> 3\n4\n```\n",
    )

    alone = pytester.runpytest_subprocess("--spec-report", "alone", "-p", "no:cacheprovider")
    shared = pytester.runpytest_subprocess(
        "-n", "2", "--spec-report", "shared", "-p", "no:cacheprovider", "-k", "not b.rst"
    )
    together = pytester.runpytest_subprocess(
        "-n", "2", "--spec-report", "together", "-p", "no:cacheprovider"
    )

    alone.assert_outcomes(passed=3, failed=2)
    together.assert_outcomes(passed=3, failed=2)
    together.stdout.fnmatch_lines(["spec report: together/index.html"])
    assert _report_files(pytester.path / "together") == _report_files(pytester.path / "alone")
    # A deselected document, which no worker ran, is not run, not lost.
    shared.assert_outcomes(passed=2, failed=2)
    assert statuses(page(pytester, "b.rst", "shared")) == [(4, "not run")]
    assert statuses(page(pytester, "c.md", "shared")) == [(4, "failed")]


def test_under_xdist_accept_mode_is_reported(pytester: pytest.Pytester) -> None:
    project(pytester, a_rst=ARITHMETIC, b_rst=ARITHMETIC)

    pytester.runpytest_subprocess(
        "-n", "2", "--spec-report", "report", "--spec-accept", "-p", "no:cacheprovider"
    )

    for name in ("a.rst", "b.rst"):
        assert statuses(page(pytester, name)) == [(6, "passed"), (8, "accepted"), (10, "passed")]
    assert "    >>> 1 + 2\n    3\n" not in ARITHMETIC
    assert ">>> 1 + 2\n3\n" in (pytester.path / "a.rst").read_text()


def test_an_example_that_crashes_its_worker_is_failed_and_so_is_the_rest_of_it(
    pytester: pytest.Pytester,
) -> None:
    crashing = """\
    Crashing
    ========

    >>> import os

    >>> if not os.path.exists("crashed-once"):
    ...     open("crashed-once", "w").close(); os.kill(os.getpid(), 9)

    >>> 1 + 1
    2
    """
    project(pytester, crashing_rst=crashing, quiet_rst="Quiet\n=====\n\n>>> 2\n2\n")

    result = pytester.runpytest_subprocess(
        "-n", "2", "--spec-report", "report", "-p", "no:cacheprovider"
    )

    result.assert_outcomes(passed=2, failed=2)
    examples = marked_examples(page(pytester, "crashing.rst"))
    assert [(e.line, e.status) for e in examples] == [(4, "passed"), (6, "failed"), (9, "failed")]
    assert "crashed" in examples[1].outcome
    assert "crashed while running" in examples[2].outcome
    assert statuses(page(pytester, "quiet.rst")) == [(4, "passed")]
    index = (pytester.path / "report" / "index.html").read_text()
    assert re.search(r'<div class="crashed"><p>1 worker crashed during the run', index)


def test_the_report_is_rewritten_and_only_its_own_files_removed(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC, docs__gone_rst="Gone\n====\n\n>>> 1\n1\n")
    pytester.runpytest("--spec-report", "report")
    assert page(pytester, "docs/gone.rst").is_file()
    mine = pytester.path / "report" / "notes.txt"
    mine.write_text("kept")
    (pytester.path / "docs" / "gone.rst").unlink()
    (pytester.path / "spec.rst").write_text(ARITHMETIC.replace("4\n", "3\n"))

    pytester.runpytest("--spec-report", "report")

    assert not (pytester.path / "report" / "docs").exists()
    assert mine.read_text() == "kept"
    assert statuses(page(pytester, "spec.rst")) == [(6, "passed"), (8, "passed"), (10, "passed")]


def test_the_directory_can_be_set_in_the_ini_file(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    pytester.makeini("[pytest]\nspec_report = build/specs\n")

    result = pytester.runpytest()

    result.stdout.fnmatch_lines(["spec report: build/specs/index.html"])
    assert (pytester.path / "build" / "specs" / "spec.rst.html").is_file()


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_a_directory_that_cannot_be_written_is_a_usage_error(
    pytester: pytest.Pytester, where: str
) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    (pytester.path / "taken").write_text("")
    target = "taken" if where == "a file" else "taken/report"

    result = pytester.runpytest("--spec-report", target)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = "is not a directory" if where == "a file" else "cannot write there"
    result.stderr.fnmatch_lines([f"ERROR: --spec-report {pytester.path / target}: {expected}*"])
    assert (pytester.path / "taken").read_text() == ""


def test_without_the_option_nothing_is_written(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC)

    result = pytester.runpytest()

    result.assert_outcomes(passed=2, failed=1)
    assert "spec report" not in result.stdout.str()
    files = sorted(p.name for p in pytester.path.iterdir() if not p.name.startswith("."))
    assert files == ["conftest.py", "spec.rst"]


def test_a_plain_test_module_is_not_in_the_report(pytester: pytest.Pytester) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    pytester.makepyfile(test_plain="def test_it():\n    assert False\n")
    pytester.makepyfile(test_broken="import nowhere_to_be_found\n")

    pytester.runpytest("--spec-report", "report")

    index = (pytester.path / "report" / "index.html").read_text()
    assert re.findall(r'<a href="([^"]+)\.html">', index) == ["spec.rst"]


def test_pages_are_laid_out_by_the_documents_paths(tmp_path: Path) -> None:
    from runnerkit.testing.report_site import page_name

    root = tmp_path / "project"
    assert page_name(str(root / "docs" / "a.rst"), root) == "docs/a.rst"
    outside = tmp_path / "elsewhere" / "b.md"
    assert page_name(str(outside), root) == "_outside/" + outside.as_posix().lstrip("/")


def test_the_index_gives_the_exception_of_a_collection_error() -> None:
    from runnerkit.testing.report_site import short_error

    report = "x.py:1: in f\n    raise E\nE   ValueError: one\nE   two\n\nsomething after\n"
    assert short_error(report) == "ValueError: one\ntwo"
    assert short_error(report.replace("something after\n", "")) == "ValueError: one\ntwo"
    assert short_error("no marked lines\nthe last one\n") == "the last one"


def test_a_block_is_found_by_its_text_when_docutils_gives_no_line() -> None:
    from runnerkit.testing.report_render import _locate

    source = ["Title", "", "  >>> 1", "  1", "", "  >>> 1", "  1"]
    assert _locate(source, [">>> 1", "1"], None, 0) == 3
    assert _locate(source, [">>> 1", "1"], None, 4) == 6
    assert _locate(source, [">>> 1", "1"], 6, 0) == 6
    assert _locate(source, [">>> 2"], None, 0) is None


def test_any_output_is_written_safely(pytester: pytest.Pytester) -> None:
    spec = """\
    Unprintable
    ===========

    >>> print("lone \\udcff surrogate")
    x
    >>> print("nul \\x00 bell \\x07 end")
    x
    >>> print("\\x1b[31mred\\x1b[0m")
    red
    """
    project(pytester, spec_rst=spec)

    result = pytester.runpytest("--spec-report", "report")

    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["spec report: report/index.html", "*3 failed*"])
    html = page(pytester, "spec.rst").read_text(encoding="utf-8")
    for control in ("\x00", "\x07", "\x1b"):
        assert control not in html
    first, second, third = marked_examples(html)
    assert "+lone \\udcff surrogate" in first.outcome
    assert "+nul \u2400 bell \u2407 end" in second.outcome
    # A colour code is shown, ESC as its picture, in the diff as everywhere.
    assert "+\u241b[31mred\u241b[0m" in third.outcome
    assert (pytester.path / "report" / "index.html").is_file()


def test_a_report_that_cannot_be_written_leaves_the_summary_and_says_why(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    pytester.runpytest("--spec-report", "report")
    before = (pytester.path / "report" / "index.html").read_text()
    # Writing the stylesheet fails, with an error that is no OSError.
    failing = SPECS_CONFTEST + textwrap.dedent(
        """
        from runnerkit.testing import report_site

        real_write = report_site._write

        def failing_write(path, content):
            if path.name == "report.css":
                raise RuntimeError("disk on fire")
            real_write(path, content)

        report_site._write = failing_write
        """
    )
    project(pytester, failing, spec_rst=ARITHMETIC.replace("4\n", "3\n"))

    result = pytester.runpytest_subprocess("--spec-report", "report", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["spec report could not be written to report: RuntimeError: disk on fire", "*3 passed*"]
    )
    # The index, written last, still tells of the last report that was written whole.
    assert (pytester.path / "report" / "index.html").read_text() == before


def test_examples_a_skip_directive_skips_are_skipped(pytester: pytest.Pytester) -> None:
    spec = """\
    Skips
    =====

    .. skip: next

    >>> 1 / 0

    .. skip: start

    >>> 2 / 0
    >>> 3 / 0

    .. skip: end

    >>> 4
    4
    """
    guide = """\
    # Skips

    <!-- skip: next -->

    ```pycon
    >>> 1 / 0
    ```

    ```pycon
    >>> 5
    5
    ```
    """
    project(pytester, spec_rst=spec, guide_md=guide)

    pytester.runpytest("--spec-report", "report")

    shown = [e for e in marked_examples(page(pytester, "spec.rst")) if not e.hidden]
    assert [(e.line, e.status) for e in shown] == [
        (6, "skipped"),
        (10, "skipped"),
        (11, "skipped"),
        (15, "passed"),
    ]
    assert "skip directive" in shown[0].outcome
    shown = [e for e in marked_examples(page(pytester, "guide.md")) if not e.hidden]
    assert [(e.line, e.status) for e in shown] == [(6, "skipped"), (10, "passed")]
    index = (pytester.path / "report" / "index.html").read_text()
    assert '<span class="count status-skipped">4 skipped</span>' in index


def test_examples_with_tabs_are_marked_in_place(pytester: pytest.Pytester) -> None:
    spec = (
        "Tabs\n"
        "====\n"
        "\n"
        "A literal block::\n"
        "\n"
        '    >>> print("x\\ty")\n'
        "    x\ty\n"
        "\n"
        ".. code-block:: console\n"
        "\n"
        "   $ printf 'a\\tb\\n'\n"
        "   a\tb\n"
        "\n"
        '>>> print("p\\tq")\n'
        "p\tq\n"
    )
    (pytester.path / "spec.rst").write_text(spec)
    project(pytester)

    pytester.runpytest("--spec-report", "report")

    examples = marked_examples(page(pytester, "spec.rst"))
    assert [(e.line, e.status, e.hidden) for e in examples] == [
        (6, "passed", False),
        (11, "passed", False),
        (14, "passed", False),
    ]
    # docutils expands a tab to the next eighth column of the line, indentation and all.
    assert examples[0].code == '>>> print("x\\ty")\nx   y'
    assert examples[1].code == "$ printf 'a\\tb\\n'\na    b"


def _broken_links(report: Path) -> list[str]:
    """Every link and stylesheet of the report's pages that leads to no file or no
    line of the report, resolved as a browser resolves them."""
    from urllib.parse import unquote, urljoin, urlsplit

    broken = []
    for page_path in sorted(report.rglob("*.html")):
        html = page_path.read_text()
        for link in re.findall(r'(?:href|src)="([^"]*)"', html):
            link = link.replace("&amp;", "&")
            target = urlsplit(urljoin(page_path.as_uri(), link))
            path = Path(unquote(target.path))
            if not path.is_file():
                broken.append(f"{page_path.name}: {link}")
            elif target.fragment and f'id="{target.fragment}"' not in path.read_text():
                broken.append(f"{page_path.name}: {link} (no such anchor)")
    return broken


def test_links_lead_to_their_pages_whatever_the_documents_are_called(
    pytester: pytest.Pytester,
) -> None:
    names = ["issue#12.rst", "what?.rst", "100%.rst", "with space.rst", "a&b.md"]
    project(pytester)
    (pytester.path / "docs").mkdir()
    for name in names:
        (pytester.path / "docs" / name).write_text(
            "# T\n\n```pycon\n>>> 1\n1\n```\n" if name.endswith(".md") else "T\n=\n\n>>> 1\n1\n"
        )

    pytester.runpytest("--spec-report", "report").assert_outcomes(passed=5)

    report = pytester.path / "report"
    index = (report / "index.html").read_text()
    assert 'href="docs/issue%2312.rst.html"' in index
    assert 'href="docs/with%20space.rst.html"' in index
    links = re.findall(r'href="(docs/[^"]*)"', index)
    assert len(links) == len(names)
    assert _broken_links(report) == []
    [example] = marked_examples(page(pytester, "docs/issue#12.rst"))
    assert example.link == "issue%2312.rst.source.html#L4"


PRELUDED = """\
Prelude
=======

>>> x = 1

.. skip: next

>>> 1 / 0

>>> x
2

>>> x + 1
2

>>> x + 2
3
"""


@pytest.mark.parametrize("xdist", [False, True])
def test_selecting_one_example_shows_the_rest_of_its_document(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    project(pytester, spec_rst=PRELUDED, other_rst="Other\n=====\n\n>>> 2\n2\n")
    extra = ["-n", "2", "-p", "no:cacheprovider"] if xdist else []

    result = pytester.runpytest_subprocess(
        "spec.rst::line:13,column:1", "--spec-report", "report", *extra
    )

    result.assert_outcomes(passed=1)
    examples = marked_examples(page(pytester, "spec.rst"))
    assert [(e.line, e.status) for e in examples if not e.hidden] == [
        (4, "passed"),
        (8, "skipped"),
        (10, "failed"),
        (13, "passed"),
        (16, "not run"),
    ]
    html = page(pytester, "spec.rst").read_text()
    # Those before it ran as its prelude; the skip directive is no example.
    assert html.count("ran as the prelude of the example at line 13") == 3
    assert "-2" in examples[2].outcome or "Expected" in examples[2].outcome
    index = (pytester.path / "report" / "index.html").read_text()
    assert '<span class="count status-not-run">1 not run</span>' in index
    assert "other.rst" not in index


def test_after_lf_the_rest_of_the_document_is_not_run_or_its_prelude(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    pytester.runpytest("--spec-report", "report")

    pytester.runpytest("--lf", "--spec-report", "report").assert_outcomes(failed=1)

    assert statuses(page(pytester, "spec.rst")) == [(6, "passed"), (8, "failed"), (10, "not run")]
    last = marked_examples(page(pytester, "spec.rst"))[-1]
    html = page(pytester, "spec.rst").read_text()
    assert (
        'title="line 6 of the source; not selected: ran as the prelude of the example at line 8"'
        in html
    )
    assert last.badge == "line 10 · not run"


def _urls(html: str) -> list[str]:
    from html import unescape

    return [unescape(u) for u in re.findall(r'(?:href|src)="([^"]*)"', html)]


def test_links_of_unsafe_schemes_are_shown_not_followed(pytester: pytest.Pytester) -> None:
    spec = """\
    Links
    =====

    A `script <javascript:alert(2)>`_, a `VB one <VBScript:msgbox(1)>`_, a
    `data one <data:text/html,<script>alert(3)</script>>`_, a
    `spaced one < java script:alert(4)>`_, a `web one <https://example.org/a>`_,
    a `mail <mailto:a@example.org>`_, a `relative one <other.html#x>`_ and `Links`_.

    .. image:: javascript:alert(1)

    .. image:: data:image/svg+xml,<svg onload=alert(5)>

    .. image:: pictures/fine.png
       :target: javascript:alert(6)

    >>> 1
    1
    """
    guide = """\
    # Links

    [script](javascript:alert(7)), [data](data:text/html,x), [vb](vbscript:x),
    [file](file:///etc/passwd), <javascript:alert(8)>, [web](https://example.org/b),
    [relative](other.md#y), ![img](javascript:alert(9)) and ![fine](pictures/fine.png).

    ```pycon
    >>> 1
    1
    ```
    """
    project(pytester, spec_rst=spec, guide_md=guide)

    pytester.runpytest("--spec-report", "report")

    rst = page(pytester, "spec.rst").read_text()
    md = page(pytester, "guide.md").read_text()
    for html in (rst, md):
        for url in _urls(html):
            scheme = url.partition(":")[0].lower().replace(" ", "")
            assert ":" not in url or scheme in ("http", "https", "mailto"), url
    assert 'href="https://example.org/a"' in rst
    assert "mailto:a@example.org" in _urls(rst)
    assert 'href="other.html#x"' in rst
    assert 'src="pictures/fine.png"' in rst
    assert "javascript:alert(2)" in rst, "the URL is shown as text"
    assert "image not shown" in rst
    assert 'href="https://example.org/b"' in md
    assert 'href="other.md#y"' in md
    assert 'src="pictures/fine.png"' in md
    assert "javascript:alert(7)" in md


def test_which_urls_are_safe() -> None:
    from runnerkit.testing.report_render import safe_url

    for url in ("https://x.org", "HTTP://x.org", "mailto:a@b", "a/b.html", "#top", "a:b/c"[2:]):
        assert safe_url(url), url
    for url in (
        "javascript:x",
        " JavaScript:x",
        "java\tscript:x",
        "vbscript:x",
        "data:x",
        "file:/",
    ):
        assert not safe_url(url), url


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("", "--spec-report: give the directory*"),
        (" ", "--spec-report: give the directory*"),
        (".", "--spec-report *: is the root directory*"),
        ("docs/..", "--spec-report *: is the root directory*"),
        ("..", "--spec-report *: holds the root directory*"),
    ],
)
def test_a_report_beside_the_documents_is_a_usage_error(
    pytester: pytest.Pytester, argument: str, expected: str
) -> None:
    project(pytester, docs__pass_rst=ARITHMETIC)
    pytester.makeini("[pytest]\n")

    result = pytester.runpytest(f"--spec-report={argument}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    assert not (pytester.path / "index.html").exists()
    assert not (pytester.path / "docs" / "pass.rst.html").exists()


@pytest.mark.parametrize("xdist", [False, True])
def test_the_runs_of_a_parametrized_document_are_in_the_order_they_ran(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    conftest = SPECS_CONFTEST + textwrap.dedent(
        """
        import pytest

        @pytest.fixture(params=["zz", "aa", "mm"])
        def word(request):
            return request.param
        """
    )
    spec = """\
    Words
    =====

    .. runnerkit-fixtures: word

    >>> len(word)
    2
    """
    project(pytester, conftest, spec_rst=spec)
    extra = ["-n", "2", "-p", "no:cacheprovider"] if xdist else []

    pytester.runpytest_subprocess("--spec-report", "report", *extra).assert_outcomes(passed=3)

    [example] = marked_examples(page(pytester, "spec.rst"))
    assert example.badge == "line 6 · passed [zz] · passed [aa] · passed [mm]"


def test_a_document_of_prose_alone_has_its_page(pytester: pytest.Pytester) -> None:
    project(pytester, docs__prose_rst="Prose\n=====\n\nNothing to run here.\n")

    pytester.runpytest("--spec-report", "report")

    html = page(pytester, "docs/prose.rst").read_text()
    assert "Nothing to run here." in html
    assert "no examples" in html
    index = (pytester.path / "report" / "index.html").read_text()
    assert 'href="docs/prose.rst.html"' in index
    assert "<th>the 1 document</th>" in index
    assert "1 documents" not in index


def test_a_page_that_cannot_be_made_costs_only_that_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runnerkit.testing import report_site
    from runnerkit.testing.report_outcomes import SpecOutcomes

    outcomes = SpecOutcomes()
    for name in ("good.rst", "bad.rst"):
        document = outcomes.document(str(tmp_path / name))
        document.text = f"{name}\n====\n\n>>> 1\n1\n"
        document.example(4, 5)
    real_render = report_site.render

    def render(path: str, *args: object, **kwargs: object) -> object:
        if path.endswith("bad.rst"):
            raise ValueError("cannot render this")
        return real_render(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(report_site, "render", render)
    facts = report_site.RunFacts("2026-01-01T00:00:00+00:00", (), "pytest", str(tmp_path))

    index = report_site.write_site(tmp_path / "report", outcomes, facts, root=tmp_path)

    bad = (tmp_path / "report" / "bad.rst.html").read_text()
    assert "the page could not be made: ValueError: cannot render this" in bad
    assert statuses(tmp_path / "report" / "good.rst.html") == [(4, "not run")]
    assert 'href="bad.rst.html"' in index.read_text()


INTERRUPTED = """\
Interrupted
===========

>>> 1
1
>>> raise KeyboardInterrupt
>>> 3
3
"""


def test_an_interrupted_run_writes_a_partial_report_and_says_so(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=INTERRUPTED, other_rst="Other\n=====\n\n>>> 2\n2\n")

    result = pytester.runpytest_subprocess("--spec-report", "report")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    index = (pytester.path / "report" / "index.html").read_text()
    assert "the run was interrupted (KeyboardInterrupt)" in index
    assert "examples did not run" in index
    html = page(pytester, "spec.rst").read_text()
    assert "Partial report:</strong> the run was interrupted (KeyboardInterrupt)" in html
    assert "2 examples did not run" in html
    assert "not run: the run was interrupted (KeyboardInterrupt)" in html
    assert statuses(page(pytester, "spec.rst")) == [(4, "passed"), (6, "not run"), (7, "not run")]


def test_a_run_stopped_by_x_or_deselection_says_why_examples_did_not_run(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC)

    pytester.runpytest("--spec-report", "report", "-x").assert_outcomes(passed=1, failed=1)

    index = (pytester.path / "report" / "index.html").read_text()
    assert "the run stopped at the first failure (-x / --maxfail) — 1 example did not run" in index
    html = page(pytester, "spec.rst").read_text()
    assert "1 example did not run" in html
    assert 'title="line 10 of the source; not run: the run stopped at the first failure' in html
    assert "<li>not run: the run stopped at the first failure (-x / --maxfail)</li>" in html

    pytester.runpytest("--spec-report", "report", "-k", "not line:10").assert_outcomes(
        passed=1, failed=1
    )

    index = (pytester.path / "report" / "index.html").read_text()
    html = page(pytester, "spec.rst").read_text()
    assert "Partial report" not in index + html
    assert 'title="line 10 of the source; not run: deselected"' in html
    assert "<li>not run: deselected</li>" in html


def test_the_index_gives_pytests_totals_and_counts_preludes_apart(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=PRELUDED)

    pytester.runpytest("spec.rst::line:13,column:1", "--spec-report", "report").assert_outcomes(
        passed=1
    )

    index = (pytester.path / "report" / "index.html").read_text()
    assert "pytest, of the spec items: 1 passed</p>" in index
    assert '<span class="count status-ran-as-prelude">3 ran as prelude</span>' in index
    assert '<span class="count status-passed">1 passed</span>' in index
    assert "count status-failed" not in index
    assert "a prelude example counts under &#x27;ran as prelude&#x27;" in index


def test_the_index_gives_pytests_totals_of_each_run_of_a_parametrized_document(
    pytester: pytest.Pytester,
) -> None:
    languages_project(pytester)

    pytester.runpytest("--spec-report", "report").assert_outcomes(passed=3, failed=1)

    index = (pytester.path / "report" / "index.html").read_text()
    assert "pytest, of the spec items: 1 failed, 3 passed</p>" in index
    assert '<span class="count status-passed">1 passed</span>' in index
    assert '<span class="count status-failed">1 failed</span>' in index


def test_a_report_in_the_directory_of_a_document_is_refused_and_nothing_written(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, docs__guide_rst="Guide\n=====\n\n>>> 2\n2\n")

    result = pytester.runpytest("--spec-report", "docs")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*spec report not written: --spec-report *docs is or holds*"])
    assert sorted(path.name for path in (pytester.path / "docs").iterdir()) == ["guide.rst"]


def test_an_index_the_report_did_not_write_is_never_overwritten(
    pytester: pytest.Pytester,
) -> None:
    project(pytester, spec_rst=ARITHMETIC)
    (pytester.path / "site").mkdir()
    (pytester.path / "site" / "index.html").write_text("mine")

    result = pytester.runpytest("--spec-report", "site")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*holds an index.html the spec report did not write*"])
    assert (pytester.path / "site" / "index.html").read_text() == "mine"


def test_without_spec_documents_the_index_says_where_they_are_collected(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")

    pytester.runpytest("--spec-report", "report").assert_outcomes(passed=1)

    index = (pytester.path / "report" / "index.html").read_text()
    assert "no spec documents were collected by runnerkit's collector" in index
    assert "1 other test ran" in index


def test_an_interrupted_run_that_knows_no_document_says_it_does_not_know() -> None:
    from runnerkit.testing.report_site import RunFacts, index_page

    facts = RunFacts(
        date="2026-11-30T00:00:00+00:00",
        versions=(),
        command="pytest -n 2",
        root="/r",
        interruption="the run was interrupted (KeyboardInterrupt)",
    )

    index = index_page([], facts)

    assert "the examples it collected are not known (the workers did not say)" in index
    assert "no spec documents were collected" not in index
