"""Run one runner as a process: ``python -m runnerkit.process --runner NAME[:SLICE:COUNT]``.

The process makes its configuration current, logs to the configured file and runs the
runner until a signal stops it: SIGTERM, SIGINT and SIGUSR1 stop the runner after the
message it is processing (the message is finished, never shunted), and SIGHUP reopens
the log file, for log rotation.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from runnerkit.config import Configuration, use_config
from runnerkit.errors import RunnerkitError
from runnerkit.logs import configure_logging, reopen_logs
from runnerkit.signals import SignalDispatcher

log = logging.getLogger("runnerkit.process")

#: Exit status when the runner cannot be set up.
EXIT_SETUP_FAILED = 2


def parse_runner_spec(spec: str) -> tuple[str, int | None, int | None]:
    """Split ``NAME`` or ``NAME:SLICE:COUNT`` into its parts.

    :raises RunnerkitError: the text is neither.
    """
    parts = spec.split(":")
    if len(parts) == 1 and parts[0]:
        return parts[0], None, None
    if len(parts) == 3 and parts[0]:
        try:
            return parts[0], int(parts[1]), int(parts[2])
        except ValueError:
            pass
    raise RunnerkitError(f"--runner {spec!r}: expected NAME or NAME:SLICE:COUNT, e.g. in:0:4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runnerkit.process", description="Run one runnerkit runner."
    )
    parser.add_argument("-r", "--runner", required=True, help="NAME or NAME:SLICE:COUNT")
    parser.add_argument("-C", "--config", help="an INI file pushed over the defaults")
    parser.add_argument("--var-dir", help="the var dir (default: ./var)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runner named on the command line; return the process's exit status."""
    args = build_parser().parse_args(argv)
    try:
        name, slice, count = parse_runner_spec(args.runner)
        config = Configuration(args.var_dir)
        if args.config:
            config.push_file(args.config)
        settings = config.runner(name)
        if count is not None and count != settings.instances:
            raise RunnerkitError(
                f"--runner {args.runner!r}: [runner.{name}] has instances: "
                f"{settings.instances}, not {count}"
            )
        runner_class = settings.load_class()
    except RunnerkitError as error:
        print(f"runnerkit: {error}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    with config, use_config(config):
        configure_logging(config)
        runner = runner_class(name, slice, config=config)

        def stop(signum: int) -> None:
            log.info("%s: stopping on %s", runner, signal.Signals(signum).name)
            runner.stop()

        def reopen(signum: int) -> None:
            reopen_logs()
            log.info("%s: log files reopened on SIGHUP", runner)

        actions: dict[int, Callable[[int], object]] = {
            signal.SIGTERM: stop,
            signal.SIGINT: stop,
            signal.SIGUSR1: stop,
            signal.SIGHUP: reopen,
        }
        with SignalDispatcher(actions):
            log.info("%s: started", runner)
            runner.run()
            log.info("%s: stopped with status %d", runner, runner.status)
        return runner.status


if __name__ == "__main__":
    sys.exit(main())
