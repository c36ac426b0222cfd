"""The *current configuration*: whichever one the code running now belongs to.

Whoever owns a configuration makes it current for the code it runs: a spec's world, a
test fixture, a runner process's entry point.  Nothing is current at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from runnerkit.errors import NoConfigurationError

if TYPE_CHECKING:
    from runnerkit.config.configuration import Configuration

_current: ContextVar[Configuration | None] = ContextVar("runnerkit_config", default=None)


def current_config() -> Configuration:
    """Return the configuration in effect.

    :raises NoConfigurationError: no configuration has been made current.
    """
    config = _current.get()
    if config is None:
        raise NoConfigurationError(
            "no runnerkit configuration is current: pass config= explicitly, or make one "
            "current with runnerkit.config.use_config(config)"
        )
    return config


def set_current_config(config: Configuration | None) -> Token[Configuration | None]:
    """Make *config* current and return a token for :func:`reset_current_config`."""
    return _current.set(config)


def reset_current_config(token: Token[Configuration | None]) -> None:
    """Restore whatever was current before the :func:`set_current_config` that gave *token*."""
    _current.reset(token)


@contextmanager
def use_config(config: Configuration) -> Iterator[Configuration]:
    """Make *config* current inside the ``with`` block, and restore the previous one after."""
    token = _current.set(config)
    try:
        yield config
    finally:
        _current.reset(token)
