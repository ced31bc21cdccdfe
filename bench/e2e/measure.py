"""The real-node measurements of `make bench-e2e`: each takes the e2e tier's setup (the chart's
operator in the cluster, the example models served to the node) and returns plain samples."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.rollback.run import Observer
from kubernetes import client
from tests.e2e.conftest import (
    E2E,
    ModelStore,
    built_image,
    example_models,
    find_real_node,
    installed,
    model_manifest,
)
from tests.e2e.test_real_node import INFER
from tests.helpers.load import Load, Sample
from tests.helpers.pod_runtime import ListWatch
from tests.helpers.rollout_driver import ModelDeploymentDriver, is_ready
from tests.kube import KubeCluster, free_port, wait_until

from modeldeploy import names
from modeldeploy.status import state_from_status

PREFIX = "e2ebench"
# Every rollback in (2) is a canary waiting at its first step: only a breach moves it.
WAIT_FOR_BREACH = {
    "replicas": 1,
    "autoscaling": {"enabled": False},
    "rollout": {"steps": [{"weight": 50, "pause": "1h"}], "bakeTime": "0s"},
    "analysis": {"window": "5s", "minRequests": 5},
}
# (4): two fixed replicas, one 50 % step, a short bake; the HPA left out so that only the
# promotion changes the pods.
PROMOTION = {
    "replicas": 2,
    "autoscaling": {"enabled": False},
    "rollout": {"steps": [{"weight": 50, "pause": "10s"}], "bakeTime": "10s"},
    "analysis": {"window": "5s", "minRequests": 5},
}


@contextmanager
def setup(cluster: KubeCluster, workdir: Path) -> Iterator[E2E]:
    """What the e2e tier's fixtures make: the chart's operator from the built image, and the
    example models served on the node's IP."""
    node = find_real_node(cluster)
    image = built_image()
    if image is None:
        raise RuntimeError("no serving image for these sources: run `make image`")
    digests = example_models.train(workdir)
    port = free_port(node.ip)
    example_models.serve(workdir, node.ip, port)
    with ExitStack() as stack:
        stack.callback(example_models.stop, workdir)
        store = ModelStore(workdir, node.ip, port, digests)
        yield stack.enter_context(installed(cluster, node, image, store, PREFIX))


def apply(e2e: E2E, namespace: str, name: str, model: str, label: str, spec: Any) -> None:
    """Model `model` of the store under the version label `label` (a new spec each time)."""
    body = model_manifest(e2e, namespace, name, model, **spec)
    body["spec"]["model"]["version"] = label
    e2e.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def url(driver: ModelDeploymentDriver) -> str | None:
    service = driver.service()
    if service is None or not service["spec"].get("clusterIP"):
        return None
    ip = service["spec"]["clusterIP"]
    return f"http://{ip}:{names.SERVICE_PORT}/v2/models/iris/infer"


def answers(target: str) -> bool:
    request = urllib.request.Request(
        target, json.dumps(INFER).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def stable(driver: ModelDeploymentDriver, revision: int, timeout: float = 180) -> None:
    driver.wait(
        f"r{revision} Stable",
        lambda s: (
            s.get("phase") == names.PHASE_STABLE
            and (s.get("stable") or {}).get("revision") == revision
        ),
        timeout=timeout,
    )


# --- (3) apply → first prediction through the ClusterIP --------------------------------------


def first_prediction(e2e: E2E, reps: int) -> list[dict[str, float]]:
    samples = []
    for rep in range(reps):
        samples.append(_first_prediction(e2e, e2e.namespaces[0], f"first-{rep}"))
        print(f"  apply → first prediction #{rep + 1}: {samples[-1]}", file=sys.stderr)
    return samples


def _first_prediction(e2e: E2E, namespace: str, name: str) -> dict[str, float]:
    driver = ModelDeploymentDriver(e2e.cluster, namespace, name)
    applied = time.monotonic()
    apply(e2e, namespace, name, "1", "1", {})
    target = wait_until(lambda: url(driver), 30, "the Service's ClusterIP", interval=0.02)
    service_at = time.monotonic()
    wait_until(lambda: answers(target), 60, "a 200 through the ClusterIP", interval=0.05)
    answered = time.monotonic()
    e2e.cluster.kubectl("delete", "md", name, "-n", namespace, "--wait=true", timeout=120)
    wait_until(lambda: not driver.pods(None, ready_only=False), 120, f"{name}'s pods gone")
    return {
        "to_service_s": round(service_at - applied, 3),
        "to_first_200_s": round(answered - applied, 3),
    }


# --- (4) a promotion at a steady rate ---------------------------------------------------------


def promotions(e2e: E2E, reps: int, rate: float) -> list[dict[str, Any]]:
    namespace, name = e2e.namespaces[1], "steady"
    driver = ModelDeploymentDriver(e2e.cluster, namespace, name)
    apply(e2e, namespace, name, "1", "1-0", PROMOTION)
    stable(driver, 1)
    target = url(driver)
    assert target is not None
    wait_until(lambda: answers(target), 60, "a 200 through the ClusterIP")
    samples = []
    with Load(target, INFER, rate=rate, connections=16) as load:
        time.sleep(3)
        for rep in range(reps):
            revision = rep + 2
            model = "2" if rep % 2 == 0 else "1"
            start = time.monotonic()
            apply(e2e, namespace, name, model, f"{model}-{rep + 1}", PROMOTION)
            stable(driver, revision)
            old = driver.selector(revision - 1)
            wait_until(
                lambda old=old: not driver.objects("v1", "pods", old),
                120,
                "the old revision's pods gone",
            )
            time.sleep(2)  # answers still in flight
            end = time.monotonic()
            seen = [s for s in load.since(start) if s.at <= end]
            samples.append(_counts(seen, end - start))
            print(f"  promotion r{revision - 1} → r{revision}: {samples[-1]}", file=sys.stderr)
    return samples


def _counts(seen: list[Sample], seconds: float) -> dict[str, Any]:
    latencies = sorted(s.done - s.at for s in seen if s.status == 200)
    return {
        "seconds": round(seconds, 1),
        "requests": len(seen),
        "achieved_rate": round(len(seen) / seconds, 1),
        "non_2xx": sum(1 for s in seen if s.status and not 200 <= s.status < 300),
        "connection_errors": sum(1 for s in seen if s.status == 0),
        "dropped": sum(1 for s in seen if not 200 <= s.status < 300),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "latency_p99_ms": (
            round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None
        ),
        "versions": {str(k): v for k, v in _versions(seen).items()},
    }


def _versions(seen: list[Sample]) -> dict[str | None, int]:
    found: dict[str | None, int] = {}
    for s in seen:
        if s.status == 200:
            found[s.version] = found.get(s.version, 0) + 1
    return found


# --- (2) first failed request → out of the Service's endpoints --------------------------------


def rollbacks(e2e: E2E, reps: int, rate: float) -> list[dict[str, float]]:
    namespace, name = e2e.namespaces[2], "breaker"
    driver = ModelDeploymentDriver(e2e.cluster, namespace, name)
    apply(e2e, namespace, name, "1", "1", WAIT_FOR_BREACH)
    stable(driver, 1)
    target = url(driver)
    assert target is not None
    wait_until(lambda: answers(target), 60, "a 200 through the ClusterIP")
    observer = Observer(e2e.cluster, namespace, name)
    pods = ListWatch(
        e2e.cluster,
        lambda api: client.CoreV1Api(api).list_namespaced_pod,
        namespace,
        driver.selector(),
        observer.on_pod,
    )
    samples = []
    with observer.running() as seen, _watching(pods), Load(target, INFER, rate=rate) as load:
        time.sleep(2)
        for rep in range(reps):
            revision = state_from_status(driver.status()).next_revision
            applied = time.monotonic()
            apply(e2e, namespace, name, "3", f"3-{rep + 1}", WAIT_FOR_BREACH)
            pod = seen.ready_pod(name, revision, timeout=120)
            done = seen.out_of_rotation(name, revision, pod, timeout=60)
            failed = [s.done for s in load.since(applied) if s.status != 200 and s.done <= done]
            first = min(failed)
            # The pods' watch is its own stream: the condition may arrive a moment later.
            wait_until(lambda p=pod: p in seen.condition_at, 10, "the breach condition seen")
            left, zero = seen.left_at[pod], seen.zero_at[names.revision_name(name, revision)]
            samples.append(
                {
                    "to_condition_s": seen.condition_at[pod] - first,
                    "to_out_of_endpoints_s": left - first,
                    "to_scaled_to_zero_s": zero - first,
                    "failed_requests": len(failed),
                }
            )
            print(f"  rollback #{rep + 1}: {left - first:.3f} s", file=sys.stderr)
            driver.wait(
                f"r{revision} rolled back",
                lambda s: s.get("phase") == names.PHASE_ROLLED_BACK,
                timeout=60,
            )
            wait_until(
                lambda r=revision: (
                    not any(is_ready(p) for p in driver.objects("v1", "pods", driver.selector(r)))
                ),
                60,
                "the canary's pod gone",
            )
            # What clients see: kept-alive connections outlive the endpoint's removal.
            last = max(s.done for s in load.since(applied) if s.status != 200)
            samples[-1]["to_last_failed_answer_s"] = last - first
    return samples


@contextmanager
def _watching(watch: ListWatch) -> Iterator[ListWatch]:
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()
