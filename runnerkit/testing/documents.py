"""Sybil wiring: run ``.rst`` and ``.md`` documents as specs, each in a fresh :class:`World`."""

from __future__ import annotations

import doctest
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from sybil import Sybil
from sybil.typing import Parser

from runnerkit.testing.namespace import world_namespace
from runnerkit.testing.parsers import SpecParser, remember_base_namespace
from runnerkit.testing.timecontrol import keep_pytest_timing_real
from runnerkit.testing.world import World
from runnerkit.typing import StrPath

#: The doctest options specs run with.
DEFAULT_OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: The kinds of example a spec holds unless told otherwise.
DEFAULT_PARSERS = ("doctest", "codeblock", "skip", "clear-namespace")

#: More names for a document: a mapping, or a function of the document's world.
ExtraNamespace: TypeAlias = Mapping[str, Any] | Callable[[World], Mapping[str, Any]]

_WORLD = "__runnerkit_world__"


def world_prefix() -> str:
    """The name prefix of a document's var dir: ``runnerkit-``, plus the xdist worker.

    With the worker in its name (``runnerkit-gw1-...``), a var dir left behind by a
    crash tells which worker made it.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"runnerkit-{worker}-" if worker else "runnerkit-"


def setup_document(namespace: dict[str, Any], extra: ExtraNamespace | None = None) -> None:
    """Open a fresh world for one document and fill its namespace.

    :param extra: more names, or a function that makes them from the world.
    """
    keep_pytest_timing_real()
    world = World(prefix=world_prefix()).open()
    namespace[_WORLD] = world
    try:
        namespace.update(world_namespace(world))
        if extra is not None:
            namespace.update(extra(world) if callable(extra) else extra)
    except BaseException:
        teardown_document(namespace)
        raise
    remember_base_namespace(namespace)


def teardown_document(namespace: dict[str, Any]) -> None:
    """Close the document's cleanups, then discard its world."""
    world: World | None = namespace.pop(_WORLD, None)
    try:
        cleanups = namespace.get("cleanups")
        if cleanups is not None:
            cleanups.close()
    finally:
        if world is not None:
            world.close()


def make_sybil(
    patterns: Sequence[str] = ("*.rst",),
    *,
    excludes: Sequence[str] = (),
    parsers: Iterable[str | Parser] = DEFAULT_PARSERS,
    optionflags: int = DEFAULT_OPTIONFLAGS,
    extra_namespace: ExtraNamespace | None = None,
    fixtures: Sequence[str] = (),
    path: StrPath | None = None,
) -> Sybil:
    """A :class:`~sybil.Sybil` that gives each matching document its own world.

    Documents whose names end in ``.md`` are read with Sybil's Markdown parsers, all
    others with its reStructuredText parsers.

    :param patterns: which documents to collect, as path patterns.
    :param excludes: which of those to leave out, as path patterns.
    :param parsers: the kinds of example to find: any of ``"doctest"``, ``"codeblock"``
        (``python`` code blocks), ``"skip"`` (skip directives) and ``"clear-namespace"``,
        and any Sybil parser objects of your own.
    :param optionflags: doctest option flags for ``>>>`` examples.
    :param extra_namespace: more names every document starts with: a mapping, or a
        function called with the document's :class:`World` that returns one.
    :param fixtures: pytest fixtures to put in every document's namespace.
    :param path: the directory *patterns* are relative to; by default the directory
        of the file that called this function (your ``conftest.py``).
    :raises UnknownParserError: a parser name is unknown.
    """
    if path is None:
        path = _caller_directory()
    return Sybil(
        parsers=[SpecParser(parsers, optionflags)],
        patterns=list(patterns),
        excludes=list(excludes),
        setup=lambda namespace: setup_document(namespace, extra_namespace),
        teardown=teardown_document,
        fixtures=list(fixtures),
        path=str(Path(path).absolute()),
    )


def collect_specs(
    patterns: Sequence[str] = ("*.rst",), **options: Any
) -> Callable[[Path, Any], Any]:
    """A ``pytest_collect_file`` hook for a ``conftest.py``: one line wires the specs.

    ``pytest_collect_file = collect_specs(["docs/*.rst", "docs/*.md"])``

    It takes :func:`make_sybil`'s options.
    """
    options.setdefault("path", _caller_directory())
    return make_sybil(patterns, **options).pytest()


def _caller_directory() -> Path:
    """The directory of the first caller outside this module."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:  # pragma: no cover - there is always a caller
        return Path.cwd()
    return Path(frame.f_code.co_filename).parent
