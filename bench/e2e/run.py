"""`make bench-e2e`: the local cluster's real node, measured through real containers.

1. `make cluster-up` with the real node: warm (caches filled, `.cluster` absent), median of 3;
   with `--cold` also once from an empty image cache (see bench/e2e/startup.py for exactly what
   is cold). Without `--cold` the last recorded cold run is kept in the JSON.
2. First failed request → the canary out of the Service's ready endpoints (EndpointSlices),
   end to end: a model that fails every real request rolled out as a canary under steady load
   through the ClusterIP, the real sidecar (default 2 s scrape interval) writing its pod's
   condition, the chart's operator in the cluster scaling the canary to zero. ≥ 10 rollbacks.
   Also the last failed answer: clients kept alive on the canary until its drain told them to
   reconnect.
3. `kubectl apply` of a new ModelDeployment → the first 200 answer through its Service's ClusterIP.
4. Requests dropped (non-2xx and connection errors) during a promotion at a steady 200 req/s.

Times are `time.monotonic()` in this process: a client's answers as they arrive, watch events of
EndpointSlices and Deployments as they arrive. The machine is shared: its load average is
recorded before and after each part. Results: bench/results/e2e.json, a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.e2e import measure, startup  # noqa: E402
from bench.rollback.run import percentile  # noqa: E402
from tests.kube import BACKENDS  # noqa: E402

OUT = ROOT / "bench" / "results" / "e2e.json"
TARGETS = {
    "cold_cluster_up_s": 900,
    "warm_cluster_up_s": 30,
    "rollback_p50_s": 2.0,
    "apply_to_first_prediction_s": 15,
    "dropped_during_promotion": 0,
}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
    }


def machine() -> dict[str, Any]:
    """The shared machine right now: its load and the other local clusters running on it."""
    apiservers = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "kube-apiserver":
                apiservers += 1
        except OSError:
            continue
    return {
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "kube_apiservers_running": apiservers,
    }


def measure_all(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """(2)-(4) on the running cluster, each with the machine's state before and after."""
    with BACKENDS["local"]() as cluster, tempfile.TemporaryDirectory() as tmp:
        cluster.apply_crds()
        with measure.setup(cluster, Path(tmp)) as e2e:
            parts = [
                ("apply_to_first_prediction", lambda: measure.first_prediction(e2e, args.applies)),
                (
                    "promotion_at_steady_rate",
                    lambda: measure.promotions(e2e, args.promotions, args.rate),
                ),
                (
                    "failed_request_to_out_of_endpoints",
                    lambda: measure.rollbacks(e2e, args.rollbacks, args.rollback_rate),
                ),
            ]
            for key, run in parts:
                print(f"{key} ...", file=sys.stderr)
                before = machine()
                samples = run()
                result[key] = {"machine_before": before, "machine_after": machine()}
                result[key]["samples"] = samples
                numeric = [k for k, v in samples[0].items() if isinstance(v, int | float)]
                result[key].update({k: summary([s[k] for s in samples]) for k in numeric})


def targets(result: dict[str, Any]) -> dict[str, Any]:
    warm = result["cluster_up_warm"]["seconds"]["p50"]
    cold = result.get("cluster_up_cold", {}).get("seconds")
    rollback = result["failed_request_to_out_of_endpoints"]["to_out_of_endpoints_s"]["p50"]
    first = result["apply_to_first_prediction"]["to_first_200_s"]["p50"]
    dropped = sum(s["dropped"] for s in result["promotion_at_steady_rate"]["samples"])
    met = {
        "cold_cluster_up_s": None if cold is None else cold <= TARGETS["cold_cluster_up_s"],
        "warm_cluster_up_s": warm <= TARGETS["warm_cluster_up_s"],
        "rollback_p50_s": rollback <= TARGETS["rollback_p50_s"],
        "apply_to_first_prediction_s": first <= TARGETS["apply_to_first_prediction_s"],
        "dropped_during_promotion": dropped <= TARGETS["dropped_during_promotion"],
    }
    return {"targets": TARGETS, "met": met}


_LAST = "to_last_failed_answer_s"


def table(result: dict[str, Any]) -> str:
    cold = result.get("cluster_up_cold")
    warm = result["cluster_up_warm"]["seconds"]
    first = result["apply_to_first_prediction"]
    back = result["failed_request_to_out_of_endpoints"]
    promo = result["promotion_at_steady_rate"]
    dropped = [s["dropped"] for s in promo["samples"]]
    rows = [
        "| measure | n | p50 | p99 / max | target |",
        "|---|---|---|---|---|",
        f"| warm `make cluster-up` (real node, image imported) | {warm['n']} | {warm['p50']} s "
        f"| {warm['max']} s | ≤ 30 s |",
    ]
    if cold:
        rows.append(
            f"| cold `make cluster-up` (image cache empty, Go binaries cached; "
            f"{cold['measured_at']}) | 1 | {cold['seconds']} s | | ≤ 900 s |"
        )
    rows += [
        _row(
            "first failed request → canary out of the EndpointSlices",
            back["to_out_of_endpoints_s"],
            "p50 ≤ 2 s",
        ),
        _row("… → the sidecar's condition seen", back["to_condition_s"]),
        _row("… → canary Deployment at 0 replicas", back["to_scaled_to_zero_s"]),
        *(
            [_row("… → the last failed answer (kept-alive clients)", back[_LAST])]
            if _LAST in back
            else []
        ),
        f"| … failed requests before it left | {back['failed_requests']['n']} | "
        f"{back['failed_requests']['p50']:g} | {back['failed_requests']['max']:g} | |",
        _row(
            "`kubectl apply` → first 200 through the ClusterIP", first["to_first_200_s"], "≤ 15 s"
        ),
        _row("… → the Service exists", first["to_service_s"]),
        f"| requests dropped during a promotion at {promo['samples'][0]['achieved_rate']:g}"
        f"-{max(s['achieved_rate'] for s in promo['samples']):g} req/s (non-2xx + connection "
        f"errors, of {sum(s['requests'] for s in promo['samples'])}) | {len(dropped)} | "
        f"{statistics.median(dropped):g} | {max(dropped)} | 0 |",
    ]
    return "\n".join(rows)


def _row(what: str, s: dict[str, float], target: str = "") -> str:
    return f"| {what} | {s['n']} | {s['p50']:.3f} s | {s['p99']:.3f} s | {target} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time one cold cluster-up")
    parser.add_argument("--startup-only", action="store_true", help="only the cluster-up times")
    parser.add_argument("--warm-reps", type=int, default=3)
    parser.add_argument("--rollbacks", type=int, default=12, help=">= 10")
    parser.add_argument("--rollback-rate", type=float, default=40, help="req/s during rollbacks")
    parser.add_argument("--applies", type=int, default=5)
    parser.add_argument("--promotions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200, help="req/s during promotions")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    previous: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result: dict[str, Any] = (
        {"cluster_up_cold": previous["cluster_up_cold"]} if ("cluster_up_cold" in previous) else {}
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    print(f"make's output in {logs}", file=sys.stderr)
    result["machine_at_start"] = {"cpus": os.cpu_count(), **machine()}
    if args.cold:
        result["cluster_up_cold"] = startup.cold(logs)
    if args.startup_only:
        _write(args.out, result)
        return 0
    warm = startup.warm(args.warm_reps, logs)
    warm["seconds"] = summary([r["seconds"] for r in warm["runs"]])
    result["cluster_up_warm"] = warm
    measure_all(args, result)
    result.update(targets(result))
    result["machine_at_end"] = machine()
    _write(args.out, result)
    print(table(result))
    return 0


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
