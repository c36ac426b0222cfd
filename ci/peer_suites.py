"""CI guard: runnerkit's pytest plugin changes nothing for the projects that do not use it.

Installing runnerkit installs its plugin for every project in the environment: it hooks
pytest, replaces pytest-xdist's scheduler and wraps Sybil and freezegun.  The strongest
evidence that it stays inert where nobody asked for it is the test suites of those
packages themselves.  For each of them this script takes the version this environment
resolves, downloads that version's sdist from the package index with pip and, in a fresh
virtual environment of its own, runs the suite from the sdist twice: without runnerkit,
then with runnerkit installed.  pytest and the packages runnerkit hooks are pinned to
this environment's versions, so runnerkit's presence is the only difference.

A test whose outcome differs is run again alone in both configurations (runnerkit
installed, then uninstalled with everything it brought), so that a flaky test on a busy
machine is not taken for a change: only a consistent difference counts, one where no
outcome the test had without runnerkit is among those it had with runnerkit.  The exit
status is 1 if runnerkit changes any outcome or a suite cannot be run, 0 otherwise::

    python ci/peer_suites.py [--only NAME] [--keep] [--timeout SECONDS] [--jobs N]

Standard library only, so that it needs nothing installed for it.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository root: the project that is installed as runnerkit.
PROJECT = Path(__file__).resolve().parent.parent

#: The distributions whose hooks runnerkit implements or wraps, with pytest itself:
#: every suite's environment gets this environment's version of each.
HOOKED = ("pytest", "pytest-xdist", "sybil", "freezegun")

#: Every run of a suite's tests: no cache written into the sdist's tree, and a module
#: that fails to import (a test dependency that moved on) costs its own tests only.
PYTEST = ("-p", "no:cacheprovider", "--continue-on-collection-errors")

#: The outcome of a test that a run did not report at all.
ABSENT = "absent"

#: The pseudo test that stands for the run as a whole, when pytest ends in neither of
#: the statuses of a run that happened (0: all passed, 1: some failed).
SESSION = "<pytest session>"

#: What the copy of the project that runnerkit's wheel is built from leaves out: version
#: control, environments, caches and earlier builds.
NOT_BUILT = (
    ".git",
    ".venv",
    "venv",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)

#: Seconds a pip command may take: a stalled download fails instead of holding CI.
PIP_LIMIT = 600.0

#: Seconds a run of tests may go without printing: at verbosity 1 pytest prints each
#: test's name as it starts and its outcome as it ends, and the slowest test of these
#: suites took 11 s on a busy machine.
SILENT_LIMIT = 120.0

#: Once a suite has run without runnerkit, its later runs may take this many times as
#: long (runnerkit adds its import to every pytest process the suite starts)...
SLOWER = 4.0
#: ...but never less than this many seconds, nor more than the suite's own limit.
LEAST_LIMIT = 60.0

#: Names under which a project declares what its tests need: extras and dependency groups.
TEST_EXTRAS = frozenset({"test", "tests", "testing"})
TEST_GROUPS = TEST_EXTRAS | {"dev"}

#: Requirements of a project's test environment that measure or check code instead of
#: running the tests (coverage, linters, type checkers and their stubs): left out.
TOOLS = re.compile(r"pytest-cov|coverage|coveralls|mypy|ruff|pre-commit|tox|types-.+")

#: A tox ``deps`` or ``extras`` line that applies only to some factors (``py310: x``).
TOX_FACTOR = re.compile(r"^[\w{},.!-]+:\s")


class PeerSuiteError(Exception):
    """A step of the guard could not be done: a download, an install, a run."""


@dataclass(frozen=True)
class Suite:
    """A peer's test suite, as this guard runs it."""

    #: The distribution whose sdist holds the suite.
    name: str
    #: Seconds its first run (without runnerkit) may take, and any later one at most: about
    #: four times the longest the first took beside another suite, on a two-core machine
    #: other jobs kept busy (pytest-xdist 5.5 minutes, Sybil 40 s, freezegun 15 s).
    limit: float


#: The suites, the longest first: with two jobs, the others run beside it.
SUITES = (
    Suite("pytest-xdist", limit=1200.0),
    Suite("sybil", limit=180.0),
    Suite("freezegun", limit=60.0),
)


@dataclass(frozen=True)
class Run:
    """What one pytest run of a suite reported."""

    #: pytest's last line: ``7 failed, 190 passed in 60.12s``.
    summary: str
    #: Each test's outcome, by its junit id (``classname::name``): ``passed``,
    #: ``failed``, ``error``, ``skipped``, ``xfailed``, or several joined by ``+``.
    outcomes: dict[str, str]
    #: Where its output is.
    log: Path
    #: How long it took.
    seconds: float


@dataclass(frozen=True)
class Change:
    """A test whose outcome differed between the runs without and with runnerkit."""

    #: Its node id, or its junit id if it has none (a module that failed to import).
    test: str
    without: str
    with_runnerkit: str
    #: Its outcomes when it was run again alone: without, then with runnerkit.
    again: tuple[str, str]

    @property
    def confirmed(self) -> bool:
        """Whether the difference is consistent, and so counts.

        It is when no outcome the test had without runnerkit, in the suite or alone, is one
        it had with runnerkit: a flaky test that happens to differ both times, once each
        way, does not count.
        """
        return not {self.without, self.again[0]} & {self.with_runnerkit, self.again[1]}


@dataclass(frozen=True)
class Report:
    """The guard's result for one suite."""

    title: str
    without: Run
    with_runnerkit: Run
    changes: list[Change]

    @property
    def confirmed(self) -> list[Change]:
        """The changes that count: the consistent ones."""
        return [change for change in self.changes if change.confirmed]


class Processes:
    """The commands the guard runs, each in a session of its own and bounded in time.

    A command that outlives its limit, or a test run that prints nothing for too long,
    is killed with its whole process group, so no worker of a hung suite is left behind.
    :meth:`stop` kills every running command and refuses new ones, for when the guard
    itself is interrupted.
    """

    def __init__(self) -> None:
        """Start with nothing running."""
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._stopped = False

    def run(
        self,
        command: Sequence[str],
        *,
        what: str,
        log: Path,
        limit: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        silent: float | None = None,
    ) -> int:
        """Run a command, its output to ``log``; return its status.

        :param silent: the seconds it may go without printing, if it prints as it goes.
        :raises PeerSuiteError: if it did not finish within ``limit`` seconds or was
            silent too long, or the guard is stopping.
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            with self._lock:
                if self._stopped:
                    raise PeerSuiteError(f"{what}: not started, the guard is stopping")
                process = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self._running.add(process)
            try:
                hang = watch(process, log, limit=limit, silent=silent)
                if hang is not None:
                    raise PeerSuiteError(f"{what} {hang}, and was stopped\n{tail(log)}")
                return process.wait()
            finally:
                kill_group(process)
                with self._lock:
                    self._running.discard(process)

    def check(self, command: Sequence[str], *, what: str, log: Path, limit: float) -> None:
        """Run a command that must succeed.

        :raises PeerSuiteError: if it fails, naming it and showing its output's end.
        """
        status = self.run(command, what=what, log=log, limit=limit)
        if status != 0:
            raise PeerSuiteError(f"{what} failed (status {status})\n{tail(log)}")

    def stop(self) -> None:
        """Kill every running command, and start no other."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for process in running:
            kill_group(process)


def watch(
    process: subprocess.Popen[bytes], log: Path, *, limit: float, silent: float | None
) -> str | None:
    """Wait for a process to end, or say how it hangs.

    It hangs once it outlives ``limit`` seconds, or once its output ``log`` has not
    grown for ``silent`` seconds.
    """
    started = printed = time.monotonic()
    size = 0
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
            return None
        now = time.monotonic()
        if now - started >= limit:
            return f"did not finish in {limit:.0f} s"
        grown = log.stat().st_size
        if grown != size:
            size, printed = grown, now
        elif silent is not None and now - printed >= silent:
            return f"printed nothing for {silent:.0f} s (the test it names last hangs?)"


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a process started in a session of its own, with its group.

    The group outlives its leader when the leader has exited and workers remain.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def tail(log: Path, lines: int = 25) -> str:
    """The end of a log, indented, with its path, for an error message."""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    shown = "\n".join(f"    {line}" for line in text)
    return f"  the end of its output ({log}):\n{shown}"


def canonical_name(requirement: str) -> str:
    """The normalized project name a requirement string starts with (PEP 503).

    :raises PeerSuiteError: if it starts with none.
    """
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if found is None:
        raise PeerSuiteError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", found.group()).lower()


def read_requirements_file(path: Path) -> list[str]:
    """The requirements a pip requirements file lists, following its ``-r`` lines.

    Other options (``-c``, ``-e``, ``--index-url``...) are left out.
    """
    requirements: list[str] = []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if line.startswith(("-r", "--requirement")):
            included = re.sub(r"^(-r|--requirement)[=\s]*", "", line)
            requirements += read_requirements_file(path.parent / included)
        elif line and not line.startswith("-"):
            requirements.append(line)
    return requirements


def tox_needs(tree: Path) -> tuple[set[str], list[str]]:
    """The extras and requirements of ``tox.ini``'s base ``[testenv]``.

    Lines for some factors only (``psutil: psutil``) and substitutions are left out:
    the guard runs the plain environment, with its own pins.
    """
    path = tree / "tox.ini"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    if not parser.has_section("testenv"):
        return set(), []

    def lines(key: str) -> list[str]:
        text = parser.get("testenv", key, fallback="")
        found = (line.strip() for line in text.splitlines())
        return [line for line in found if line and not TOX_FACTOR.match(line) and "{" not in line]

    requirements: list[str] = []
    for line in lines("deps"):
        if line.startswith("-r"):
            requirements += read_requirements_file(tree / line[2:].strip())
        elif not line.startswith("-"):
            requirements.append(line)
    return set(lines("extras")), requirements


def dependency_group(groups: Mapping[str, Any], name: str) -> list[str]:
    """The requirements of a dependency group (PEP 735), its included groups expanded."""
    requirements: list[str] = []
    for entry in groups.get(name, []):
        if isinstance(entry, str):
            requirements.append(entry)
        elif isinstance(entry, dict) and "include-group" in entry:
            requirements += dependency_group(groups, entry["include-group"])
    return requirements


def suite_needs(tree: Path) -> tuple[list[str], list[str]]:
    """What a project's own test suite needs: its extras to install, and requirements.

    They are read where projects declare them: ``tox.ini``'s ``[testenv]``, and the
    test extras and dependency groups of ``pyproject.toml``.  Coverage, lint and typing
    tools are left out; pytest is always in.
    """
    extras, requirements = tox_needs(tree)
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        document = tomllib.loads(pyproject.read_text())
        declared = document.get("project", {}).get("optional-dependencies", {})
        extras |= TEST_EXTRAS & set(declared)
        groups = document.get("dependency-groups", {})
        for name in sorted(TEST_GROUPS & set(groups)):
            requirements += dependency_group(groups, name)
    kept = {each for each in requirements if not TOOLS.fullmatch(canonical_name(each))}
    if "pytest" not in {canonical_name(each) for each in kept}:
        kept.add("pytest")
    return sorted(extras), sorted(kept)


def junit_key(nodeid: str) -> str:
    """The id pytest's junit XML gives a test of this node id: ``classname::name``.

    The file path becomes a dotted name without ``.py``, and the classes join it;
    parameters stay as they are.
    """
    path, _, rest = nodeid.partition("::")
    names, bracket, parameters = rest.partition("[")
    parts = [re.sub(r"\.py$", "", path.replace("/", ".")), *names.split("::")]
    name = parts.pop() + bracket + parameters
    return f"{'.'.join(parts)}::{name}"


def read_junit(path: Path) -> dict[str, str]:
    """Each test's outcome in a junit XML report, by ``classname::name``."""
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(path).iter("testcase"):
        kinds: set[str] = set()
        for child in case:
            if child.tag == "error":
                kinds.add("error")
            elif child.tag == "failure":
                kinds.add("failed")
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                kinds.add("xfailed" if xfail else "skipped")
        outcome = "+".join(sorted(kinds)) or "passed"
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        # Two tests with one id (they differ only in a character the XML changes): both
        # outcomes, so that neither hides the other.
        outcomes[key] = f"{outcomes[key]},{outcome}" if key in outcomes else outcome
    return outcomes


def summary_line(log: Path) -> str:
    """pytest's final line, without its ``=`` rules: ``7 failed, 190 passed in 60.12s``."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        text = line.strip().strip("=").strip()
        counted = re.search(r"\b(passed|failed|errors?|skipped|deselected|no tests ran)\b", text)
        if counted and re.search(r"\bin \d+(\.\d+)?s\b", text):
            return text
    return "(pytest printed no summary line)"


class Environment:
    """A fresh virtual environment for one suite, and the suite's runs in it.

    It has no pip of its own: this interpreter's pip installs into it (``pip
    --python``), which makes it quick to create.  Logs and reports go under ``work``,
    numbered in the order they were made.
    """

    def __init__(self, title: str, work: Path, constraints: Path, processes: Processes) -> None:
        """Create the environment in ``work / "venv"``.

        :param title: the suite's name and version, for messages.
        :param constraints: the pip constraints file every install obeys.
        """
        self.title = title
        self.work = work
        self.path = work / "venv"
        self.python = self.path / "bin" / "python"
        self.constraints = constraints
        self.processes = processes
        self._made = 0
        command = [sys.executable, "-m", "venv", "--without-pip", str(self.path)]
        self._check(command, what="creating its virtual environment")

    def _log(self, label: str) -> Path:
        self._made += 1
        name = re.sub(r"[^\w.-]+", "-", label)
        return self.work / "logs" / f"{self._made:03d}-{name}.log"

    def _check(self, command: Sequence[str], *, what: str) -> None:
        log = self._log(what)
        self.processes.check(command, what=f"{self.title}: {what}", log=log, limit=PIP_LIMIT)

    def pip(self, *arguments: str, what: str) -> None:
        """Run pip on the environment, quietly unless it fails."""
        python = ["--python", str(self.python)]
        self._check([sys.executable, "-m", "pip", *python, *arguments, "--quiet"], what=what)

    def install(self, *requirements: str, what: str) -> None:
        """Install requirements, under the constraints."""
        self.pip("install", "-c", str(self.constraints), *requirements, what=what)

    def installed(self) -> dict[str, str]:
        """The distributions installed in the environment, with their versions."""
        places = [str(path) for path in self.path.glob("lib/python*/site-packages")]
        found = importlib.metadata.distributions(path=places)
        return {canonical_name(each.name): each.version for each in found}

    def restore(self, before: Mapping[str, str]) -> None:
        """Return to the distributions the environment had before ``installed()`` gave ``before``.

        What came since is uninstalled, and what changed goes back to its version.
        """
        now = self.installed()
        added = sorted(set(now) - set(before))
        if added:
            self.pip("uninstall", "--yes", *added, what="uninstalling runnerkit")
        changed = sorted(name for name in before if now.get(name) != before[name])
        if changed:
            pins = [f"{name}=={before[name]}" for name in changed]
            self.install(*pins, what="reinstalling what installing runnerkit changed")

    def environ(self, tmp: Path) -> dict[str, str]:
        """The environment variables of a run, with its own temporary directory ``tmp``.

        They are this process's, without those that steer pytest or Python, and with the
        virtual environment first on the path.
        """
        steering = ("PYTEST_", "PYTHON", "COV_CORE_", "VIRTUAL_ENV")
        kept = {key: value for key, value in os.environ.items() if not key.startswith(steering)}
        tmp.mkdir(parents=True)
        return kept | {
            "VIRTUAL_ENV": str(self.path),
            "PATH": os.pathsep.join([str(self.path / "bin"), os.environ.get("PATH", "")]),
            "TMPDIR": str(tmp),
        }

    def pytest(
        self, tree: Path, arguments: Sequence[str], *, label: str, limit: float
    ) -> tuple[int, Path]:
        """Run pytest from ``tree``; return its status and the path of its output.

        :raises PeerSuiteError: if it outlived ``limit`` seconds.
        """
        log = self._log(label)
        command = [str(self.python), "-m", "pytest", *PYTEST, *arguments]
        what = f"{self.title}: pytest, {label.replace('-', ' ')} runnerkit,"
        env = self.environ(log.with_suffix(".tmp"))
        silent = None if "--collect-only" in arguments else SILENT_LIMIT
        status = self.processes.run(
            command, what=what, log=log, limit=limit, cwd=tree, env=env, silent=silent
        )
        return status, log

    def run_tests(self, tree: Path, selection: Sequence[str], *, label: str, limit: float) -> Run:
        """Run the suite, or the tests ``selection`` names, and read their outcomes.

        :raises PeerSuiteError: if the run outlived ``limit`` seconds.
        """
        junit = self._log(label).with_suffix(".xml")
        started = time.monotonic()
        # Verbosity 1, whatever the project's addopts: a hung run names its test last.
        arguments = ["--verbosity=1", f"--junitxml={junit}", *selection]
        status, log = self.pytest(tree, arguments, label=label, limit=limit)
        seconds = time.monotonic() - started
        outcomes = read_junit(junit) if junit.is_file() else {}
        if status not in (0, 1):
            outcomes[SESSION] = f"pytest exited with status {status}"
        return Run(summary_line(log), outcomes, log, seconds)

    def collect(self, tree: Path, *, label: str, limit: float) -> dict[str, str]:
        """The node ids of the suite's tests, by their junit ids.

        :raises PeerSuiteError: if collecting outlived ``limit`` seconds.
        """
        # Exactly -1 lists one node id a line, whatever -v the project's addopts give.
        _, log = self.pytest(tree, ["--collect-only", "--verbosity=-1"], label=label, limit=limit)
        nodeids: dict[str, str] = {}
        for line in log.read_text(errors="replace").splitlines():
            if not line.strip():
                break
            if "::" in line:
                nodeids[junit_key(line)] = line
        return nodeids


@dataclass(frozen=True)
class Guard:
    """What every suite's check shares: the processes, runnerkit's wheel, the pins."""

    processes: Processes
    #: runnerkit, built once from the project directory.
    wheel: Path
    #: This environment's versions of :data:`HOOKED`.
    pins: Mapping[str, str]
    #: The limit of every run, when the command line gives one.
    timeout: float | None

    def check(self, suite: Suite, work: Path) -> Report:
        """Run a suite without and with runnerkit; find the outcomes runnerkit changes.

        :raises PeerSuiteError: if a step cannot be done, or a run outlives its limit.
        """
        title = f"{suite.name} {self.pins[suite.name]}"
        progress(f"{title}: downloading and extracting its sdist")
        sdist = self.download_sdist(suite.name, work)
        tree = extract(sdist, work / "tree")
        constraints = work / "constraints.txt"
        constraints.write_text("".join(f"{name}=={self.pins[name]}\n" for name in HOOKED))
        extras, requirements = suite_needs(tree)
        package = f"{suite.name}[{','.join(extras)}]" if extras else suite.name
        progress(f"{title}: installing {', '.join([package, *requirements])}")
        env = Environment(title, work, constraints, self.processes)
        needs = f"installing {title} and what its tests need"
        env.install(f"{package} @ {sdist.as_uri()}", *requirements, what=needs)

        progress(f"{title}: running its tests without runnerkit")
        without = env.run_tests(tree, [], label="without", limit=self.timeout or suite.limit)
        if SESSION in without.outcomes:
            message = f"{title}: its tests do not run here: {without.outcomes[SESSION]}"
            raise PeerSuiteError(f"{message}\n{tail(without.log)}")
        limit = self.timeout or min(suite.limit, max(LEAST_LIMIT, SLOWER * without.seconds))
        before = env.installed()
        env.install(str(self.wheel), what="installing runnerkit")
        progress(f"{title}: running its tests with runnerkit (limit {limit:.0f} s)")
        with_runnerkit = env.run_tests(tree, [], label="with", limit=limit)

        tests = without.outcomes.keys() | with_runnerkit.outcomes.keys()
        differing = sorted(
            test
            for test in tests
            if without.outcomes.get(test, ABSENT) != with_runnerkit.outcomes.get(test, ABSENT)
        )
        if not differing:
            return Report(title, without, with_runnerkit, [])
        progress(f"{title}: running the {len(differing)} tests whose outcome differs alone")
        again_with, nodeids = rerun_alone(env, tree, differing, config="with", limit=limit)
        env.restore(before)
        again_without, _ = rerun_alone(env, tree, differing, config="without", limit=limit)
        changes = [
            Change(
                nodeids.get(test, test),
                without.outcomes.get(test, ABSENT),
                with_runnerkit.outcomes.get(test, ABSENT),
                (again_without[test], again_with[test]),
            )
            for test in differing
        ]
        return Report(title, without, with_runnerkit, changes)

    def download_sdist(self, name: str, work: Path) -> Path:
        """Download the pinned version's sdist from the package index, as pip finds it.

        :raises PeerSuiteError: if pip cannot, or gives anything but one ``.tar.gz``.
        """
        destination = work / "sdist"
        destination.mkdir(parents=True)
        requirement = f"{name}=={self.pins[name]}"
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--no-binary", ":all:", "--dest", str(destination), requirement]
        what = f"downloading {requirement}'s sdist"
        log = work / "logs" / "000-download.log"
        self.processes.check(command, what=what, log=log, limit=PIP_LIMIT)
        found = list(destination.iterdir())
        if len(found) != 1 or not found[0].name.endswith(".tar.gz"):
            raise PeerSuiteError(f"{what} gave {[each.name for each in found]}, not one .tar.gz")
        return found[0]


def extract(sdist: Path, destination: Path) -> Path:
    """Extract an sdist; return its top directory.

    :raises PeerSuiteError: if the archive holds anything but one top directory.
    """
    destination.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(destination, filter="data")
        else:  # Python 3.11 before 3.11.4: the archive comes from the package index.
            archive.extractall(destination)
    tops = list(destination.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise PeerSuiteError(f"{sdist.name} does not hold one top directory: {tops}")
    return tops[0]


def rerun_alone(
    env: Environment, tree: Path, tests: Iterable[str], *, config: str, limit: float
) -> tuple[dict[str, str], dict[str, str]]:
    """Each test's outcome when it runs again alone, in the environment as it is now.

    A test pytest cannot select by node id (a module that failed to import, the session
    itself) is read from one more run of the whole suite instead.  Returned with the
    node ids of the tests collected now, by junit id.
    """
    nodeids = env.collect(tree, label=f"collect-{config}", limit=limit)
    outcomes: dict[str, str] = {}
    whole: list[str] = []
    for test in tests:
        if test not in nodeids:
            whole.append(test)
            continue
        run = env.run_tests(tree, [nodeids[test]], label=f"alone-{config}", limit=limit)
        outcomes[test] = run.outcomes.get(SESSION) or run.outcomes.get(test, ABSENT)
    if whole:
        run = env.run_tests(tree, [], label=f"again-{config}", limit=limit)
        outcomes |= {test: run.outcomes.get(test, ABSENT) for test in whole}
    return outcomes, nodeids


def progress(message: str) -> None:
    """Say what the guard is doing, with the time, at once (CI shows it as it comes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def describe(report: Report) -> list[str]:
    """The lines that show a suite's result."""
    without, with_runnerkit = report.without.summary, report.with_runnerkit.summary
    lines = [f"{report.title}: without runnerkit: {without} | with runnerkit: {with_runnerkit}"]
    confirmed = report.confirmed
    if confirmed:
        lines.append(f"  runnerkit changes the outcome of {len(confirmed)} test(s):")
    else:
        lines.append("  runnerkit changes no outcome")
    lines += [f"    {outcomes(change)}" for change in confirmed]
    flaky = [change for change in report.changes if not change.confirmed]
    if flaky:
        lines.append(f"  not counted, as not consistent (flaky): {len(flaky)} test(s):")
        lines += [f"    {outcomes(change)}" for change in flaky]
    return lines


def outcomes(change: Change) -> str:
    """A test's outcomes in both configurations, in the suite and alone."""
    without = f"{change.without}, alone {change.again[0]}"
    with_runnerkit = f"{change.with_runnerkit}, alone {change.again[1]}"
    return f"{change.test}: without runnerkit {without}; with runnerkit {with_runnerkit}"


def hooked_versions() -> dict[str, str]:
    """The versions this environment resolves for pytest and the hooked packages.

    :raises PeerSuiteError: if one is not installed.
    """
    versions: dict[str, str] = {}
    for name in HOOKED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            message = f"{name} is not installed here; install runnerkit's test extra first"
            raise PeerSuiteError(message) from None
    return versions


def build_wheel(processes: Processes, work: Path) -> Path:
    """Build runnerkit's wheel, once for every suite, from a copy of the project directory.

    A copy, because setuptools builds in the source tree (``build/``), where another
    build of the same tree may be under way.

    :raises PeerSuiteError: if pip cannot.
    """
    source = work / "project"
    shutil.copytree(PROJECT, source, ignore=shutil.ignore_patterns(*NOT_BUILT))
    destination = work / "wheel"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    command += ["--wheel-dir", str(destination), str(source)]
    log = work / "wheel.log"
    processes.check(command, what="building runnerkit's wheel", log=log, limit=PIP_LIMIT)
    return next(destination.glob("runnerkit-*.whl"))


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Run the test suites of pytest-xdist, Sybil and freezegun without and"
        " with runnerkit installed, and list the tests whose outcome runnerkit changes."
    )
    parser.add_argument(
        "--only", choices=[suite.name for suite in SUITES], help="run this suite alone"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory, and say where it is"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="the time any one pytest run may take (default: a limit of each suite's own,"
        " and after its first run, four times what that took)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="how many suites run at once (default: 2, the longest beside the others)",
    )
    return parser.parse_args(argv)


def check_all(guard: Guard, suites: Sequence[Suite], work: Path, jobs: int) -> list[str]:
    """Check the suites, ``jobs`` at a time, and print their results in order.

    :returns: what went wrong, by suite: the empty list if runnerkit changes nothing.
    """

    def check(suite: Suite) -> Report | PeerSuiteError:
        started = time.monotonic()
        try:
            result: Report | PeerSuiteError = guard.check(suite, work / suite.name)
        except PeerSuiteError as error:
            result = error
        progress(f"{suite.name}: done in {time.monotonic() - started:.0f} s")
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        results = list(pool.map(check, suites))
    except BaseException:
        guard.processes.stop()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    wrong: list[str] = []
    for suite, result in zip(suites, results, strict=True):
        if isinstance(result, PeerSuiteError):
            wrong.append(f"{suite.name} not checked")
            print(f"{suite.name} {guard.pins[suite.name]}: not checked: {result}")
        else:
            if result.confirmed:
                wrong.append(f"runnerkit changes {suite.name}'s outcomes")
            print("\n".join(describe(result)))
    return wrong


def main(argv: Sequence[str] | None = None) -> int:
    """Run the guard; return 1 if runnerkit changes an outcome or a suite cannot run."""
    arguments = parse_arguments(argv)
    suites = [suite for suite in SUITES if arguments.only in (None, suite.name)]
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="peer-suites-"))
    processes = Processes()
    try:
        pins = hooked_versions()
        progress(f"building runnerkit's wheel from {PROJECT}")
        wheel = build_wheel(processes, work)
        guard = Guard(processes, wheel, pins, arguments.timeout)
        wrong = check_all(guard, suites, work, arguments.jobs)
    except PeerSuiteError as error:
        print(f"peer suites: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peer suites: interrupted", file=sys.stderr)
        return 130
    finally:
        if arguments.keep:
            print(f"peer suites: the working directory is kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    verdict = "; ".join(wrong) or "runnerkit changes no outcome"
    print(f"peer suites: {verdict} ({time.monotonic() - started:.0f} s)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
