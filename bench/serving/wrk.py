"""Run wrk (Debian package) with a Lua POST script, pinned to its own CPU; parse what it says."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


def ensure_wrk() -> str:
    """wrk's path, installing the Debian package if it is missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("[bench] wrk not found; installing the Debian package", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is required: apt-get install wrk")
    return found


def run(
    wrk: str, url: str, script: Path, *, connections: int, seconds: float, cpu: int
) -> WrkResult:
    command = [
        "taskset",
        "-c",
        str(cpu),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return parse(output)


def parse(output: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    if done is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    seconds = float(done[2]) * _UNITS_MS[done[3]] / 1000
    percentiles = {
        match[1]: float(match[2]) * _UNITS_MS[match[3]]
        for match in re.finditer(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(done[1]),
        seconds=seconds,
        rps=int(done[1]) / seconds,
        p50_ms=percentiles.get("50", float("nan")),
        p99_ms=percentiles.get("99", float("nan")),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )
