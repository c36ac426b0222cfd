"""The core's imports: no circle, and no layer that reaches up.

A small checker over :mod:`ast` reads every module of the package and collects each
import of one of its modules, wherever it is: at the top, inside a function, or under
``if TYPE_CHECKING:``.  ``from runnerkit.pkg import name`` is an edge to ``runnerkit.pkg``,
whose ``__init__`` it runs, and to ``runnerkit.pkg.name`` when that is a module.  So a
package ``__init__`` that re-exports its submodules, one of which imports the package
back, is a circle too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

import runnerkit

PACKAGE_DIR = Path(runnerkit.__file__).resolve().parent

#: Each module's imports of the package's modules, by dotted name.
Graph = dict[str, set[str]]


def import_graph(package_dir: Path) -> Graph:
    """The import graph of the package in *package_dir*, itself included."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0]
                    source = f"{base}.{source}" if source else base
                named.add(source)
                named.update(f"{source}.{alias.name}" for alias in node.names)
        # A package's own ``from . import x`` names itself: not a circle.
        graph[name] = {each for each in named if each in modules and each != name}
    return graph


def matches(module: str, patterns: tuple[str, ...]) -> bool:
    """Whether *module* is one of *patterns*; ``a.b.*`` is ``a.b`` and all below it."""
    return any(
        module == pattern or (pattern.endswith(".*") and f"{module}.".startswith(pattern[:-1]))
        for pattern in patterns
    )


def reachable(graph: Graph, start: str) -> set[str]:
    """Every module that importing *start* imports, *start* itself only through a cycle."""
    seen: set[str] = set()
    queue = deque([start])
    while queue:
        for target in graph[queue.popleft()] - seen:
            seen.add(target)
            queue.append(target)
    return seen


def paths_from(graph: Graph, start: str, stop: Callable[[str], bool]) -> list[list[str]]:
    """The shortest import path from *start* to each module where *stop* holds.

    The search goes on through other modules but not past a stopping one.
    """
    parents: dict[str, str] = {}
    found = []
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node] - parents.keys()):
            parents[target] = node
            if stop(target):
                path = [target, node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                found.append(path[::-1])
            elif target != start:
                queue.append(target)
    return found


def find_cycles(graph: Graph) -> list[tuple[set[str], list[str]]]:
    """Each group of modules that import each other in circles, and its shortest cycle."""
    reach = {node: reachable(graph, node) for node in graph}
    cycles = []
    seen: set[str] = set()
    for node in sorted(graph):
        if node in seen or node not in reach[node]:
            continue
        group = {other for other in reach[node] if node in reach[other]}
        seen.update(group)
        [cycle] = paths_from(graph, node, lambda target, node=node: target == node)
        cycles.append((group, cycle))
    return cycles


@dataclass(frozen=True)
class Rule:
    """The *modules* (less *exempt*) never import *forbidden* (less *allowed*), even indirectly."""

    name: str
    modules: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()

    def violations(self, graph: Graph) -> list[list[str]]:
        """Each import path from a bound module to the first forbidden module on it."""

        def forbidden(module: str) -> bool:
            return matches(module, self.forbidden) and not matches(module, self.allowed)

        bound = [m for m in sorted(graph) if matches(m, self.modules)]
        return [
            path
            for module in bound
            if not matches(module, self.exempt)
            for path in paths_from(graph, module, forbidden)
        ]


LOW_CORE = (
    "runnerkit.switchboard",
    "runnerkit.queuefile",
    "runnerkit.fsio",
    "runnerkit.slices",
    "runnerkit.backend",
    "runnerkit.message",
    "runnerkit.database",
    "runnerkit.lists",
)
PROCESSES = (
    "runnerkit.master.*",
    "runnerkit.process",
    "runnerkit.runners.*",
    "runnerkit.cli",
    "runnerkit.cli.*",
)
RULES = [
    Rule(
        "config-is-settings-only",
        modules=("runnerkit.config.*",),
        forbidden=("runnerkit.*",),
        allowed=(
            "runnerkit.errors",
            "runnerkit.typing",
            "runnerkit.language",
            "runnerkit.config.*",
        ),
    ),
    Rule(
        "low-core-stays-low",
        modules=LOW_CORE,
        forbidden=(
            "runnerkit.config.*",
            "runnerkit.site",
            "runnerkit.runner",
            *PROCESSES,
            "runnerkit.testing.*",
        ),
    ),
    Rule(
        "only-the-harness-imports-the-harness",
        modules=("runnerkit.*",),
        exempt=("runnerkit.testing.*",),
        forbidden=("runnerkit.testing.*",),
    ),
    Rule(
        "runners-and-sites-start-no-process",
        modules=("runnerkit.runner", "runnerkit.site"),
        forbidden=PROCESSES,
    ),
]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(PACKAGE_DIR)


def test_the_checker_sees_the_real_imports(graph: Graph) -> None:
    assert {"runnerkit.queuefile", "runnerkit.fsio"} <= graph["runnerkit.switchboard"]
    for rule in RULES:
        for pattern in (*rule.modules, *rule.forbidden, *rule.allowed, *rule.exempt):
            assert any(matches(module, (pattern,)) for module in graph), (rule.name, pattern)


def test_the_package_has_no_import_cycle(graph: Graph) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(
        f"import cycle among {', '.join(sorted(group))}, such as {' -> '.join(cycle)}"
        for group, cycle in cycles
    )


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_no_layer_imports_upward(graph: Graph, rule: Rule) -> None:
    found = rule.violations(graph)
    assert not found, f"{rule.name}:\n" + "\n".join(" -> ".join(path) for path in found)


TOY = {
    "__init__.py": "",
    # A cycle through "from package import module".
    "low.py": "from toy import high\n",
    "high.py": "import toy.low\n",
    # A cycle through an import for type checking and one inside a function.
    "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.b import B\n",
    "b.py": "import os\n\ndef later():\n    from . import a\n",
    # A cycle through a package that re-exports its submodule.
    "pkg/__init__.py": "from .sub import thing\n",
    "pkg/sub.py": "from .. import low\nfrom toy.pkg import other\nthing = 1\n",
    "pkg/other.py": "",
    # An upward import, through a module that no rule binds.
    "core.py": "import toy.helper\n",
    "helper.py": "def show():\n    from toy.ui import window\n",
    "ui.py": "window = None\n",
}


def test_the_checker_finds_cycles_and_upward_imports(tmp_path: Path) -> None:
    for relative, text in TOY.items():
        path = tmp_path / "toy" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path / "toy")
    assert graph == {
        "toy": set(),
        "toy.low": {"toy", "toy.high"},
        "toy.high": {"toy.low"},
        "toy.a": {"toy.b"},
        "toy.b": {"toy", "toy.a"},
        "toy.pkg": {"toy.pkg.sub"},
        "toy.pkg.sub": {"toy", "toy.low", "toy.pkg", "toy.pkg.other"},
        "toy.pkg.other": set(),
        "toy.core": {"toy.helper"},
        "toy.helper": {"toy.ui"},
        "toy.ui": set(),
    }
    cycles = find_cycles(graph)
    assert [group for group, _ in cycles] == [
        {"toy.a", "toy.b"},
        {"toy.high", "toy.low"},
        {"toy.pkg", "toy.pkg.sub"},
    ]
    for group, cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert set(cycle) == group
        assert all(b in graph[a] for a, b in pairwise(cycle))
    rule = Rule("toy", modules=("toy.core", "toy.helper"), forbidden=("toy.ui",))
    assert rule.violations(graph) == [
        ["toy.core", "toy.helper", "toy.ui"],
        ["toy.helper", "toy.ui"],
    ]
    harness = Rule("harness", modules=("toy.*",), exempt=("toy.ui",), forbidden=("toy.ui",))
    assert harness.violations(graph) == rule.violations(graph)


NOT_FOR_A_CONFIGURATION = (
    "runnerkit.master",
    "runnerkit.process",
    "runnerkit.runners",
    "runnerkit.runner",
    "runnerkit.site",
    "runnerkit.switchboard",
    "runnerkit.testing",
    "asyncio",
    "smtplib",
    "http.server",
)


def test_building_a_configuration_imports_no_runner(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""\
        import sys
        from runnerkit.config import Configuration
        Configuration({str(tmp_path / "var")!r})
        print("\\n".join(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "runnerkit.config" in loaded
    imported = [
        module
        for module in loaded
        if any(module == name or module.startswith(f"{name}.") for name in NOT_FOR_A_CONFIGURATION)
    ]
    assert imported == []
