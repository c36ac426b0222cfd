"""The pytest nodes of a spec: its file, each run of a document, and each example.

Sybil's own pytest integration makes a file node whose examples are its items.  These
nodes add what pytest users expect of the fixtures of a test:

* **Autouse fixtures and usefixtures apply.**  Every example requests the autouse
  fixtures visible where its document lies (``conftest.py`` files on its path,
  plugins), the fixtures of the ``usefixtures`` ini option, those the document names
  (:mod:`runnerkit.testing.specfixtures`) and those given to
  :func:`~runnerkit.testing.make_sybil`, and the closure of all of them.
* **A document is one test.**  A function-scoped fixture is set up by the document's
  first example and torn down after its last, so every example sees the same value;
  wider scopes are pytest's own.  Fixtures wider than a function are set up before the
  document's world and its isolation snapshot, so what they change is not taken for
  something the document left behind; function-scoped ones are set up after.  At
  the end, the document's ``cleanups`` are closed first (the examples filled them after
  the fixtures were set up), then the function-scoped fixtures are torn down, then the
  world is closed.  The exceptions are pytest's fixtures that hold the current test's
  own record (:data:`PER_EXAMPLE`: ``caplog``, ``capsys``...) and ``request``: each
  example gets its own, as each test does.
* **A parametrized fixture runs the document once per parameter.**  Each run
  (:class:`SpecDocument`) parses the document afresh, with its own namespace and
  world, and its examples' node ids end with the parameter's id, as a parametrized
  test's do: ``docs/x.rst::line:12,column:1[redis]``.

A :class:`SpecDocument` sits between the file and its examples in each example's
chain of parents, so that pytest sets it up before the first example and tears it down
after the last, but it is not collected itself: the file yields the examples, so
``pytest docs/x.rst::line:12,column:1[redis]`` finds them as it finds any test.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _pytest._code import filter_traceback
from _pytest._code.code import TerminalRepr, Traceback
from _pytest.fixtures import (
    FixtureDef,
    FixtureLookupError,
    FixtureLookupErrorRepr,
    FuncFixtureInfo,
    TopRequest,
)
from _pytest.nodes import Node
from sybil import Document, Sybil
from sybil.example import Example
from sybil.integration.pytest import SybilFile, SybilItem, example_module_path

from runnerkit.errors import HarnessError
from runnerkit.testing.parsers import BASE_NAMESPACE
from runnerkit.testing.specfixtures import (
    DocumentFixtures,
    DocumentParams,
    document_fixtures,
    iter_names,
    parametrize,
)


def spec_collector(*sybils: Sybil) -> Callable[[Path, Any], SpecFile | None]:
    """A ``pytest_collect_file`` hook that collects what *sybils* parse as :class:`SpecFile`."""

    def pytest_collect_file(file_path: Path, parent: Any) -> SpecFile | None:
        active = [sybil for sybil in sybils if sybil.should_parse(file_path)]
        if not active:
            return None
        spec: SpecFile = SpecFile.from_parent(parent, path=file_path, sybils=active)
        return spec

    return pytest_collect_file


class SpecFile(SybilFile):
    """A spec file: its examples, one run of each document after another.

    ``documents`` holds every run's document, in order.  The file itself sets nothing
    up: each run is set up by its :class:`SpecDocument`.
    """

    def collect(self) -> Iterator[SpecItem]:
        # Each xdist worker collects every file: only the first warns of what it finds.
        workerinput = getattr(self.config, "workerinput", None)
        warn = workerinput is None or workerinput.get("workerid") == "gw0"
        for sybil in self.sybils:
            parse = getattr(sybil, "parse_reporting", None)
            first = sybil.parse(self.path) if parse is None else parse(self.path, warn=warn)
            fixtures = document_fixtures(first, _display(self, first))
            probe = SpecDocument.from_parent(self, sybil=sybil, document=first, fixtures=fixtures)
            runs = parametrize(probe.info.names_closure, probe.info.name2fixturedefs)
            if not runs:
                yield from self._examples(probe)
                continue
            for number, (params, marks) in enumerate(runs):
                # Read again for a fresh namespace; what reading the text reports
                # (an uncollected session) was reported by the first reading.
                reparse = getattr(sybil, "parse_again", sybil.parse)
                document = first if number == 0 else reparse(self.path)
                run = SpecDocument.from_parent(
                    self,
                    sybil=sybil,
                    document=document,
                    fixtures=fixtures,
                    params=params,
                    count=len(runs),
                )
                for mark in marks:
                    run.add_marker(mark)
                yield from self._examples(run)

    def _examples(self, run: SpecDocument) -> Iterator[SpecItem]:
        self.documents.append(run.document)
        for example in run.document.examples():
            yield SpecItem.from_parent(run, example=example)

    def setup(self) -> None:
        """Nothing: each run of a document is set up by its own node."""

    def teardown(self) -> None:
        """Nothing: each run of a document is torn down by its own node."""


class SpecDocument(pytest.Collector):
    """One run of one document: its namespace, its world and its fixtures' lifetime.

    Its examples' requests are worked out once, here: the document's fixtures, the
    autouse ones and those of ``usefixtures`` visible from the file, and their closure.

    :param sybil: the Sybil that parsed the document.
    :param document: the run's own document, parsed for it alone.
    :param fixtures: what the document names.
    :param params: the run's parameters, when a fixture it requests has some.
    :param count: how many runs the document has.
    """

    def __init__(
        self,
        *,
        parent: SpecFile,
        sybil: Sybil,
        document: Document,
        fixtures: DocumentFixtures,
        params: DocumentParams | None = None,
        count: int = 1,
        **kwargs: Any,
    ) -> None:
        suffix = f"[{params.id}]" if params is not None else ""
        super().__init__(
            name=parent.name + suffix, parent=parent, nodeid=parent.nodeid + suffix, **kwargs
        )
        #: The spec file the document is.
        self.file = parent
        self.sybil = sybil
        self.document = document
        #: The one Sybil and document of this run, as accept mode looks for them.
        self.sybils = [sybil]
        self.documents = [document]
        self.fixtures = fixtures
        self.params = params
        #: How many runs the document has, this one included.
        self.count = count
        #: Given to the examples: the document's fixtures and those of the Sybil.
        self.argnames = tuple(iter_names(sybil.fixtures, fixtures.arguments))
        requested = (*fixtures.used, *self.argnames)
        if requested:
            self.add_marker(pytest.mark.usefixtures(*requested))
        # The fixture manager reads only what any node has: markers and parents.
        manager = self.session._fixturemanager
        info = manager.getfixtureinfo(node=self, func=_no_arguments, cls=None)  # type: ignore[arg-type]
        self.info = FuncFixtureInfo(
            argnames=self.argnames,
            initialnames=info.initialnames,
            names_closure=info.names_closure,
            name2fixturedefs=info.name2fixturedefs,
        )
        self.opened = False
        #: The finalizers of the examples' function-scoped fixtures, oldest first.
        self._held: list[Callable[[], object]] = []
        #: The fixture names whose values the examples put in the namespace: a later
        #: example puts its own there (``request``, a :data:`PER_EXAMPLE` fixture).
        self.injected: set[str] = set()

    def collect(self) -> list[SpecItem]:
        """Never called: the file yields the examples of its runs itself."""
        raise HarnessError(f"{self.nodeid} is collected by its file")  # pragma: no cover

    def setup(self) -> None:
        """Nothing yet: the first example opens the run (:meth:`open`), once the
        fixtures wider than a function are set up."""

    def open(self) -> None:
        """Set the run up: its world and namespace, as Sybil's setup does."""
        if self.opened:
            return
        document = self.document  # a local, for documents.setup_document to find
        if self.sybil.setup is not None:
            self.sybil.setup(document.namespace)
        self.opened = True

    def hold(self, fin: Callable[[], object]) -> None:
        """Keep *fin*, a finalizer of one of the run's examples, until the run ends."""
        self._held.append(fin)

    def teardown(self) -> None:
        """Tear the run down: close the document's ``cleanups``, tear the examples'
        function-scoped fixtures down, newest first, then close the world.

        What the examples put on ``cleanups`` came after the fixtures, so it is undone
        before them; the world came before, so it goes after.  Every step runs even when
        an earlier one fails; the failures are raised together.
        """
        held, self._held = self._held, []
        steps: list[Callable[[], object]] = []
        if self.opened:
            steps.append(self._close_cleanups)
        steps.extend(reversed(held))
        if self.opened:
            steps.append(self._close)
        errors: list[BaseException] = []
        for step in steps:
            try:
                step()
            except BaseException as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup(f"errors while tearing down {self.nodeid}", errors)

    def _close_cleanups(self) -> None:
        cleanups = self.document.namespace.get("cleanups")
        if cleanups is not None:
            cleanups.close()

    def _close(self) -> None:
        self.opened = False
        if self.sybil.teardown is not None:
            self.sybil.teardown(self.document.namespace)


class SpecItem(SybilItem):
    """An example of one run of a document, with the fixtures pytest users expect."""

    def __init__(self, *, parent: SpecDocument, example: Example, **kwargs: Any) -> None:
        name = parent.sybil.identify(example)
        if parent.params is not None:
            name += f"[{parent.params.id}]"
            self.callspec = parent.params
        pytest.Item.__init__(
            self, name=name, parent=parent, nodeid=f"{parent.file.nodeid}::{name}", **kwargs
        )
        self.example = example
        self.run: SpecDocument = parent
        self._fixtureinfo = parent.info
        self.fixturenames = parent.info.names_closure
        self.funcargs: dict[str, Any] = {}
        self._request = TopRequest(self, _ispytest=True)  # type: ignore[arg-type]

    #: pytest reads it when a class-scoped fixture is parametrized.
    cls = None

    def getparent(self, cls: type[Any]) -> Any:
        """pytest's parent lookup, with the spec file as the "module" of module scope."""
        if cls is pytest.Module:
            return self.run.file
        return pytest.Item.getparent(self, cls)

    @property
    def function(self) -> Callable[[], None]:
        """A stand-in test function, located at the example, for the reports of pytest
        that name a test's function (``--fixtures-per-test``)."""
        code = _no_arguments.__code__.replace(
            co_filename=self.example.path, co_firstlineno=self.example.line, co_name="example"
        )
        function: Callable[[], None] = types.FunctionType(code, {})
        return function

    def reportinfo(self) -> tuple[str, int, str]:
        """Where the example is, with its run's parameters: ``x.rst[redis] line=12 column=1``."""
        example = self.example
        return (
            example.path,
            example.line,
            f"{self.run.name} line={example.line} column={example.column}",
        )

    def addfinalizer(self, fin: Callable[[], object]) -> None:
        """Keep *fin* until the run ends: a function-scoped fixture lives for the document;
        but a fixture of :data:`PER_EXAMPLE` is torn down with the example, as pytest's
        own plugins, which keep its record on the test, expect."""
        fixturedef = _fixture_of(fin)
        if fixturedef is not None and fixturedef.argname in PER_EXAMPLE:
            pytest.Item.addfinalizer(self, fin)
        else:
            self.run.hold(fin)

    def setup(self) -> None:
        """Set up the fixtures wider than a function, open the run, set up the rest, and
        put the document's fixtures in its namespace."""
        request = self._request
        for name in self.fixturenames:
            fixturedefs = self._fixtureinfo.name2fixturedefs.get(name)
            if fixturedefs and fixturedefs[-1].scope != "function" and name not in self.funcargs:
                self.funcargs[name] = request.getfixturevalue(name)
        self.run.open()
        request._fillfixtures()
        namespace = self.example.namespace
        base: dict[str, Any] = namespace.setdefault(BASE_NAMESPACE, {})
        for name in self.run.argnames:
            injected = name in self.run.injected
            if name in base and not injected and base[name] is not self.funcargs[name]:
                raise HarnessError(
                    f"{_display(self, self.example.document)} names fixture {name!r}, a name"
                    " its namespace already has: the fixture would hide it; rename the"
                    " fixture, or name it with runnerkit-usefixtures to use it unseen"
                )
            namespace[name] = base[name] = self.funcargs[name]
            self.run.injected.add(name)

    def _repr_failure_py(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> TerminalRepr:
        """pytest's report of a fixture not found, pointing at the document's directive."""
        error = excinfo.value
        if not isinstance(error, FixtureLookupError) or error.msg is not None:
            return super()._repr_failure_py(excinfo, style)
        # pytest's report starts with the source of the test function, which an example
        # has not: the document and its line take its place.
        pytest_repr = error.formatrepr()
        line = None if error.argname is None else self.run.fixtures.line_of(error.argname)
        document = _display(self, self.example.document)
        where = f"named by {document}, line {line}" if line else f"requested for {document}"
        return FixtureLookupErrorRepr(
            self.example.path,
            (line or 1) - 1,
            [f"fixture {error.argname!r} {where}", *pytest_repr.tblines[1:]],
            pytest_repr.errorstring,
            error.argname,
        )

    def _traceback_filter(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Traceback:
        """Sybil's traceback of a failing example; a fixture's error without pytest's frames."""
        traceback = excinfo.traceback
        if traceback.cut(path=example_module_path) is not traceback:
            return super()._traceback_filter(excinfo)
        shown = traceback.filter(
            lambda entry: filter_traceback(entry) and str(entry.path) != __file__
        )
        return shown or traceback


#: pytest's fixtures that keep their record on the test that requested them (its
#: ``stash``), which pytest's plugins clear when that test ends: each example of a spec
#: gets its own, set up with it and torn down with it.
PER_EXAMPLE = frozenset({"caplog", "capsys", "capsysbinary", "capfd", "capfdbinary"})


def _fixture_of(fin: Callable[[], object]) -> FixtureDef[Any] | None:
    """The fixture whose finalizer *fin* is, or None: pytest (8.0 to 9) registers
    ``functools.partial(fixturedef.finish, request=...)`` with the test."""
    owner = getattr(getattr(fin, "func", None), "__self__", None)
    return owner if isinstance(owner, FixtureDef) else None


def _no_arguments() -> None:
    """The "test function" of a document, for pytest's fixture info: it has no arguments."""


def _display(node: Node, document: Document) -> str:
    """*document*'s path, relative to the rootdir when it is below it."""
    try:
        return Path(document.path).relative_to(node.config.rootpath).as_posix()
    except ValueError:
        return os.fspath(document.path)


__all__: Sequence[str] = ["SpecDocument", "SpecFile", "SpecItem", "spec_collector"]
