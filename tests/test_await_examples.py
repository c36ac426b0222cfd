"""Examples that ``await``, tried the way another project meets them.

Each test builds a throwaway project with pytester whose ``conftest.py`` is the one
line of :func:`runnerkit.testing.collect_specs`, writes ``.rst`` and ``.md`` specs that
await, and runs pytest on them: they pass, share one loop per document, survive
``clear-namespace``, run on two workers and in accept mode; an awaited exception nobody
expected is reported with the document's line; a task left pending is cancelled and
named; a document that never awaits makes no loop at all.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files, and the warnings of asynchronous code
#: gone wrong made errors: a coroutine never awaited, a loop never closed, an exception
#: in a thread.  (Not all warnings: an in-process run warns that runnerkit, imported
#: already, cannot be rewritten.)
STRICT = (
    "-p",
    "no:cacheprovider",
    "-W",
    "error::RuntimeWarning",
    "-W",
    "error::ResourceWarning",
    "-W",
    "error::pytest.PytestUnraisableExceptionWarning",
    "-W",
    "error::pytest.PytestUnhandledThreadExceptionWarning",
)

#: The same, letting the warning of a document that left something behind through.
SHOWING_ISOLATION = (*STRICT, "-W", "always::runnerkit.testing.isolation.IsolationWarning")

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"])
"""

#: A reST spec that awaits in doctests and in a code block, and expects an exception.
AWAITING_RST = """\
Awaiting
========

    >>> import asyncio
    >>> await asyncio.sleep(0, 'awake')
    'awake'
    >>> async def boom():
    ...     raise ValueError('boom')
    >>> await boom()
    Traceback (most recent call last):
      ...
    ValueError: boom
    >>> async with asyncio.timeout(5):
    ...     print('inside')
    inside

.. code-block:: python

    async with asyncio.timeout(5):
        block = await asyncio.sleep(0, 'from a block')

And then:

    >>> block
    'from a block'
"""

#: The same in Markdown: doctests and a code block in ``python`` fences.
AWAITING_MD = """\
# Awaiting

```python
>>> import asyncio
>>> await asyncio.sleep(0, 'awake')
'awake'
>>> async def count(n):
...     for i in range(n):
...         yield i
>>> [i async for i in count(3)]
[0, 1, 2]

```

```python
async for i in count(2):
    last = i
```

```python
>>> last
1

```
"""


def write(pytester: pytest.Pytester, files: dict[str, str], conftest: str = CONFTEST) -> None:
    """Write the conftest and *files* (relative paths to text) into the project."""
    pytester.makeconftest(conftest)
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def examples(text: str) -> int:
    """How many examples Sybil finds in *text*: ``>>>`` lines, code blocks and
    ``clear-namespace`` directives."""
    prompts = sum(line.lstrip().startswith(">>>") for line in text.splitlines())
    blocks = (
        text.count(".. code-block:: python")
        + text.count("```python\n")
        - text.count("```python\n>>>")
    )
    return prompts + blocks + text.count(".. clear-namespace")


def test_examples_await_in_rst_and_md_specs(pytester: pytest.Pytester) -> None:
    write(pytester, {"docs/a.rst": AWAITING_RST, "docs/b.md": AWAITING_MD})
    result = pytester.runpytest(*STRICT)
    result.assert_outcomes(passed=examples(AWAITING_RST) + examples(AWAITING_MD))
    # Nothing left behind: no task pending, nothing asyncio had to report.
    assert "IsolationWarning" not in result.stdout.str()


@pytest.mark.slow
def test_awaiting_specs_run_on_two_workers(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        {
            "docs/a.rst": AWAITING_RST,
            "docs/b.md": AWAITING_MD,
            "docs/c.rst": AWAITING_RST,
            "docs/d.md": AWAITING_MD,
        },
    )
    result = pytester.runpytest_subprocess(*STRICT, "-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=2 * (examples(AWAITING_RST) + examples(AWAITING_MD)))
    result.stdout.fnmatch_lines(["*2 workers*"])
    assert "IsolationWarning" not in result.stdout.str()


#: Every awaiting example, code block included, records the loop it ran on; a
#: ``clear-namespace`` in the middle forgets the names, not the loop.
SHARED = """\
Shared
======

    >>> import asyncio, threading
    >>> async def running():
    ...     return asyncio.get_running_loop()
    >>> first = await running()
    >>> second = await running()

.. code-block:: python

    third = await running()

..

    >>> first is second is third
    True
    >>> def loop_threads():
    ...     return [t for t in threading.enumerate() if t.name.startswith('runnerkit event loop')]
    >>> [thread.name for thread in loop_threads()]
    ['runnerkit event loop of docs/shared.rst']
    >>> import pathlib
    >>> _ = pathlib.Path('first-loop').write_text(str(id(first)))

.. clear-namespace

After it:

    >>> 'first' in globals()
    False
    >>> import asyncio, pathlib, threading
    >>> async def running():
    ...     return asyncio.get_running_loop()
    >>> str(id(await running())) == pathlib.Path('first-loop').read_text()
    True
    >>> len([t for t in threading.enumerate() if t.name.startswith('runnerkit event loop')])
    1
"""


def test_the_examples_of_a_document_share_one_loop_even_across_clear_namespace(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/shared.rst": SHARED})
    result = pytester.runpytest(*STRICT)
    result.assert_outcomes(passed=examples(SHARED))


#: Counts the event loops made, by the test that was running when each was made.
COUNTING_CONFTEST = (
    CONFTEST
    + """
import asyncio
import os

made = []
_new_event_loop = asyncio.new_event_loop


def _counting_new_event_loop():
    made.append(os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0])
    return _new_event_loop()


asyncio.new_event_loop = _counting_new_event_loop


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"loops made: {len(made)} {sorted(set(made))}")
"""
)

PLAIN = """\
Plain
=====

    >>> import threading
    >>> total = 1 + 1
    >>> print('no await here; asyncio and async are only words')
    no await here; asyncio and async are only words

.. code-block:: python

    total += 1

..

    >>> total
    3
    >>> [t.name for t in threading.enumerate() if t.name.startswith('runnerkit event loop')]
    []
    >>> print(__runnerkit_event_loop__.loop)
    None
"""

ONE_AWAIT = """\
One await
=========

    >>> import asyncio
    >>> await asyncio.sleep(0)
    >>> await asyncio.sleep(0)
"""


def test_a_document_that_never_awaits_makes_no_loop(pytester: pytest.Pytester) -> None:
    write(pytester, {"docs/plain.rst": PLAIN, "docs/one.rst": ONE_AWAIT}, COUNTING_CONFTEST)
    result = pytester.runpytest_subprocess(*STRICT)
    result.assert_outcomes(passed=examples(PLAIN) + examples(ONE_AWAIT))
    # The counting works: the document that awaits made one loop, for both its awaits.
    result.stdout.fnmatch_lines(["loops made: 1 ['docs/one.rst::line:5,column:1']"])


PENDING = """\
Pending
=======

    >>> import asyncio, pathlib
    >>> async def forever():
    ...     try:
    ...         await asyncio.Event().wait()
    ...     except asyncio.CancelledError:
    ...         pathlib.Path('cancelled').write_text('yes')
    ...         raise
    >>> async def start():
    ...     task = asyncio.create_task(forever(), name='forgotten')
    ...     await asyncio.sleep(0)
    ...     return task
    >>> task = await start()
    >>> stopped = await start()
    >>> async def stop(task):
    ...     task.cancel()
    ...     await asyncio.wait([task])
    >>> await stop(stopped)
"""


def test_a_task_left_pending_is_cancelled_and_named_with_its_document(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/pending.rst": PENDING})
    result = pytester.runpytest(*SHOWING_ISOLATION)
    result.assert_outcomes(passed=examples(PENDING))
    result.stdout.fnmatch_lines(
        [
            "*IsolationWarning: docs/pending.rst left changes behind*",
            "*- asyncio task 'forgotten' (forever()) still pending: cancelled",
            "*A task is ended in an awaiting example: task.cancel(), then"
            " 'await asyncio.gather(task, return_exceptions=True)'.",
        ]
    )
    # Named once: the task the document stopped itself is not reported.
    assert result.stdout.str().count("still pending") == 1
    assert (pytester.path / "cancelled").read_text() == "yes"


UNEXPECTED = """\
Unexpected
==========

    >>> import asyncio
    >>> async def deep():
    ...     await asyncio.sleep(0)
    ...     raise KeyError('lost')
    >>> await deep()
    >>> print('the document goes on')
    the document goes on
"""


def test_an_unexpected_exception_in_awaited_code_fails_the_example_and_shows_where(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/unexpected.rst": UNEXPECTED})
    result = pytester.runpytest(*STRICT)
    result.assert_outcomes(passed=examples(UNEXPECTED) - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*docs/unexpected.rst, line 8, column 1 did not evaluate as expected:",
            "Exception raised:",
            "*Traceback (most recent call last):",
            "*File *docs/unexpected.rst*, line 8, in <module>",
            "*>>> await deep()",
            "*KeyError: 'lost'",
        ]
    )


WRONG_OUTPUT = """\
Wrong output
============

    >>> import asyncio
    >>> await asyncio.sleep(0, 2)
    3
    >>> async with asyncio.timeout(5):
    ...     print('printed', await asyncio.sleep(0, 'by awaited code'))
    something else
"""

WRONG_OUTPUT_MD = """\
# Wrong output

```python
>>> import asyncio
>>> await asyncio.sleep(0, 2)
3

```
"""


def test_a_wrong_output_is_reported_and_accepted_by_spec_accept(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/wrong.rst": WRONG_OUTPUT, "docs/wrong.md": WRONG_OUTPUT_MD})
    result = pytester.runpytest(*STRICT)
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(["Expected:", "    3", "Got:", "    2"])
    result.stdout.fnmatch_lines(
        ["Expected:", "    something else", "Got:", "    printed by awaited code"]
    )

    result = pytester.runpytest(*STRICT, "--spec-accept")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*runnerkit accept*",
            "docs/wrong.md: rewrote 1 example (line 5)",
            "docs/wrong.rst: rewrote 2 examples (line 5, 7)",
        ]
    )
    rst = (pytester.path / "docs/wrong.rst").read_text()
    assert rst == WRONG_OUTPUT.replace("    3\n", "    2\n").replace(
        "something else", "printed by awaited code"
    )
    md = (pytester.path / "docs/wrong.md").read_text()
    assert md == WRONG_OUTPUT_MD.replace("\n3\n", "\n2\n")
    pytester.runpytest(*STRICT).assert_outcomes(passed=5)


RAISING = """\
Raising
=======

    >>> import asyncio
    >>> async def refuse():
    ...     raise PermissionError('not you')
    >>> await refuse()
"""


def test_spec_accept_exceptions_accepts_an_awaited_exception(pytester: pytest.Pytester) -> None:
    write(pytester, {"docs/raising.rst": RAISING})
    result = pytester.runpytest(*STRICT, "--spec-accept", "--spec-accept-exceptions")
    result.assert_outcomes(passed=2, failed=1)
    text = (pytester.path / "docs/raising.rst").read_text()
    assert text.endswith(
        "    >>> await refuse()\n"
        "    Traceback (most recent call last):\n"
        "    ...\n"
        "    PermissionError: not you\n"
    )
    pytester.runpytest(*STRICT).assert_outcomes(passed=3)


HANGING = """\
Hanging
=======

    >>> import asyncio, pathlib
    >>> async def hang():
    ...     try:
    ...         await asyncio.Event().wait()
    ...     finally:
    ...         pathlib.Path('hang-ended').write_text('yes')
    >>> await hang()
    >>> await asyncio.sleep(0, 'the loop still serves')
    'the loop still serves'
"""


@pytest.mark.slow
def test_an_awaiting_example_stopped_by_a_time_limit_has_its_task_cancelled(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/hanging.rst": HANGING})
    result = pytester.runpytest_subprocess(
        *STRICT, "-p", "timeout", "--timeout", "2", "--timeout-method", "signal"
    )
    result.assert_outcomes(passed=examples(HANGING) - 1, failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout*", "FAILED docs/hanging.rst::line:10,column:1"])
    assert (pytester.path / "hang-ended").read_text() == "yes"
    assert "still pending" not in result.stdout.str()


SYNTAX = """\
Syntax
======

    >>> await
"""


def test_an_example_that_cannot_compile_reports_its_syntax_error(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, {"docs/syntax.rst": SYNTAX})
    result = pytester.runpytest(*STRICT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*SyntaxError: invalid syntax*"])
    assert "runnerkit event loop" not in result.stdout.str()


def test_a_document_in_a_subdirectory_of_a_downstream_project(
    pytester: pytest.Pytester,
) -> None:
    # collect_specs's patterns, from a conftest that is not at the root.
    conftest = CONFTEST.replace('["docs/*.rst", "docs/*.md"]', '["**/*.md"]')
    (pytester.path / "project").mkdir()
    (pytester.path / "project" / "conftest.py").write_text(conftest)
    deep = pytester.path / "project" / "guide" / "deep"
    deep.mkdir(parents=True)
    (deep / "await.md").write_text(AWAITING_MD)
    result = pytester.runpytest(*STRICT, "project")
    result.assert_outcomes(passed=examples(AWAITING_MD))


FROZEN_FIRST = """\
Frozen first
============

The loop is made while the clock is frozen: it still keeps the real clock.

    >>> import asyncio, datetime
    >>> frozen = freeze_time('2020-01-01 00:00')
    >>> _ = frozen.start()
    >>> await asyncio.sleep(0.05)
    >>> async with asyncio.timeout(0.05):
    ...     await asyncio.sleep(30)
    Traceback (most recent call last):
      ...
    TimeoutError
    >>> print(datetime.datetime.now())
    2020-01-01 00:00:00
    >>> frozen.stop()
"""


def test_a_loop_made_during_a_freeze_keeps_the_real_clock(pytester: pytest.Pytester) -> None:
    write(pytester, {"docs/frozen.rst": FROZEN_FIRST})
    result = pytester.runpytest(*STRICT, "-p", "timeout", "--timeout", "20")
    result.assert_outcomes(passed=examples(FROZEN_FIRST))
