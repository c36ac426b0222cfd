"""The :class:`Configuration`: a stack of named INI layers over the schema's defaults."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from runnerkit.config.layers import Layer, parse_layer, where
from runnerkit.config.schema import (
    DEFAULTS,
    RUNNER_DEFAULTS,
    RUNNER_KEYS,
    RUNNER_PREFIX,
    SECTIONS,
    Key,
)
from runnerkit.config.settings import Paths, RunnerSettings
from runnerkit.errors import ConfigurationError
from runnerkit.typing import StrPath

if TYPE_CHECKING:
    from runnerkit.database import Database
    from runnerkit.lists import ListManager
    from runnerkit.switchboard import QueueClock, Switchboard

#: The queues that exist in every configuration, whatever runners it names.
CORE_QUEUES = ("bad", "shunt")


class Configuration:
    """Layered configuration for one world or one process.

    The bottom layer holds the schema's defaults; :meth:`push` adds named layers of INI
    text on top and :meth:`pop` removes them, last in first out.  Every read sees the
    topmost layer that sets a key.  A configuration owns what is built from it (its
    switchboards, its database connection) and releases them in :meth:`close`.

    :param var_dir: the directory every path derives from; by default ``var`` in the
        current directory, or whatever a layer sets as ``[paths] var_dir``.
    """

    def __init__(self, var_dir: StrPath | None = None) -> None:
        defaults = parse_layer("defaults", DEFAULTS)
        if var_dir is not None:
            text = str(Path(var_dir).expanduser().absolute())
            defaults.sections["paths"]["var_dir"] = (text, text)
        self._defaults = defaults
        self._layers: list[Layer] = []
        self._switchboard_cache: dict[tuple[str, Path], Switchboard] = {}
        self._database: Database | None = None
        self._clock: QueueClock | None = None
        self._closed = False
        self._paths, self._runners, self._queues = self._resolve()
        #: Every queue runner's switchboard by name, ``bad`` and ``shunt`` included.
        self.switchboards: Mapping[str, Switchboard] = _Switchboards(self)

    def __repr__(self) -> str:
        return f"<Configuration var_dir={str(self._paths.var_dir)!r} layers={self.layers!r}>"

    # The stack.

    @property
    def layers(self) -> tuple[str, ...]:
        """The names of the pushed layers, bottom first."""
        return tuple(layer.name for layer in self._layers)

    def push(self, name: str, text: str) -> None:
        """Push INI *text* as a layer called *name*.

        The push is all or nothing: when the new layer leaves any runner section
        unusable (say, a ``class`` that cannot be imported), it is removed again.

        :raises ConfigurationError: the name is taken, or the text is bad (the message
            names the layer, section, key and value).
        """
        self._check_open()
        layer = parse_layer(name, text)
        if name == self._defaults.name or name in self.layers:
            raise ConfigurationError(
                f"cannot push layer {name!r}: a layer of that name is already on the stack "
                f"({', '.join(repr(n) for n in ('defaults', *self.layers))})"
            )
        self._layers.append(layer)
        try:
            self._paths, self._runners, self._queues = self._resolve()
        except ConfigurationError:
            self._layers.pop()
            raise

    def pop(self, name: str) -> None:
        """Remove the layer *name*, which must be the top of the stack.

        :raises ConfigurationError: *name* is not the top layer.
        """
        self._check_open()
        if not self._layers:
            raise ConfigurationError(f"cannot pop layer {name!r}: no layer has been pushed")
        top = self._layers[-1].name
        if top != name:
            where_it_is = (
                "it is not on the stack" if name not in self.layers else "it is not on top"
            )
            raise ConfigurationError(
                f"cannot pop layer {name!r}: {where_it_is}; the top layer is {top!r} "
                "(pop layers in the reverse order of pushing)"
            )
        layer = self._layers.pop()
        try:
            self._paths, self._runners, self._queues = self._resolve()
        except ConfigurationError:
            self._layers.append(layer)
            raise

    @contextmanager
    def pushed(self, name: str, text: str) -> Iterator[Configuration]:
        """Push a layer for the ``with`` block and pop it afterwards, even on error.

        :raises ConfigurationError: the block left other layers above this one.
        """
        self.push(name, text)
        try:
            yield self
        finally:
            self.pop(name)

    def push_file(self, path: StrPath, name: str | None = None) -> None:
        """Push the INI file at *path* as a layer named *name* (default: the path).

        :raises ConfigurationError: the file cannot be read, or its text is bad.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigurationError(
                f"cannot read configuration file {str(path)!r}: {error}"
            ) from error
        self.push(str(path) if name is None else name, text)

    @classmethod
    def load(
        cls, config_files: Sequence[StrPath] = (), var_dir: StrPath | None = None
    ) -> Configuration:
        """Build a configuration from files, as a command line describes it.

        The files are pushed in order over the defaults.  An explicit *var_dir* wins
        over a ``[paths] var_dir`` that a file sets: it is what the user typed last.

        :raises ConfigurationError: a file cannot be read or holds a bad layer.
        """
        config = cls(var_dir)
        for path in config_files:
            config.push_file(path)
        if var_dir is not None:
            wanted = Path(var_dir).expanduser().absolute()
            if config.paths.var_dir != wanted:
                config.push("--var-dir", f"[paths]\nvar_dir: {wanted}\n")
        return config

    # Reading.

    def get(self, section: str, key: str) -> Any:
        """The typed value of *key* in *section*, from the topmost layer that sets it.

        :raises ConfigurationError: the schema has no such section or key.
        """
        if section == "paths" and key in SECTIONS["paths"]:
            return getattr(self._paths, key)
        if section.startswith(RUNNER_PREFIX) and section != RUNNER_DEFAULTS:
            name = section[len(RUNNER_PREFIX) :]
            return getattr(self.runner(name), "class_name" if key == "class" else key)
        if section == RUNNER_DEFAULTS:
            schema: Mapping[str, Key] = RUNNER_KEYS
        elif section in SECTIONS:
            schema = SECTIONS[section]
        else:
            raise ConfigurationError(f"no section [{section}] in the configuration")
        if key not in schema:
            raise ConfigurationError(
                f"section [{section}] has no key {key!r}; known keys: {', '.join(sorted(schema))}"
            )
        found = self._lookup(section, key)
        if found is None:  # pragma: no cover - the defaults layer sets every key
            raise ConfigurationError(f"section [{section}] key {key!r} has no value")
        value, layer = found
        spec = schema[key]
        if spec.is_path:
            try:
                return Path(Template(value).substitute(self._paths.substitutions())).absolute()
            except (KeyError, ValueError) as error:
                raise ConfigurationError(
                    f"{where(layer, section, key, value)}: {error}"
                ) from error
        return value

    @property
    def paths(self) -> Paths:
        """The resolved directories."""
        return self._paths

    @property
    def runners(self) -> Mapping[str, RunnerSettings]:
        """Every ``[runner.NAME]`` section, resolved, by name."""
        return dict(self._runners)

    def runner(self, name: str) -> RunnerSettings:
        """The resolved settings of runner *name*.

        :raises ConfigurationError: there is no ``[runner.NAME]`` section.
        """
        try:
            return self._runners[name]
        except KeyError:
            raise ConfigurationError(
                f"no [runner.{name}] section in the configuration; "
                f"known runners: {', '.join(sorted(self._runners))}"
            ) from None

    @property
    def clock(self) -> QueueClock:
        """The clock that stamps queue file names, shared by all of this config's queues."""
        if self._clock is None:
            from runnerkit.switchboard import QueueClock

            self._clock = QueueClock()
        return self._clock

    @property
    def database_path(self) -> Path:
        """The SQLite database file, under the data dir."""
        return self._paths.data_dir / "runnerkit.db"

    @property
    def database(self) -> Database:
        """This thread's connection to the database, opened on first use.

        SQLite connections belong to the thread that opened them; a thread of its own
        (a server thread, say) opens another with ``Database(config.database_path)``.
        """
        self._check_open()
        if self._database is None:
            from runnerkit.database import Database

            self._database = Database(self.database_path)
        return self._database

    @property
    def lists(self) -> ListManager:
        """The mailing lists in this configuration's database."""
        from runnerkit.lists import ListManager

        return ListManager(
            self.database, default_language=self.get("runnerkit", "default_language")
        )

    def commit(self) -> None:
        """Commit the database transaction, if the database has been opened."""
        if self._database is not None:
            self._database.commit()

    def abort(self) -> None:
        """Roll back the database transaction, if the database has been opened."""
        if self._database is not None:
            self._database.abort()

    # Life cycle.

    def close(self) -> None:
        """Release the database connection; the configuration cannot be used afterwards."""
        if self._database is not None:
            self._database.close()
            self._database = None
        self._switchboard_cache.clear()
        self._closed = True

    def __enter__(self) -> Configuration:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals.

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError(f"{self!r} is closed")

    def _lookup(self, section: str, key: str) -> tuple[Any, str] | None:
        """(value, layer name) from the topmost layer that sets *key* in *section*."""
        for layer in reversed((self._defaults, *self._layers)):
            values = layer.sections.get(section)
            if values is not None and key in values:
                return values[key][0], layer.name
        return None

    def _resolve(self) -> tuple[Paths, dict[str, RunnerSettings], tuple[str, ...]]:
        """Compute the paths, runner settings and queue names the stack describes.

        Every runner's class is imported here, once per push or pop, so a bad class is
        an error at once and reading ``switchboards`` imports nothing.
        """
        var_dir_text, _ = self._lookup("paths", "var_dir") or ("var", "defaults")
        var_dir = Path(os.path.expanduser(var_dir_text)).absolute()
        derived = {}
        for key in ("queue_dir", "log_dir", "data_dir", "lock_dir"):
            template, _ = self._lookup("paths", key) or ("", "defaults")
            derived[key] = Path(Template(template).substitute(VAR_DIR=str(var_dir))).absolute()
        paths = Paths(var_dir=var_dir, **derived)

        names = {
            section[len(RUNNER_PREFIX) :]
            for layer in (self._defaults, *self._layers)
            for section in layer.sections
            if section.startswith(RUNNER_PREFIX) and section != RUNNER_DEFAULTS
        }
        runners = {}
        queues: list[str] = []
        for name in sorted(names):
            values: dict[str, tuple[Any, str]] = {}
            for key in RUNNER_KEYS:
                found = self._lookup(RUNNER_PREFIX + name, key) or self._lookup(
                    RUNNER_DEFAULTS, key
                )
                if found is None:  # pragma: no cover - the defaults layer sets every key
                    raise ConfigurationError(f"section [runner.{name}] key {key!r} has no value")
                values[key] = found
            path_template, path_layer = values["path"]
            try:
                path = Template(path_template).substitute(paths.substitutions(), name=name)
            except (KeyError, ValueError) as error:
                raise ConfigurationError(
                    f"{where(path_layer, 'runner.' + name, 'path', path_template)}: {error}"
                ) from error
            settings = RunnerSettings(
                name=name,
                class_name=values["class"][0],
                path=Path(path).absolute(),
                instances=values["instances"][0],
                start=values["start"][0],
                max_restarts=values["max_restarts"][0],
                sleep_time=values["sleep_time"][0],
                class_layer=values["class"][1],
            )
            if settings.load_class().is_queue_runner or name in CORE_QUEUES:
                queues.append(name)
            runners[name] = settings
        return paths, runners, tuple(queues)

    def _queue_names(self) -> tuple[str, ...]:
        return self._queues

    def _switchboard(self, name: str) -> Switchboard:
        from runnerkit.switchboard import Switchboard

        settings = self.runner(name)
        key = (name, settings.path)
        switchboard = self._switchboard_cache.get(key)
        if switchboard is None:
            switchboard = Switchboard(name, settings.path, config=self)
            self._switchboard_cache[key] = switchboard
        return switchboard


class _Switchboards(Mapping[str, "Switchboard"]):
    """A live view of a configuration's switchboards, in step with its stack."""

    def __init__(self, config: Configuration) -> None:
        self._config = config

    def __getitem__(self, name: str) -> Switchboard:
        if name not in self._config._queue_names():
            raise KeyError(name)
        return self._config._switchboard(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._config._queue_names())

    def __len__(self) -> int:
        return len(self._config._queue_names())

    def __repr__(self) -> str:
        return f"<switchboards {sorted(self)!r}>"
