"""The pipeline benchmark's medians, its markdown table and the README section it fills."""

from __future__ import annotations

import statistics
from typing import Any

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
START, END = "<!-- pipeline-benchmark:start -->", "<!-- pipeline-benchmark:end -->"
OURS = "modeldeploy-v2"


def summarize(runs: list[dict[str, Any]], starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server: medians over rounds at each connection count, cold start and RSS."""
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["server"] for r in runs):
        mine = [r for r in runs if r["server"] == name]
        figures: dict[str, Any] = {}
        for c in dict.fromkeys(r["connections"] for r in mine):
            at = [r for r in mine if r["connections"] == c]
            figures[f"c{c}"] = {m: round(statistics.median(r[m] for r in at), 3) for m in METRICS}
            figures[f"c{c}"]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in at)
        started = [s for s in starts if s["server"] == name]
        figures["cold_start_s"] = round(statistics.median(s["cold_start_s"] for s in started), 3)
        figures["rss_mb"] = round(statistics.median(s["rss_mb"] for s in started), 1)
        figures["runtime"] = next((s["runtime"] for s in started if s.get("runtime")), None)
        summary[name] = figures
    return summary


def markdown(results: dict[str, Any]) -> str:
    settings, summary = results["settings"], results["summary"]
    connections = [f"c{c}" for c in settings["connections"]]
    load = ", ".join(f"{x:.2f}" for x in results["load_average_at_start"])
    lines = [
        f"Measured {results['date'][:10]} ({results['mode']} run: {settings['seconds']:g} s per "
        f"run after {settings['warmup_seconds']:g} s warm-up, median of {settings['rounds']} "
        f"round(s), server on CPU {settings['server_cpu']}, wrk on CPU {settings['load_cpu']}, "
        f"load average at start {load}). Model: {results['model']['label']}; in-process "
        f"`predict()` on a one-row DataFrame (construction included): "
        f"{results['predict_in_process_us']} µs.",
        "",
        "| server | request | "
        + " | ".join(f"{c[1:]} conn: req/s (p50 / p99 ms)" for c in connections)
        + " | CPU µs/req at 8 | RSS MB | cold start s |",
        "|---|---|" + "---|" * (len(connections) + 3),
    ]
    for name, figures in summary.items():
        server = results["servers"][name]
        cells = [_cell(f) for c in connections if (f := figures.get(c))]
        runtime = f" (runtime {figures['runtime']})" if figures.get("runtime") else ""
        cpu = figures.get("c8", {}).get("cpu_us_per_request", float("nan"))
        lines.append(
            f"| {server['label']}{runtime} | {server['request']} | "
            + " | ".join(cells)
            + f" | {cpu:.0f} | {figures['rss_mb']:.0f} | {figures['cold_start_s']:.2f} |"
        )
    lines += _ratios(results, connections)
    return "\n".join(lines) + "\n"


def _cell(figures: dict[str, Any]) -> str:
    if not figures["rps"]:
        return "0 (no answer within the run)"
    return f"{figures['rps']:.0f} ({figures['p50_ms']:.2f} / {figures['p99_ms']:.2f})" + (
        " ⚠ errors" if figures["errors"] else ""
    )


def _ratios(results: dict[str, Any], connections: list[str]) -> list[str]:
    """Our v2 req/s over the best of each peer family, per connection count."""
    summary = results["summary"]
    if OURS not in summary:
        return []
    lines = []
    for family in ("mlserver", "kserve"):
        names = [n for n in summary if n.startswith(family)]
        cells = []
        for c in connections:
            present = [(summary[n][c]["rps"], n) for n in names if c in summary[n]]
            if present and c in summary[OURS]:
                best, name = max(present)
                cells.append(f"{c[1:]} conn {summary[OURS][c]['rps'] / best:.2f}x ({name})")
        if cells:
            lines.append(f"\nmodeldeploy v2 ÷ best {family}: " + ", ".join(cells) + ".")
    return lines
