"""On the real node: the chart's operator in the cluster, real model pods behind a Service routed
by kube-proxy, a promotion and an automatic rollback under steady load, a locked-down model
container, bad artifacts that stay unready with a reason, a killed container that is not a
breach. Every count a user would check is printed in the test output (`-rA` shows it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy import names
from tests.e2e.conftest import E2E, example_models, model_manifest
from tests.helpers.load import Load
from tests.helpers.rollout_driver import ModelDeploymentDriver, is_ready
from tests.kube import ROOT, wait_until

pytestmark = pytest.mark.e2e

FLOWERS = example_models.SAMPLE_ROWS
INFER = {
    "inputs": [
        {"name": "x", "shape": [3, 4], "datatype": "FP64", "data": [v for r in FLOWERS for v in r]}
    ]
}


class Model:
    """A ModelDeployment on the real node, as a user sees it."""

    def __init__(self, e2e: E2E, namespace: str, name: str) -> None:
        self.e2e, self.namespace, self.name = e2e, namespace, name
        self.driver = ModelDeploymentDriver(e2e.cluster, namespace, name)

    def apply(self, version: str, **spec: Any) -> None:
        body = model_manifest(self.e2e, self.namespace, self.name, version, **spec)
        self.e2e.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    def wait(self, what: str, check: Any, timeout: float = 120) -> dict[str, Any]:
        return self.driver.wait(what, check, timeout=timeout)

    def stable(self, revision: int, timeout: float = 120) -> dict[str, Any]:
        return self.wait(
            f"r{revision} Stable",
            lambda s: (
                s.get("phase") == names.PHASE_STABLE
                and (s.get("stable") or {}).get("revision") == revision
            ),
            timeout,
        )

    def url(self) -> str:
        service = self.driver.service()
        assert service is not None, "no Service"
        return f"http://{service['spec']['clusterIP']}:{names.SERVICE_PORT}/v2/models/iris/infer"

    def pods(self, revision: int | None = None) -> list[dict[str, Any]]:
        return self.driver.pods(revision, ready_only=False)

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.e2e.cluster.kubectl("-n", self.namespace, *args, check=check).stdout

    def describe(self) -> str:
        return self.kubectl("describe", "md", self.name, check=False)


@pytest.fixture
def namespace(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[str]:
    """One of the chart operator's namespaces (tests here run one after another)."""
    index = hash(request.node.name) % len(e2e.namespaces)
    yield e2e.namespaces[index]


def test_the_operator_runs_in_the_cluster_from_the_built_image(e2e: E2E) -> None:
    pods = e2e.cluster.get_json(
        "pods", "-n", e2e.operator_namespace, "-l", "app.kubernetes.io/name=modeldeploy"
    )["items"]
    assert pods, "no operator pod"
    pod = pods[0]
    assert pod["spec"]["nodeName"] == e2e.node.name
    assert pod["status"]["phase"] == "Running"
    [container] = pod["spec"]["containers"]
    assert container["image"] == e2e.image.ref
    assert not any(env.get("name") == "KUBECONFIG" for env in container.get("env", []))
    log = e2e.cluster.kubectl("logs", pod["metadata"]["name"], "-n", e2e.operator_namespace)
    assert "operator started" in log.stdout


def test_a_model_answers_through_its_service(e2e: E2E, namespace: str) -> None:
    model = Model(e2e, namespace, "first")
    model.apply("1")
    model.stable(1)
    [pod] = [p for p in model.pods(1) if is_ready(p)][:1] or [None]
    assert pod is not None and pod["spec"]["nodeName"] == e2e.node.name
    with Load(model.url(), INFER, rate=20) as load:
        time.sleep(3)
    print(f"through the ClusterIP: {load.summary()}")
    assert load.samples and not load.non_2xx() and load.connection_errors == 0
    assert load.versions() == {"1": len(load.samples)}


def test_the_model_container_is_locked_down(e2e: E2E, namespace: str) -> None:
    model = Model(e2e, namespace, "locked")
    model.apply("1")
    model.stable(1)
    pod = model.pods(1)[0]["metadata"]["name"]
    server = names.CONTAINER_SERVER

    def run(container: str, script: str) -> str:
        return model.kubectl("exec", pod, "-c", container, "--", "sh", "-c", script)

    assert run(server, "id -u").strip() == "65532"
    assert "Read-only file system" in run(server, "touch /probe 2>&1 || true")
    assert (
        run(server, "ls /var/run/secrets/kubernetes.io 2>&1 || true")
        .strip()
        .endswith("No such file or directory")
    )
    # The sidecar holds the pod's identity: a projected token, mounted only there.
    token = run(names.CONTAINER_MONITOR, "ls /var/run/secrets/kubernetes.io/serviceaccount")
    assert "token" in token.split()


def test_a_promotion_and_a_rollback_under_load_drop_nothing(e2e: E2E, namespace: str) -> None:
    model = Model(e2e, namespace, "steady")
    model.apply("1")
    model.stable(1)
    with Load(model.url(), INFER, rate=40) as load:
        time.sleep(2)
        model.apply("2")
        model.stable(2, timeout=180)
        time.sleep(3)  # the old revision's pods drain while the load goes on
        promoted_at = time.monotonic()
        print(f"promotion r1 → r2: {load.summary()}")
        assert not load.non_2xx() and load.connection_errors == 0, load.summary()
        assert set(load.versions()) == {"1", "2"}

        model.apply("3")  # answers its warm-up, fails on every real flower
        status = model.wait(
            "r3 rolled back automatically",
            lambda s: s.get("phase") == names.PHASE_ROLLED_BACK,
            timeout=180,
        )
        rolled_back_at = time.monotonic()
        time.sleep(5)
    print(f"canary r3 and its rollback: {load.summary(promoted_at)}")
    print(f"after the rollback: {load.summary(rolled_back_at + 2)}")
    assert load.connection_errors == 0, load.summary()
    assert (status.get("lastBreach") or {}).get("reason") == names.REASON_METRIC_BREACH
    assert (status.get("stable") or {}).get("revision") == 2
    failures = load.non_2xx(promoted_at)
    assert failures, "the failing canary never received traffic"
    assert all(f.status == 500 for f in failures), {f.status for f in failures}
    assert not load.non_2xx(rolled_back_at + 2), "errors after the rollback"
    assert set(load.versions(rolled_back_at + 2)) == {"2"}
    print(model.describe())


def test_a_wrong_digest_stays_unready_with_its_reason_visible(e2e: E2E, namespace: str) -> None:
    model = Model(e2e, namespace, "tampered")
    body = model_manifest(e2e, namespace, model.name, "1")
    body["spec"]["model"]["sha256"] = "0" * 64
    e2e.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_until(lambda: model.pods(1), 60, "the revision's pod")

    def reason() -> str:
        pod = model.pods(1)[0]
        statuses = pod["status"].get("containerStatuses", []) + pod["status"].get(
            "initContainerStatuses", []
        )
        texts = [
            json.dumps(s.get("state", {})) + json.dumps(s.get("lastState", {})) for s in statuses
        ]
        texts += [c.get("message", "") for c in pod["status"].get("conditions", [])]
        return " ".join(texts)

    found = wait_until(lambda: "sha256" in reason() and reason(), 90, "the digest mismatch")
    print(f"what the pod says: {found[:400]}")
    pod = model.pods(1)[0]
    assert not is_ready(pod)
    status = model.driver.status()
    assert status.get("phase") != names.PHASE_STABLE


def test_a_killed_model_container_restarts_and_is_no_breach(e2e: E2E, namespace: str) -> None:
    model = Model(e2e, namespace, "phoenix")
    model.apply("1", autoscaling={"minReplicas": 2, "maxReplicas": 3})
    model.stable(1)
    wait_until(lambda: sum(is_ready(p) for p in model.pods(1)) == 2, 60, "two ready pods")
    victim = model.pods(1)[0]
    name = victim["metadata"]["name"]
    with Load(model.url(), INFER, rate=20) as load:
        time.sleep(2)
        kill_server_container(e2e, victim)
        wait_until(
            lambda: _restarts(model, name) >= 1 and all(is_ready(p) for p in model.pods(1)),
            90,
            f"{name} restarted and ready",
        )
        time.sleep(3)
    print(f"while {name}'s server was killed and restarted: {load.summary()}")
    status = model.driver.status()
    assert status.get("phase") == names.PHASE_STABLE, status
    assert not status.get("lastBreach"), status.get("lastBreach")


def _restarts(model: Model, pod: str) -> int:
    found = model.e2e.cluster.get_json("pod", pod, "-n", model.namespace)
    statuses = found["status"].get("containerStatuses", [])
    return sum(s.get("restartCount", 0) for s in statuses if s["name"] == names.CONTAINER_SERVER)


def kill_server_container(e2e: E2E, pod: dict[str, Any]) -> None:
    """SIGKILL the pod's model server from the node, as an OOM kill or a crash would end it
    (from inside the container, PID 1 ignores the signal)."""
    import node  # scripts/node.py: the real node's containerd

    [status] = [
        s for s in pod["status"]["containerStatuses"] if s["name"] == names.CONTAINER_SERVER
    ]
    container = status["containerID"].removeprefix("containerd://")
    done = node.RealNode(ROOT / ".cluster").ctr("tasks", "kill", "-s", "SIGKILL", container)
    assert done.returncode == 0, done.stderr
