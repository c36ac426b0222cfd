"""Sybil wiring: run ``.rst`` documents as specs, each in a fresh :class:`World`."""

from __future__ import annotations

import doctest
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.rest import DocTestParser, PythonCodeBlockParser, SkipParser

from runnerkit.testing.namespace import world_namespace
from runnerkit.testing.world import World
from runnerkit.typing import StrPath

#: The doctest options specs run with.
DEFAULT_OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

_WORLD = "__runnerkit_world__"


def setup_document(namespace: dict[str, Any], extra: Mapping[str, Any] | None = None) -> None:
    """Open a fresh world for one document and fill its namespace."""
    world = World().open()
    namespace[_WORLD] = world
    namespace.update(world_namespace(world))
    if extra:
        namespace.update(extra)


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
    optionflags: int = DEFAULT_OPTIONFLAGS,
    extra_namespace: Mapping[str, Any] | None = None,
    fixtures: Sequence[str] = (),
    path: StrPath | None = None,
) -> Sybil:
    """A :class:`~sybil.Sybil` that gives each matching document its own world.

    :param patterns: which documents to collect, as path patterns.
    :param optionflags: doctest option flags for ``>>>`` examples.
    :param extra_namespace: more names every document starts with.
    :param fixtures: pytest fixtures to put in every document's namespace.
    :param path: the directory *patterns* are relative to; by default the directory
        of the file that called this function (your ``conftest.py``).
    """
    if path is None:
        path = _caller_directory()
    return Sybil(
        parsers=[
            DocTestParser(optionflags=optionflags),
            PythonCodeBlockParser(),
            SkipParser(),
        ],
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

    ``pytest_collect_file = collect_specs(["doctests/*.rst"])``
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
