"""How steady is this machine's CPU? A tail-latency benchmark needs the answer beside its p99.

A fixed loop runs on one CPU for a few seconds and counts its iterations in each millisecond.
On a dedicated core every millisecond does about the same work. On a shared virtual machine
some milliseconds do far less (the hypervisor runs other guests on the physical core, or the
VM is throttled to its CPU quota): a request in flight during such a window takes several
times longer, whatever the server does. With 64 requests always in flight and a few percent of
the time slowed, those windows alone decide the p99 (docs/serving.md, "Latency at 64 connections").

    python bench/serving/cpu_stalls.py --cpu 0 --seconds 8

Reports the share of 1 ms windows below 30% of the median window's work, how many separate
slow episodes that makes, and the longest one. The serving benchmark runs it on the server's
CPU before its first round and after its last, into the results' `machine` section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

SLOW_FRACTION = 0.3  # a window that does less than this share of the median window's work
_WINDOW_NS = 1_000_000


def measure(cpu: int | None, seconds: float) -> dict[str, Any]:
    """Run the probe on `cpu` (None: wherever this process may run) for `seconds`."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        counts = _count_per_window(seconds)
    finally:
        os.sched_setaffinity(0, before)
    return summarize(counts)


def summarize(counts: list[int]) -> dict[str, Any]:
    """Slow windows and episodes (runs of consecutive slow windows) from per-window counts."""
    median = statistics.median(counts)
    slow = [count < SLOW_FRACTION * median for count in counts]
    episodes, longest, run = 0, 0, 0
    for is_slow in slow:
        if is_slow:
            run += 1
            episodes += run == 1
            longest = max(longest, run)
        else:
            run = 0
    seconds = len(counts) / 1000
    return {
        "seconds": seconds,
        "slow_window_share": round(sum(slow) / len(counts), 4),
        "slow_episodes_per_second": round(episodes / seconds, 2),
        "longest_slow_episode_ms": longest,
    }


def _count_per_window(seconds: float) -> list[int]:
    windows = int(seconds * 1000)
    counts = [0] * windows
    clock = time.perf_counter_ns
    start = clock()
    while True:
        window = (clock() - start) // _WINDOW_NS
        if window >= windows:
            return counts
        counts[window] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin the probe to this CPU")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.cpu, args.seconds)))


if __name__ == "__main__":
    main()
