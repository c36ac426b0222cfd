"""Top-level ``await`` in examples: ``>>> await server.start()``, as in ``python -m asyncio``.

Python 3.11's :mod:`doctest` compiles each example as one interactive statement, where
``await``, ``async for`` and ``async with`` are syntax errors.  Compiled with
:data:`ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`, as the asyncio REPL compiles its inputs, such
an example becomes a code object flagged ``CO_COROUTINE``, whose evaluation gives a
coroutine; running that coroutine runs the example, and in ``single`` mode an
expression's value is shown through :func:`sys.displayhook`, as doctest expects.

Only an example that needs it goes this way: one whose source mentions ``await`` or
``async`` and that, compiled with the flag, is a coroutine.  Every other example is
evaluated by Sybil's own evaluators, exactly as before, and a document none of whose
examples awaits never makes an event loop.

doctest cannot be given such an example as it is: it runs each example with
:func:`exec`, and ``exec`` of a coroutine's code makes the coroutine and drops it,
unrun.  So a doctest example that awaits is still run, checked and reported by doctest,
with the evaluator's runner (so accept mode's recording runner sees it too): the runner
is handed a stand-in example whose source is one call, :data:`SHIM_SOURCE`, made with
the example's expected output and options.  The call runs the real example on the
document's :class:`~runnerkit.testing.eventloop.DocumentLoop` and returns None, so
doctest sees what the example printed, what its expression showed and what it raised,
and compares them as it would have.  The real example is compiled with the document's
path as its file name and its own line numbers there, so a traceback shows its lines as
they stand in the document.
"""

from __future__ import annotations
import __future__

import ast
import copy
import doctest
import inspect
from collections.abc import Iterable, Iterator
from types import CodeType
from typing import Any

from sybil import Example, Region
from sybil.evaluators.doctest import DocTest, DocTestEvaluator, DocTestRunner
from sybil.evaluators.python import PythonEvaluator
from sybil.typing import Evaluator

from runnerkit.testing.eventloop import document_loop

#: The namespace name of the call that runs an awaiting doctest example, while it runs.
SHIM_NAME = "__runnerkit_await__"

#: The source doctest is given instead of an awaiting example's: what a traceback
#: shows for the frame that started it.
SHIM_SOURCE = f"{SHIM_NAME}()  # the example, run on the document's event loop\n"


def may_await(source: str) -> bool:
    """Whether *source* could await at all: whether it says ``await`` or ``async``.

    The test costs next to nothing, so that examples without either cost nothing more
    than they did before examples could await.
    """
    return "await" in source or "async" in source


def awaiting_code(source: str, filename: str, mode: str, flags: int, line: int) -> CodeType | None:
    """*source* compiled so that it may await at top level, or None if it does not await.

    Only a source that :func:`may_await` is compiled here.  A source that does not
    compile gives None too: evaluated the ordinary way, it raises its syntax error as
    usual.

    :param mode: ``"single"`` for a doctest example, ``"exec"`` for a code block.
    :param flags: compiler flags, such as the ``__future__`` imports in effect.
    :param line: the line of *filename* on which *source* starts.
    """
    if not may_await(source):
        return None
    padded = "\n" * (line - 1) + source
    try:
        code = compile(
            padded, filename, mode, flags | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
    except SyntaxError:
        return None
    return code if code.co_flags & inspect.CO_COROUTINE else None


def future_flags(namespace: dict[str, Any]) -> int:
    """The compiler flags of the ``from __future__ import ...`` that *namespace* has run.

    doctest compiles each example with them, and so are awaiting examples.
    """
    flags = 0
    for name in __future__.all_feature_names:
        feature = getattr(__future__, name)
        if name in namespace and namespace[name] is feature:
            flags |= feature.compiler_flag
    return flags


class AwaitDocTestEvaluator(DocTestEvaluator):
    """Sybil's doctest evaluator, for examples that may ``await`` at top level.

    :param runner: the doctest runner that runs and reports the examples: that of
        the Sybil evaluator this one stands for, with its option flags and checker.
    """

    def __init__(self, runner: DocTestRunner) -> None:
        # Not DocTestEvaluator.__init__, which would make a runner of its own.
        self.runner = runner

    def __repr__(self) -> str:
        return f"<AwaitDocTestEvaluator {self.runner!r}>"

    def __call__(self, sybil_example: Example) -> str:
        __tracebackhide__ = True
        example: doctest.Example = sybil_example.parsed
        if not may_await(example.source):
            return super().__call__(sybil_example)
        namespace = sybil_example.namespace
        code = awaiting_code(
            example.source,
            sybil_example.path,
            "single",
            future_flags(namespace),
            sybil_example.line,
        )
        if code is None:
            return super().__call__(sybil_example)
        loop = document_loop(namespace)
        stand_in = copy.copy(example)
        stand_in.source = SHIM_SOURCE
        output: list[str] = []
        remove_name = "__name__" not in namespace
        namespace[SHIM_NAME] = lambda: loop.run(eval(code, namespace))
        try:
            if remove_name:
                namespace["__name__"] = "__test__"
            self.runner.run(
                DocTest(
                    [stand_in],
                    namespace,
                    name=sybil_example.path,
                    filename=None,
                    lineno=example.lineno,
                    docstring=None,
                ),
                clear_globs=False,
                out=output.append,
            )
        finally:
            namespace.pop(SHIM_NAME, None)
            if remove_name:
                namespace.pop("__name__", None)
        return "".join(output)


class AwaitPythonEvaluator(PythonEvaluator):
    """Sybil's evaluator of Python code blocks, for blocks that may ``await`` at top level.

    :param flags: the compiler flags of the Sybil evaluator this one stands for
        (its ``__future__`` imports).
    """

    def __init__(self, flags: int = 0) -> None:
        super().__init__()
        self.flags = flags

    def __repr__(self) -> str:
        return f"<AwaitPythonEvaluator flags={self.flags:#x}>"

    def __call__(self, example: Example) -> None:
        __tracebackhide__ = True
        # As Sybil counts: the block's source starts the line after this one.
        line = example.line + example.parsed.line_offset + 1
        code = awaiting_code(example.parsed, example.path, "exec", self.flags, line)
        if code is None:
            super().__call__(example)
            return
        namespace = example.namespace
        try:
            document_loop(namespace).run(eval(code, namespace))
        finally:
            # As for any block: evaluating added it, and the document did not.
            namespace.pop("__builtins__", None)


class AwaitEvaluators:
    """Gives the regions of Sybil's parsers evaluators that can await.

    A region evaluated by Sybil's :class:`DocTestEvaluator` or :class:`PythonEvaluator`
    (or by a subclass that only configures it, leaving ``__call__`` alone) gets an
    :class:`AwaitDocTestEvaluator` or :class:`AwaitPythonEvaluator` that stands for it;
    any other evaluator is left as it is.  Each evaluator is stood for once, by one
    object, however many regions share it.
    """

    def __init__(self) -> None:
        #: Stand-ins by the id of the evaluator they stand for, kept with it.
        self._made: dict[int, tuple[Evaluator, Evaluator]] = {}

    def regions(self, regions: Iterable[Region]) -> Iterator[Region]:
        """*regions*, each with its evaluator replaced by one that can await."""
        for region in regions:
            if region.evaluator is not None:
                region.evaluator = self.evaluator_for(region.evaluator)
            yield region

    def evaluator_for(self, evaluator: Evaluator) -> Evaluator:
        """An evaluator that can await, standing for *evaluator*; or *evaluator* itself."""
        known = self._made.get(id(evaluator))
        if known is not None and known[0] is evaluator:
            return known[1]
        made: Evaluator = evaluator
        if isinstance(evaluator, AwaitDocTestEvaluator | AwaitPythonEvaluator):
            return evaluator
        if (
            isinstance(evaluator, DocTestEvaluator)
            and type(evaluator).__call__ is DocTestEvaluator.__call__
        ):
            made = AwaitDocTestEvaluator(evaluator.runner)
        elif (
            isinstance(evaluator, PythonEvaluator)
            and type(evaluator).__call__ is PythonEvaluator.__call__
        ):
            made = AwaitPythonEvaluator(evaluator.flags)
        self._made[id(evaluator)] = (evaluator, made)
        return made
