"""xdist schedulers that never split a document's examples across workers.

The examples of a spec share one namespace and one world, so they must run in order on
one worker.  xdist's ``loadscope`` and ``loadfile`` modes happen to keep a file
together; ``load``, ``worksteal`` and ``loadgroup`` hand out single tests and would
split a document.  :func:`make_scheduler` gives every ``load*`` mode, and
``worksteal``, a scheduler built on xdist's ``LoadScopeScheduling`` whose work units
are the mode's own units (a test, a group, a scope, a file) merged with the document
of every Sybil example in them.  ``each`` runs every test on every worker, so it keeps
documents whole already and is left to xdist.

``worksteal`` cannot steal half a document, so under it runnerkit balances whole work
units, the way ``load`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from xdist.scheduler import (
    LoadFileScheduling,
    LoadGroupScheduling,
    LoadScopeScheduling,
)

#: The name part of a Sybil example's node id (``line:12,column:1``, perhaps with a
#: Sybil name before it and an xdist group after it).
_SYBIL_EXAMPLE = re.compile(r"(?:sybil:[^,]*,)?line:\d+,column:\d+(?:@.*)?")


def example_document(nodeid: str) -> str | None:
    """The document of a Sybil example's node id, or ``None`` for any other test."""
    path, separator, rest = nodeid.partition("::")
    return path if separator and _SYBIL_EXAMPLE.fullmatch(rest) else None


def document_scope(nodeid: str) -> str:
    """The scheduling scope of a test: its document for a Sybil example, else itself."""
    return example_document(nodeid) or nodeid


def merge_scopes(nodeids: Iterable[str], scope_of: Callable[[str], str]) -> dict[str, str]:
    """Map each node id to a work unit that holds its scope and its whole document.

    A scope that shares a document with another scope (a group holding one example of
    a document, say) is merged with it, transitively.  A merged unit is named after
    the first of its scopes in collection order.
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    order: dict[str, int] = {}
    scopes: dict[str, str] = {}
    for nodeid in nodeids:
        scope = scope_of(nodeid)
        scopes[nodeid] = scope
        order.setdefault(scope, len(order))
        root = find(scope)
        document = example_document(nodeid)
        if document is not None:
            other = find("\0document\0" + document)
            if other != root:
                # Keep as the root whichever came first, so names stay readable.
                first, second = sorted((root, other), key=lambda key: order.get(key, len(order)))
                parent[second] = first
    return {nodeid: find(scope) for nodeid, scope in scopes.items()}


class _WholeDocuments:
    """Mixin for a ``LoadScopeScheduling``: merge each document into one work unit."""

    _merged: dict[str, str] | None = None
    registered_collections: dict[Any, list[str]]
    collection_is_completed: bool

    def schedule(self) -> None:
        if self._merged is None and self.collection_is_completed:
            collection = next(iter(self.registered_collections.values()), [])
            self._merged = merge_scopes(collection, super()._split_scope)  # type: ignore[misc]
        super().schedule()  # type: ignore[misc]

    def _split_scope(self, nodeid: str) -> str:
        if self._merged is not None and nodeid in self._merged:
            return self._merged[nodeid]
        return document_scope(super()._split_scope(nodeid))  # type: ignore[misc]


class _EachTest(LoadScopeScheduling):  # type: ignore[misc]
    """Load scheduling as work units: each test is a unit of its own."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid


class DocumentLoadScheduling(_WholeDocuments, _EachTest):
    """``--dist load`` and ``worksteal``: tests one by one, each document as one unit."""


class DocumentLoadScopeScheduling(_WholeDocuments, LoadScopeScheduling):  # type: ignore[misc]
    """``--dist loadscope``, with each document as one unit."""


class DocumentLoadFileScheduling(_WholeDocuments, LoadFileScheduling):  # type: ignore[misc]
    """``--dist loadfile``, with each document as one unit."""


class DocumentLoadGroupScheduling(_WholeDocuments, LoadGroupScheduling):  # type: ignore[misc]
    """``--dist loadgroup``: a group, and any document one of its tests is in, is one unit."""


#: The scheduler for each ``--dist`` mode that runnerkit takes over.
SCHEDULERS: dict[str, type[LoadScopeScheduling]] = {
    "load": DocumentLoadScheduling,
    "worksteal": DocumentLoadScheduling,
    "loadscope": DocumentLoadScopeScheduling,
    "loadfile": DocumentLoadFileScheduling,
    "loadgroup": DocumentLoadGroupScheduling,
}


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler for the run's ``--dist`` mode, or ``None`` to leave it to xdist."""
    scheduler = SCHEDULERS.get(config.getoption("dist", None))
    return None if scheduler is None else scheduler(config, log)
