"""pytest-xdist scheduling that never splits a document's examples across workers.

The examples of a spec share one namespace and one world, so they must run in order on
one worker.  xdist's ``load``, ``worksteal`` and ``loadgroup`` modes hand out single
tests and would split a document.

**Inert without specs.**  The scheduler is chosen when the first worker reports its
collection.  A session without Sybil examples gets xdist's own scheduler for its
``--dist`` mode, untouched, so installing runnerkit changes nothing for a project
that does not use its specs, crashes included.  ``each`` and ``no`` are always left
to xdist.

**With specs**, :class:`DocumentScheduling` hands out work units: the mode's own unit
(a test for ``load`` and ``worksteal``, a module or class for ``loadscope``, a file
for ``loadfile``, a group for ``loadgroup``) merged with the whole document of every
Sybil example in it.  Larger units go first (unless ``--no-loadscope-reorder``), and
a worker is given another unit whenever it has fewer than three tests pending.
``worksteal`` cannot steal half a document, so under it whole units are balanced, as
``load`` does.

**Crashed workers** (a test that kills or exits its worker) are handled as xdist does
for ``load``:

* the test that was running is reported once as failed (by xdist) and not re-run,
  unless a ``pytest_handlecrashitem`` hook calls ``sched.mark_test_pending(nodeid)``,
  which puts it first in the queue;
* tests the worker had finished are not run again; those it had been sent but not
  started go back to the front of the queue, for the replacement worker or any
  other;
* ``--max-worker-restart`` is xdist's to enforce, and is.

When the crashed test is an example of a document, the examples after it in that
document cannot run without what it would have done, so they are not re-run: each
is reported as failed, naming the crash.  Other documents are not touched.  If a
``pytest_handlecrashitem`` hook marks the crashed example pending, its whole document
is queued again, from its start, as one unit: the examples before the crash run (and
are reported) a second time, since what they did was lost with the crashed worker.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

#: The name part of a Sybil example's node id (``line:12,column:1``, perhaps with a
#: Sybil name before it, the parameters of its document's run after it (``[redis]``,
#: :mod:`runnerkit.testing.specnodes`) and an xdist group after that).  Every run of a
#: document is scheduled with its file's others.
_SYBIL_EXAMPLE = re.compile(r"(?:sybil:[^,]*,)?line:\d+,column:\d+(?:\[.*\])?(?:@.*)?")

#: A worker is sent another unit when it has fewer tests than this pending.  The
#: worker starts a test only once it holds the next one (pytest needs ``nextitem``),
#: so two would leave it idle while the controller answers; three keeps it busy.
LOW_WATERMARK = 3


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


# The scope of a test under each --dist mode, as xdist's own schedulers define it.


def _test_scope(nodeid: str) -> str:
    return nodeid


def _module_or_class_scope(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[0]


def _file_scope(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _group_scope(nodeid: str) -> str:
    # xdist appends "@group" to the node id of a test in an xdist_group; an "@" inside
    # parametrize brackets is not one.
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    return nodeid


#: The scope function of each ``--dist`` mode runnerkit schedules when specs are present.
SCOPES: dict[str, Callable[[str], str]] = {
    "load": _test_scope,
    "worksteal": _test_scope,
    "loadscope": _module_or_class_scope,
    "loadfile": _file_scope,
    "loadgroup": _group_scope,
}


def _native_scheduler(dist: str, config: pytest.Config, log: Any) -> Any:
    """xdist's own scheduler for *dist*, built as xdist builds it."""
    from xdist.scheduler import (
        LoadFileScheduling,
        LoadGroupScheduling,
        LoadScheduling,
        LoadScopeScheduling,
        WorkStealingScheduling,
    )

    native: dict[str, Any] = {
        "load": LoadScheduling,
        "worksteal": WorkStealingScheduling,
        "loadscope": LoadScopeScheduling,
        "loadfile": LoadFileScheduling,
        "loadgroup": LoadGroupScheduling,
    }
    return native[dist](config, log)


class DocumentScheduling:
    """xdist's scheduling protocol, with whole documents as (parts of) work units.

    :param config: the controller's pytest config.
    :param log: xdist's log producer, or ``None``.
    :param scope_of: the ``--dist`` mode's scope of a node id (see :data:`SCOPES`).

    Every worker's collection must be the same list of node ids; a worker that
    collected something else is logged, reported as a collection error and shut down
    without work, as xdist does.
    """

    def __init__(self, config: pytest.Config, log: Any, scope_of: Callable[[str], str]) -> None:
        from xdist.remote import Producer
        from xdist.workermanage import parse_tx_spec_config

        self.config = config
        self.log = Producer("docsched") if log is None else log.docsched
        self.numnodes = len(parse_tx_spec_config(config))
        self.scope_of = scope_of
        #: Each worker's collection, as it reported it (kept after the worker goes:
        #: the initial workers' count is what :attr:`collection_is_completed` needs).
        self.registered: dict[Any, list[str]] = {}
        #: Each worker's tests sent and not yet complete, in the order sent.
        self.node2pending: dict[Any, list[int]] = {}
        #: Work units not yet sent, each a list of collection indices in order.
        self.units: deque[list[int]] = deque()
        #: The one collection, once :meth:`schedule` has checked the workers agree.
        self.collection: list[str] | None = None
        #: The document of each collection index (``None`` for a plain test).
        self.documents: list[str | None] = []
        #: Examples left behind by a crash in their document, by the crashed node id:
        #: reported as failed at the next call, unless the crashed one is marked pending.
        self._orphans: dict[str, tuple[Any, list[int]]] = {}

    # -- the state xdist's DSession reads

    @property
    def nodes(self) -> list[Any]:
        """The workers the scheduler knows, in the order they were added."""
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        """True once every initial worker has reported its collection."""
        return len(self.registered) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        """True once every test has been run (a worker holds its last test until shut down)."""
        self._report_orphans()
        if not self.collection_is_completed or self.units:
            return False
        return all(len(pending) < 2 for pending in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        """True while a test is queued or pending on a worker."""
        return bool(self.units) or any(self.node2pending.values())

    # -- workers come and go

    def add_node(self, node: Any) -> None:
        """A worker is ready; it is given work once its collection is in."""
        self._report_orphans()
        assert node not in self.node2pending
        self.node2pending[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        """Keep a worker's collection; a replacement's must match the one scheduled."""
        self._report_orphans()
        assert node in self.node2pending
        if self.collection is not None and list(collection) != self.collection:
            self._collection_differs(node, collection)
            return
        self.registered[node] = list(collection)

    def remove_node(self, node: Any) -> str | None:
        """Forget a worker that finished or crashed; return the test it crashed in.

        The worker's first pending test is the one it was running.  The tests it was
        sent after it go back to the front of the queue, except the rest of the
        crashed test's document (see the module's documentation).
        """
        self._report_orphans()
        pending = self.node2pending.pop(node)
        if not pending:
            return None
        assert self.collection is not None
        crashed, rest = pending[0], pending[1:]
        document = self.documents[crashed]
        orphans = [index for index in rest if document and self.documents[index] == document]
        rest = [index for index in rest if index not in orphans]
        self._orphans[self.collection[crashed]] = (node, orphans)
        for unit in reversed(self._regroup(rest)):
            self.units.appendleft(unit)
        self._refill_all()
        return self.collection[crashed]

    # -- tests come and go

    def schedule(self) -> None:
        """Start, once every initial worker has reported; later, feed new workers."""
        assert self.collection_is_completed
        self._report_orphans()
        if self.collection is not None:
            self._refill_all()
            return
        if not self._same_collections():
            self.log("**Different tests collected, aborting run**")
            return
        collection = next(iter(self.registered.values()))
        self.collection = collection
        self.documents = [example_document(nodeid) for nodeid in collection]
        units = self._regroup(range(len(collection)))
        if self.config.getoption("loadscopereorder", True):
            units.sort(key=len, reverse=True)
        self.units = deque(units)
        extra = len(self.node2pending) - len(self.units)
        for node in self.nodes[len(self.nodes) - extra :] if extra > 0 else ():
            self.log(f"shutting down unused worker {node}")
            node.shutdown()
        for node in self.nodes:  # one unit each first, then top up
            self._send_unit(node)
        self._refill_all()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        """A worker finished a test; give it more if it runs short."""
        self._report_orphans()
        self.node2pending[node].remove(item_index)
        self._refill(node)

    def mark_test_pending(self, item: str) -> None:
        """Queue *item* again, first (xdist's retry of a crashed test).

        A crashed example is queued with its whole document, from its start.
        """
        assert self.collection is not None
        index = self.collection.index(item)
        document = self.documents[index]
        if self._orphans.pop(item, None) is not None and document is not None:
            # The examples before it ran in the crashed process: run it all again.
            unit = [i for i, each in enumerate(self.documents) if each == document]
        else:
            unit = [index]
        self.units.appendleft(unit)
        self._refill_all()

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        """A worker gave tests back (after a ``steal``, which this scheduler never sends)."""
        pending = self.node2pending[node]
        given_back = set(indices)
        returned = [index for index in pending if index in given_back]
        pending[:] = [index for index in pending if index not in given_back]
        for unit in reversed(self._regroup(returned)):
            self.units.appendleft(unit)
        self._refill_all()

    # -- the machinery

    def _regroup(self, indices: Iterable[int]) -> list[list[int]]:
        """*indices* as work units, each in collection order, in order of first index."""
        assert self.collection is not None
        merged = merge_scopes((self.collection[index] for index in indices), self.scope_of)
        units: dict[str, list[int]] = {}
        for index in sorted(indices):
            units.setdefault(merged[self.collection[index]], []).append(index)
        return list(units.values())

    def _refill_all(self) -> None:
        for node in self.nodes:
            self._refill(node)

    def _refill(self, node: Any) -> None:
        if self.collection is None or node.shutting_down or node not in self.registered:
            return
        while self.units and len(self.node2pending[node]) < LOW_WATERMARK:
            if not self._send_unit(node):
                return
        if not self.units:
            node.shutdown()

    def _send_unit(self, node: Any) -> bool:
        """Send the next unit to *node*; False if it cannot take it (it is going down)."""
        if not self.units or node.shutting_down:
            return False
        unit = self.units.popleft()
        try:
            node.send_runtest_some(unit)
        except OSError:  # its channel closed: it is dying, and will be removed
            self.units.appendleft(unit)
            return False
        self.node2pending[node].extend(unit)
        return True

    def _report_orphans(self) -> None:
        """Report as failed the examples left behind by a crash in their document."""
        if not self._orphans:
            return
        orphans, self._orphans = self._orphans, {}
        assert self.collection is not None
        for crashed, (node, indices) in orphans.items():
            for index in indices:
                nodeid = self.collection[index]
                path = nodeid.split("::")[0]
                report = pytest.TestReport(
                    nodeid=nodeid,
                    location=(path, None, path),
                    keywords={},
                    outcome="failed",
                    longrepr=(
                        f"not run: worker {node.gateway.id!r} crashed while running"
                        f" {crashed!r}, an earlier example of the same document; the"
                        " rest of a document is not run after a crash, since its"
                        " examples build on each other"
                    ),
                    when="call",
                )
                report.node = node  # type: ignore[attr-defined]
                self.config.hook.pytest_runtest_logreport(report=report)

    def _same_collections(self) -> bool:
        from xdist.report import report_collection_diff

        (first, reference), *others = self.registered.items()
        same = True
        for node, collection in others:
            message = report_collection_diff(
                reference, collection, first.gateway.id, node.gateway.id
            )
            if message:
                same = False
                self.log(message)
                report = pytest.CollectReport(
                    nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[]
                )
                self.config.hook.pytest_collectreport(report=report)
        return same

    def _collection_differs(self, node: Any, collection: Sequence[str]) -> None:
        from xdist.report import report_collection_diff

        assert self.collection is not None
        first = next(iter(self.registered), None)
        message = report_collection_diff(
            self.collection,
            list(collection),
            first.gateway.id if first is not None else "scheduled",
            node.gateway.id,
        )
        self.log(message)
        node.shutdown()


class SpecAwareScheduling:
    """xdist's scheduler for a session without specs; :class:`DocumentScheduling` with.

    Which one is decided when the first worker reports its collection (every worker
    collects the same tests); until then, only the workers are remembered.  Every
    call after that goes to the one chosen, :attr:`chosen`.
    """

    def __init__(self, config: pytest.Config, log: Any, dist: str) -> None:
        self.config = config
        self.log = log
        self.dist = dist
        #: The scheduler in charge, once the first collection is in.
        self.chosen: Any = None
        self._waiting: list[Any] = []

    def _choose(self, collection: Sequence[str]) -> Any:
        if any(example_document(nodeid) for nodeid in collection):
            chosen: Any = DocumentScheduling(self.config, self.log, SCOPES[self.dist])
        else:
            chosen = _native_scheduler(self.dist, self.config, self.log)
        for node in self._waiting:
            chosen.add_node(node)
        self._waiting = []
        return chosen

    @property
    def nodes(self) -> list[Any]:
        return list(self._waiting) if self.chosen is None else list(self.chosen.nodes)

    @property
    def collection_is_completed(self) -> bool:
        if self.chosen is None or not self.chosen.collection_is_completed:
            return False
        # pytest-xdist 3.8's EachScheduling counts the collections of crashed workers
        # too, so it says "completed" while a replacement worker has not reported its
        # collection yet, and its schedule() then fails with a KeyError for that worker
        # (an INTERNALERROR, depending on timing).  Every live worker has reported
        # before it is complete here; the replacement's own report schedules it.
        pending = getattr(self.chosen, "node2pending", None)
        collections = getattr(self.chosen, "node2collection", None)
        if isinstance(pending, dict) and isinstance(collections, dict):
            return all(node in collections for node in pending)
        return True

    @property
    def tests_finished(self) -> bool:
        return self.chosen is not None and bool(self.chosen.tests_finished)

    @property
    def has_pending(self) -> bool:
        return self.chosen is not None and bool(self.chosen.has_pending)

    def add_node(self, node: Any) -> None:
        if self.chosen is None:
            self._waiting.append(node)
        else:
            self.chosen.add_node(node)

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        if self.chosen is None:
            self.chosen = self._choose(collection)
        self.chosen.add_node_collection(node, collection)

    def remove_node(self, node: Any) -> str | None:
        if self.chosen is None:
            if node not in self._waiting:
                # xdist's own schedulers raise KeyError for a worker they never had
                # (one that died before it was ready), and xdist expects it.
                raise KeyError(node)
            self._waiting.remove(node)
            return None
        crashed: str | None = self.chosen.remove_node(node)
        return crashed

    def schedule(self) -> None:
        self.chosen.schedule()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.chosen.mark_test_complete(node, item_index, duration)

    def mark_test_pending(self, item: str) -> None:
        self.chosen.mark_test_pending(item)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        self.chosen.remove_pending_tests_from_node(node, indices)

    def __getattr__(self, name: str) -> Any:
        # Anything else a plugin reads from xdist's scheduler (``collection``,
        # ``node2pending``...) is the chosen one's.
        chosen = self.__dict__.get("chosen")
        if chosen is None:
            raise AttributeError(name)
        return getattr(chosen, name)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler for the run's ``--dist`` mode, or ``None`` to leave it to xdist."""
    dist = config.getoption("dist", None)
    if dist not in SCOPES:
        return None
    return SpecAwareScheduling(config, log, dist)
