"""Layered INI configuration (settings only), and the current configuration of the running code."""

from runnerkit.config.configuration import CORE_QUEUES, Configuration, read_config_texts
from runnerkit.config.current import (
    current_config,
    reset_current_config,
    set_current_config,
    use_config,
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
    RESTSettings,
    RunnerSettings,
    Setting,
)

__all__ = [
    "CORE_QUEUES",
    "Configuration",
    "DeliverySettings",
    "GeneralSettings",
    "ImportDir",
    "LMTPSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MasterSettings",
    "Paths",
    "PipelineSettings",
    "RESTSettings",
    "RunnerSettings",
    "Setting",
    "current_config",
    "read_config_texts",
    "reset_current_config",
    "set_current_config",
    "use_config",
]
