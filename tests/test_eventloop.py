"""A document's event loop (:mod:`runnerkit.testing.eventloop`) and the evaluators that
run awaiting examples on it (:mod:`runnerkit.testing.awaiting`), without pytester."""

from __future__ import annotations
import __future__

import asyncio
import contextvars
import gc
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from sybil import Region
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.evaluators.python import PythonEvaluator

from runnerkit.errors import HarnessError
from runnerkit.testing.awaiting import (
    AwaitDocTestEvaluator,
    AwaitEvaluators,
    AwaitPythonEvaluator,
    awaiting_code,
    future_flags,
)
from runnerkit.testing.eventloop import EVENT_LOOP, DocumentLoop, document_loop

VARIABLE: contextvars.ContextVar[str] = contextvars.ContextVar("runnerkit_test", default="unset")


@pytest.fixture
def loop() -> Iterator[DocumentLoop]:
    """A document loop, closed at the end of the test whatever it did."""
    made = DocumentLoop("docs/test.rst")
    yield made
    made.close()


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("runnerkit event loop")]


async def value(result: Any) -> Any:
    await asyncio.sleep(0)
    return result


def test_the_loop_is_made_by_the_first_run_and_kept(loop: DocumentLoop) -> None:
    assert loop.loop is None
    assert loop_threads() == []
    assert loop.run(value(1)) == 1
    made = loop.loop
    assert made is not None
    assert [t.name for t in loop_threads()] == ["runnerkit event loop of docs/test.rst"]
    assert loop.run(value(asyncio.get_running_loop)) is asyncio.get_running_loop
    assert loop.run(_running_loop()) is made


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_a_loop_never_used_closes_without_a_thread() -> None:
    unused = DocumentLoop("docs/unused.rst")
    assert unused.close() == []
    assert unused.loop is None
    assert loop_threads() == []


async def fail() -> None:
    await asyncio.sleep(0)
    raise LookupError("not there")


def test_an_exception_is_raised_again_with_the_coroutines_traceback(loop: DocumentLoop) -> None:
    with pytest.raises(LookupError, match="not there") as raised:
        loop.run(fail())
    names = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    # From the caller's frames down to the coroutine's, without asyncio's or _settle's.
    assert names[-2:] == ["run", "fail"]
    assert "_settle" not in names


def test_the_coroutine_runs_in_a_copy_of_the_callers_context_and_sets_back_into_it(
    loop: DocumentLoop,
) -> None:
    async def swap() -> str:
        seen = VARIABLE.get()
        VARIABLE.set("set by the coroutine")
        return seen

    token = VARIABLE.set("set by the caller")
    try:
        assert loop.run(swap()) == "set by the caller"
        assert VARIABLE.get() == "set by the coroutine"
    finally:
        VARIABLE.reset(token)


def test_close_cancels_and_names_the_pending_tasks_only(loop: DocumentLoop) -> None:
    async def start() -> tuple[asyncio.Task[None], asyncio.Task[None]]:
        forgotten = asyncio.create_task(asyncio.Event().wait(), name="forgotten")
        stopped = asyncio.create_task(_shielded_end(), name="stopped")
        await asyncio.sleep(0)
        stopped.cancel()
        return forgotten, stopped

    forgotten, stopped = loop.run(start())
    undone = loop.close()
    assert len(undone) == 1
    assert undone[0].startswith("asyncio task 'forgotten' (Event.wait() at ")
    assert undone[0].endswith(" still pending: cancelled")
    assert forgotten.cancelled()
    # Cancelled by the "document" itself: waited for while it ended, not reported.
    assert stopped.done()
    assert loop_threads() == []


async def _shielded_end() -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.05)


def test_the_place_a_task_waits_is_shown_when_it_has_a_file() -> None:
    closing = DocumentLoop("docs/where.rst")
    waiting: list[asyncio.Task[None]] = []

    async def start() -> None:
        waiting.append(asyncio.create_task(_waits_here(), name="here"))
        await asyncio.sleep(0)

    closing.run(start())
    [undone] = closing.close()
    assert undone.startswith("asyncio task 'here' (_waits_here() at ")
    assert "test_eventloop.py:" in undone


async def _waits_here() -> None:
    await asyncio.Event().wait()


def test_a_closed_loop_refuses_to_run_and_closes_the_coroutine(loop: DocumentLoop) -> None:
    loop.run(value(None))
    assert loop.close() == []
    assert loop.close() == []
    coroutine = value(None)
    with pytest.raises(HarnessError, match=r"event loop of docs/test.rst is closed"):
        loop.run(coroutine)
    # Closed, so never "never awaited" (filterwarnings = error would say so).
    assert coroutine.cr_frame is None


def test_a_task_that_raises_system_exit_does_not_stop_the_loop(loop: DocumentLoop) -> None:
    exiting: list[asyncio.Task[None]] = []

    async def start() -> None:
        exiting.append(asyncio.create_task(_exit()))
        await asyncio.sleep(0)

    loop.run(start())
    assert loop.run(value("still serving")) == "still serving"
    assert loop.close() == [
        "event loop: a task raised SystemExit, which asyncio let out of the loop"
    ]
    # Retrieved, so that asyncio does not log it whenever the task is collected.
    assert isinstance(exiting[0].exception(), SystemExit)


async def doomed() -> None:
    raise ValueError("nobody asked")


def test_what_asyncio_reports_is_reported_with_the_document(loop: DocumentLoop) -> None:
    async def start() -> None:
        asyncio.create_task(doomed(), name="doomed")  # noqa: RUF006 - dropped on purpose
        await asyncio.sleep(0)

    loop.run(start())
    # The task is collected with its exception never retrieved: asyncio reports it.
    loop.run(value(gc.collect()))
    assert loop.close() == [
        "event loop: asyncio reported: Task exception was never retrieved:"
        " task 'doomed' (doomed()): ValueError: nobody asked"
    ]


async def _exit() -> None:
    raise SystemExit(3)


def test_what_does_not_end_in_time_is_reported(
    loop: DocumentLoop, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    async def start() -> None:
        asyncio.get_running_loop().run_in_executor(None, release.wait, 15)
        await asyncio.sleep(0)

    loop.run(start())
    try:
        undone = loop.close(timeout=0.2)
    finally:
        release.set()
    assert undone == [
        "event loop: the default executor's threads (asyncio.to_thread, run_in_executor)"
        " still running 0.2 s later; Python waits for them when the process exits"
    ]
    # The step given up on was cancelled, not left pending: when its task is
    # collected, asyncio has nothing to report (a task destroyed while pending).
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("runnerkit")] == []


def test_a_loop_blocked_by_its_thread_is_reported_and_left_open() -> None:
    blocked = DocumentLoop("docs/blocked.rst")

    async def start() -> None:
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)

    blocked.run(start())
    undone = blocked.close(timeout=0.1)
    assert undone[0].startswith("event loop: asyncio tasks still running 0.1 s after")
    assert undone[-1].startswith("event loop: its thread was still busy 0.1 s after")
    made = blocked.loop
    assert made is not None
    assert not made.is_closed()
    # Once the callback returns, the thread stops; closed here, the loop warns of nothing.
    [thread] = loop_threads()
    thread.join(15)
    made.close()


def test_a_namespace_without_a_loop_is_an_error() -> None:
    with pytest.raises(HarnessError, match="has no event loop"):
        document_loop({})
    own = DocumentLoop("docs/own.rst")
    assert document_loop({EVENT_LOOP: own}) is own


def test_only_sources_that_await_at_top_level_are_compiled_to_coroutines() -> None:
    def code(source: str) -> bool:
        return awaiting_code(source, "doc.rst", "single", 0, 1) is not None

    assert code("await x\n")
    assert code("async with x:\n    pass\n")
    assert code("[y async for y in x]\n")
    assert not code("async def f():\n    await x\n")
    assert not code("print('await, async')\n")
    assert not code("1 + 1\n")
    assert not code("await\n")  # a syntax error, left to the ordinary evaluation


def test_awaiting_code_keeps_the_document_line_numbers() -> None:
    made = awaiting_code("await x\n", "doc.rst", "single", 0, 42)
    assert made is not None
    assert made.co_filename == "doc.rst"
    assert max(line for _, _, line in made.co_lines() if line) == 42


class _OwnCall(DocTestEvaluator):
    """A doctest evaluator that evaluates in a way of its own."""

    def __call__(self, example: Any) -> str:
        return ""


def test_the_evaluators_of_sybil_are_stood_for_once_and_others_left_alone() -> None:
    evaluators = AwaitEvaluators()
    doctests, code, own = DocTestEvaluator(), PythonEvaluator(["annotations"]), _OwnCall()

    def other(example: Any) -> None:
        return None

    regions = [
        Region(0, 1, None, evaluator) for evaluator in (doctests, doctests, code, own, other)
    ]
    converted = [region.evaluator for region in evaluators.regions(regions)]
    assert isinstance(converted[0], AwaitDocTestEvaluator)
    assert converted[0] is converted[1]
    assert converted[0].runner is doctests.runner
    assert isinstance(converted[2], AwaitPythonEvaluator)
    assert converted[2].flags == code.flags
    assert converted[3:] == [own, other]
    assert evaluators.evaluator_for(converted[0]) is converted[0]


def test_the_future_imports_an_example_has_run_are_compiled_with() -> None:
    assert future_flags({}) == 0
    assert future_flags({"annotations": __future__.annotations}) == (
        __future__.annotations.compiler_flag
    )
    # A name that only looks like one is not a future import.
    assert future_flags({"annotations": "annotations"}) == 0
