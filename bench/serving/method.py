"""What every serving benchmark here shares (the team's benchmarking notes): the server pinned
to one CPU and wrk to the other, the same options (run length, warm-up, rounds, connection
counts), and one measured wrk run per connection count after its warm-up run."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import servers
import wrk

SERVER_CPU, LOAD_CPU = 0, 1


def options(description: str, connections: Sequence[int] = (1, 8, 64)) -> argparse.ArgumentParser:
    """The shared options; each benchmark adds its own, then calls `parse`."""
    default = ",".join(map(str, connections))
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 round")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each run (3)")
    parser.add_argument("--rounds", type=int, help="fresh-start rounds, median reported (3)")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(c) for c in s.split(",")],
        default=list(connections),
        help=f"comma-separated ({default})",
    )
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options, with run length, warm-up and rounds defaulting by --quick."""
    args = parser.parse_args()
    quick = args.quick
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.rounds = args.rounds or (1 if quick else 3)
    return args


def measure(
    server: servers.RunningServer,
    wrk_path: str,
    url: str,
    script: Path,
    args: argparse.Namespace,
) -> Iterator[dict[str, float | int]]:
    """For each connection count: a warm-up run, then the measured one, with the server's CPU
    per request."""
    for connections in args.connections:
        yield measure_one(server, wrk_path, url, script, connections, args)


def measure_one(
    server: servers.RunningServer,
    wrk_path: str,
    url: str,
    script: Path,
    connections: int,
    args: argparse.Namespace,
) -> dict[str, float | int]:
    """A warm-up run, then the measured one at `connections`, with the server's CPU per request."""
    load = {"connections": connections, "cpu": LOAD_CPU}
    wrk.run(wrk_path, url, script, seconds=args.warmup, **load)
    cpu_before = server.cpu_seconds()
    result = wrk.run(wrk_path, url, script, seconds=args.seconds, **load)
    return record(connections, result, server.cpu_seconds() - cpu_before)


def record(connections: int, result: wrk.WrkResult, cpu_used: float) -> dict[str, float | int]:
    """One measured run, as the results files keep it."""
    return {
        "connections": connections,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "cpu_us_per_request": round(cpu_used * 1e6 / max(result.requests, 1), 1),
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
    }
