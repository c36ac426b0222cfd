"""runnerkit's pytest options cannot clash with another plugin's.

The plugin is loaded in every pytest run wherever runnerkit is installed, so an option
name that another plugin also adds stops every run of that environment ("option dest
'accept' already used", as pytest-accept's ``--accept`` did).  Every option runnerkit
adds therefore starts with ``--spec-`` and stores into a ``spec_`` dest, and every ini
key it adds starts with ``spec_``.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import pytest

pytest_plugins = ["pytester"]

#: Options every inner run gets: no cache files in the throwaway project, and without
#: pytest-accept, which owns ``--accept``.
QUIET = ("-p", "no:cacheprovider", "-p", "no:accept")


class _Declared:
    """Stands in for pytest's parser and its groups, keeping what is declared on it."""

    def __init__(self) -> None:
        #: (option strings, dest) of each option.
        self.options: list[tuple[tuple[str, ...], str]] = []
        self.ini: list[str] = []

    def getgroup(self, name: str, description: str = "", after: str | None = None) -> _Declared:
        return self

    def addoption(self, *names: str, **attrs: Any) -> None:
        longest = max(names, key=len)
        self.options.append((names, attrs.get("dest") or longest.lstrip("-").replace("-", "_")))

    _addoption = addoption

    def addini(self, name: str, *args: Any, **kws: Any) -> None:
        self.ini.append(name)


def _module_of(plugin: object) -> str:
    return plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__


def declared_by_runnerkit(config: pytest.Config) -> _Declared:
    """What every runnerkit plugin registered in *config* declares in ``pytest_addoption``."""
    declared = _Declared()
    arguments = {"parser": declared, "pluginmanager": config.pluginmanager}
    for plugin in config.pluginmanager.get_plugins():
        hook = getattr(plugin, "pytest_addoption", None)
        if hook is not None and _module_of(plugin).startswith("runnerkit."):
            hook(**{name: arguments[name] for name in inspect.signature(hook).parameters})
    return declared


def test_every_option_and_ini_key_is_in_the_spec_namespace(pytester: pytest.Pytester) -> None:
    declared = declared_by_runnerkit(pytester.parseconfig(*QUIET))

    names = [name for names, _ in declared.options for name in names]
    assert {"--spec-accept", "--spec-accept-diff", "--spec-accept-exceptions"} <= set(names)
    assert [name for name in names if not name.startswith("--spec-")] == []
    assert [dest for _, dest in declared.options if not dest.startswith("spec_")] == []
    assert [name for name in declared.ini if not name.startswith("spec_")] == []


@pytest.mark.parametrize("old", ["--accept", "--accept-diff", "--accept-exceptions"])
def test_the_old_accept_options_are_unknown(pytester: pytest.Pytester, old: str) -> None:
    # No alias is kept: it would clash with pytest-accept's --accept again.
    result = pytester.runpytest(*QUIET, old)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: unrecognized arguments: {old}"])
