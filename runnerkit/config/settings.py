"""Typed views of resolved configuration: the paths, each runner, and each fixed section.

A :class:`~runnerkit.config.Configuration` builds these once per push or pop, from the
values its layers hold (already converted and range-checked by the schema), so code that
reads a setting gets a typed attribute, never ``Any`` from a string look-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Paths:
    """The directories of one configuration, all derived from one var dir."""

    var_dir: Path
    queue_dir: Path
    log_dir: Path
    data_dir: Path
    lock_dir: Path
    #: Where runner processes keep their Prometheus metrics (:mod:`runnerkit.metrics`).
    metrics_dir: Path

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
    #: Dotted name of the Runner subclass; imported only when a runner is built.
    class_name: str
    #: The runner's queue directory, whether or not it is a queue runner.
    path: Path
    instances: int
    start: bool
    max_restarts: int
    sleep_time: timedelta
    #: Whether the runner reads a queue (``queue: yes``, the default); the LMTP and
    #: REST runners serve a protocol instead.  Known without importing the class.
    queue: bool = True
    #: The layer that set ``class``, for error messages.
    class_layer: str = "defaults"
    #: Which of the queue's :attr:`instances` slices this site's master runs (a host's
    #: share, when several hosts share one Redis server); None for all of them.
    slices: tuple[int, ...] | None = None

    @property
    def run_slices(self) -> tuple[int, ...]:
        """The slices this site's master runs: :attr:`slices`, or every one."""
        return tuple(range(self.instances)) if self.slices is None else self.slices

    @property
    def is_queue_runner(self) -> bool:
        """Whether the runner reads a queue: the section's ``queue`` key."""
        return self.queue


@dataclass(frozen=True)
class GeneralSettings:
    """``[runnerkit]``: settings of the whole site."""

    #: Language of lists and senders that set none, such as ``en``.
    default_language: str
    #: Directories runner classes are imported from, before the rest of ``sys.path``,
    #: absolute, in order (``import_path``, one a line).
    import_path: tuple[Path, ...] = ()


@dataclass(frozen=True)
class MasterSettings:
    """``[master]``: how the master restarts and watches its runner processes."""

    #: Failures older than this are forgotten.
    restart_window: timedelta
    #: Pause before the first restart after a failure; doubled for each further one.
    backoff_base: timedelta
    #: Longest pause between restarts.
    backoff_max: timedelta
    #: How long to wait for runners to stop before killing them.
    stop_timeout: timedelta
    #: A runner on one message this long is killed; zero turns the watchdog off.
    stuck_after: timedelta
    #: Refuse to start on a var dir that another user owns or may write
    #: (:func:`runnerkit.ownership.unsafe_paths`).
    strict_modes: bool


@dataclass(frozen=True)
class LMTPSettings:
    """``[lmtp]``: the LMTP server (RFC 2033) that accepts mail into the ``in`` queue."""

    host: str
    #: 1 to 65535, or 0 for any free port.
    port: int
    #: Largest message accepted, in bytes; 0 for no limit.
    max_message_size: int
    #: Sessions at once, beyond which a new one is answered 421; 0 for no limit.  With
    #: :attr:`max_message_size` it bounds the memory of messages being received.
    max_connections: int = 20


@dataclass(frozen=True)
class LimitsSettings:
    """``[limits]``: what a message may be, checked where mail enters runnerkit.

    :mod:`runnerkit.limits` enforces them and gives the source of each default.  The
    size limit is ``[lmtp] max_message_size``.
    """

    #: Deepest nesting of MIME parts: 1 to 100.
    max_mime_depth: int
    #: Header fields in one header block (the message's, or a part's); 0 for no limit.
    max_header_fields: int
    #: Octets in one header field, its folding included; 0 for no limit.
    max_header_field_size: int
    #: Octets in one line, its line end not counted; 0 (the default) for no limit.
    max_line_length: int


@dataclass(frozen=True)
class PipelineSettings:
    """``[pipeline]``: what the pipeline runner does to each message."""

    #: Handler names, in order.
    handlers: tuple[str, ...]
    #: Subject prefix template with ``{list_name}``/``{display_name}``, or ``none``.
    subject_prefix: str


@dataclass(frozen=True)
class DeliverySettings:
    """``[delivery]``: how the outgoing runner delivers."""

    #: ``maildir`` or ``smtp``.
    method: str
    #: Where the Maildirs live, one per list.
    maildir: Path
    smtp_host: str
    #: 1 to 65535.
    smtp_port: int
    #: Delivery attempts before a failure is permanent, 1 or more.
    max_attempts: int


@dataclass(frozen=True)
class RESTSettings:
    """``[rest]``: the REST status API."""

    host: str
    #: 1 to 65535, or 0 for any free port.
    port: int
    #: Host header names answered besides the address itself and the local ones.
    allowed_hosts: tuple[str, ...] = ()
    #: How often the operator page reloads itself; 0 for never.
    page_refresh: timedelta = timedelta(seconds=5)


@dataclass(frozen=True)
class QueuesSettings:
    """``[queues]``: where the switchboards keep their messages."""

    #: ``file`` (a directory per queue under the var dir) or ``redis`` (Redis Streams).
    backend: str
    #: The Redis server's URL (``redis://``, ``rediss://`` or ``unix://``); empty means
    #: ``$RUNNERKIT_REDIS_URL``, else ``redis://localhost:6379/0``.
    url: str
    #: The prefix of every Redis key of this site; sites sharing a server but not
    #: their queues need different ones.
    key_prefix: str
    #: How long a master's hold on its slices outlives its last renewal (Redis only).
    lease: timedelta


@dataclass(frozen=True)
class LoggingSettings:
    """``[logging]``: the log file and its level."""

    #: ``debug``, ``info``, ``warning`` or ``error``.
    level: str
    path: Path
    #: The delivery log, written by the ``out`` runner (:mod:`runnerkit.runners.outgoing`).
    delivery_path: Path


@dataclass(frozen=True)
class ImportDir:
    """One directory of the import path, and where it was given."""

    #: The directory, absolute.
    path: Path
    #: Where it was given: ``--path``, ``current directory``, or the place in a layer.
    origin: str


@dataclass(frozen=True)
class Setting:
    """One key of the effective configuration, and the layer it came from."""

    section: str
    key: str
    #: The typed value, as :meth:`~runnerkit.config.Configuration.get` returns it
    #: (paths expanded and absolute).
    value: Any
    #: The value as the layer wrote it.
    text: str
    #: The name of the layer that set it: ``defaults``, a file, or a pushed layer.
    layer: str
    #: Whether a ``[runner.NAME]`` section inherited it from ``[runner.defaults]``.
    inherited: bool = False
