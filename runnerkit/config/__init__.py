"""Layered INI configuration, and the current configuration of the running code."""

from runnerkit.config.configuration import Configuration
from runnerkit.config.current import (
    current_config,
    reset_current_config,
    set_current_config,
    use_config,
)
from runnerkit.config.settings import Paths, RunnerSettings

__all__ = [
    "Configuration",
    "Paths",
    "RunnerSettings",
    "current_config",
    "reset_current_config",
    "set_current_config",
    "use_config",
]
