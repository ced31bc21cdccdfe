"""The CPU steadiness probe's summary (bench/serving/cpu_stalls.py): what the serving benchmark
reports beside its p99."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# bench/serving is not a package; its modules import each other the way `python bench/...` does.
sys.path.insert(0, str(ROOT / "bench" / "serving"))

import cpu_stalls  # noqa: E402


def test_slow_windows_and_episodes_are_counted_from_the_median() -> None:
    steady = [1000] * 985
    counts = steady[:400] + [100] * 12 + steady[400:800] + [250] * 3 + steady[800:]

    summary = cpu_stalls.summarize(counts)

    assert summary == {
        "seconds": 1.0,
        "slow_window_share": 0.015,
        "slow_episodes_per_second": 2.0,
        "longest_slow_episode_ms": 12,
    }


def test_a_window_at_a_third_of_the_median_is_not_slow() -> None:
    counts = [900] * 990 + [300] * 10

    assert cpu_stalls.summarize(counts)["slow_window_share"] == 0.0


def test_the_probe_counts_every_millisecond_it_runs() -> None:
    summary = cpu_stalls.measure(cpu=None, seconds=0.05)

    assert summary["seconds"] == 0.05
    assert 0.0 <= summary["slow_window_share"] <= 1.0
