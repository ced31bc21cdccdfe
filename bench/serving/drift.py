"""Drift counting's cost: modeldeploy-server with and without a reference profile, same model,
same request, same run. Not a test: it measures, it does not assert.

    python bench/serving/drift.py            # 3 rounds of 4 pairs of 4 s runs (about 9 minutes)
    python bench/serving/drift.py --quick    # 1 round of 2 pairs

Method: single-row v2 requests from wrk on 127.0.0.1, servers pinned to CPU 0 and wrk to CPU 1
(the serving benchmark's, bench/serving/run.py), but built for a small difference. Run one after
the other, the same server's req/s varied by up to 30% between runs seconds apart on this
machine, more than the 5% to be measured. So "off" and "on" run at the same time: both servers
share CPU 0, each loaded by its own wrk with the same connections, so whatever slows the machine
slows both, and each gets what the scheduler gives it (an equal share of the core), so the
ratio of their req/s is the ratio of what a request costs each. Each pair is a 1 s warm-up then
a measured run; the ratio reported is the median of the pairs' on/off ratios, with their range.
A control pair runs two identical "off" servers the same way: its ratio shows how close to 1.0
the method gets when there is nothing to find. "on" loads the profile built by `build_profile`
from the model's training data (every column binned, the predictions too), so every served row
is counted. Target (issue 15): at most 5% fewer req/s at 8 and 64 connections. Memory: each
server's RSS after the runs, and the drift series on /metrics (features x bins, bounded by the
profile, never by traffic).
Results: bench/results/drift.json and a markdown table (printed, and written into README.md
between the drift benchmark markers for full runs).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import method
import orjson
import report
import servers
import workload
import wrk

from modeldeploy_serving.metric_names import DRIFT_ROWS

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "drift"
RESULTS = ROOT / "bench" / "results" / "drift.json"
README = ROOT / "README.md"
START, END = "<!-- drift-benchmark:start -->", "<!-- drift-benchmark:end -->"
TARGET_LOSS = 0.05  # at most 5% fewer req/s with drift counting on


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = _arguments()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 CPUs: one for the server, one for wrk")
    wrk_path = wrk.ensure_wrk()
    WORK.mkdir(parents=True, exist_ok=True)
    models = {k: v for k, v in workload.build_models(WORK / "models").items() if k in args.models}
    profiles = {key: _profile(model) for key, model in models.items()}
    body = workload.request_body()
    script = workload.write_wrk_script(WORK / "post.lua", body)
    runs: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        for key, model in models.items():
            runs += _measure(model, profiles[key], round_index, args, wrk_path, script, body)
    results = {
        "benchmark": "drift",
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(),
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "pairs": args.pairs,
            "connections": args.connections,
            "request_rows": 1,
        },
        "models": {k: {"label": m.label, "sha256": m.sha256} for k, m in models.items()},
        "runs": runs,
        "summary": summarize(runs, args.connections),
    }
    path = RESULTS.with_name("drift-quick.json") if args.quick else RESULTS
    path.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    if not args.quick:
        report.replace_between(README, START, END, table)
    print(table)


def _profile(model: workload.BenchModel) -> tuple[Path, str]:
    raw = orjson.dumps(workload.reference_profile(model))
    path = model.path.with_name("profile.json")
    path.write_bytes(raw)
    return path, hashlib.sha256(raw).hexdigest()


PORTS = {"off": 18090, "on": 18091, "off-2": 18092}
COMPARISONS = {"drift": ("off", "on"), "control": ("off", "off-2")}


def _spec(mode: str, profile: tuple[Path, str] | None) -> servers.ServerSpec:
    extra = ("--profile-uri", str(profile[0]), "--profile-sha256", profile[1]) if profile else ()
    port = PORTS[mode]
    command = servers.ours_command(port, *extra)
    label = f"drift counting {mode}"
    return servers.ServerSpec(f"drift-{mode}", label, "ours", port, command, servers.native_env())


def _measure(
    model: workload.BenchModel,
    profile: tuple[Path, str],
    round_index: int,
    args: argparse.Namespace,
    wrk_path: str,
    script: Path,
    body: bytes,
) -> list[dict[str, Any]]:
    """One round: the three servers started fresh, then for each connection count `pairs`
    times the drift pair and the control pair, each two servers loaded at the same time."""
    log_directory = WORK / "logs"
    log_directory.mkdir(exist_ok=True)
    running: dict[str, servers.RunningServer] = {}
    try:
        for mode in PORTS:
            spec = _spec(mode, profile if mode == "on" else None)
            log = log_directory / f"{spec.name}-{model.key}-{round_index}.log"
            running[mode] = servers.RunningServer(spec, model, cpu=method.SERVER_CPU, log=log)
        for server in running.values():
            server.wait_first_prediction(body)
        runs: list[dict[str, Any]] = []
        for connections in args.connections:
            for pair in range(args.pairs):
                order = list(COMPARISONS) if pair % 2 == 0 else list(reversed(COMPARISONS))
                for comparison in order:
                    pair_servers = [running[mode] for mode in COMPARISONS[comparison]]
                    measured = _at_once(pair_servers, model, wrk_path, script, connections, args)
                    for mode, run in zip(COMPARISONS[comparison], measured, strict=True):
                        runs.append(
                            {
                                "model": model.key,
                                "comparison": comparison,
                                "drift": mode,
                                "round": round_index,
                                "pair": pair,
                            }
                            | run
                        )
                    a, b = measured
                    print(
                        f"[drift] round {round_index} pair {pair} {model.key} {comparison} "
                        f"c={connections}: {a['rps']:.0f} / {b['rps']:.0f} req/s "
                        f"({b['rps'] / a['rps']:.3f})",
                        flush=True,
                    )
        for mode, server in running.items():
            rss_mb = round(server.rss_bytes() / 2**20, 1)
            series = _drift_series(server.spec.port)
            for run in runs:
                if run["drift"] == mode:
                    run["rss_mb"], run["drift_series"] = rss_mb, series
    finally:
        for server in running.values():
            server.stop()
        time.sleep(0.5)
    return runs


def _at_once(
    pair: list[servers.RunningServer],
    model: workload.BenchModel,
    wrk_path: str,
    script: Path,
    connections: int,
    args: argparse.Namespace,
) -> list[dict[str, float | int]]:
    """Both servers loaded at the same time, each by its own wrk: a warm-up run, then the
    measured one, each started together (a barrier), so neither runs alone for long."""
    results: list[dict[str, float | int]] = [{}, {}]
    barrier = threading.Barrier(2)
    load = {"connections": connections, "cpu": method.LOAD_CPU}

    def run(index: int) -> None:
        server = pair[index]
        url = f"http://127.0.0.1:{server.spec.port}{model.infer_path}"
        barrier.wait()
        wrk.run(wrk_path, url, script, seconds=args.warmup, **load)
        barrier.wait()
        cpu_before = server.cpu_seconds()
        result = wrk.run(wrk_path, url, script, seconds=args.seconds, **load)
        results[index] = method.record(connections, result, server.cpu_seconds() - cpu_before)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if not all(results):
        raise RuntimeError("a wrk run failed; see the output above")
    return results


def _drift_series(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(1 for line in text.splitlines() if line.startswith(f"{DRIFT_ROWS}_total{{"))


def summarize(runs: list[dict[str, Any]], connections: list[int]) -> dict[str, Any]:
    """Per model and connection count: median req/s off and on, the median (and range) of the
    pairs' ratios (drift: on/off; control: off-2/off), CPU per request and memory."""
    summary: dict[str, Any] = {}
    for key in sorted({r["model"] for r in runs}):
        rows: dict[str, Any] = {}
        for c in connections:
            mine = [r for r in runs if r["model"] == key and r["connections"] == c]
            drift = [r for r in mine if r["comparison"] == "drift"]

            def median(mode: str, field: str, drift: list[dict[str, Any]] = drift) -> float:
                return float(statistics.median(r[field] for r in drift if r["drift"] == mode))

            ratio, spread = _ratios(mine, "drift")
            control, control_spread = _ratios(mine, "control")
            rows[str(c)] = {
                "rps_off": median("off", "rps"),
                "rps_on": median("on", "rps"),
                "ratio": ratio,
                "ratio_range": spread,
                "control_ratio": control,
                "control_range": control_spread,
                "met": ratio >= 1 - TARGET_LOSS,
                "p99_ms_off": median("off", "p99_ms"),
                "p99_ms_on": median("on", "p99_ms"),
                "cpu_us_off": median("off", "cpu_us_per_request"),
                "cpu_us_on": median("on", "cpu_us_per_request"),
            }
        mine = [r for r in runs if r["model"] == key]
        rss = {
            mode: statistics.median(r["rss_mb"] for r in mine if r["drift"] == mode)
            for mode in ("off", "on")
        }
        series = max(r["drift_series"] for r in mine)
        summary[key] = {"by_connections": rows, "rss_mb": rss, "drift_series": series}
    return summary


def _ratios(runs: list[dict[str, Any]], comparison: str) -> tuple[float, list[float]]:
    """The median of one comparison's per-pair ratios (second server / first) and their range."""
    first, second = COMPARISONS[comparison]
    by_pair: dict[tuple[int, int], dict[str, float]] = {}
    for r in runs:
        if r["comparison"] == comparison:
            by_pair.setdefault((r["round"], r["pair"]), {})[r["drift"]] = r["rps"]
    ratios = [pair[second] / pair[first] for pair in by_pair.values()]
    return round(statistics.median(ratios), 3), [round(min(ratios), 3), round(max(ratios), 3)]


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [
        f"Drift counting on vs off ({results['date'][:10]}, {settings['rounds']} rounds of "
        f"{settings['pairs']} pairs of {settings['seconds']:g} s runs, single-row v2 requests, "
        "the two servers sharing one core and loaded at the same time; ratios: the median of "
        "the pairs', their range in brackets; target: on ≥ 95% of off):",
        "",
        "| model | connections | req/s off | req/s on | on / off | control: off / off "
        "| CPU µs/req off → on | RSS MB off → on | drift series |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in results["summary"].items():
        label = results["models"][key]["label"]
        for c, row in entry["by_connections"].items():
            low, high = row["ratio_range"]
            control_low, control_high = row["control_range"]
            lines.append(
                f"| {label} | {c} | {row['rps_off']:.0f} | {row['rps_on']:.0f} "
                f"| {row['ratio']:.3f} [{low:.2f} to {high:.2f}]"
                f"{'' if row['met'] else ' (missed)'} "
                f"| {row['control_ratio']:.3f} [{control_low:.2f} to {control_high:.2f}] "
                f"| {row['cpu_us_off']:.0f} → {row['cpu_us_on']:.0f} "
                f"| {entry['rss_mb']['off']:.0f} → {entry['rss_mb']['on']:.0f} "
                f"| {entry['drift_series']} |"
            )
    return "\n".join(lines)


def _arguments() -> argparse.Namespace:
    parser = method.options(__doc__.split("\n\n")[0], (8, 64))
    parser.add_argument("--models", nargs="+", default=["rf", "lr"], choices=["rf", "lr"])
    parser.add_argument("--pairs", type=int, help="off/on pairs per round and connections (4)")
    parser.set_defaults(seconds=4.0, warmup=1.0)  # short runs: many pairs, seconds apart
    args = method.parse(parser)
    args.pairs = args.pairs or (2 if args.quick else 4)
    return args


if __name__ == "__main__":
    sys.exit(main())
