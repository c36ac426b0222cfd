"""A fence shown inside another block is text of that block, not an example.

CommonMark reads a ```` ```console ```` fence inside a ```` ````markdown ```` fence, a
``~~~`` fence, an indented code block or an HTML block as that block's text, and a
``<!-- skip: next -->`` inside a fence as text, not a comment; Sybil's regex lexers do
not.  Each test builds a downstream project with pytester whose conftest calls
``collect_specs``, as the bug report's did.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project.
QUIET = ("-p", "no:cacheprovider")


def project(pytester: pytest.Pytester, text: str) -> None:
    """A project whose conftest collects ``docs/**/*.md``, with *text* as ``docs/howto.md``."""
    pytester.makeconftest(
        "from runnerkit.testing import collect_specs\n"
        'pytest_collect_file = collect_specs(["docs/**/*.md"])\n'
    )
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "howto.md").write_text(text, encoding="utf-8")


def collected(pytester: pytest.Pytester) -> list[str]:
    """The ids of the items collected from the project."""
    result = pytester.runpytest(*QUIET, "--collect-only", "-q", "docs")
    return [line for line in result.outlines if "howto.md::" in line]


def test_a_console_fence_in_a_longer_fence_is_not_run(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "EXECUTED_FROM_SAMPLE"
    project(
        pytester,
        "# How to write a console example\n"
        "\n"
        "````markdown\n"
        "```console\n"
        f"$ touch {marker}\n"
        "```\n"
        "````\n"
        "\n"
        "~~~text\n"
        "```pycon\n"
        ">>> 40 + 2\n"
        "0\n"
        "```\n"
        "~~~\n",
    )

    assert collected(pytester) == []
    result = pytester.runpytest(*QUIET, "docs")

    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not marker.exists()


def test_a_pycon_fence_in_a_tilde_fence_is_not_collected(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        "~~~text\n```pycon\n>>> 40 + 2\n0\n```\n~~~\n\n```pycon\n>>> 40 + 2\n42\n```\n",
    )

    assert collected(pytester) == ["docs/howto.md::line:9,column:1"]
    pytester.runpytest(*QUIET, "docs").assert_outcomes(passed=1)


def test_python_blocks_in_a_longer_fence_are_not_collected(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        "````markdown\n"
        "```python\n"
        ">>> 1 + 1\n"
        "3\n"
        "```\n"
        "\n"
        "```python\n"
        "raise SystemExit('ran a sample')\n"
        "```\n"
        "\n"
        "<!-- invisible-code-block: python\n"
        "raise SystemExit('ran an invisible sample')\n"
        "-->\n"
        "````\n"
        "\n"
        "```python\n"
        ">>> 1 + 1\n"
        "2\n"
        "```\n",
    )

    assert collected(pytester) == ["docs/howto.md::line:17,column:1"]
    pytester.runpytest(*QUIET, "docs").assert_outcomes(passed=1)


def test_a_skip_comment_inside_a_fence_is_not_obeyed(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        "````markdown\n<!-- skip: next -->\n````\n\n```pycon\n>>> 1 + 1\n3\n```\n",
    )

    result = pytester.runpytest(*QUIET, "docs")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED docs/howto.md::line:6,column:1"])


def test_fences_in_indented_code_and_html_blocks_are_not_collected(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        "An indented code block:\n"
        "\n"
        "    ```pycon\n"
        "    >>> 1 + 1\n"
        "    3\n"
        "    ```\n"
        "\n"
        "<div>\n"
        "```pycon\n"
        ">>> 2 + 2\n"
        "5\n"
        "```\n"
        "</div>\n",
    )

    assert collected(pytester) == []


def test_a_fence_in_a_block_quote_is_still_collected(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        "> ```pycon\n"
        "> >>> 1 + 1\n"
        "> 2\n"
        "> ```\n"
        "\n"
        "> ````markdown\n"
        "> ```pycon\n"
        "> >>> 1 + 1\n"
        "> 3\n"
        "> ```\n"
        "> ````\n",
    )

    assert collected(pytester) == ["docs/howto.md::line:2,column:1"]
    pytester.runpytest(*QUIET, "docs").assert_outcomes(passed=1)


NORMAL = """\
# A normal document

<!-- skip: next -->

```pycon
>>> 1 + 1
3
```

```python
x = 20
```

```pycon
>>> x + 22
42
```

- In a list:

  ```console
  $ echo hi
  hi
  ```
"""


def test_a_normal_document_is_read_as_before(pytester: pytest.Pytester) -> None:
    # Read as before, though a sample of itself follows in a longer fence.
    project(pytester, NORMAL + "\n`````markdown\n" + NORMAL + "`````\n")

    assert collected(pytester) == [
        "docs/howto.md::line:3,column:1",
        "docs/howto.md::line:6,column:1",
        "docs/howto.md::line:10,column:1",
        "docs/howto.md::line:15,column:1",
        "docs/howto.md::line:22,column:3",
    ]
    pytester.runpytest(*QUIET, "docs").assert_outcomes(passed=5)
