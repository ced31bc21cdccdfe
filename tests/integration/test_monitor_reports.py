"""The monitor against the real control plane, with only the permissions the operator grants it.

A Pod (run by KWOK) stands for a model pod; the monitor process runs on the test machine with a
TokenRequest token of the sidecar's ServiceAccount bound to that pod, scrapes a stand-in /metrics
endpoint, and must turn a breach into a pod condition and an Event. The model server is tested
elsewhere.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.names import (
    CONTAINER_MONITOR,
    CONTAINER_SERVER,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_REVISION,
    MANAGED_BY,
    POD_COND_METRICS_HEALTHY,
    REASON_METRIC_BREACH,
    REASON_WITHIN_THRESHOLDS,
    SIDECAR_SERVICE_ACCOUNT,
)
from tests.helpers.monitor_proc import (
    FakeModelMetrics,
    MonitorProcess,
    apply_sidecar_rbac,
    monitor_process,
    token_kubeconfig,
)
from tests.kube import ROOT, KubeCluster, wait_until

pytestmark = pytest.mark.kwok  # its pod must be Running without an image

MD = "iris"
POD = "iris-r1-monitored"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _pod(namespace: str) -> dict[str, Any]:
    """Shaped like the operator's pods: token on the pod off; the sidecar is the one that talks."""
    container = {"image": "registry.invalid/modeldeploy:test", "securityContext": RESTRICTED}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: MD, LABEL_REVISION: "1"},
        },
        "spec": {
            "serviceAccountName": SIDECAR_SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {"name": CONTAINER_SERVER, **container},
                {"name": CONTAINER_MONITOR, **container},
            ],
        },
    }


@dataclass
class Sidecar:
    cluster: KubeCluster
    namespace: str
    kubeconfig: Path
    metrics: FakeModelMetrics

    def condition(self) -> dict[str, Any] | None:
        pod = self.cluster.get_json("pod", POD, "-n", self.namespace)
        by_type = {c["type"]: c for c in pod["status"].get("conditions", [])}
        return by_type.get(POD_COND_METRICS_HEALTHY)

    def wait_for_condition(self, status: str, reason: str) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            c = self.condition()
            return c if c and (c["status"], c["reason"]) == (status, reason) else None

        return dict(wait_until(matches, timeout=60, what=f"{POD_COND_METRICS_HEALTHY}={status}"))

    def events(self, reason: str) -> list[dict[str, Any]]:
        selector = f"reason={reason},involvedObject.name={MD}"
        items = self.cluster.get_json(
            "events", "-n", self.namespace, f"--field-selector={selector}"
        )
        return list(items["items"])

    def as_sidecar(self, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl with the sidecar's own token."""
        return self.cluster.kubectl(f"--kubeconfig={self.kubeconfig}", *args, check=False)


@pytest.fixture
def sidecar(cluster: KubeCluster, namespace: str, tmp_path: Path) -> Iterator[Sidecar]:
    apply_sidecar_rbac(cluster, namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_pod(namespace)))
    wait_until(
        lambda: cluster.get_json("pod", POD, "-n", namespace)["status"].get("phase") == "Running",
        timeout=60,
        what="the pod to run on a KWOK node",
    )
    pod = cluster.get_json("pod", POD, "-n", namespace)
    kubeconfig = token_kubeconfig(cluster, namespace, tmp_path / "sidecar.kubeconfig", pod=pod)
    with FakeModelMetrics() as metrics:
        yield Sidecar(cluster, namespace, kubeconfig, metrics)


def _monitor(
    sidecar: Sidecar, tmp_path: Path, **flags: object
) -> AbstractContextManager[MonitorProcess]:
    return monitor_process(
        metrics_url=sidecar.metrics.url,
        pod=POD,
        namespace=sidecar.namespace,
        deployment=MD,
        kubeconfig=sidecar.kubeconfig,
        log_path=tmp_path / "monitor.log",
        flags={"max-error-rate": 0.1, **flags},
    )


def test_breach_flips_the_pod_condition_and_records_an_event(
    sidecar: Sidecar, tmp_path: Path
) -> None:
    with _monitor(sidecar, tmp_path) as monitor:
        sidecar.metrics.record(ok=40)
        healthy = sidecar.wait_for_condition("True", REASON_WITHIN_THRESHOLDS)
        assert "errorRate 0 <= 0.1" in healthy["message"]

        sidecar.metrics.record(ok=10, model_errors=30)
        breach = sidecar.wait_for_condition("False", REASON_METRIC_BREACH)
        assert breach["message"].startswith("errorRate ")
        assert "> 0.1 over 5s (" in breach["message"]
        assert breach["lastTransitionTime"] >= healthy["lastTransitionTime"]

        events = wait_until(
            lambda: sidecar.events(REASON_METRIC_BREACH), timeout=30, what="a MetricBreach Event"
        )
        assert events[0]["type"] == "Warning"
        assert events[0]["involvedObject"]["kind"] == KIND
        assert POD in events[0]["message"] and "errorRate" in events[0]["message"]
        assert monitor.alive()
        assert "cannot write" not in monitor.log()

    # The strategic merge patch touched only its own condition.
    pod = sidecar.cluster.get_json("pod", POD, "-n", sidecar.namespace)
    types = [c["type"] for c in pod["status"]["conditions"]]
    assert "Ready" in types and types.count(POD_COND_METRICS_HEALTHY) == 1


def test_the_sidecar_identity_can_do_nothing_else(sidecar: Sidecar) -> None:
    ns = sidecar.namespace
    allowed = [
        ("patch", "pods", "--subresource=status"),
        ("create", "events"),
        ("patch", "events"),
    ]
    denied = [
        ("get", "pods"),
        ("patch", "pods"),
        ("get", "pods", "--subresource=status"),
        ("update", "pods", "--subresource=status"),
        ("list", "secrets"),
        ("get", "secrets"),
        ("delete", "events"),
        ("get", "modeldeployments.modeldeploy.io"),
        ("patch", "modeldeployments.modeldeploy.io", "--subresource=status"),
    ]
    for question in allowed:
        assert _can_i(sidecar, *question, "-n", ns) == "yes", question
    for question in denied:
        assert _can_i(sidecar, *question, "-n", ns) == "no", question
    listing = sidecar.as_sidecar("get", "secrets", "-n", ns)
    assert listing.returncode != 0 and "forbidden" in listing.stderr.lower()
    assert _can_i(sidecar, "patch", "pods", "--subresource=status", "-n", "default") == "no"


def _can_i(sidecar: Sidecar, *question: str) -> str:
    return sidecar.as_sidecar("auth", "can-i", *question).stdout.strip()


def test_kubectl_describe_md_shows_the_breach_when_the_uid_is_given(
    sidecar: Sidecar, tmp_path: Path
) -> None:
    example = yaml.safe_load((ROOT / "examples" / "fixed-replicas.yaml").read_text())
    example["metadata"] = {"name": MD, "namespace": sidecar.namespace}
    sidecar.cluster.kubectl("apply", "-f", "-", input=json.dumps(example))
    uid = sidecar.cluster.get_json("md", MD, "-n", sidecar.namespace)["metadata"]["uid"]
    with _monitor(sidecar, tmp_path, **{"deployment-uid": uid}):
        sidecar.metrics.record(ok=10, model_errors=30)
        sidecar.wait_for_condition("False", REASON_METRIC_BREACH)

        def described() -> str | None:
            out = sidecar.cluster.kubectl("describe", "md", MD, "-n", sidecar.namespace).stdout
            return out if REASON_METRIC_BREACH in out else None

        out = wait_until(described, timeout=30, what="the Event in `kubectl describe md`")
        assert "errorRate" in out
