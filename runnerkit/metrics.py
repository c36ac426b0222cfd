"""Prometheus metrics: what runner processes count, and what ``/metrics`` serves.

The REST runner serves them at ``/metrics`` in Prometheus's text exposition format,
made by the ``prometheus_client`` library.  The names follow Prometheus's naming
conventions (https://prometheus.io/docs/practices/naming/): a ``runnerkit_`` prefix,
the base unit in the name, ``_total`` for a counter.

``runnerkit_messages_processed_total`` (counter; label ``runner``)
    messages a runner took from its queue and processed, whatever came of it
    (shunted ones included);
``runnerkit_messages_shunted_total`` (counter; ``runner``)
    of those, the ones shunted: their processing raised, or their list does not exist;
``runnerkit_messages_preserved_total`` (counter; ``runner``)
    queue files a runner preserved in ``bad``: unreadable, or a shunt that failed;
``runnerkit_message_processing_seconds`` (histogram; ``runner``)
    how long each processed message took, from dequeue to finish, in the buckets of
    :data:`PROCESSING_BUCKETS`;
``runnerkit_lmtp_replies_total`` (counter; ``code``)
    replies the LMTP server sent, by basic reply code (``220``, ``250``, ``550``, ...):
    one for each line of a reply per recipient, one for a multiline reply;
``runnerkit_runner_restarts_total`` (counter; ``runner``)
    restarts of a runner's processes (all its slices) by the running master;
``runnerkit_queue_messages`` (gauge; ``queue``)
    files waiting in the queue, its depth (for ``bad``, preserved files included);
``runnerkit_queue_oldest_message_age_seconds`` (gauge; ``queue``)
    the age of the queue's oldest file, from the time in its name; 0 when it is empty.

Many processes, one view
------------------------
Each runner process counts in files of its own, as ``prometheus_client``'s
*multiprocess mode* does (https://prometheus.github.io/client_python/multiprocess/):
the master empties ``[paths] metrics_dir`` when it starts (:func:`prepare_directory`)
and starts every runner process with ``PROMETHEUS_MULTIPROC_DIR`` naming it
(:func:`process_environment`); ``/metrics`` sums the files of every process, live or
dead, with the library's ``MultiProcessCollector``.  A dead process's counts stay,
so the sums never go back; the library's ``mark_process_dead`` is only for gauges of
live processes (``livesum`` and the like), and runnerkit keeps no gauge in the files.

The restarts come from the master's status file, and the queue gauges from the queue
directories, both read when ``/metrics`` is scraped: nothing is counted for them
in between.

A runner counts only when ``PROMETHEUS_MULTIPROC_DIR`` names its own site's
``metrics_dir``, as in a process the master started; anywhere else (a runner run in
a test or a spec, in-process) it counts nothing and writes no file, at the cost of
one method call that does nothing.  ``prometheus_client`` picks its multiprocess mode
when it is first imported, from the same variable; so runnerkit imports it only when
it first counts (a runner process that never counts pays nothing for it), or serves.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runnerkit.backend import QueueBackend
from runnerkit.errors import QueueError, QueueUnavailableError
from runnerkit.fsio import make_directories
from runnerkit.switchboard import filebase_time

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from runnerkit.config import Configuration

#: The environment variable ``prometheus_client`` reads for its multiprocess mode.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Every metric's name starts with this.
PREFIX = "runnerkit_"
#: The buckets of the processing histogram, in seconds: a runner takes milliseconds
#: for most messages, a delivery over SMTP up to its timeout (60 s).
PROCESSING_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class RunnerMetrics(Protocol):
    """What a queue runner counts; see the module's table."""

    def processed(self, seconds: float) -> None:
        """Count one processed message, which took *seconds*."""

    def shunted(self) -> None:
        """Count one shunted message."""

    def preserved(self) -> None:
        """Count one queue file preserved in ``bad``."""


class LMTPMetrics(Protocol):
    """What the LMTP server counts; see the module's table."""

    def replies(self, status: str) -> None:
        """Count the replies in *status*, one or more lines as the server sends them."""


class _Nothing:
    """Counts nothing: for a runner outside a master's processes."""

    def processed(self, seconds: float) -> None:
        pass

    def shunted(self) -> None:
        pass

    def preserved(self) -> None:
        pass

    def replies(self, status: str) -> None:
        pass


#: The metrics of a runner that counts nothing.
NOTHING = _Nothing()


class _RunnerCounters:
    """A queue runner's counters, in the process's files (multiprocess mode).

    They are made, and ``prometheus_client`` imported (some 40 ms of CPU), at the
    first count: a process that never counts pays nothing, and leaves no file.
    """

    def __init__(self, runner: str) -> None:
        self.runner = runner

    @cached_property
    def _children(self) -> tuple[Counter, Counter, Counter, Histogram]:
        from prometheus_client import Counter, Histogram

        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ["runner"], registry=None).labels(self.runner)

        return (
            counter(
                "runnerkit_messages_processed",
                "Messages a runner took from its queue and processed.",
            ),
            counter(
                "runnerkit_messages_shunted", "Messages a runner shunted after processing failed."
            ),
            counter("runnerkit_messages_preserved", "Queue files a runner preserved in bad."),
            Histogram(
                "runnerkit_message_processing_seconds",
                "How long a runner took to process a message, from dequeue to finish.",
                ["runner"],
                buckets=PROCESSING_BUCKETS,
                registry=None,
            ).labels(self.runner),
        )

    def processed(self, seconds: float) -> None:
        processed, _, _, histogram = self._children
        # The counter last: once a scrape sees it, the histogram holds the message too.
        histogram.observe(seconds)
        processed.inc()

    def shunted(self) -> None:
        self._children[1].inc()

    def preserved(self) -> None:
        self._children[2].inc()


class _LMTPCounters:
    """The LMTP server's counters, in the process's files (multiprocess mode); made at
    the first count, as :class:`_RunnerCounters` are."""

    @cached_property
    def _replies(self) -> Counter:
        from prometheus_client import Counter

        return Counter(
            "runnerkit_lmtp_replies", "LMTP replies sent, by reply code.", ["code"], registry=None
        )

    def replies(self, status: str) -> None:
        for line in status.split("\r\n"):
            code = line[:3]
            # A line of a multiline reply (RFC 5321, section 4.2.1) is not a reply.
            if len(code) == 3 and code.isdigit() and line[3:4] != "-":
                self._replies.labels(code).inc()


def counting(config: Configuration) -> bool:
    """Whether this process counts: ``PROMETHEUS_MULTIPROC_DIR`` names *config*'s
    ``[paths] metrics_dir``, as in a runner process the master started."""
    given = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return given is not None and given != "" and Path(given).absolute() == config.paths.metrics_dir


def runner_metrics(config: Configuration, runner: str) -> RunnerMetrics:
    """The metrics of queue runner *runner*: counters when :func:`counting`, else none."""
    return _RunnerCounters(runner) if counting(config) else NOTHING


def lmtp_metrics(config: Configuration) -> LMTPMetrics:
    """The LMTP server's metrics: counters when :func:`counting`, else none."""
    return _LMTPCounters() if counting(config) else NOTHING


# The master's part.


#: The names of the files ``prometheus_client`` writes in multiprocess mode: the kind
#: of value (for gauges, the multiprocess mode too) and the writing process's pid.
METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def prepare_directory(directory: Path) -> None:
    """Create *directory* or empty it of metrics files, before any runner process starts.

    ``prometheus_client`` requires a directory wiped between runs; only its files
    are removed (:data:`METRICS_FILE`: ``counter_PID.db``, ``histogram_PID.db`` ...),
    whatever else the directory holds: a misconfigured ``metrics_dir`` can never cost
    another ``.db`` file (the lists' database, say).

    :raises OSError: the directory cannot be created, or a file removed.
    """
    make_directories(directory)
    for path in directory.iterdir():
        if METRICS_FILE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def process_environment(directory: Path) -> dict[str, str]:
    """The environment of a runner process that counts into *directory*."""
    return {**os.environ, MULTIPROCESS_DIR_VARIABLE: str(directory)}


# The REST runner's part.


def oldest_age(switchboard: QueueBackend, now: float) -> float:
    """Seconds since the oldest file of *switchboard* was queued, from its name; 0 if none.

    ``bad`` also holds preserved (``.psv``) files, which count too.  On Redis the names
    are those of the streams' entries (their file bases), the preserved ones included.

    :raises QueueUnavailableError: the queues' server cannot be reached.
    """
    files = list(switchboard.files)
    get_files = getattr(switchboard, "get_files", None)
    if get_files is not None:
        files += get_files(".psv")
    if not files:
        return 0.0
    return max(0.0, now - min(map(filebase_time, files)))


class QueueCollector:
    """Collects the queue gauges when scraped: depth and oldest file's age, per queue.

    :param switchboards: the site's whole-queue switchboards, by queue name.
    :param clock: the time now, in seconds since the epoch.
    """

    def __init__(
        self, switchboards: Mapping[str, QueueBackend], clock: Callable[[], float] = time.time
    ) -> None:
        self.switchboards = switchboards
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "runnerkit_queue_messages",
            "Files waiting in the queue (its depth); for bad, preserved files included.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "runnerkit_queue_oldest_message_age_seconds",
            "Age of the queue's oldest file, from the time in its name; 0 when it is empty.",
            labels=["queue"],
        )
        now = self.clock()
        for name, switchboard in sorted(self.switchboards.items()):
            try:
                depth_now, age_now = switchboard.depth(), oldest_age(switchboard, now)
            except QueueUnavailableError:
                raise  # every queue is out of reach: /metrics answers 503
            except QueueError as error:
                # This queue only (a key of the wrong type, say): the others still count.
                log.warning("queue gauges: %s: %s", name, error)
                continue
            depth.add_metric([name], depth_now)
            age.add_metric([name], age_now)
        yield depth
        yield age


class RestartCollector:
    """Collects ``runnerkit_runner_restarts_total`` when scraped, from the master.

    :param restarts: each runner's restarts, summed over its slices, as the running
        master's status file says; empty when no master runs.
    """

    def __init__(self, restarts: Callable[[], Mapping[str, int]]) -> None:
        self.restarts = restarts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "runnerkit_runner_restarts",
            "Restarts of a runner's processes by the running master, all slices.",
            labels=["runner"],
        )
        for name, count in sorted(self.restarts().items()):
            family.add_metric([name], count)
        yield family


def exposition(metrics_dir: Path, collectors: tuple[Collector, ...] = ()) -> tuple[bytes, str]:
    """Every process's metrics in *metrics_dir*, and *collectors*'s, for ``/metrics``.

    :returns: the text exposition and its ``Content-Type``, both from
        ``prometheus_client`` (``generate_latest``, ``CONTENT_TYPE_LATEST``).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if metrics_dir.is_dir():
        MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
