"""Typed views of resolved configuration: the paths, and each runner's settings."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from runnerkit.errors import ConfigurationError

if TYPE_CHECKING:
    from runnerkit.runner import Runner


@dataclass(frozen=True)
class Paths:
    """The directories of one configuration, all derived from one var dir."""

    var_dir: Path
    queue_dir: Path
    log_dir: Path
    data_dir: Path
    lock_dir: Path

    def substitutions(self) -> dict[str, str]:
        """The ``$VARIABLES`` that path templates may use."""
        return {
            "VAR_DIR": str(self.var_dir),
            "QUEUE_DIR": str(self.queue_dir),
            "LOG_DIR": str(self.log_dir),
            "DATA_DIR": str(self.data_dir),
            "LOCK_DIR": str(self.lock_dir),
        }


@dataclass(frozen=True)
class RunnerSettings:
    """The resolved ``[runner.NAME]`` section of one runner."""

    name: str
    #: Dotted name of the Runner subclass.
    class_name: str
    #: The runner's queue directory, whether or not it is a queue runner.
    path: Path
    instances: int
    start: bool
    max_restarts: int
    sleep_time: timedelta
    #: The layer that set ``class``, for error messages.
    class_layer: str = "defaults"

    def load_class(self) -> type[Runner]:
        """Import and return the runner class named by ``class``.

        :raises ConfigurationError: the class cannot be imported or is not a Runner.
        """
        from runnerkit.runner import Runner

        place = (
            f"layer {self.class_layer!r}, section [runner.{self.name}], "
            f"key 'class', value {self.class_name!r}"
        )
        module_name, _, attribute = self.class_name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # a module may raise anything while it is imported
            raise ConfigurationError(
                f"{place}: cannot import module {module_name!r}: {error}"
            ) from error
        try:
            cls = getattr(module, attribute)
        except AttributeError as error:
            raise ConfigurationError(
                f"{place}: module {module_name!r} has no attribute {attribute!r}"
            ) from error
        if not (isinstance(cls, type) and issubclass(cls, Runner)):
            raise ConfigurationError(f"{place}: not a subclass of runnerkit.runner.Runner")
        return cls

    @property
    def is_queue_runner(self) -> bool:
        """Whether the runner's class reads a queue (LMTP and REST runners do not)."""
        return self.load_class().is_queue_runner
