"""A DataFrame pipeline served three ways: modeldeploy-server (v2 per-column tensors and v1
records), MLServer (v2 `content_type: "pd"`, PandasCodec) and KServe's sklearn server (v1 dict
instances). Same model file, same row, same run. Not a test: it measures, it does not assert.

    python bench/serving/pipeline.py            # 10 s per run, 3 rounds (about 20 minutes)
    python bench/serving/pipeline.py --quick    # 3 s per run, 1 round

Method (the serving benchmark's, bench/serving/run.py): single-row requests from wrk on
127.0.0.1, the server pinned to CPU 0 and wrk to CPU 1, every server started fresh each round,
the servers taking turns (the order rotates by round), 3 s warm-up before each 10 s run, medians
over rounds. Before measuring, each server's prediction must equal the in-process pipeline's;
its cold start is process start → that first correct prediction; RSS is read after the runs.
Results: bench/results/pipeline.json (pipeline-quick.json for --quick) and a markdown table,
printed and (full runs only) written between the pipeline benchmark markers in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import method
import peers
import pipeline_model
import pipeline_report
import report
import servers
import workload
import wrk

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "pipeline"
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
OURS_PORT, MLSERVER_PORT, KSERVE_PORT = 18080, 18082, 18085


@dataclass(frozen=True)
class Contender:
    """A server and the request it gets: the URL path, the body, how to read the prediction."""

    spec: servers.ServerSpec
    path: str
    body: bytes
    request: str  # what the body is, for the table
    response: str  # "v2" (outputs[0].data) or "v1" (predictions)


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so every server started so far is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = _arguments()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 CPUs: one for the server, one for wrk")
    load_at_start = os.getloadavg()
    wrk_path = wrk.ensure_wrk()
    WORK.mkdir(parents=True, exist_ok=True)
    model = pipeline_model.build_model(WORK / "model")
    row = pipeline_model.request_row()
    expected = pipeline_model.expected_prediction(model, row)
    mlserver_bin = None if args.no_mlserver else peers.mlserver_venv(ROOT / "bench" / ".work")
    kserve_bin = None if args.no_kserve else peers.kserve_venv(ROOT / "bench" / ".work")
    chosen = [
        c
        for c in contenders(model, row, mlserver_bin, kserve_bin)
        if not args.servers or c.spec.name in args.servers
    ]
    floor_us = pipeline_model.predict_us(model, row, cpu=method.SERVER_CPU)
    print(f"[pipeline] in-process DataFrame + predict(): {floor_us} µs; expect {expected}")

    runs: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        order = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
        for contender in order:
            _measure(contender, model, expected, round_index, args, wrk_path, runs, starts)

    results = {
        "benchmark": "pipeline",
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "versions": _versions(mlserver_bin, kserve_bin),
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "server_cpu": method.SERVER_CPU,
            "load_cpu": method.LOAD_CPU,
            "request_rows": 1,
        },
        "model": {"label": model.label, "sha256": model.sha256, "row": row, "expected": expected},
        "predict_in_process_us": floor_us,
        "servers": {
            c.spec.name: {
                "label": c.spec.label,
                "role": c.spec.role,
                "request": c.request,
                "path": c.path,
                "request_bytes": len(c.body),
            }
            for c in chosen
        },
        "runs": runs,
        "starts": starts,
    }
    results["summary"] = pipeline_report.summarize(runs, starts)
    path = RESULTS.with_name("pipeline-quick.json") if args.quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    table = pipeline_report.markdown(results)
    if not args.quick:
        report.replace_between(
            ROOT / "README.md", pipeline_report.START, pipeline_report.END, table
        )
    print(table)


def contenders(
    model: workload.BenchModel,
    row: dict[str, Any],
    mlserver_bin: Path | None,
    kserve_bin: Path | None,
) -> list[Contender]:
    v2 = pipeline_model.v2_pandas_body(row)
    v1_records = pipeline_model.v1_records_body(row)
    v2_path = f"/v2/models/{model.key}/infer"
    v1_path = f"/v1/models/{model.key}:predict"
    v2_request = 'v2, a tensor per column (BYTES / FP64), `content_type: "pd"`'

    def ours(*extra: str) -> Any:
        return servers.ours_command(OURS_PORT, *extra)

    native = servers.native_env()  # as the image runs it
    result = [
        Contender(
            servers.ServerSpec("modeldeploy-v2", "modeldeploy", "ours", OURS_PORT, ours(), native),
            v2_path,
            v2,
            v2_request,
            "v2",
        ),
        Contender(
            servers.ServerSpec("modeldeploy-v1", "modeldeploy", "ours", OURS_PORT, ours(), native),
            v1_path,
            v1_records,
            "v1 `instances` as records (`[{column: value}]`)",
            "v1",
        ),
        Contender(
            servers.ServerSpec(
                "modeldeploy-sklearn-v2",
                "modeldeploy, `--runtime sklearn`",
                "ours",
                OURS_PORT,
                ours("--runtime", "sklearn"),
                native,
            ),
            v2_path,
            v2,
            v2_request,
            "v2",
        ),
    ]
    if mlserver_bin is not None:
        ports = {
            "MLSERVER_HTTP_PORT": str(MLSERVER_PORT),
            "MLSERVER_GRPC_PORT": str(MLSERVER_PORT + 1),
            "MLSERVER_METRICS_PORT": str(MLSERVER_PORT + 2),
        }
        tuned = {**ports, "MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_DEBUG": "false"}

        def mlserver(m: workload.BenchModel) -> list[str]:
            return [str(mlserver_bin / "mlserver"), "start", str(servers.mlserver_folder(WORK, m))]

        for name, label, env in (
            ("mlserver", "MLServer, tuned (parallel_workers=0, debug off)", tuned),
            ("mlserver-defaults", "MLServer, defaults", ports),
        ):
            spec = servers.ServerSpec(name, label, "peer", MLSERVER_PORT, mlserver, env)
            request = v2_request + " (PandasCodec)"
            result.append(Contender(spec, v2_path, v2, request, "v2"))
    if kserve_bin is not None:
        kserve_request = "v1 dict instances (`[{column: [value]}]`)"
        body = pipeline_model.kserve_instances_body(row)
        quiet = ("--enable_latency_logging", "false", "--configure_logging", "false")
        for name, label, extra in (
            ("kserve", "KServe sklearn server, defaults", ()),
            ("kserve-quiet", "KServe sklearn server, logging off", quiet),
        ):
            command = servers.kserve(kserve_bin, *extra, port=KSERVE_PORT)
            spec = servers.ServerSpec(name, label, "peer", KSERVE_PORT, command)
            result.append(Contender(spec, v1_path, body, kserve_request, "v1"))
    return result


def _measure(
    contender: Contender,
    model: workload.BenchModel,
    expected: int,
    round_index: int,
    args: argparse.Namespace,
    wrk_path: str,
    runs: list[dict[str, Any]],
    starts: list[dict[str, Any]],
) -> None:
    """Start, check the prediction, load at each connection count, stop."""
    spec = contender.spec
    log = WORK / "logs" / f"{spec.name}-{round_index}.log"
    log.parent.mkdir(exist_ok=True)
    script = workload.write_wrk_script(WORK / f"{spec.name}.lua", contender.body)
    server = servers.RunningServer(spec, model, cpu=method.SERVER_CPU, log=log)
    try:
        cold_start = _first_correct_prediction(server, contender, expected)
        runtime = _runtime(spec.port, model.key) if spec.role == "ours" else None
        url = f"http://127.0.0.1:{spec.port}{contender.path}"
        for run in method.measure(server, wrk_path, url, script, args):
            connections = run["connections"]
            runs.append({"server": spec.name, "round": round_index, **run})
            print(
                f"[pipeline] round {round_index} {spec.name} c={connections}: "
                f"{run['rps']:.0f} req/s, p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, "
                f"{run['cpu_us_per_request']} µs CPU/req"
                + (f", {run['non_2xx']} non-2xx" if run["non_2xx"] else ""),
                flush=True,
            )
        starts.append(
            {
                "server": spec.name,
                "round": round_index,
                "cold_start_s": round(cold_start, 3),
                "rss_mb": round(server.rss_bytes() / 2**20, 1),
                "runtime": runtime,
            }
        )
    finally:
        server.stop()
        time.sleep(0.5)  # let the port and the CPU settle before the next server


def _first_correct_prediction(
    server: servers.RunningServer, contender: Contender, expected: int, timeout: float = 120
) -> float:
    """Seconds from process start to the first response carrying the expected prediction. Until
    then any answer may come (MLServer says 400 "not ready" while it loads); a wrong prediction
    ends the run."""
    deadline = server.started + timeout
    last = "no answer"
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{contender.spec.name} exited with {server.process.returncode}")
        status, raw = _post(contender.spec.port, contender.path, contender.body)
        if status == 200:
            got = _prediction(raw, contender.response)
            if got != expected:
                raise RuntimeError(f"{contender.spec.name} predicted {got!r}, expected {expected}")
            return time.perf_counter() - server.started
        last = f"{status} {raw[:300]!r}" if status else last
        time.sleep(0.01)
    raise RuntimeError(f"{contender.spec.name}: no prediction within {timeout} s (last: {last})")


def _post(port: int, path: str, body: bytes) -> tuple[int | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None, b""
    finally:
        connection.close()


def _prediction(raw: bytes, response: str) -> Any:
    decoded = json.loads(raw)
    if response == "v1":
        return decoded["predictions"][0]
    outputs = decoded["outputs"]
    chosen = next((o for o in outputs if o["name"] in ("predict", "label")), outputs[0])
    return chosen["data"][0]


def _runtime(port: int, name: str) -> str | None:
    """What computes our predictions (the v2 metadata's `parameters.runtime`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", f"/v2/models/{name}")
        metadata = json.loads(connection.getresponse().read())
        runtime = metadata.get("parameters", {}).get("runtime")
        return str(runtime) if runtime else None
    finally:
        connection.close()


def _versions(mlserver_bin: Path | None, kserve_bin: Path | None) -> dict[str, Any]:
    from importlib.metadata import version

    ours = ("aiohttp", "orjson", "numpy", "pandas", "scikit-learn", "skl2onnx", "onnxruntime")
    result: dict[str, Any] = {"modeldeploy": {p: version(p) for p in ours}, "wrk": "debian"}
    if mlserver_bin is not None:
        result["mlserver"] = peers.installed_versions(
            mlserver_bin, ["mlserver", "mlserver-sklearn", "pandas", "scikit-learn", "uvloop"]
        )
    if kserve_bin is not None:
        result["kserve"] = peers.installed_versions(
            kserve_bin, ["kserve", "pandas", "scikit-learn", "fastapi", "uvicorn", "uvloop"]
        )
    return result


def _arguments() -> argparse.Namespace:
    parser = method.options(__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", help="only these server names")
    parser.add_argument("--no-mlserver", action="store_true", help="skip the MLServer peer")
    parser.add_argument("--no-kserve", action="store_true", help="skip the KServe peer")
    return method.parse(parser)


if __name__ == "__main__":
    sys.exit(main())
