"""Which pytest fixtures a spec document asks for, and the runs its parametrized ones make.

A document names fixtures with a comment line of its own, as it names its queue
backend (:func:`runnerkit.testing.documents.document_backend`):

* ``.. runnerkit-fixtures: tmp_path, greeting`` (Markdown:
  ``<!-- runnerkit-fixtures: tmp_path, greeting -->``) requests the fixtures and puts
  their values in the document's namespace under their names, as pytest passes a test
  function its arguments;
* ``.. runnerkit-usefixtures: clean_env`` (Markdown:
  ``<!-- runnerkit-usefixtures: clean_env -->``) requests them only, as
  ``@pytest.mark.usefixtures`` does.

Several lines add up.  A fixture whose ``params`` make pytest run a test once per
parameter, named by a document directly or through what it requests (an autouse
fixture, say), makes the document run once per parameter: :func:`parametrize` gives
each run a :class:`DocumentParams`, the ``callspec`` of its examples, with the id that
pytest would put in brackets after a test's name.  Two such fixtures make a run for
each combination, the first one's parameter varying slowest, as pytest does.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from _pytest.mark.structures import ParameterSet
from _pytest.scope import Scope
from sybil import Document

from runnerkit.errors import HarnessError
from runnerkit.testing.fences import directive_text, is_markdown

#: ``.. runnerkit-fixtures: a, b``: a reStructuredText comment alone on its line.
_RST_DIRECTIVE = re.compile(
    r"^\.\. runnerkit-(fixtures|usefixtures):[ \t]*(.*?)[ \t]*$", re.MULTILINE
)
#: ``<!-- runnerkit-fixtures: a, b -->``: a Markdown (HTML) comment alone on its line.
_MD_DIRECTIVE = re.compile(
    r"^<!--[ \t]*runnerkit-(fixtures|usefixtures):[ \t]*(.*?)[ \t]*-->[ \t]*$", re.MULTILINE
)

#: Suffixes of documents read as Markdown (as in :mod:`runnerkit.testing.parsers`).


@dataclass(frozen=True)
class DocumentFixtures:
    """The fixtures a document names, in the order it names them.

    :param path: the document's path, for messages.
    """

    path: str
    #: Requested, and put in the namespace under their names.
    arguments: tuple[str, ...] = ()
    #: Requested only.
    used: tuple[str, ...] = ()
    #: The line of the document that names each fixture (its first, if several do).
    lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, name: str) -> int | None:
        """The line that names fixture *name*, or None when no directive does."""
        return self.lines.get(name)


def document_fixtures(document: Document, display: str) -> DocumentFixtures:
    """The fixtures *document* names with ``runnerkit-fixtures`` and ``runnerkit-usefixtures``.

    :param display: the document's name in messages (its path, relative when it can be).
    :raises HarnessError: a directive names no fixture, or a name that cannot be one.
    """
    pattern = _MD_DIRECTIVE if is_markdown(document.path) else _RST_DIRECTIVE
    arguments: list[str] = []
    used: list[str] = []
    lines: dict[str, int] = {}
    for match in pattern.finditer(directive_text(document)):
        kind, listed = match.groups()
        line = document.text.count("\n", 0, match.start()) + 1
        names = [name.strip() for name in listed.split(",")]
        if not listed or any(not name.isidentifier() for name in names):
            raise HarnessError(
                f"{display}, line {line}: runnerkit-{kind}: {listed!r} is not a list of"
                " fixture names: name them separated by commas, as in"
                f" 'runnerkit-{kind}: tmp_path, monkeypatch'"
            )
        target = arguments if kind == "fixtures" else used
        for name in names:
            lines.setdefault(name, line)
            if name not in target:
                target.append(name)
    return DocumentFixtures(document.path, tuple(arguments), tuple(used), lines)


@dataclass(frozen=True)
class DocumentParams:
    """One run of a parametrized document: pytest's ``item.callspec`` for its examples.

    pytest's fixture machinery reads ``params``, ``indices`` and ``_arg2scope`` to give
    ``request.param`` to each parametrized fixture and to order and cache by parameter.
    """

    #: The parameter of each parametrized fixture.
    params: dict[str, object]
    #: Which of its fixture's parameters each one is, counting from 0.
    indices: dict[str, int]
    #: The scope of each parametrized fixture.
    _arg2scope: dict[str, Scope]
    #: The ids of the parameters, in order; joined by ``-`` they are the run's id.
    _idlist: tuple[str, ...]

    @property
    def id(self) -> str:
        """The run's id, as pytest writes it in brackets after a test's name."""
        return "-".join(self._idlist)


@dataclass(frozen=True)
class _Choice:
    """One parameter of one fixture."""

    name: str
    index: int
    value: object
    id: str
    scope: Scope
    marks: tuple[Any, ...]


def parametrize(
    names_closure: Sequence[str], name2fixturedefs: Mapping[str, Sequence[Any]]
) -> list[tuple[DocumentParams, tuple[Any, ...]]]:
    """The runs of a document whose fixtures' closure is *names_closure*, with their marks.

    A fixture is parametrized as pytest decides for a test function: by the closest of
    its definitions that has ``params``, looking past one that requests the fixture it
    overrides.  An empty list means one run, without parameters.

    :param name2fixturedefs: the definitions visible to the document, by name, furthest
        first (pytest's ``FuncFixtureInfo.name2fixturedefs``).
    """
    axes: list[list[_Choice]] = []
    for name in names_closure:
        fixturedef = _parametrized_def(name, name2fixturedefs.get(name, ()))
        if fixturedef is not None:
            axes.append(_choices(name, fixturedef))
    if not axes:
        return []
    runs = []
    for combination in itertools.product(*axes):
        params = DocumentParams(
            params={choice.name: choice.value for choice in combination},
            indices={choice.name: choice.index for choice in combination},
            _arg2scope={choice.name: choice.scope for choice in combination},
            _idlist=tuple(choice.id for choice in combination),
        )
        runs.append((params, tuple(mark for choice in combination for mark in choice.marks)))
    return runs


def _parametrized_def(name: str, fixturedefs: Sequence[Any]) -> Any:
    """The definition of *name* whose ``params`` apply, or None."""
    for fixturedef in reversed(fixturedefs):
        if fixturedef.params is not None:
            return fixturedef
        if name not in fixturedef.argnames:
            return None
    return None


def _choices(name: str, fixturedef: Any) -> list[_Choice]:
    """The parameters of *fixturedef*, with their ids and marks."""
    scope = Scope(fixturedef.scope)
    ids = fixturedef.ids
    choices = []
    for index, param in enumerate(fixturedef.params):
        value: object = param
        given: str | None = None
        marks: tuple[Any, ...] = ()
        if isinstance(param, ParameterSet):
            value = param.values[0] if param.values else None
            given = param.id if isinstance(param.id, str) else None
            marks = tuple(param.marks)
        if given is None:
            given = _given_id(ids, index, value)
        made = given or _value_id(name, index, value)
        choices.append(_Choice(name, index, value, made, scope, marks))
    return _unique(choices)


def _given_id(ids: Any, index: int, value: object) -> str | None:
    """The id the fixture's ``ids`` give parameter *index*, or None."""
    if ids is None:
        return None
    if callable(ids):
        made = ids(value)
        return None if made is None else str(made)
    listed: Sequence[object] = ids
    if index < len(listed) and listed[index] is not None:
        return str(listed[index])
    return None


def _value_id(name: str, index: int, value: object) -> str:
    """pytest's id for a parameter without one: the value when it is simple enough."""
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii") if not value.isascii() else value
    if value is None or isinstance(value, int | float | complex | bool):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value)
    if inspect.isclass(value) or inspect.isfunction(value):
        return str(value.__name__)
    return f"{name}{index}"


def _unique(choices: list[_Choice]) -> list[_Choice]:
    """*choices*, with an index after each id that two of them share, as pytest does."""
    counts: dict[str, int] = {}
    for choice in choices:
        counts[choice.id] = counts.get(choice.id, 0) + 1
    seen: dict[str, int] = {}
    unique = []
    for choice in choices:
        if counts[choice.id] > 1:
            number = seen[choice.id] = seen.get(choice.id, -1) + 1
            separator = "_" if choice.id[-1:].isdigit() else ""
            choice = dataclasses.replace(choice, id=f"{choice.id}{separator}{number}")
        unique.append(choice)
    return unique


def iter_names(*groups: Sequence[str]) -> Iterator[str]:
    """The names of *groups*, each once, in order."""
    seen: set[str] = set()
    for group in groups:
        for name in group:
            if name not in seen:
                seen.add(name)
                yield name
