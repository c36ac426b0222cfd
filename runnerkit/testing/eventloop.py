"""The event loop of one document, which its top-level ``await`` examples run on.

A document's examples share one :class:`DocumentLoop`, as the inputs of
``python -m asyncio`` share one loop: a task created by one example (a server, say)
goes on running while the next examples run, and an example that awaits it later
finds it where it left it.  Like that REPL's, the loop runs all the time, in a thread
of its own, so a server started on it keeps answering while an example without
``await`` talks to it with a blocking client.  Examples without ``await`` still run
where every example runs, in pytest's thread, so nothing changes for them: signal
handlers, debuggers and pytest-timeout work as before.

The loop is made by the first example that awaits.  A document that never awaits
gets no loop and no thread.  When the document ends, :meth:`DocumentLoop.close`
cancels the tasks it left pending, waits for them to finish cancelling, shuts down
asynchronous generators and the default executor, stops the thread and closes the
loop, and says which tasks it had to cancel, and what asyncio reported meanwhile (a
task's exception nobody retrieved), for the document's
:class:`~runnerkit.testing.isolation.IsolationWarning`.

The loop keeps the real clock while freezegun freezes time, as freezegun's own
``real_asyncio=True`` gives every loop: a frozen loop clock would make
``asyncio.sleep``, ``asyncio.timeout`` and every ``call_later`` wait for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from runnerkit.errors import HarnessError
from runnerkit.testing.timecontrol import real_monotonic

log = logging.getLogger(__name__)

#: The namespace key under which a document keeps its :class:`DocumentLoop`.
EVENT_LOOP = "__runnerkit_event_loop__"

#: Seconds each step of :meth:`DocumentLoop.close` may take: the cancelled tasks to
#: finish, the default executor's threads to end, the loop's thread to stop.
CLOSE_SECONDS = 10.0

#: Seconds a step of :meth:`DocumentLoop.close` that did not end in time gets to end
#: once cancelled.
_CANCEL_SECONDS = 1.0

T = TypeVar("T")

#: What a context variable holds when it holds nothing (no value, no default).
_UNSET: Any = object()


class DocumentLoop:
    """An asyncio event loop for one document, started by the first example that awaits.

    :param owner: the document, named in errors and in what :meth:`close` reports.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: The loop's default executor (``asyncio.to_thread``, ``run_in_executor``),
        #: the document's own, so that :meth:`close` can wait for it without the loop.
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        #: Set, before the loop is stopped, to tell its thread not to run it again.
        self._stopping = False
        #: What escaped the loop: ``KeyboardInterrupt`` or ``SystemExit`` from a task.
        self._escaped: list[BaseException] = []
        #: What asyncio reported to the loop's exception handler, described.
        self._reported: list[str] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._loop else "not started"
        return f"<DocumentLoop of {self.owner}: {state}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop, once an example has awaited; None before that."""
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* to its end on the loop, from another thread, and return its
        result or raise its exception.

        It runs in a copy of the caller's context, so it sees the current
        configuration and every other context variable; what it leaves set in it is
        set back in the caller's context when it ends, as if it had run there, the way
        an example without ``await`` would.  If the caller is interrupted while it
        waits (Ctrl-C, a pytest-timeout), the coroutine's task is cancelled.

        :raises HarnessError: the loop is closed.
        """
        __tracebackhide__ = True
        try:
            loop = self._started()
        except BaseException:
            coroutine.close()
            raise
        outcome = self._submit(loop, coroutine)
        try:
            outcome.done.wait()
        except BaseException:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(outcome.cancel)
            raise
        finally:
            _copy_back(outcome.context)
        error, outcome.error = outcome.error, None
        if error is not None:
            try:
                raise error
            finally:
                del error
        return cast(T, outcome.value)

    def close(self, timeout: float = CLOSE_SECONDS) -> list[str]:
        """Cancel the tasks still pending, stop the loop's thread, close the loop.

        A task the document cancelled itself, and that is on its way out, is waited for
        but not reported.  Nothing here raises: what could not be done is reported.
        Closing twice, or a loop never started, does nothing.

        :param timeout: seconds each step may take before it is given up.
        :returns: what had to be done, one description each: the tasks cancelled, what
            asyncio reported while the loop ran, and the steps that did not end in time.
        """
        loop, thread = self._loop, self._thread
        if self._closed or loop is None or thread is None:
            self._closed = True
            return []
        self._closed = True
        undone: list[str] = []
        tasks: list[asyncio.Task[Any]] = []
        # Each step waits for the one before: after one that did not end, the loop is
        # stopped as it is.
        if not self._settled(loop, _cancel_pending(undone, tasks), timeout):
            names = ", ".join(repr(task.get_name()) for task in tasks if not task.done())
            undone.append(
                f"event loop: asyncio tasks still running {timeout:g} s after they were"
                f" cancelled: {names}"
            )
        elif not self._settled(loop, loop.shutdown_asyncgens(), timeout):
            undone.append(f"event loop: asynchronous generators not closed {timeout:g} s later")
        elif not self._executor_shut_down(timeout):
            undone.append(
                "event loop: the default executor's threads (asyncio.to_thread,"
                f" run_in_executor) still running {timeout:g} s later; Python waits for"
                " them when the process exits"
            )
        self._stopping = True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        for error in self._escaped:
            undone.append(
                f"event loop: a task raised {type(error).__name__}, which asyncio let out of"
                " the loop"
            )
        self._escaped.clear()
        undone.extend(f"event loop: asyncio reported: {each}" for each in self._reported)
        self._reported.clear()
        if thread.is_alive():
            undone.append(
                f"event loop: its thread was still busy {timeout:g} s after it was told to"
                " stop (a blocking call in a coroutine?); the loop is left open"
            )
        else:
            loop.close()
        return undone

    def _started(self) -> asyncio.AbstractEventLoop:
        """The loop, running in its thread; made and started on the first call."""
        if self._closed:
            raise HarnessError(
                f"the event loop of {self.owner} is closed: examples can await only"
                " while their document runs"
            )
        if self._loop is None:
            loop = asyncio.new_event_loop()
            with contextlib.suppress(AttributeError):
                # A loop whose class is written in C (uvloop) keeps its own clock, which
                # freezegun cannot freeze.
                loop.time = real_monotonic  # type: ignore[method-assign]
            loop.set_exception_handler(self._report)
            self._executor = ThreadPoolExecutor(thread_name_prefix="runnerkit executor")
            loop.set_default_executor(self._executor)
            thread = threading.Thread(
                target=self._serve,
                args=(loop,),
                name=f"runnerkit event loop of {self.owner}",
                daemon=True,
            )
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _report(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: keep what asyncio reports, for :meth:`close`.

        asyncio would log it, with its traceback, whenever it happens, often when the
        garbage collector finds a task whose exception nobody retrieved: in another
        document's time, and, on Python 3.11 before 3.11.8, with a traceback format
        that can break an :func:`ast.parse` running at that moment (CPython issue
        106905), such as pytest's while it shows a failure.  Kept, it is reported with
        the document; once the document has ended, it is logged in one line.
        """
        described = describe_report(context)
        if self._closed:
            log.error("asyncio reported, after %s ended: %s", self.owner, described)
        else:
            self._reported.append(described)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run *loop* until :meth:`close` stops it: the thread's target."""
        asyncio.set_event_loop(loop)
        try:
            while not self._stopping:
                try:
                    loop.run_forever()
                except BaseException as error:
                    # A task's KeyboardInterrupt or SystemExit stops the loop; the
                    # document's other tasks, and the next examples, still need it.
                    self._escaped.append(error)
        finally:
            asyncio.set_event_loop(None)

    def _settled(
        self,
        loop: asyncio.AbstractEventLoop,
        coroutine: Coroutine[Any, Any, Any],
        timeout: float,
    ) -> bool:
        """Whether *coroutine*, run on *loop*, ended within *timeout* seconds.

        The wait is on the real clock, which freezegun leaves alone, not on the loop's.
        A coroutine that did not end in time is cancelled, and given a moment to end
        cancelled, so that its task is not left pending when the loop closes (asyncio
        would report it destroyed while pending).
        """
        outcome = self._submit(loop, coroutine)
        if outcome.done.wait(timeout):
            return True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(outcome.cancel)
        outcome.done.wait(min(timeout, _CANCEL_SECONDS))
        return False

    def _executor_shut_down(self, timeout: float) -> bool:
        """Whether the default executor's threads ended within *timeout* seconds, once
        it was shut down.

        The wait is in a thread of its own, not on the loop: asyncio's
        ``shutdown_default_executor`` joins the threads in the loop's thread once it
        is cancelled (Python 3.11), which would block the loop as long as they run.
        """
        executor = self._executor
        if executor is None:
            return True
        ended = threading.Event()

        def shut_down() -> None:
            executor.shutdown(wait=True)
            ended.set()

        threading.Thread(target=shut_down, name="runnerkit executor shutdown", daemon=True).start()
        return ended.wait(timeout)

    def _submit(
        self, loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]
    ) -> _Outcome:
        """Start *coroutine* as a task of *loop*, in a copy of the caller's context."""
        outcome = _Outcome(contextvars.copy_context())

        def start() -> None:
            if self._stopping:
                # Queued behind a callback that blocked the loop until close() gave
                # up on it: it will never run, so it is closed, never "never awaited".
                coroutine.close()
                return
            outcome.task = loop.create_task(_settle(coroutine, outcome), context=outcome.context)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as error:
            coroutine.close()
            raise HarnessError(f"the event loop of {self.owner} is closed") from error
        return outcome


class _Outcome:
    """How one coroutine run by :meth:`DocumentLoop.run` ended, once ``done`` is set."""

    def __init__(self, context: contextvars.Context) -> None:
        #: The context the coroutine runs in.
        self.context = context
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Cancel the task, on the loop's thread."""
        if self.task is not None:
            self.task.cancel()


async def _settle(coroutine: Coroutine[Any, Any, Any], outcome: _Outcome) -> None:
    """Await *coroutine* and keep its result or its exception in *outcome*.

    Every exception is kept, even ``KeyboardInterrupt``, ``SystemExit`` and
    ``CancelledError``: it is raised again in the thread that waits, as an example's
    own exception, and the loop goes on.  This frame is left out of its traceback.
    """
    try:
        outcome.value = await coroutine
    except BaseException as error:
        traceback = error.__traceback__
        outcome.error = error.with_traceback(traceback.tb_next if traceback else None)
    finally:
        outcome.done.set()


async def _cancel_pending(undone: list[str], tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the loop's tasks but this one, describe them in *undone*, and wait for them.

    *tasks* gets the tasks waited for, so that the caller can name those that
    outlive its patience.
    """
    tasks.extend(task for task in asyncio.all_tasks() if task is not asyncio.current_task())
    for task in tasks:
        if not task.cancelling():
            undone.append(f"asyncio task {describe_task(task)} still pending: cancelled")
            task.cancel()
    if tasks:
        await asyncio.wait(tasks)


def describe_task(task: asyncio.Task[Any]) -> str:
    """*task* for people: its name, its coroutine, and where that waits.

    ``'serve' (forever() at docs/servers.rst:12)``.  The place is left out when the
    coroutine's code has no file of its own (``<doctest ...>``).
    """
    coroutine = task.get_coro()
    name = getattr(coroutine, "__qualname__", type(coroutine).__name__)
    frame = getattr(coroutine, "cr_frame", None)
    where = ""
    if frame is not None and not frame.f_code.co_filename.startswith("<"):
        where = f" at {_shown(frame.f_code.co_filename)}:{frame.f_lineno}"
    return f"{task.get_name()!r} ({name}(){where})"


def describe_report(context: dict[str, Any]) -> str:
    """What asyncio reports to an exception handler, in one line.

    ``Task exception was never retrieved: task 'poll' (poll()): ValueError: no``.
    """
    parts = [str(context.get("message") or "an unhandled exception")]
    future = context.get("task") or context.get("future")
    if isinstance(future, asyncio.Task):
        parts.append(f"task {describe_task(future)}")
    error = context.get("exception")
    if error is not None:
        parts.append(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    return ": ".join(parts)


def document_loop(namespace: dict[str, Any]) -> DocumentLoop:
    """The :class:`DocumentLoop` of the document whose namespace is *namespace*.

    :raises HarnessError: the document has none, because it was not set up by
        :func:`runnerkit.testing.documents.setup_document`.
    """
    loop = namespace.get(EVENT_LOOP)
    if not isinstance(loop, DocumentLoop):
        raise HarnessError(
            "an example awaits, but its document has no event loop: a document gets one"
            " when runnerkit sets it up (collect_specs, make_sybil)"
        )
    return loop


def _copy_back(context: contextvars.Context) -> None:
    """Set in the current context each variable that *context* holds another value for."""
    for variable, value in context.items():
        if variable.get(_UNSET) is not value:
            variable.set(value)


def _shown(filename: str) -> str:
    """*filename*, relative to the current directory when it is below it."""
    path = Path(filename)
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return str(path)
