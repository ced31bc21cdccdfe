"""Drift counting's cost: modeldeploy-server with and without a reference profile, same model,
same request, same run. Not a test: it measures, it does not assert.

    python bench/serving/drift.py            # 10 s per run, 3 rounds (about 10 minutes)
    python bench/serving/drift.py --quick    # 3 s per run, 1 round

Method (the serving benchmark's, bench/serving/run.py): single-row v2 requests from wrk on
127.0.0.1, the server pinned to CPU 0 and wrk to CPU 1, every server started fresh each round,
"off" and "on" taking turns (the order alternates by round), medians over rounds. "on" loads the
profile built by `build_profile` from the model's training data (every column binned, the
predictions too), so every served row is counted. Target (issue 15): at most 5% fewer req/s at 8
and 64 connections. Memory: the server's RSS after the runs, and the number of drift series on
/metrics (features x bins, bounded by the profile, never by traffic).
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
import time
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import method
import orjson
import report
import servers
import workload
import wrk

from modeldeploy_serving.metric_names import DRIFT_ROWS
from modeldeploy_serving.profile import build_profile

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
        modes = ["off", "on"] if round_index % 2 == 0 else ["on", "off"]
        for key, model in models.items():
            for mode in modes:
                spec = _spec(mode, profiles[key] if mode == "on" else None)
                runs += _measure(spec, model, mode, round_index, args, wrk_path, script, body)
    results = {
        "benchmark": "drift",
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(),
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
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
    estimator = joblib.load(model.path)
    raw = orjson.dumps(build_profile(workload.training_data()[0], estimator))
    path = model.path.with_name("profile.json")
    path.write_bytes(raw)
    return path, hashlib.sha256(raw).hexdigest()


def _spec(mode: str, profile: tuple[Path, str] | None) -> servers.ServerSpec:
    extra = ("--profile-uri", str(profile[0]), "--profile-sha256", profile[1]) if profile else ()

    def command(m: workload.BenchModel) -> list[str]:
        return [
            str(servers.BIN / "modeldeploy-server"),
            *("--model-uri", str(m.path), "--sha256", m.sha256, "--model-name", m.key),
            *("--host", "127.0.0.1", "--port", "18090", "--log-level", "warning"),
            *("--termination-log", ""),
            *extra,
        ]

    return servers.ServerSpec(f"drift-{mode}", f"drift counting {mode}", "ours", 18090, command)


def _measure(
    spec: servers.ServerSpec,
    model: workload.BenchModel,
    mode: str,
    round_index: int,
    args: argparse.Namespace,
    wrk_path: str,
    script: Path,
    body: bytes,
) -> list[dict[str, Any]]:
    log = WORK / "logs" / f"{spec.name}-{model.key}-{round_index}.log"
    log.parent.mkdir(exist_ok=True)
    server = servers.RunningServer(spec, model, cpu=method.SERVER_CPU, log=log)
    runs = []
    try:
        server.wait_first_prediction(body)
        url = f"http://127.0.0.1:{spec.port}{model.infer_path}"
        for run in method.measure(server, wrk_path, url, script, args):
            connections = run["connections"]
            runs.append({"model": model.key, "drift": mode, "round": round_index, **run})
            print(
                f"[drift] round {round_index} {model.key} {mode} c={connections}: "
                f"{run['rps']:.0f} req/s, p99 {run['p99_ms']:.2f} ms",
                flush=True,
            )
        rss_mb = round(server.rss_bytes() / 2**20, 1)
        series = _drift_series(spec.port)
        for run in runs:
            run["rss_mb"], run["drift_series"] = rss_mb, series
    finally:
        server.stop()
        time.sleep(0.5)
    return runs


def _drift_series(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(1 for line in text.splitlines() if line.startswith(f"{DRIFT_ROWS}_total{{"))


def summarize(runs: list[dict[str, Any]], connections: list[int]) -> dict[str, Any]:
    """Per model and connection count: median req/s off and on, their ratio, p99 and memory."""
    summary: dict[str, Any] = {}
    for key in sorted({r["model"] for r in runs}):
        rows: dict[str, Any] = {}
        for c in connections:

            def median(mode: str, field: str, c: int = c, key: str = key) -> float:
                values = [
                    r[field]
                    for r in runs
                    if r["model"] == key and r["connections"] == c and r["drift"] == mode
                ]
                return float(statistics.median(values))

            off, on = median("off", "rps"), median("on", "rps")
            rows[str(c)] = {
                "rps_off": off,
                "rps_on": on,
                "ratio": round(on / off, 3),
                "met": on >= (1 - TARGET_LOSS) * off,
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


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [
        f"Drift counting on vs off ({results['date'][:10]}, {settings['rounds']} rounds of "
        f"{settings['seconds']:g} s, single-row v2 requests, medians; target: on ≥ 95% of off):",
        "",
        "| model | connections | req/s off | req/s on | on / off | p99 ms off → on "
        "| CPU µs/req off → on | RSS MB off → on | drift series |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in results["summary"].items():
        label = results["models"][key]["label"]
        for c, row in entry["by_connections"].items():
            lines.append(
                f"| {label} | {c} | {row['rps_off']:.0f} | {row['rps_on']:.0f} "
                f"| {row['ratio']:.3f}{'' if row['met'] else ' (missed)'} "
                f"| {row['p99_ms_off']:.2f} → {row['p99_ms_on']:.2f} "
                f"| {row['cpu_us_off']:.0f} → {row['cpu_us_on']:.0f} "
                f"| {entry['rss_mb']['off']:.0f} → {entry['rss_mb']['on']:.0f} "
                f"| {entry['drift_series']} |"
            )
    return "\n".join(lines)


def _arguments() -> argparse.Namespace:
    parser = method.options(__doc__.split("\n\n")[0], (8, 64))
    parser.add_argument("--models", nargs="+", default=["rf", "lr"], choices=["rf", "lr"])
    return method.parse(parser)


if __name__ == "__main__":
    sys.exit(main())
