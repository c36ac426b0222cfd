"""runnerkit: durable file queues, long-running runners, and a harness for executable specs.

The core (configuration, messages, lists, switchboards, sites, runners) lives in this
package; the harness lives in :mod:`runnerkit.testing` and is imported only on purpose.
The names below are imported on first use, so that importing one part of the core
(``runnerkit.config``, say) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name, and the module it comes from.
_HOMES = {
    "Configuration": "runnerkit.config",
    "current_config": "runnerkit.config",
    "use_config": "runnerkit.config",
    "ConfigurationError": "runnerkit.errors",
    "ListError": "runnerkit.errors",
    "QueueError": "runnerkit.errors",
    "QueueFileError": "runnerkit.errors",
    "RunnerError": "runnerkit.errors",
    "RunnerkitError": "runnerkit.errors",
    "Message": "runnerkit.message",
    "message_from_bytes": "runnerkit.message",
    "message_from_string": "runnerkit.message",
    "Runner": "runnerkit.runner",
    "Site": "runnerkit.site",
    "Switchboard": "runnerkit.switchboard",
}

__all__ = [
    "Configuration",
    "ConfigurationError",
    "ListError",
    "Message",
    "QueueError",
    "QueueFileError",
    "Runner",
    "RunnerError",
    "RunnerkitError",
    "Site",
    "Switchboard",
    "current_config",
    "message_from_bytes",
    "message_from_string",
    "use_config",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'runnerkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
