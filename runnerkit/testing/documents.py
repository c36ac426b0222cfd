"""Sybil wiring: run ``.rst`` and ``.md`` documents as specs, each in a fresh :class:`World`."""

from __future__ import annotations

import codecs
import contextlib
import doctest
import fnmatch
import inspect
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, TypeAlias

import pytest
from sybil import Document, Sybil
from sybil.sybil import SybilCollection
from sybil.typing import Parser

from runnerkit.errors import HarnessError
from runnerkit.testing.console_session import DEFAULT_TIMEOUT
from runnerkit.testing.eventloop import EVENT_LOOP, DocumentLoop
from runnerkit.testing.fences import directive_text, is_markdown
from runnerkit.testing.isolation import ISOLATION, Isolation, warn_restored
from runnerkit.testing.namespace import world_namespace
from runnerkit.testing.normalize import UserNormalizers, expand_all, user_normalizers
from runnerkit.testing.parsers import SpecParser, remember_base_namespace
from runnerkit.testing.pycon import check_sessions, checked_mode
from runnerkit.testing.redis import BACKENDS, default_backend, redis_unavailable
from runnerkit.testing.specnodes import spec_collector
from runnerkit.testing.timecontrol import keep_pytest_timing_real
from runnerkit.testing.world import World
from runnerkit.typing import StrPath

#: The doctest options specs run with.
DEFAULT_OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: The kinds of example a spec holds unless told otherwise.
DEFAULT_PARSERS = ("doctest", "codeblock", "skip", "clear-namespace", "console")

#: More names for a document: a mapping, or a function of the document's world.
ExtraNamespace: TypeAlias = Mapping[str, Any] | Callable[[World], Mapping[str, Any]]

#: The namespace key of a document's :class:`World`.
DOCUMENT_WORLD = "__runnerkit_world__"
_NAME = "__runnerkit_document__"

#: How a document avoids needing :class:`Isolation`: what follows its warning.
_REMEDY = (
    "Undo them in the document, by putting the undoing on 'cleanups', which is closed"
    " however the document ends, even when the example that undoes them fails or is not"
    " selected."
)
#: What to add to :data:`_REMEDY` when an asyncio task was left pending, or a console
#: command left a process running: the ends of those undoings' descriptions.
_REMEDIES_BY_KIND = {
    "still pending: cancelled": (
        "A task is ended in an awaiting example: task.cancel(), then"
        " 'await asyncio.gather(task, return_exceptions=True)'."
    ),
    ", killed": (
        "A process a console command left running is stopped by a later command"
        " ('$ kill \"$(cat server.pid)\"'), or on 'cleanups'."
    ),
}


def _remedy(restored: list[str]) -> str:
    """:data:`_REMEDY`, and what fits the kinds of undoing in *restored*."""
    extra = [
        advice
        for ending, advice in _REMEDIES_BY_KIND.items()
        if any(each.endswith(ending) for each in restored)
    ]
    return " ".join([_REMEDY, *extra])


def world_prefix() -> str:
    """The name prefix of a document's var dir: ``runnerkit-``, plus the xdist worker.

    With the worker in its name (``runnerkit-gw1-...``), a var dir left behind by a
    crash tells which worker made it.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"runnerkit-{worker}-" if worker else "runnerkit-"


def setup_document(namespace: dict[str, Any], extra: ExtraNamespace | None = None) -> None:
    """Open a fresh world for one document and fill its namespace.

    The world's queues are on the backend the document asks for
    (:func:`document_backend`), else on :func:`~runnerkit.testing.redis.default_backend`.
    A document that asks for ``redis`` where Redis cannot be had is skipped, with why.

    :param extra: more names, or a function that makes them from the world.
    """
    document = _find_document(namespace)
    name = _name_of(document)
    backend = default_backend() if document is None else document_backend(document)
    if backend is None:
        backend = default_backend()
    elif backend == "redis":
        reason = redis_unavailable()
        if reason is not None:
            pytest.skip(f"{name} needs the redis queue backend: {reason}")
    keep_pytest_timing_real()
    world = World(prefix=world_prefix(), backend=backend).open()
    namespace[DOCUMENT_WORLD] = world
    isolation = namespace[ISOLATION] = Isolation()
    isolation.watch(world.config)
    namespace[_NAME] = name
    namespace[EVENT_LOOP] = DocumentLoop(name)
    try:
        namespace.update(world_namespace(world))
        if extra is not None:
            namespace.update(extra(world) if callable(extra) else extra)
    except BaseException:
        teardown_document(namespace)
        raise
    remember_base_namespace(namespace)


def teardown_document(namespace: dict[str, Any]) -> None:
    """Close the document's cleanups and event loop, undo what it left changed, then
    discard its world.

    What had to be undone (a task still pending, a frozen clock, a master still
    running, the environment...) is reported as an
    :class:`~runnerkit.testing.isolation.IsolationWarning` naming the document, once
    the world is gone.
    """
    world: World | None = namespace.pop(DOCUMENT_WORLD, None)
    isolation: Isolation | None = namespace.pop(ISOLATION, None)
    loop: DocumentLoop | None = namespace.pop(EVENT_LOOP, None)
    restored: list[str] = []
    try:
        cleanups = namespace.get("cleanups")
        if cleanups is not None:
            cleanups.close()
    finally:
        try:
            if loop is not None:
                restored = loop.close()
            if isolation is not None:
                restored += isolation.restore()
        finally:
            if world is not None:
                world.close()
    warn_restored(namespace.pop(_NAME, "a document"), restored, _remedy(restored))


def document_backend(document: Document) -> str | None:
    """The queue backend *document* says it needs, or None when it says none.

    A reStructuredText document says it with a comment line of its own,
    ``.. runnerkit-backend: redis``; a Markdown one with
    ``<!-- runnerkit-backend: redis -->``.  The backend is ``file`` or ``redis``.

    :raises HarnessError: the line names no backend, or the document has two.
    """
    pattern = _MD_BACKEND if is_markdown(document.path) else _RST_BACKEND
    found = {match.group(1) for match in pattern.finditer(directive_text(document))}
    for backend in found:
        if backend not in BACKENDS:
            raise HarnessError(
                f"{_name_of(document)} asks for queue backend {backend!r}:"
                f" expected one of {', '.join(BACKENDS)}"
            )
    if len(found) > 1:
        raise HarnessError(
            f"{_name_of(document)} asks for two queue backends ({', '.join(sorted(found))}):"
            " a document runs on one"
        )
    return found.pop() if found else None


#: ``.. runnerkit-backend: NAME``, a reStructuredText comment alone on its line.
_RST_BACKEND = re.compile(r"^\.\. runnerkit-backend:[ \t]*(\S*)[ \t]*$", re.MULTILINE)
#: ``<!-- runnerkit-backend: NAME -->``, a Markdown (HTML) comment alone on its line.
_MD_BACKEND = re.compile(
    r"^<!--[ \t]*runnerkit-backend:[ \t]*(\S*?)[ \t]*-->[ \t]*$", re.MULTILINE
)


def _find_document(namespace: dict[str, Any]) -> Document | None:
    """The Sybil document whose namespace is *namespace*, or None if none is found.

    Sybil passes a setup function only the namespace; the document is a local of the
    caller that set it up.
    """
    frame = inspect.currentframe()
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, Document) and value.namespace is namespace:
                return value
        frame = frame.f_back
    return None


def _name_of(document: Document | None) -> str:
    """*document*'s path, relative to the current directory when it is below it."""
    if document is None:
        return "a document"
    path = Path(document.path)
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return str(path)


def make_sybil(
    patterns: Sequence[str] = ("*.rst",),
    *,
    excludes: Sequence[str] = (),
    parsers: Iterable[str | Parser] = DEFAULT_PARSERS,
    optionflags: int = DEFAULT_OPTIONFLAGS,
    console_timeout: float = DEFAULT_TIMEOUT,
    extra_namespace: ExtraNamespace | None = None,
    fixtures: Sequence[str] = (),
    path: StrPath | None = None,
    encoding: str = "utf-8",
    normalizers: UserNormalizers | None = None,
    uncollected_sessions: str = "warn",
) -> Sybil:
    """A :class:`~sybil.Sybil` that gives each matching document its own world.

    Documents whose names end in ``.md`` are read with Sybil's Markdown parsers, all
    others with its reStructuredText parsers.

    :param patterns: which documents to collect, as path patterns relative to *path*,
        matched from the right as Sybil does, except that a ``**`` segment matches zero
        or more directories, as in a recursive glob: ``docs/**/*.rst`` collects
        ``docs/guide.rst`` and ``docs/sub/x.rst``.
    :param excludes: which of those to leave out, as path patterns of the same kind.
    :param parsers: the kinds of example to find: any of ``"doctest"``, ``"codeblock"``
        (``python`` code blocks), ``"skip"`` (skip directives), ``"clear-namespace"`` and
        ``"console"`` (console sessions, :mod:`runnerkit.testing.console`), and any Sybil
        parser objects of your own.
    :param optionflags: doctest option flags for ``>>>`` examples and console commands.
    :param console_timeout: seconds a console command may run, unless its
        ``# timeout:`` directive says otherwise; then its process group is killed.
    :param extra_namespace: more names every document starts with: a mapping, or a
        function called with the document's :class:`World` that returns one.
    :param fixtures: pytest fixtures to put in every document's namespace, as if each
        document named them with ``runnerkit-fixtures`` (:mod:`runnerkit.testing.specnodes`).
    :param path: the directory *patterns* are relative to; by default the directory
        of the file that called this function (your ``conftest.py``).
    :param encoding: the encoding the documents are written in.  The Sybil keeps it as
        its ``encoding``, which accept mode writes changed documents back in.
    :param normalizers: output normalisers of your own, by name:
        ``{"ticket": (r"T-\\d+", "T-<N>")}``, a regular expression and its :func:`re.sub`
        replacement; ``ticket`` is then turned on by a document's
        ``runnerkit-normalize: ticket`` line or an example's ``+NORMALIZE_TICKET``
        (:mod:`runnerkit.testing.normalize`).
    :param uncollected_sessions: what to do about a Markdown fence that holds a ``>>>``
        session no parser collects (:mod:`runnerkit.testing.pycon`): ``"warn"`` (an
        :class:`~runnerkit.testing.UncollectedSessionWarning`), ``"fail"`` (the
        document's collection fails) or ``"ignore"``.  Only checked when ``"doctest"``
        is among *parsers*.
    :raises UnknownParserError: a parser name is unknown.
    :raises HarnessError: *encoding* is not a codec Python knows, a pattern is empty
        or absolute, a normaliser is malformed, or *uncollected_sessions* is no mode.
    """
    if path is None:
        path = _caller_directory()
    mode = checked_mode(uncollected_sessions)
    spec_parser = SpecParser(
        parsers,
        expand_all(optionflags),
        user_normalizers(normalizers),
        console_timeout=console_timeout,
    )
    sybil = _SpecSybil(
        parsers=[spec_parser],
        patterns=_checked_patterns("patterns", patterns),
        excludes=_checked_patterns("excludes", excludes),
        setup=lambda namespace: setup_document(namespace, extra_namespace),
        teardown=teardown_document,
        fixtures=list(fixtures),
        path=str(Path(path).absolute()),
        encoding=_checked_encoding(encoding),
    )
    if "doctest" in spec_parser.names:
        sybil.uncollected_sessions = mode
    return sybil


def collect_specs(
    patterns: Sequence[str] = ("*.rst",), **options: Any
) -> Callable[[Path, Any], Any]:
    """A ``pytest_collect_file`` hook for a ``conftest.py``: one line wires the specs.

    ``pytest_collect_file = collect_specs(["docs/**/*.rst"], encoding="latin-1")``

    It takes :func:`make_sybil`'s options.
    """
    options.setdefault("path", _caller_directory())
    return make_sybil(patterns, **options).pytest()


class _SpecSybil(Sybil):
    """A Sybil whose ``**`` means any number of directories, and whose decoding errors
    name the document.

    Sybil matches patterns with :meth:`PurePath.match`, where ``**`` is only another
    ``*``: ``docs/**/*.rst`` would find ``docs/sub/x.rst`` but not ``docs/guide.rst``.
    """

    def should_parse(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.path)
        except ValueError:
            return False
        included = path.name in self.filenames or any(
            _matches(relative, pattern) for pattern in self.patterns
        )
        return included and not any(_matches(relative, pattern) for pattern in self.excludes)

    #: What to do about Markdown sessions no parser collects (:func:`check_sessions`).
    uncollected_sessions: str = "ignore"

    def pytest(self) -> Callable[[Path, Any], Any]:
        """The ``pytest_collect_file`` hook, whose examples get the fixtures pytest users
        expect: autouse, usefixtures, named and parametrized
        (:mod:`runnerkit.testing.specnodes`)."""
        return spec_collector(self)

    def __add__(self, other: Sybil) -> SybilCollection:
        """Sybils added up, whose ``pytest()`` collects as each of them would alone:
        ``(make_sybil(["docs/*.rst"]) + make_sybil(["README.md"], parsers=["console"])).pytest()``.
        """
        return _SpecSybils((self, other))

    def parse(self, path: Path) -> Document:
        return self.parse_reporting(path, warn=True)

    def parse_reporting(self, path: Path, *, warn: bool) -> Document:
        """The document at *path*, its uncollected sessions reported as
        :attr:`uncollected_sessions` says, but not warned about unless *warn*: each
        xdist worker collects every document, and only the first warns.

        :raises UncollectedSessionError: ``uncollected_sessions`` is ``fail`` and the
            document has one (on every worker, whose collections must agree).
        """
        document = self._parse(path)
        if not is_markdown(str(path)):
            return document
        if warn or self.uncollected_sessions != "warn":
            check_sessions(document, self.uncollected_sessions, _name_of(document))
        else:
            # Not shown again; but what the warning filters make an error (-W error::...)
            # is raised here too, since the workers' collections must agree.
            with warnings.catch_warnings(record=True):
                check_sessions(document, self.uncollected_sessions, _name_of(document))
        return document

    def parse_again(self, path: Path) -> Document:
        """The document at *path* read once more, for another run of it
        (:mod:`runnerkit.testing.specnodes`), reporting nothing :meth:`parse` reported."""
        return self._parse(path)

    def _parse(self, path: Path) -> Document:
        try:
            return super().parse(path)
        except UnicodeDecodeError as error:
            line = error.object[: error.start].count(b"\n") + 1
            raise HarnessError(
                f"cannot read spec {path} as {self.encoding!r}: byte"
                f" {error.object[error.start]:#04x} on line {line} is not {error.encoding};"
                " pass the encoding it is written in, as collect_specs(..., encoding=...)"
            ) from error
        except ValueError as error:
            if " overlaps " not in str(error):
                raise
            # Sybil's message names the regions; say what usually causes it.
            raise HarnessError(
                f"cannot read spec {path}: two examples overlap: {error}. Most often a"
                " block runs on: lines indented under a '.. code-block::' directive, or"
                " under a comment such as '.. skip: next' or '.. invisible-code-block:'"
                " (or inside a fence), belong to it, so '>>>' lines there are read twice;"
                " end the block, with a paragraph at the margin, before the '>>>' examples"
            ) from error


class _SpecSybils(SybilCollection):
    """Sybils added up, their documents collected as specs (:func:`spec_collector`)."""

    def __add__(self, other: Sybil | SybilCollection) -> SybilCollection:  # type: ignore[override]
        more = list(other) if isinstance(other, SybilCollection) else [other]
        return _SpecSybils([*self, *more])

    def pytest(self) -> Callable[[Path, Any], Any]:
        return spec_collector(*self)


def _matches(relative: PurePath, pattern: str) -> bool:
    """Whether the document at *relative* (to the Sybil's path) matches *pattern*.

    As in Sybil (and :meth:`PurePath.match`), the pattern is matched one path segment at
    a time from the right, each segment with :func:`fnmatch.fnmatch`, so ``*.rst``
    matches every ``.rst`` below the path and ``docs/*.rst`` matches ``docs/a.rst``.
    As in :func:`glob.glob` with ``recursive=True``, a segment that is just ``**``
    matches zero or more directories: ``docs/**/*.rst`` matches ``docs/a.rst`` and
    ``docs/sub/deeper/b.rst``.  Every path Sybil's own matching accepts, this accepts.
    """
    return _match_segments(relative.parts, ("**", *PurePath(pattern).parts))


def _match_segments(parts: Sequence[str], segments: Sequence[str]) -> bool:
    """Whether the path *parts* match the pattern *segments*, all of them."""
    if not segments:
        return not parts
    first, rest = segments[0], segments[1:]
    if first == "**":
        while rest and rest[0] == "**":
            rest = rest[1:]
        return any(_match_segments(parts[skip:], rest) for skip in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatch(parts[0], first) and _match_segments(parts[1:], rest)


def _checked_patterns(option: str, patterns: Sequence[str]) -> list[str]:
    """*patterns* as a list, refusing the ones that could match nothing.

    :raises HarnessError: a pattern is a bare string, empty or absolute.
    """
    if isinstance(patterns, str):
        raise HarnessError(f"{option} must be a sequence of patterns, not the string {patterns!r}")
    for pattern in patterns:
        if not pattern or PurePath(pattern).is_absolute():
            raise HarnessError(
                f"{option} pattern {pattern!r} matches no document: patterns are relative"
                " to the path option, such as 'docs/**/*.rst'"
            )
    return list(patterns)


def _checked_encoding(encoding: str) -> str:
    """*encoding*, once Python's codecs know it.

    :raises HarnessError: no codec has that name.
    """
    try:
        codecs.lookup(encoding)
    except LookupError as error:
        raise HarnessError(
            f"unknown spec encoding {encoding!r}: use a codec name Python knows,"
            " such as 'utf-8' or 'latin-1'"
        ) from error
    return encoding


def _caller_directory() -> Path:
    """The directory of the first caller outside this module."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:  # pragma: no cover - there is always a caller
        return Path.cwd()
    return Path(frame.f_code.co_filename).parent
