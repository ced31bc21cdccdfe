"""`make bench-rollback`: how fast a breach takes a canary out of rotation.

1. Reaction (KWOK pods, the operator alone): the benchmark writes the breaching pod condition
   itself, with the sidecar's own credentials (a TokenRequest token of the `modeldeploy-monitor`
   ServiceAccount), and times from the moment it sends that PATCH to the canary Deployment at
   `spec.replicas: 0` AND the canary pod out of the Service's EndpointSlice ready endpoints.
   At least 30 rollbacks, one after the other, on one ModelDeployment; p50/p99.
2. End to end (real `modeldeploy-server` and `modeldeploy-monitor` processes, see
   tests/helpers/pod_runtime.py): a canary whose model fails every request, under a load
   generator routed like the Service; from the first failed response to the same two facts.
   A 5 s window, minRequests 5, for two scrape intervals: 0.2 s and the 2 s default.

Every time is `time.monotonic()` in this process: the PATCH send, the failed response, and the
watch events (deployments, EndpointSlices, pods) as they arrive here. The operator's own
`modeldeploy_rollbacks_total` and `modeldeploy_time_to_rollback_seconds` are reported too.
Results: bench/results/rollback.json, and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.helpers.monitor_proc import token_kubeconfig  # noqa: E402
from tests.helpers.operator_proc import OperatorProcess  # noqa: E402
from tests.helpers.pod_runtime import ListWatch, LoadGenerator, PodRuntime  # noqa: E402
from tests.kube import BACKENDS, KubeCluster, namespace_manifest, wait_until  # noqa: E402
from tests.serving.models import SavedModel, train_classifier, train_failing  # noqa: E402

from modeldeploy import names  # noqa: E402
from modeldeploy.status import state_from_status  # noqa: E402

NAMESPACE = "rollback-bench"  # outside the globs other operators watch (op-*, bench-*)
TARGET_P50_S, TARGET_P99_S = 0.5, 2.0
FLAGGER = {
    "interval_default_s": 60,
    "rollback_after": "interval * threshold (failed checks)",
    "minimum_s_at_default_interval": 60,
    "documented_example": "interval 1m, threshold 10: 10 min",
    "source": "https://docs.flagger.app/usage/deployment-strategies "
    "(fluxcd/flagger docs/gitbook/usage/deployment-strategies.md)",
}


# --- what the benchmark sees, timestamped as it arrives -------------------------------------------


class Observer:
    """When each Deployment reached 0 replicas, and when each pod left the ready endpoints."""

    def __init__(self, cluster: KubeCluster, namespace: str, md: str) -> None:
        self.changed = threading.Condition()
        self.zero_at: dict[str, float] = {}  # Deployment -> first seen with spec.replicas 0
        self.ready: set[str] = set()  # pods ready in the Service's EndpointSlices now
        self.left_at: dict[str, float] = {}  # pod -> when it left them
        self.condition_at: dict[str, float] = {}  # pod -> first seen MetricsHealthy=False
        self.deployments = ListWatch(
            cluster,
            lambda api: client.AppsV1Api(api).list_namespaced_deployment,
            namespace,
            f"{names.LABEL_NAME}={md}",
            self._on_deployment,
        )
        self.slices = ListWatch(
            cluster,
            lambda api: client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
            namespace,
            f"kubernetes.io/service-name={names.service_name(md)}",
            self._on_slice,
        )

    @contextmanager
    def running(self) -> Iterator[Observer]:
        self.deployments.start()
        self.slices.start()
        try:
            yield self
        finally:
            for watching in (self.deployments, self.slices):
                watching.stop(wait=False)
            for watching in (self.deployments, self.slices):
                watching.stop()

    def _on_deployment(self, kind: str, obj: dict[str, Any], at: float) -> None:
        with self.changed:
            name = obj["metadata"]["name"]
            if kind == "DELETED" or obj["spec"].get("replicas") == 0:
                self.zero_at.setdefault(name, at)
            else:
                self.zero_at.pop(name, None)
            self.changed.notify_all()

    def _on_slice(self, kind: str, obj: dict[str, Any], at: float) -> None:
        ready = {
            e["targetRef"]["name"]
            for eps in self.slices.snapshot()
            for e in eps.get("endpoints") or []
            if e.get("conditions", {}).get("ready") and e.get("targetRef")
        }
        with self.changed:
            for pod in self.ready - ready:
                self.left_at.setdefault(pod, at)
            self.ready = ready
            self.changed.notify_all()

    def on_pod(self, kind: str, pod: dict[str, Any], at: float) -> None:
        """A PodRuntime hook: when the sidecar's breach reached the API server."""
        for cond in pod.get("status", {}).get("conditions", []):
            if cond["type"] == names.POD_COND_METRICS_HEALTHY and cond["status"] == "False":
                with self.changed:
                    self.condition_at.setdefault(pod["metadata"]["name"], at)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        with self.changed:
            result = self.changed.wait_for(predicate, timeout)
        if not result:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        return result

    def ready_pod(self, md: str, revision: int, timeout: float = 60) -> str:
        """A pod of that revision once it is ready in the Service's EndpointSlices."""
        prefix = f"{names.revision_name(md, revision)}-"

        def found() -> str | None:
            return next((p for p in self.ready if p.startswith(prefix)), None)

        return str(self.wait(found, timeout, f"a ready endpoint of r{revision}"))

    def out_of_rotation(self, md: str, revision: int, pod: str, timeout: float = 30) -> float:
        """When both held: the Deployment at zero and the pod out of the ready endpoints."""
        deployment = names.revision_name(md, revision)
        self.wait(lambda: deployment in self.zero_at and pod in self.left_at, timeout, "rollback")
        return max(self.zero_at[deployment], self.left_at[pod])


# --- the ModelDeployments -----------------------------------------------------------------------


def manifest(md: str, version: str, model: dict[str, str], **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": md, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": md, "version": version, **model},
            "replicas": 1,
            # The canary waits at its first step: only a breach moves it.
            "rollout": {"steps": [{"weight": 50, "pause": "1h"}], "bakeTime": "0s"},
            "analysis": {"window": "5s", "minRequests": 5, **analysis},
        },
    }


def fake_model(md: str, version: int) -> dict[str, str]:
    """Nothing loads it: KWOK runs no container."""
    return {"uri": f"https://models.example/{md}/{version}.joblib", "sha256": "0" * 64}


def saved(model: SavedModel) -> dict[str, str]:
    return {"uri": model.uri, "sha256": model.sha256, "format": model.format}


def apply(cluster: KubeCluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def wait_proven(cluster: KubeCluster, md: str, timeout: float = 60) -> None:
    def proven() -> bool:
        status = cluster.get_json("md", md, "-n", NAMESPACE).get("status") or {}
        stable = state_from_status(status).stable
        return bool(stable and stable.proven)

    wait_until(proven, timeout, f"{md}: r1 proven healthy", interval=0.2)


def verdict(status: str, reason: str, message: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": names.POD_COND_METRICS_HEALTHY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastProbeTime": now,
    }
    return {"status": {"conditions": [condition]}}


# --- 1. the operator's reaction ---------------------------------------------------------------


def reaction(cluster: KubeCluster, count: int, workdir: Path) -> list[dict[str, float]]:
    """`count` rollbacks in a row; the breach is written by hand, as the sidecar would."""
    md = "react"
    apply(cluster, manifest(md, "0", fake_model(md, 0)))

    def sidecar(pod: str) -> Callable[[dict[str, Any]], None]:
        """That pod's sidecar identity: a token bound to the pod, as the admission policy wants
        (minted before the clock starts)."""
        obj = cluster.get_json("pod", pod, "-n", NAMESPACE)
        path = workdir / f"{pod}.sidecar.kubeconfig"
        kubeconfig = token_kubeconfig(cluster, NAMESPACE, path, pod=obj)
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

        def patch(body: dict[str, Any]) -> None:
            api.patch_namespaced_pod_status(
                pod, NAMESPACE, body, _content_type="application/strategic-merge-patch+json"
            )

        return patch

    samples = []
    with Observer(cluster, NAMESPACE, md).running() as seen:
        stable = seen.ready_pod(md, 1)
        sidecar(stable)(
            verdict("True", names.REASON_WITHIN_THRESHOLDS, "errorRate 0 <= 0.1 (bench)")
        )
        wait_proven(cluster, md)
        for i in range(1, count + 1):
            revision = i + 1
            apply(cluster, manifest(md, str(i), fake_model(md, i)))
            pod = seen.ready_pod(md, revision)
            patch = sidecar(pod)
            sent = time.monotonic()
            patch(verdict("False", names.REASON_METRIC_BREACH, "errorRate 1 > 0.1 (bench)"))
            patched = time.monotonic()
            done = seen.out_of_rotation(md, revision, pod)
            samples.append(
                {
                    "patch_rtt_s": patched - sent,
                    "to_scaled_to_zero_s": seen.zero_at[names.revision_name(md, revision)] - sent,
                    "to_out_of_endpoints_s": seen.left_at[pod] - sent,
                    "to_out_of_rotation_s": done - sent,
                }
            )
            print(f"  rollback {i}/{count}: {done - sent:.3f}s", file=sys.stderr)
    return samples


# --- 2. end to end, real processes ---------------------------------------------------------------


def end_to_end(
    cluster: KubeCluster, scrape_interval: float, reps: int, workdir: Path
) -> list[dict[str, float]]:
    md = f"e2e-{str(scrape_interval).replace('.', '')}"
    good, bad = train_classifier(workdir), train_failing(workdir, failure_rate=1.0)
    flags = {"scrape-interval-seconds": str(scrape_interval)}
    observer = Observer(cluster, NAMESPACE, md)
    runtime = PodRuntime(cluster, NAMESPACE, md, workdir / md, flags, on_pod=observer.on_pod)
    samples = []
    with observer.running() as seen, runtime:
        load = LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=60 + 30 * reps)
        with load:
            thresholds = {"thresholds": {"errorRate": 0.1, "latencyP99Ms": 2000}}
            apply(cluster, manifest(md, "good", saved(good), **thresholds))
            wait_proven(cluster, md)
            for rep in range(reps):
                revision = rep + 2
                apply(cluster, manifest(md, f"bad-{rep}", saved(bad), **thresholds))
                pod = seen.ready_pod(md, revision)
                done = seen.out_of_rotation(md, revision, pod, timeout=60)
                canary = [r for r in load.snapshot() if r.revision == revision]
                failed = [r.done for r in canary if r.status >= 500 and r.done <= done]
                first = min(failed)
                samples.append(
                    {
                        "to_condition_s": seen.condition_at[pod] - first,
                        "to_out_of_rotation_s": done - first,
                        "failed_requests": len(failed),
                    }
                )
                print(f"  e2e {scrape_interval}s #{rep + 1}: {done - first:.3f}s", file=sys.stderr)
        if runtime.errors():
            raise AssertionError(f"process errors: {runtime.errors()}")
    return samples


# --- reporting ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def operator_metrics(operator: OperatorProcess) -> dict[str, Any]:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    rollbacks: dict[str, float] = {}
    hist: dict[str, Any] = {"buckets": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modeldeploy_rollbacks_total":
                rollbacks[s.labels["reason"]] = s.value
            elif s.name == "modeldeploy_time_to_rollback_seconds_bucket":
                hist["buckets"][s.labels["le"]] = s.value
            elif s.name in ("modeldeploy_time_to_rollback_seconds_count",):
                hist["count"] = s.value
            elif s.name == "modeldeploy_time_to_rollback_seconds_sum":
                hist["sum"] = s.value
    if hist.get("count"):
        hist["mean_s"] = hist["sum"] / hist["count"]
        hist["p50_bucket_le"] = _bucket_quantile(hist["buckets"], hist["count"], 0.5)
        hist["p99_bucket_le"] = _bucket_quantile(hist["buckets"], hist["count"], 0.99)
    return {"modeldeploy_rollbacks_total": rollbacks, "modeldeploy_time_to_rollback_seconds": hist}


def _bucket_quantile(buckets: dict[str, float], count: float, q: float) -> str:
    """The upper bound of the bucket holding the q-quantile (a histogram knows no more)."""
    return next(
        le for le, c in sorted(buckets.items(), key=lambda b: float(b[0])) if c >= q * count
    )


def table(result: dict[str, Any]) -> str:
    react = result["reaction"]["to_out_of_rotation_s"]
    rows = [
        "| Measurement | n | p50 | p99 | max | Target |",
        "|---|---|---|---|---|---|",
        _row(
            "PATCH of the condition → canary at 0 replicas AND out of ready endpoints",
            react,
            f"p50 ≤ {TARGET_P50_S} s, p99 ≤ {TARGET_P99_S} s",
        ),
        _row("… → canary Deployment spec.replicas 0", result["reaction"]["to_scaled_to_zero_s"]),
        _row("… → pod out of EndpointSlice ready", result["reaction"]["to_out_of_endpoints_s"]),
        _row("the PATCH itself (round trip)", result["reaction"]["patch_rtt_s"]),
    ]
    for interval, e2e in result["end_to_end"].items():
        what = f"first failed request → out of rotation (window 5 s, scrape {interval} s)"
        rows.append(_row(what, e2e["to_out_of_rotation_s"]))
        what = f"… of which: to the sidecar's condition seen (scrape {interval} s)"
        rows.append(_row(what, e2e["to_condition_s"]))
        failed = e2e["failed_requests"]
        rows.append(
            f"| … failed requests the canary answered before it left (scrape {interval} s) | "
            f"{failed['n']} | {failed['p50']:g} | {failed['p99']:g} | {failed['max']:g} | |"
        )
    hist = result["operator_metrics"]["modeldeploy_time_to_rollback_seconds"]
    rows.append(
        f"| operator histogram `modeldeploy_time_to_rollback_seconds` (from lastTransitionTime, "
        f"1 s resolution) | {hist.get('count', 0):g} | ≤ {hist.get('p50_bucket_le')} | "
        f"≤ {hist.get('p99_bucket_le')} | mean {hist.get('mean_s', 0):.3f} | |"
    )
    counted = result["operator_metrics"]["modeldeploy_rollbacks_total"]
    rows.append(f"| operator counter `modeldeploy_rollbacks_total` by reason | {counted} | | | | |")
    rows.append(
        f"| Flagger (documented): interval x threshold | | "
        f"{FLAGGER['minimum_s_at_default_interval']} s minimum (default interval 1m, threshold 1) "
        f"| | | |"
    )
    return "\n".join(rows)


def _row(what: str, s: dict[str, float], target: str = "") -> str:
    return (
        f"| {what} | {s['n']} | {s['p50']:.3f} s | {s['p99']:.3f} s | {s['max']:.3f} s | {target} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollbacks", type=int, default=40, help="reaction samples (>= 30)")
    parser.add_argument("--e2e-reps", type=int, default=3, help="end-to-end repetitions each")
    parser.add_argument("--scrape-intervals", default="0.2,2", help="sidecar scrape intervals")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rollback.json")
    args = parser.parse_args()

    with BACKENDS["local"]() as cluster, tempfile.TemporaryDirectory() as tmp:
        cluster.apply_crds()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", timeout=180)
        cluster.kubectl("create", "-f", "-", input=namespace_manifest(NAMESPACE))
        operator = OperatorProcess(cluster, namespaces=[NAMESPACE], allow_file_uris=True)
        operator.start()
        load_before = os.getloadavg()
        try:
            print(f"reaction: {args.rollbacks} rollbacks", file=sys.stderr)
            react = reaction(cluster, args.rollbacks, Path(tmp))
            e2e = {}
            for interval in (float(v) for v in args.scrape_intervals.split(",")):
                print(f"end to end, scrape {interval}s", file=sys.stderr)
                e2e[f"{interval:g}"] = end_to_end(cluster, interval, args.e2e_reps, Path(tmp))
            metrics = operator_metrics(operator)
        finally:
            operator.stop()
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)

    keys = ("patch_rtt_s", "to_scaled_to_zero_s", "to_out_of_endpoints_s", "to_out_of_rotation_s")
    result: dict[str, Any] = {
        "reaction": {k: summary([s[k] for s in react]) for k in keys},
        "end_to_end": {
            interval: {
                k: summary([s[k] for s in samples])
                for k in ("to_condition_s", "to_out_of_rotation_s", "failed_requests")
            }
            for interval, samples in e2e.items()
        },
        "operator_metrics": metrics,
        "targets": {"p50_s": TARGET_P50_S, "p99_s": TARGET_P99_S},
        "flagger": FLAGGER,
        "environment": {
            "cpus": os.cpu_count(),
            "loadavg_1m_before": load_before[0],
            "loadavg_1m_after": os.getloadavg()[0],
        },
        "samples": {"reaction": react, "end_to_end": e2e},
    }
    reaction_p = result["reaction"]["to_out_of_rotation_s"]
    result["targets"]["met"] = (
        reaction_p["p50"] <= TARGET_P50_S and reaction_p["p99"] <= TARGET_P99_S
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
