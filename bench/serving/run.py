"""Serving benchmark: modeldeploy-server against MLServer and a bare async server, same model
file, same request, same machine, same run. Not a test: it measures, it does not assert.

    python bench/serving/run.py            # 10 s per run, 3 rounds (about 30 minutes)
    python bench/serving/run.py --quick    # 3 s per run, 1 round (about 4 minutes): a smoke run

Method (the team's benchmarking notes): single-row v2 requests on 127.0.0.1 from wrk with a
Lua POST script; the server pinned to CPU 0 and wrk to CPU 1; each round starts every server
fresh and the servers take turns (the order rotates each round); medians over rounds.
Results: bench/results/serving.json (serving-quick.json for --quick) and a markdown table,
printed and (full runs only) written between the benchmark markers in docs/serving.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import cpu_stalls
import method
import peers
import report
import servers
import workload
import wrk

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "serving"
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so every server started so far is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = _arguments()
    if args.report:
        _render(json.loads(args.report.read_text()), args.report)
        return
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 CPUs: one for the server, one for wrk")
    wrk_path = wrk.ensure_wrk()
    WORK.mkdir(parents=True, exist_ok=True)
    models = {k: v for k, v in workload.build_models(WORK / "models").items() if k in args.models}
    body = workload.request_body()
    script = workload.write_wrk_script(WORK / "post.lua", body)
    mlserver_bin = None if args.no_mlserver else peers.mlserver_venv(ROOT / "bench" / ".work")
    asgi = None if args.no_starlette else peers.asgi_python(ROOT / "bench" / ".work")
    kserve_bin = None if args.no_kserve else peers.kserve_venv(ROOT / "bench" / ".work")
    candidates = servers.specs(WORK, asgi, mlserver_bin, kserve_bin)
    chosen = [spec for spec in candidates if not args.servers or spec.name in args.servers]

    floor = {key: workload.predict_floor_us(m, cpu=method.SERVER_CPU) for key, m in models.items()}
    print(f"[bench] in-process predict() µs (1 row, 64 rows): {floor}", flush=True)
    stalls = {"before": cpu_stalls.measure(method.SERVER_CPU, args.stall_probe_seconds)}
    print(f"[bench] server CPU steadiness before: {stalls['before']}", flush=True)
    runs: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        order = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
        for model in models.values():
            for spec in order:
                _measure(spec, model, round_index, args, wrk_path, script, body, runs, starts)

    stalls["after"] = cpu_stalls.measure(method.SERVER_CPU, args.stall_probe_seconds)
    print(f"[bench] server CPU steadiness after: {stalls['after']}", flush=True)
    results = {
        "benchmark": "serving",
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**_machine(), "cpu_stalls": stalls},
        "versions": _versions(mlserver_bin, kserve_bin),
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "server_cpu": method.SERVER_CPU,
            "load_cpu": method.LOAD_CPU,
            "request_bytes": len(body),
            # ours runs its native modules, as the image does (servers.native_env)
            "ours_build": "native (mypyc: setup.py NATIVE_MODULES, scripts/native.py)",
        },
        "models": {k: {"label": m.label, "sha256": m.sha256} for k, m in models.items()},
        "servers": {spec.name: {"label": spec.label, "role": spec.role} for spec in chosen},
        "predict_floor_us": floor,
        "runs": runs,
        "starts": starts,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    _render(results, RESULTS / ("serving-quick.json" if args.quick else "serving.json"))


def _render(results: dict[str, Any], path: Path) -> None:
    """Summary and targets into the JSON; the table printed and, for full runs, into the docs."""
    results["summary"] = report.summarize(results)
    results["targets"] = report.targets(results)
    path.write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    if results["mode"] == "full":
        report.update_docs(ROOT / "docs" / "serving.md", table)
    print(table)


def _measure(
    spec: servers.ServerSpec,
    model: workload.BenchModel,
    round_index: int,
    args: argparse.Namespace,
    wrk_path: str,
    script: Path,
    body: bytes,
    runs: list[dict[str, Any]],
    starts: list[dict[str, Any]],
) -> None:
    log = WORK / "logs" / f"{spec.name}-{model.key}-{round_index}.log"
    log.parent.mkdir(exist_ok=True)
    server = servers.RunningServer(spec, model, cpu=method.SERVER_CPU, log=log)
    try:
        cold_start = server.wait_first_prediction(body)
        url = f"http://127.0.0.1:{spec.port}{model.infer_path}"
        for run in method.measure(server, wrk_path, url, script, args):
            connections = run["connections"]
            runs.append({"model": model.key, "server": spec.name, "round": round_index, **run})
            print(
                f"[bench] round {round_index} {model.key} {spec.name} c={connections}: "
                f"{run['rps']:.0f} req/s, p50 {run['p50_ms']:.2f} ms, "
                f"p99 {run['p99_ms']:.2f} ms, {run['cpu_us_per_request']} µs CPU/req"
                + (f", {run['non_2xx']} non-2xx" if run["non_2xx"] else ""),
                flush=True,
            )
        starts.append(
            {
                "model": model.key,
                "server": spec.name,
                "round": round_index,
                "cold_start_s": round(cold_start, 3),
                "rss_mb": round(server.rss_bytes() / 2**20, 1),
            }
        )
    finally:
        server.stop()
        time.sleep(0.5)  # let the port and the CPU settle before the next server


def _arguments() -> argparse.Namespace:
    parser = method.options(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["rf", "lr"], choices=["rf", "lr"])
    parser.add_argument("--servers", nargs="+", help="only these server names")
    parser.add_argument("--no-mlserver", action="store_true", help="skip the MLServer peer")
    parser.add_argument("--no-kserve", action="store_true", help="skip the KServe peer")
    parser.add_argument("--no-starlette", action="store_true", help="skip the Starlette floor")
    parser.add_argument("--report", type=Path, help="only re-render the table from this JSON")
    parser.add_argument(
        "--stall-probe-seconds",
        type=float,
        default=8.0,
        help="how long to probe the server CPU's steadiness before and after (cpu_stalls.py)",
    )
    return method.parse(parser)


def _machine() -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }


def _versions(mlserver_bin: Path | None, kserve_bin: Path | None) -> dict[str, Any]:
    from importlib.metadata import version

    ours = {p: version(p) for p in ("aiohttp", "orjson", "numpy", "scikit-learn", "joblib")}
    result: dict[str, Any] = {"modeldeploy": ours, "wrk": "debian package"}
    if mlserver_bin is not None:
        result["mlserver"] = peers.installed_versions(
            mlserver_bin, ["mlserver", "mlserver-sklearn", "uvloop", "scikit-learn"]
        )
    if kserve_bin is not None:
        result["kserve"] = peers.installed_versions(
            kserve_bin, ["kserve", "scikit-learn", "fastapi", "uvicorn", "uvloop"]
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
