"""The ``rest`` runner: a read-only JSON status API, served from a thread or a process.

Each test runs a :class:`RESTRunner` of the test's world on a free port (``[rest] port:
0``) in a thread, and talks to it with :mod:`http.client`.  Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerkit.config import Configuration
from runnerkit.errors import RunnerError
from runnerkit.lists import MailingList
from runnerkit.master import lock_paths
from runnerkit.message import Message
from runnerkit.runner import load_runner_class
from runnerkit.runners.rest import RESTRunner

#: The bound on every wait.  Generous for a loaded machine; a passing test waits far less.
DEADLINE = 15.0

FREE_PORT = "[rest]\nport: 0\n"


class Served:
    """A REST runner running in a thread, and a client for it."""

    def __init__(self, runner: RESTRunner) -> None:
        self.runner = runner
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="test-rest")

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:
            self.errors.append(error)

    def start(self) -> Served:
        self.thread.start()
        if not self.runner.ready.wait(DEADLINE):
            pytest.fail(f"the REST runner was not ready in {DEADLINE} s: {self.errors}")
        return self

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(DEADLINE)
        if self.thread.is_alive():
            pytest.fail(f"the REST runner's run() did not return {DEADLINE} s after stop()")

    def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return the status, the headers and the raw body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.runner.port, timeout=DEADLINE)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get(self, path: str, expected_status: int = 200) -> Any:
        """GET *path*, check the status and that the answer is JSON, and decode it."""
        status, headers, body = self.request("GET", path)
        assert status == expected_status, body
        assert headers["Content-Type"] == "application/json"
        return json.loads(body)


@pytest.fixture
def serve(config: Configuration) -> Iterator[Callable[[], Served]]:
    """Start the world's REST runner on a free port; stop it when the test ends."""
    config.push("free-port", FREE_PORT)
    started: list[Served] = []

    def start() -> Served:
        served = Served(RESTRunner("rest", config=config)).start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
    config.pop("free-port")


@pytest.fixture
def lists(create_list: Callable[..., MailingList]) -> list[MailingList]:
    """Two lists: ant with two members (one with a language of her own), bee with none."""
    ant = create_list("ant@example.com", display_name="Ants")
    ant.subscribe("anne@example.com", display_name="Anne")
    ant.subscribe("bart@example.com", preferred_language="fr")
    ant.subscribe("owner@example.com", role="owner")
    bee = create_list("bee@example.org", preferred_language="de")
    return [ant, bee]


def queue_some(config: Configuration, msg: Message) -> None:
    """Two files in ``in``, one in ``shunt``, one in ``out``, and one preserved in ``bad``."""
    switchboards = config.switchboards
    for _ in range(2):
        switchboards["in"].enqueue(msg, listid="ant.example.com")
    switchboards["shunt"].enqueue(msg, whichq="pipeline")
    switchboards["out"].enqueue(msg)
    damaged = switchboards["out"].enqueue(msg)
    switchboards["out"].dequeue(damaged)
    switchboards["out"].finish(damaged, preserve=True)


def test_queues_gives_every_queue_depth(
    serve: Callable[[], Served], config: Configuration, msg: Message
) -> None:
    queue_some(config, msg)
    answer = serve().get("/queues")
    assert {"in", "pipeline", "out", "retry", "shunt", "bad"} <= set(answer["queues"])
    expected = dict.fromkeys(config.switchboards, 0)
    expected.update({"in": 2, "shunt": 1, "out": 1, "bad": 1})
    assert answer == {"queues": expected}


def test_queues_follow_the_queue_directories(
    serve: Callable[[], Served], config: Configuration, msg: Message
) -> None:
    served = serve()
    assert served.get("/queues")["queues"]["in"] == 0
    config.switchboards["in"].enqueue(msg)
    assert served.get("/queues")["queues"]["in"] == 1


def test_lists_with_member_counts(serve: Callable[[], Served], lists: list[MailingList]) -> None:
    assert serve().get("/lists") == {
        "lists": [
            {
                "fqdn_listname": "ant@example.com",
                "list_id": "ant.example.com",
                "display_name": "Ants",
                "preferred_language": "en",
                "members": 2,
            },
            {
                "fqdn_listname": "bee@example.org",
                "list_id": "bee.example.org",
                "display_name": "Bee",
                "preferred_language": "de",
                "members": 0,
            },
        ]
    }


def test_lists_see_lists_created_while_serving(
    serve: Callable[[], Served], create_list: Callable[..., MailingList]
) -> None:
    served = serve()
    assert served.get("/lists") == {"lists": []}
    create_list("late@example.com").subscribe("anne@example.com")
    [late] = served.get("/lists")["lists"]
    assert (late["fqdn_listname"], late["members"]) == ("late@example.com", 1)


def test_runners_without_a_master(serve: Callable[[], Served]) -> None:
    assert serve().get("/runners") == {"master_pid": None, "runners": []}


def test_runners_reads_the_master_status_file(
    serve: Callable[[], Served], config: Configuration
) -> None:
    status = {
        "draining": False,
        "master_pid": 4242,
        "runners": [
            {
                "name": "in",
                "slice": 0,
                "count": 1,
                "pid": 4243,
                "state": "running",
                "restarts": 2,
                "reason": "",
                "last_error": "",
            },
            {
                "name": "out",
                "slice": 0,
                "count": 1,
                "pid": None,
                "state": "down",
                "restarts": 11,
                "reason": "failed 11 times within the restart window",
                "last_error": "cannot connect to smtp.example.com:25",
            },
        ],
    }
    status_path = lock_paths(config)[2]
    status_path.write_text(json.dumps(status), encoding="utf-8")
    assert serve().get("/runners") == status


def test_metrics_are_prometheus_text_with_the_queues_and_the_masters_restarts(
    serve: Callable[[], Served], config: Configuration, msg: Message
) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST

    queue_some(config, msg)
    lock_paths(config)[2].write_text(
        json.dumps(
            {
                "draining": False,
                "master_pid": 4242,
                "runners": [
                    {"name": "in", "slice": index, "count": 2, "pid": 4243 + index}
                    | {"state": "running", "restarts": index + 1, "reason": "", "last_error": ""}
                    for index in (0, 1)
                ],
            }
        ),
        encoding="utf-8",
    )
    served = serve()
    status, headers, body = served.request("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    lines = body.decode("utf-8").splitlines()
    assert 'runnerkit_queue_messages{queue="in"} 2.0' in lines
    assert 'runnerkit_queue_messages{queue="bad"} 1.0' in lines
    # Summed over the slices.
    assert 'runnerkit_runner_restarts_total{runner="in"} 3.0' in lines
    # No runner process counted anything: no counter of theirs is shown.
    assert not [line for line in lines if line.startswith("runnerkit_messages_")]
    status, headers, body = served.request("HEAD", "/metrics")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


def test_a_broken_status_file_is_a_json_500(
    serve: Callable[[], Served], config: Configuration
) -> None:
    lock_paths(config)[2].write_text("{half a docu", encoding="utf-8")
    answer = serve().get("/runners", expected_status=500)
    assert answer["error"].startswith("GET /runners failed: ")


def test_world_with_lists_members_and_queued_files(
    serve: Callable[[], Served],
    config: Configuration,
    lists: list[MailingList],
    msg: Message,
) -> None:
    queue_some(config, msg)
    served = serve()
    assert served.get("/")["endpoints"] == ["/lists", "/metrics", "/queues", "/runners"]
    assert served.get("/queues")["queues"]["in"] == 2
    assert [entry["members"] for entry in served.get("/lists")["lists"]] == [2, 0]
    assert served.get("/runners")["runners"] == []


def test_trailing_slash_and_query_are_ignored(serve: Callable[[], Served]) -> None:
    served = serve()
    assert served.get("/queues/?verbose=1") == served.get("/queues")


@pytest.mark.parametrize(
    "path", ["/nope", "/queues/in", "/lists/ant@example.com", "/runners.json"]
)
def test_unknown_path_is_a_json_404(serve: Callable[[], Served], path: str) -> None:
    answer = serve().get(path, expected_status=404)
    assert set(answer) == {"error"}
    assert "/queues" in answer["error"]
    assert "/lists" in answer["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_a_405(
    serve: Callable[[], Served], config: Configuration, msg: Message, method: str
) -> None:
    config.switchboards["in"].enqueue(msg)
    served = serve()
    status, headers, body = served.request(method, "/queues")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert headers["Content-Type"] == "application/json"
    assert "read-only" in json.loads(body)["error"]
    assert len(config.switchboards["in"].files) == 1


def test_head_answers_headers_only(serve: Callable[[], Served]) -> None:
    served = serve()
    status, headers, body = served.request("HEAD", "/queues")
    assert (status, body) == (200, b"")
    _, _, get_body = served.request("GET", "/queues")
    assert int(headers["Content-Length"]) == len(get_body)


def test_stop_ends_run_and_closes_the_port(serve: Callable[[], Served]) -> None:
    served = serve()
    port = served.runner.port
    assert port != 0
    served.stop()
    assert served.errors == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()


def test_stop_ends_run_while_a_client_holds_a_connection(serve: Callable[[], Served]) -> None:
    served = serve()
    idle = socket.create_connection(("127.0.0.1", served.runner.port), timeout=DEADLINE)
    try:
        served.get("/queues")
        served.stop()
    finally:
        idle.close()


def test_stop_before_run_returns_at_once(config: Configuration) -> None:
    config.push("free-port", FREE_PORT)
    runner = RESTRunner("rest", config=config)
    runner.stop()
    served = Served(runner)
    served.thread.start()
    served.thread.join(DEADLINE)
    assert not served.thread.is_alive()
    assert served.errors == []
    config.pop("free-port")


def test_binds_only_to_the_configured_host(serve: Callable[[], Served]) -> None:
    # Control: on Linux all of 127/8 is loopback, so a server on every address is
    # reachable as 127.0.0.2; one bound to 127.0.0.1 alone must not be.
    with socket.create_server(("0.0.0.0", 0)) as everywhere:
        socket.create_connection(("127.0.0.2", everywhere.getsockname()[1]), DEADLINE).close()
    served = serve()
    assert served.runner.host == "127.0.0.1"
    served.get("/queues")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", served.runner.port), timeout=DEADLINE).close()


def test_a_configured_port_is_used(config: Configuration) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.push("port", f"[rest]\nport: {port}\n")
    runner = RESTRunner("rest", config=config)
    served = Served(runner).start()
    try:
        assert runner.port == port
        assert served.get("/queues")["queues"]["in"] == 0
    finally:
        served.stop()
        config.pop("port")


def test_a_port_in_use_is_a_clear_error(config: Configuration) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config.push("taken", f"[rest]\nport: {port}\n")
        runner = RESTRunner("rest", config=config)
        with pytest.raises(RunnerError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            runner.run()
        assert not runner.ready.is_set()
        config.pop("taken")


def test_rest_is_not_a_queue_runner_and_is_off_by_default(config: Configuration) -> None:
    settings = config.runner("rest")
    assert load_runner_class(settings) is RESTRunner
    assert not settings.queue
    assert not settings.start
    assert "rest" not in config.switchboards
    assert RESTRunner("rest", config=config).switchboard is None


@pytest.mark.slow
def test_a_rest_process_serves_and_stops_on_sigterm(
    config: Configuration, tmp_path: Path, create_list: Callable[..., MailingList]
) -> None:
    create_list("ant@example.com").subscribe("anne@example.com")
    ini = tmp_path / "rest.ini"
    ini.write_text(FREE_PORT, encoding="utf-8")
    log_path: Path = config.get("logging", "path")
    command = [sys.executable, "-m", "runnerkit.process", "-r", "rest"]
    command += ["--var-dir", str(config.paths.var_dir), "-C", str(ini)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE
        port = None
        while port is None:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the REST process never logged its port"
            text = log_path.read_text(encoding="utf-8") if log_path.exists() else ""
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", text)
            port = int(found.group(1)) if found else None
            time.sleep(0.02)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        connection.request("GET", "/lists")
        [entry] = json.loads(connection.getresponse().read())["lists"]
        connection.close()
        assert (entry["fqdn_listname"], entry["members"]) == ("ant@example.com", 1)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
        if process.stderr is not None:
            process.stderr.close()


# Hardening.


def request_with_host(served: Served, host: str | None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", served.runner.port, timeout=DEADLINE)
    try:
        connection.putrequest("GET", "/queues", skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_only_the_hosts_it_knows_are_answered(config: Configuration) -> None:
    """A page on evil.example whose name resolves to 127.0.0.1 (DNS rebinding) gets no
    answer; the local names, the listening address and [rest] allowed_hosts do."""
    config.push("free-port", "[rest]\nallowed_hosts: status.example.org\n" + FREE_PORT[7:])
    served = Served(RESTRunner("rest", config=config)).start()
    port = served.runner.port
    for host in (
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "localhost",
        f"LOCALHOST:{port}",
        "[::1]:80",
        "status.example.org",
        None,
    ):
        assert request_with_host(served, host)[0] == 200, host
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "127.0.0.1.evil.example",
        f"127.0.0.1:{port}.evil.example",
        "127.0.0.1:abc",
    ):
        status, headers, body = request_with_host(served, host)
        assert status == 403, host
        assert headers["Content-Type"] == "application/json"
        assert "add its name to [rest] allowed_hosts" in json.loads(body)["error"]
    served.stop()


def test_the_server_header_names_no_python_version(serve: Callable[[], Served]) -> None:
    _, headers, _ = serve().request("GET", "/")
    assert headers["Server"] == "runnerkit-rest"


def test_an_idle_connection_is_closed(
    serve: Callable[[], Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """750 idle connections held 755 threads for ever."""
    monkeypatch.setattr("runnerkit.runners.rest._Handler.timeout", 0.3)
    served = serve()
    with socket.create_connection(("127.0.0.1", served.runner.port), timeout=DEADLINE) as idle:
        idle.settimeout(DEADLINE)
        assert idle.recv(1) == b""  # closed by the server, not by the test's timeout


def test_connections_beyond_the_cap_get_503_not_a_thread(
    serve: Callable[[], Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,200 clients trickling headers held 1,204 threads: at most MAX_CONNECTIONS are
    served at once, and one more is answered 503 at once."""
    monkeypatch.setattr("runnerkit.runners.rest.MAX_CONNECTIONS", 2)
    served = serve()
    address = ("127.0.0.1", served.runner.port)
    holding = [socket.create_connection(address, timeout=DEADLINE) for _ in range(2)]
    try:
        for connection in holding:
            connection.sendall(b"GET /queues HTTP/1.1\r\nX-Slow: 1\r\n")  # never ends
        time.sleep(0.3)
        with socket.create_connection(address, timeout=DEADLINE) as extra:
            answer = extra.makefile("rb").readline()
        assert answer == b"HTTP/1.1 503 Service Unavailable\r\n"
    finally:
        for connection in holding:
            connection.close()
    # Places come free again.
    deadline = time.monotonic() + DEADLINE
    while served.request("GET", "/queues")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_two_hosts_or_an_absolute_target_for_another_host_are_refused(
    serve: Callable[[], Served],
) -> None:
    served = serve()
    for lines in (
        [b"GET /queues HTTP/1.1", b"Host: 127.0.0.1", b"Host: evil.example"],
        [b"GET /queues HTTP/1.1", b"Host: evil.example", b"Host: 127.0.0.1"],
        [b"GET http://evil.example/queues HTTP/1.1", b"Host: 127.0.0.1"],
    ):
        with socket.create_connection(("127.0.0.1", served.runner.port), timeout=DEADLINE) as c:
            c.sendall(b"\r\n".join([*lines, b"Connection: close", b"", b""]))
            assert c.makefile("rb").readline() == b"HTTP/1.0 403 Forbidden\r\n", lines
