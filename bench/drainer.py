"""One process of the scaling measurement: ``python -m bench.drainer``.

It opens its switchboards (its share of a queue's slices, on the file backend or on
Redis), says ``ready`` on stdout, waits for a line on stdin, drains each of its slices
once (list, then dequeue and finish every message, as :func:`bench.queues.drain`
does), and says ``done N`` with the number it drained.  The parent starts the clock
when it sends the line, and stops it at the last ``done``: the processes' start-up
and imports are not timed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.drainer")
    parser.add_argument("--backend", choices=("file", "redis"), required=True)
    parser.add_argument("--queue", default="bench", help="the queue's name")
    parser.add_argument("--numslices", type=int, required=True)
    parser.add_argument(
        "--slices", required=True, help="the slices this process drains, comma-separated"
    )
    parser.add_argument("--directory", type=Path, help="file backend: the queue directory")
    parser.add_argument("--bad", type=Path, help="file backend: the bad queue directory")
    parser.add_argument("--url", help="redis: the server")
    parser.add_argument("--prefix", help="redis: the key prefix")
    return parser


def open_switchboards(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The switchboards of this process's slices, and what to close afterwards."""
    slices = [int(text) for text in args.slices.split(",")]
    if args.backend == "file":
        from runnerkit.switchboard import Switchboard

        files: list[Any] = [
            Switchboard(args.queue, args.directory, number, args.numslices, bad=args.bad)
            for number in slices
        ]
        return files, None
    from runnerkit.streams import RedisCalls, StreamSwitchboard

    calls = RedisCalls(args.url, args.prefix)
    calls.ping()
    streams: list[Any] = [
        StreamSwitchboard(args.queue, calls, number, args.numslices) for number in slices
    ]
    return streams, calls


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.queues import drain

    switchboards, calls = open_switchboards(args)
    try:
        print("ready", flush=True)
        if not sys.stdin.readline():
            return 1  # the parent went away
        done = drain(switchboards)
        print(f"done {done}", flush=True)
    finally:
        if calls is not None:
            calls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
