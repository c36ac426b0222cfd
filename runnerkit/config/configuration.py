"""The :class:`Configuration`: a stack of named INI layers over the schema's defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Self

from runnerkit.config.layers import Layer, layer_text, parse_layer, where
from runnerkit.config.schema import (
    DEFAULTS,
    RUNNER_DEFAULTS,
    RUNNER_KEYS,
    RUNNER_PREFIX,
    SECTIONS,
    Key,
)
from runnerkit.config.settings import (
    DeliverySettings,
    GeneralSettings,
    ImportDir,
    LimitsSettings,
    LMTPSettings,
    LoggingSettings,
    MasterSettings,
    Paths,
    PipelineSettings,
    QueuesSettings,
    RESTSettings,
    RunnerSettings,
    Setting,
)
from runnerkit.errors import ConfigurationError
from runnerkit.typing import StrPath

#: The queues that exist in every configuration, whatever runners it names.
CORE_QUEUES = ("bad", "shunt")


@dataclass(frozen=True)
class _Resolved:
    """Everything the stack describes, computed once per push or pop."""

    paths: Paths
    runners: dict[str, RunnerSettings]
    queue_names: tuple[str, ...]
    general: GeneralSettings
    master: MasterSettings
    lmtp: LMTPSettings
    limits: LimitsSettings
    pipeline: PipelineSettings
    delivery: DeliverySettings
    rest: RESTSettings
    queues: QueuesSettings
    logging: LoggingSettings


class Configuration:
    """Layered settings for one site or one process.

    The bottom layer holds the schema's defaults; :meth:`push` adds named layers of INI
    text on top and :meth:`pop` removes them, last in first out.  Every read sees the
    topmost layer that sets a key.  A configuration is settings only: it never imports
    a runner class and owns no queue, database or file.  A
    :class:`~runnerkit.site.Site` is the configuration of a running system, and owns
    those.

    Each fixed section is read through a typed, frozen object (:attr:`master`,
    :attr:`lmtp`, :attr:`delivery` ...), and each ``[runner.NAME]`` through
    :meth:`runner`.  Every value was converted and range-checked when its layer was
    pushed.

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
        self._import_path_given: tuple[ImportDir, ...] = ()
        self._closed = False
        self._resolved = self._resolve()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} var_dir={str(self.paths.var_dir)!r} layers={self.layers!r}>"
        )

    # The stack.

    @property
    def layers(self) -> tuple[str, ...]:
        """The names of the pushed layers, bottom first."""
        return tuple(layer.name for layer in self._layers)

    def push(self, name: str, text: str) -> None:
        """Push INI *text* as a layer called *name*.

        The push is all or nothing: when the new layer leaves the stack unusable (say,
        a path template that cannot be expanded), it is removed again.  A runner's
        ``class`` is only checked to be a dotted name here; it is imported when a runner
        is built (:func:`runnerkit.runner.load_runner_class`).

        :raises ConfigurationError: the name is taken, or the text is bad (the message
            names the layer, section, key and value).
        """
        self._check_open()
        self._push(parse_layer(name, text))

    def _push(self, layer: Layer) -> None:
        name = layer.name
        if name == self._defaults.name or name in self.layers:
            raise ConfigurationError(
                f"cannot push layer {name!r}: a layer of that name is already on the stack "
                f"({', '.join(repr(n) for n in ('defaults', *self.layers))})"
            )
        self._layers.append(layer)
        try:
            self._resolved = self._resolve()
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
            self._resolved = self._resolve()
        except ConfigurationError:
            self._layers.append(layer)
            raise

    def set_defaults(self, text: str) -> None:
        """Make the values of INI *text* this configuration's defaults.

        They replace the schema's defaults in the bottom layer, ``defaults``, under
        every pushed layer, which set them as before; :attr:`layers` is unchanged.  A
        test world puts its queues on Redis this way, unseen in the stack it shows.

        :raises ConfigurationError: the text is bad, or leaves the stack unusable;
            nothing is changed then.
        """
        self._check_open()
        given = parse_layer(self._defaults.name, text)
        before = {section: dict(keys) for section, keys in self._defaults.sections.items()}
        for section, keys in given.sections.items():
            self._defaults.sections.setdefault(section, {}).update(keys)
        try:
            self._resolved = self._resolve()
        except ConfigurationError:
            self._defaults.sections.clear()
            self._defaults.sections.update(before)
            raise

    def layer_text(self, name: str) -> str:
        """The pushed layer *name* as INI text, to hand it to another process as a file.

        The text reads back as the same layer wherever the file is written: see
        :func:`runnerkit.config.layers.layer_text`.

        :raises ConfigurationError: no pushed layer has that name.
        """
        self._check_open()
        for layer in self._layers:
            if layer.name == name:
                return layer_text(layer)
        raise ConfigurationError(
            f"no pushed layer {name!r}; the pushed layers are"
            f" {', '.join(repr(n) for n in self.layers) or 'none'}"
        )

    @contextmanager
    def pushed(self, name: str, text: str) -> Iterator[Self]:
        """Push a layer for the ``with`` block and pop it afterwards, even on error.

        :raises ConfigurationError: the block left other layers above this one.
        """
        self.push(name, text)
        try:
            yield self
        finally:
            self.pop(name)

    def push_file(
        self, path: StrPath, name: str | None = None, *, text: str | None = None
    ) -> None:
        """Push the INI file at *path* as a layer named *name* (default: the path).

        Relative directories in it (``[runnerkit] import_path``) are relative to the
        file's own directory.

        :param text: the file's text as it was read earlier (a master's snapshot,
            :func:`read_config_texts`); the file is then not read again.
        :raises ConfigurationError: the file cannot be read, or its text is bad.
        """
        self._check_open()
        if text is None:
            (text,) = read_config_texts([path])
        base = Path(path).expanduser().absolute().parent
        self._push(parse_layer(str(path) if name is None else name, text, base))

    @classmethod
    def load(
        cls,
        config_files: Sequence[StrPath] = (),
        var_dir: StrPath | None = None,
        *,
        import_path: Iterable[ImportDir] = (),
        var_dir_layer: str = "--var-dir",
        texts: Sequence[str] | None = None,
    ) -> Self:
        """Build a configuration from files, as a command line describes it.

        The files are pushed in order over the defaults, each as a layer named by its
        path.  An explicit *var_dir* is pushed last, as a layer of its own named
        *var_dir_layer*: it wins over a ``[paths] var_dir`` that a file sets, being what
        the user typed last.

        :param import_path: directories given outside the layers (``--path``), which
            come first in :attr:`import_path`.
        :param var_dir_layer: the name of the var dir's layer, saying where it came
            from (``--var-dir``, ``$RUNNERKIT_VAR_DIR``).
        :param texts: the text of each of *config_files*, as read before (a master's
            snapshot); the files are then not read.
        :raises ConfigurationError: a file cannot be read or holds a bad layer.
        """
        if texts is not None and len(texts) != len(config_files):
            raise ConfigurationError(
                f"{len(texts)} texts given for {len(config_files)} configuration files"
            )
        config = cls()
        config._import_path_given = tuple(import_path)
        for index, path in enumerate(config_files):
            config.push_file(path, text=None if texts is None else texts[index])
        if var_dir is not None:
            # Built, not parsed: any directory name, '$' or newline included, is kept.
            text = str(Path(var_dir).expanduser().absolute())
            config._push(Layer(var_dir_layer, {"paths": {"var_dir": (text, text)}}))
        return config

    # Reading.

    def get(self, section: str, key: str) -> Any:
        """The typed value of *key* in *section*, from the topmost layer that sets it.

        :raises ConfigurationError: the schema has no such section or key.
        """
        if section == "paths" and key in SECTIONS["paths"]:
            return getattr(self.paths, key)
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
        return self._value(section, key, schema[key], self.paths)

    def setting(self, section: str, key: str) -> Setting:
        """*key* of *section* as the stack resolves it, with the layer that set it.

        A ``[runner.NAME]`` key that no layer sets in that section comes from
        ``[runner.defaults]`` (:attr:`Setting.inherited`).

        :raises ConfigurationError: the configuration has no such section or key.
        """
        value = self.get(section, key)
        found = self._find(section, key)
        inherited = False
        if found is None and section.startswith(RUNNER_PREFIX):
            found = self._find(RUNNER_DEFAULTS, key)
            inherited = True
        if found is None:  # pragma: no cover - the defaults layer sets every key
            raise ConfigurationError(f"section [{section}] key {key!r} has no value")
        layer = found[1]
        text = layer.sections[RUNNER_DEFAULTS if inherited else section][key][1]
        return Setting(section, key, value, str(text), layer.name, inherited)

    def settings(self, section: str | None = None) -> tuple[Setting, ...]:
        """Every key of *section*, or of every section (:attr:`sections`), in order.

        :raises ConfigurationError: the configuration has no such section.
        """
        names = self.sections if section is None else (section,)
        found: list[Setting] = []
        for name in names:
            if name not in self.sections:
                raise ConfigurationError(
                    f"no section [{name}] in the configuration; sections: "
                    + ", ".join(f"[{known}]" for known in self.sections)
                )
            schema = RUNNER_KEYS if name.startswith(RUNNER_PREFIX) else SECTIONS[name]
            found.extend(self.setting(name, key) for key in schema)
        return tuple(found)

    @property
    def sections(self) -> tuple[str, ...]:
        """Every section: the fixed ones, ``runner.defaults``, then each runner by name."""
        runners = tuple(RUNNER_PREFIX + name for name in sorted(self._resolved.runners))
        return (*SECTIONS, RUNNER_DEFAULTS, *runners)

    @property
    def import_path(self) -> tuple[ImportDir, ...]:
        """The directories runner classes are imported from, in order, each once.

        First those given to :meth:`load` (``--path``), then ``[runnerkit]
        import_path`` of the stack, each with where it came from.  Nothing is looked
        at on disk here: :func:`runnerkit.importpath.use_import_path` does that.
        """
        entries = list(self._import_path_given)
        if self.general.import_path:
            _, layer = self._lookup("runnerkit", "import_path") or ("", "defaults")
            origin = where(layer, "runnerkit", "import_path")
            entries.extend(ImportDir(path, origin) for path in self.general.import_path)
        seen: set[Path] = set()
        unique = []
        for entry in entries:
            if entry.path not in seen:
                seen.add(entry.path)
                unique.append(entry)
        return tuple(unique)

    @property
    def paths(self) -> Paths:
        """The resolved directories."""
        return self._resolved.paths

    @property
    def runners(self) -> Mapping[str, RunnerSettings]:
        """Every ``[runner.NAME]`` section, resolved, by name."""
        return dict(self._resolved.runners)

    def runner(self, name: str) -> RunnerSettings:
        """The resolved settings of runner *name*.

        :raises ConfigurationError: there is no ``[runner.NAME]`` section.
        """
        try:
            return self._resolved.runners[name]
        except KeyError:
            raise ConfigurationError(
                f"no [runner.{name}] section in the configuration; "
                f"known runners: {', '.join(sorted(self._resolved.runners))}"
            ) from None

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The names of the queues: ``bad``, ``shunt`` and every runner with ``queue: yes``."""
        return self._resolved.queue_names

    @property
    def general(self) -> GeneralSettings:
        """The ``[runnerkit]`` section."""
        return self._resolved.general

    @property
    def master(self) -> MasterSettings:
        """The ``[master]`` section."""
        return self._resolved.master

    @property
    def lmtp(self) -> LMTPSettings:
        """The ``[lmtp]`` section."""
        return self._resolved.lmtp

    @property
    def limits(self) -> LimitsSettings:
        """The ``[limits]`` section."""
        return self._resolved.limits

    @property
    def pipeline(self) -> PipelineSettings:
        """The ``[pipeline]`` section."""
        return self._resolved.pipeline

    @property
    def delivery(self) -> DeliverySettings:
        """The ``[delivery]`` section."""
        return self._resolved.delivery

    @property
    def rest(self) -> RESTSettings:
        """The ``[rest]`` section."""
        return self._resolved.rest

    @property
    def queues(self) -> QueuesSettings:
        """The ``[queues]`` section: the queue backend."""
        return self._resolved.queues

    @property
    def logging(self) -> LoggingSettings:
        """The ``[logging]`` section."""
        return self._resolved.logging

    # Mailman's names for the directories, as text (``config.QUEUE_DIR`` ...), so that
    # specs written for Mailman read them unchanged.

    @property
    def VAR_DIR(self) -> str:
        """:attr:`Paths.var_dir` as text, under Mailman's name."""
        return str(self.paths.var_dir)

    @property
    def QUEUE_DIR(self) -> str:
        """:attr:`Paths.queue_dir` as text, under Mailman's name."""
        return str(self.paths.queue_dir)

    @property
    def LOG_DIR(self) -> str:
        """:attr:`Paths.log_dir` as text, under Mailman's name."""
        return str(self.paths.log_dir)

    @property
    def DATA_DIR(self) -> str:
        """:attr:`Paths.data_dir` as text, under Mailman's name."""
        return str(self.paths.data_dir)

    @property
    def LOCK_DIR(self) -> str:
        """:attr:`Paths.lock_dir` as text, under Mailman's name."""
        return str(self.paths.lock_dir)

    @property
    def database_path(self) -> Path:
        """The SQLite database file, under the data dir."""
        return self.paths.data_dir / "runnerkit.db"

    # Life cycle.

    def close(self) -> None:
        """Mark the configuration closed: it cannot be pushed or popped afterwards."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals.

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError(f"{self!r} is closed")

    def _find(self, section: str, key: str) -> tuple[Any, Layer] | None:
        """(value, layer) from the topmost layer that sets *key* in *section*."""
        for layer in reversed((self._defaults, *self._layers)):
            values = layer.sections.get(section)
            if values is not None and key in values:
                return values[key][0], layer
        return None

    def _lookup(self, section: str, key: str) -> tuple[Any, str] | None:
        """(value, layer name) from the topmost layer that sets *key* in *section*."""
        found = self._find(section, key)
        return None if found is None else (found[0], found[1].name)

    def _value(self, section: str, key: str, spec: Key, paths: Paths) -> Any:
        """The typed value of *key* in *section*; path templates expanded over *paths*.

        A list of directories is made absolute against the directory of its layer.
        """
        found = self._find(section, key)
        if found is None:  # pragma: no cover - the defaults layer sets every key
            raise ConfigurationError(f"section [{section}] key {key!r} has no value")
        value, source = found
        layer = source.name
        if spec.is_dirs:
            return tuple(Path(os.path.normpath(source.base / entry)) for entry in value)
        if not spec.is_path:
            return value
        try:
            return Path(Template(value).substitute(paths.substitutions())).absolute()
        except (KeyError, ValueError) as error:
            raise ConfigurationError(f"{where(layer, section, key, value)}: {error}") from error

    def _section(self, section: str, paths: Paths) -> dict[str, Any]:
        """Every key of the fixed *section*, typed."""
        return {
            key: self._value(section, key, spec, paths) for key, spec in SECTIONS[section].items()
        }

    def _resolve(self) -> _Resolved:
        """Compute everything the stack describes: paths, runners, queues, sections.

        Nothing is imported and nothing is created on disk.

        :raises ConfigurationError: a path template cannot be expanded.
        """
        var_dir_text, _ = self._lookup("paths", "var_dir") or ("var", "defaults")
        var_dir = Path(os.path.expanduser(var_dir_text)).absolute()
        derived = {}
        for key in ("queue_dir", "log_dir", "data_dir", "lock_dir", "metrics_dir"):
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
                queue=values["queue"][0],
                class_layer=values["class"][1],
                slices=values["slices"][0],
            )
            if settings.slices is not None and settings.slices[-1] >= settings.instances:
                given = ",".join(map(str, settings.slices))
                place = where(values["slices"][1], "runner." + name, "slices", given)
                raise ConfigurationError(
                    f"{place}: slice {settings.slices[-1]} does not exist; the queue has "
                    f"{settings.instances} (instances), numbered from 0"
                )
            if settings.queue or name in CORE_QUEUES:
                queues.append(name)
            runners[name] = settings
        pipeline = self._section("pipeline", paths)
        pipeline["handlers"] = tuple(pipeline["handlers"].split())
        resolved = _Resolved(
            paths=paths,
            runners=runners,
            queue_names=tuple(queues),
            general=GeneralSettings(**self._section("runnerkit", paths)),
            master=MasterSettings(**self._section("master", paths)),
            lmtp=LMTPSettings(**self._section("lmtp", paths)),
            limits=LimitsSettings(**self._section("limits", paths)),
            pipeline=PipelineSettings(**pipeline),
            delivery=DeliverySettings(**self._section("delivery", paths)),
            rest=RESTSettings(**self._section("rest", paths)),
            queues=QueuesSettings(**self._section("queues", paths)),
            logging=LoggingSettings(**self._section("logging", paths)),
        )
        self._check_together(resolved)
        return resolved

    def _place(self, section: str, key: str) -> str:
        """The place of *key* in *section* as the topmost layer sets it, for errors."""
        found = self._lookup(section, key)
        if found is None and section.startswith(RUNNER_PREFIX):
            found = self._lookup(RUNNER_DEFAULTS, key)
            section = RUNNER_DEFAULTS
        value, layer = found or ("", "defaults")
        return where(layer, section, key, str(value))

    def _check_together(self, resolved: _Resolved) -> None:
        """Refuse values that are each valid but cannot work together.

        :raises ConfigurationError: two queues share a directory (their runners would
            take each other's messages), or one's is inside another's; ``backoff_max``
            is below ``backoff_base``; or the LMTP and REST servers, both started, would
            listen on one port.
        """
        # Compared as the file system will see them: symbolic links resolved.
        owners: dict[Path, str] = {}
        for name in resolved.queue_names:
            path = Path(os.path.realpath(resolved.runners[name].path))
            other = owners.setdefault(path, name)
            if other != name:
                raise ConfigurationError(
                    f"{self._place(RUNNER_PREFIX + name, 'path')}: queues {other!r} and "
                    f"{name!r} would share the directory {str(path)!r}; each queue needs "
                    "its own, or their runners take each other's messages"
                )
        # The metrics directory is emptied of metrics files at each start: it may not
        # be a queue's, nor the directory of the database, the logs or the locks.
        metrics = Path(os.path.realpath(resolved.paths.metrics_dir))
        others = {
            Path(os.path.realpath(getattr(resolved.paths, key))): f"[paths] {key}"
            for key in ("var_dir", "queue_dir", "data_dir", "log_dir", "lock_dir")
        }
        clash = f"queue {owners[metrics]!r}" if metrics in owners else others.get(metrics)
        if clash:
            raise ConfigurationError(
                f"{self._place('paths', 'metrics_dir')}: it is the directory of {clash}; "
                "the metrics need a directory of their own (the default, $VAR_DIR/metrics)"
            )
        for path, name in owners.items():
            outer = next((owners[up] for up in path.parents if up in owners), None)
            if outer is not None:
                raise ConfigurationError(
                    f"{self._place(RUNNER_PREFIX + name, 'path')}: the directory of queue "
                    f"{name!r} ({str(path)!r}) is inside that of queue {outer!r}; each "
                    "queue needs a directory of its own, outside the others"
                )
        master = resolved.master
        if master.backoff_max < master.backoff_base:
            raise ConfigurationError(
                f"{self._place('master', 'backoff_max')}: shorter than backoff_base "
                f"({master.backoff_base}); the longest pause cannot be below the first"
            )
        lmtp, rest = resolved.lmtp, resolved.rest
        if (
            lmtp.port
            and lmtp.port == rest.port
            and resolved.runners["lmtp"].start
            and resolved.runners["rest"].start
        ):
            raise ConfigurationError(
                f"{self._place('rest', 'port')}: the LMTP server listens on port "
                f"{lmtp.port} too; give the two servers different ports"
            )


def read_config_texts(paths: Iterable[StrPath]) -> tuple[str, ...]:
    """The text of each configuration file of *paths*, in order (UTF-8).

    :raises ConfigurationError: a file cannot be read or decoded; the message names it.
    """
    texts = []
    for path in paths:
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigurationError(
                f"cannot read configuration file {str(path)!r}: {error}"
            ) from error
    return tuple(texts)
