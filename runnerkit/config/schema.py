"""The schema: every section and key runnerkit understands, with its type.

The schema is data, not state: it is read by each :class:`~runnerkit.config.Configuration`
when it is created.  Sections whose name matches a *template* (``runner.NAME``) inherit
their keys from the template section ``[runner.defaults]``, which a layer may also set
to change the defaults of every runner at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from runnerkit.config.values import (
    PATH_VARIABLES,
    Converter,
    as_bool,
    as_count,
    as_directories,
    as_dotted_name,
    as_duration,
    as_host,
    as_hosts,
    as_key_prefix,
    as_language,
    as_line_length,
    as_listen_port,
    as_mime_depth,
    as_port,
    as_positive_count,
    as_power_of_two,
    as_redis_url,
    as_slices,
    as_text,
    one_of,
    path_template,
)


@dataclass(frozen=True)
class Key:
    """One key of the schema: its converter and what it is for."""

    #: Turns the raw text into a typed value, raising ValueError when it cannot.
    convert: Converter
    #: One line for error messages and documentation.
    doc: str
    #: Whether the value is a path template, which reads expand to an absolute path.
    is_path: bool = False
    #: Whether the value is a list of directories, which reads make absolute against
    #: the directory of the layer that sets it.
    is_dirs: bool = False


#: Fixed sections and their keys.
SECTIONS: dict[str, dict[str, Key]] = {
    "runnerkit": {
        "default_language": Key(as_language, "language of lists and senders without one"),
        "import_path": Key(
            as_directories,
            "directories to import runner classes from, one a line; relative ones are "
            "relative to the file that sets them",
            is_dirs=True,
        ),
    },
    "paths": {
        "var_dir": Key(path_template(()), "the one directory every other path derives from"),
        "queue_dir": Key(path_template(("VAR_DIR",)), "where the queue directories live"),
        "log_dir": Key(path_template(("VAR_DIR",)), "where log files are written"),
        "data_dir": Key(path_template(("VAR_DIR",)), "where the database lives"),
        "lock_dir": Key(path_template(("VAR_DIR",)), "where lock and pid files live"),
        "metrics_dir": Key(
            path_template(("VAR_DIR",)),
            "where runner processes keep their Prometheus metrics; emptied when a master starts",
        ),
    },
    "master": {
        "restart_window": Key(as_duration, "failures older than this are forgotten"),
        "backoff_base": Key(as_duration, "pause before the first restart after a failure"),
        "backoff_max": Key(as_duration, "longest pause between restarts"),
        "stop_timeout": Key(as_duration, "how long to wait for runners to stop"),
        "stuck_after": Key(as_duration, "a runner on one message this long is killed (0: never)"),
        "strict_modes": Key(
            as_bool, "refuse to start on a var dir that another user owns or may write"
        ),
    },
    "lmtp": {
        "host": Key(as_host, "the address the LMTP server listens on"),
        "port": Key(as_listen_port, "the LMTP port (0: any free port)"),
        "max_message_size": Key(as_count, "largest message accepted, in bytes (0: no limit)"),
        "max_connections": Key(as_count, "sessions at once; more are answered 421 (0: no limit)"),
    },
    "limits": {
        "max_mime_depth": Key(as_mime_depth, "deepest nesting of MIME parts, 1 to 100"),
        "max_header_fields": Key(as_count, "header fields in one header block (0: no limit)"),
        "max_header_field_size": Key(as_count, "octets in one header field (0: no limit)"),
        "max_line_length": Key(as_line_length, "octets in one line, 998 or more (0: no limit)"),
    },
    "pipeline": {
        "handlers": Key(as_text, "the pipeline's handlers, in order, space-separated"),
        "subject_prefix": Key(as_text, "prefix for Subject, {list_name}/{display_name}; 'none'"),
    },
    "delivery": {
        "method": Key(
            one_of("maildir", "smtp"), "maildir (a Maildir per list under the var dir) or smtp"
        ),
        "maildir": Key(path_template(PATH_VARIABLES), "where the Maildirs live", is_path=True),
        "smtp_host": Key(as_host, "the smarthost"),
        "smtp_port": Key(as_port, "the smarthost's port"),
        "max_attempts": Key(as_positive_count, "delivery attempts before a failure is permanent"),
    },
    "rest": {
        "host": Key(as_host, "the address the REST API listens on"),
        "port": Key(as_listen_port, "the REST API port (0: any free port)"),
        "allowed_hosts": Key(
            as_hosts,
            "Host header names the API answers besides its address, localhost, "
            "127.0.0.1 and ::1 (a defence against DNS rebinding)",
        ),
        "page_refresh": Key(
            as_duration, "how often the operator page at / reloads itself; 0 for never"
        ),
    },
    "queues": {
        "backend": Key(
            one_of("file", "redis"),
            "file (a directory a queue, the default) or redis (Redis Streams, [queues] url)",
        ),
        "url": Key(
            as_redis_url,
            "the Redis or Valkey server: redis://HOST:PORT/DB, rediss://... or "
            "unix:///PATH?db=N (empty: $RUNNERKIT_REDIS_URL, else redis://localhost:6379/0)",
        ),
        "key_prefix": Key(
            as_key_prefix, "the prefix of this site's Redis keys; sites sharing a server differ"
        ),
        "lease": Key(
            as_duration,
            "how long a master's hold on its Redis slices outlives its last renewal",
        ),
    },
    "logging": {
        "level": Key(one_of("debug", "info", "warning", "error"), "debug, info, warning or error"),
        "path": Key(path_template(PATH_VARIABLES), "the log file", is_path=True),
        "delivery_path": Key(
            path_template(PATH_VARIABLES),
            "the delivery log: one line per message the out runner delivered or failed",
            is_path=True,
        ),
    },
}

#: The prefix of runner sections, ``[runner.NAME]``.
RUNNER_PREFIX = "runner."

#: The name of the template section every runner section inherits from.
RUNNER_DEFAULTS = "runner.defaults"

#: The keys of ``[runner.NAME]`` sections.
RUNNER_KEYS: dict[str, Key] = {
    "class": Key(as_dotted_name, "the Runner subclass to run, as package.module.Class"),
    "path": Key(path_template((*PATH_VARIABLES, "name")), "the queue directory"),
    "instances": Key(as_power_of_two, "processes, each owning one slice of the queue"),
    "start": Key(as_bool, "whether the master starts this runner"),
    "max_restarts": Key(as_count, "restarts allowed within the restart window"),
    "sleep_time": Key(as_duration, "how long an idle runner sleeps between passes"),
    "queue": Key(as_bool, "whether the runner reads a queue (no for protocol servers)"),
    "slices": Key(
        as_slices,
        "which slices of the queue this master runs, such as 0-1 or 2,3 (all: every one); "
        "for hosts that share a Redis server",
    ),
}

#: The bottom layer: the value of every key unless a pushed layer overrides it.
DEFAULTS = """\
[runnerkit]
default_language: en
import_path:

[paths]
var_dir: var
queue_dir: $VAR_DIR/queue
log_dir: $VAR_DIR/logs
data_dir: $VAR_DIR/data
lock_dir: $VAR_DIR/locks
metrics_dir: $VAR_DIR/metrics

[master]
restart_window: 10m
backoff_base: 500ms
backoff_max: 1m
stop_timeout: 30s
stuck_after: 10m
strict_modes: yes

[lmtp]
host: 127.0.0.1
port: 8024
max_message_size: 10485760
# Postfix's default_destination_concurrency_limit: what an MTA sends at once.
max_connections: 20

# Where mail enters (LMTP, runnerkit inject), a message beyond one of these is refused
# for good.  The sources of the defaults are in runnerkit/limits.py.
[limits]
max_mime_depth: 100
max_header_fields: 1000
max_header_field_size: 102400
max_line_length: 0

[pipeline]
handlers: list-headers subject-prefix
subject_prefix: [{display_name}]

[delivery]
method: maildir
maildir: $VAR_DIR/maildir
smtp_host: 127.0.0.1
smtp_port: 25
max_attempts: 5

[rest]
host: 127.0.0.1
port: 8001
allowed_hosts:
page_refresh: 5s

# Where the queues keep their messages: file, a directory a queue under the var dir, or
# redis, Redis Streams on the server at url (docs/redis.md).
[queues]
backend: file
url:
key_prefix: runnerkit:
lease: 15s

[logging]
level: info
path: $LOG_DIR/runnerkit.log
delivery_path: $LOG_DIR/delivery.log

[runner.defaults]
class: runnerkit.runner.Runner
path: $QUEUE_DIR/$name
instances: 1
start: yes
max_restarts: 10
sleep_time: 1s
queue: yes
slices: all

# Messages that could not be read, or that failed too often, are preserved here.
[runner.bad]
start: no

# Messages whose processing raised an exception wait here for an operator.
[runner.shunt]
start: no

# The built-in pipeline: lmtp -> in -> pipeline -> out (-> retry -> out); a message to a
# list's -owner address goes lmtp -> in -> out, to the owners.
[runner.lmtp]
class: runnerkit.runners.lmtp.LMTPRunner
queue: no

[runner.in]
class: runnerkit.runners.incoming.IncomingRunner

[runner.pipeline]
class: runnerkit.runners.pipeline.PipelineRunner

[runner.out]
class: runnerkit.runners.outgoing.OutgoingRunner

[runner.retry]
class: runnerkit.runners.retry.RetryRunner
sleep_time: 1m

# Delivery status notifications sent to a list's -bounces address.
[runner.bounces]
class: runnerkit.runners.bounce.BounceRunner

# Requests to a list's -request, -join, -leave and -confirm addresses.
[runner.command]
class: runnerkit.runners.command.CommandRunner

[runner.rest]
class: runnerkit.runners.rest.RESTRunner
start: no
queue: no
"""
