"""The API server, not the sidecar's good manners, decides who may write a verdict.

Given two KWOK pods A and B run by the sidecar's ServiceAccount, with the RoleBinding the
operator creates (to the chart's monitor ClusterRole) and the chart's ValidatingAdmissionPolicy
(both installed by the session's cluster fixture from charts/modeldeploy/templates/monitor.yaml),
a token bound to pod A may write A's modeldeploy conditions and nothing else: not B's, not A's
Ready condition, not another status field, not A's labels; and a token bound to no pod may
write nothing at all. RBAC alone allows every one of these (patch pods/status in the namespace).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from modeldeploy import names
from tests.helpers.monitor_proc import apply_sidecar_rbac, token_kubeconfig
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok  # the pods must be Running (Ready=True) without an image

POLICY = "ValidatingAdmissionPolicy 'modeldeploy-monitor-verdicts'"
NOT_YOURS = "may write only the status of the pod its token is bound to"
ONLY_OURS = "may change only the pod conditions"


def _pod(name: str) -> dict[str, Any]:
    container = {
        "image": "registry.invalid/modeldeploy:test",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {names.LABEL_NAME: "iris"}},
        "spec": {
            "serviceAccountName": names.SIDECAR_SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{"name": names.CONTAINER_SERVER, **container}],
        },
    }


def _verdict(status: str) -> dict[str, Any]:
    reason = names.REASON_METRIC_BREACH if status == "False" else names.REASON_WITHIN_THRESHOLDS
    condition = {"type": names.POD_COND_METRICS_HEALTHY, "status": status, "reason": reason}
    return {"status": {"conditions": [{**condition, "message": "errorRate 1 > 0.1 (test)"}]}}


@dataclass
class Pods:
    cluster: KubeCluster
    namespace: str
    tmp: Path

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.cluster.get_json("pod", name, "-n", self.namespace))

    def conditions(self, name: str) -> dict[str, str]:
        return {c["type"]: c["status"] for c in self.get(name)["status"].get("conditions", [])}

    def sidecar_of(self, name: str | None) -> client.CoreV1Api:
        """The sidecar's identity: a token bound to pod `name` (None: bound to no pod)."""
        pod = self.get(name) if name else None
        path = self.tmp / f"{name or 'unbound'}.kubeconfig"
        kubeconfig = token_kubeconfig(self.cluster, self.namespace, path, pod=pod)
        return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    def patch(self, api: client.CoreV1Api, name: str, body: dict[str, Any]) -> tuple[int, str]:
        """(HTTP status, the API's message): a raw PATCH, as the sidecar sends it."""
        try:
            api.patch_namespaced_pod_status(
                name, self.namespace, body, _content_type="application/strategic-merge-patch+json"
            )
        except ApiException as err:
            return err.status, str(json.loads(err.body or "{}").get("message", ""))
        return 200, ""

    def denied(self, api: client.CoreV1Api, name: str, body: dict[str, Any]) -> str:
        """The policy's refusal. The API server loads a new policy within a moment of its
        creation (the session fixture applied it), so wait for the first refusal."""

        def refusal() -> str | None:
            status, message = self.patch(api, name, body)
            return message if status == 403 and POLICY in message else None

        return str(wait_until(refusal, timeout=30, what=f"the policy to refuse a write on {name}"))


@pytest.fixture
def pods(cluster: KubeCluster, namespace: str, tmp_path: Path) -> Iterator[Pods]:
    apply_sidecar_rbac(cluster, namespace)
    for name in ("pod-a", "pod-b"):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_pod(name)))
    found = Pods(cluster, namespace, tmp_path)
    wait_until(
        lambda: all(found.conditions(n).get("Ready") == "True" for n in ("pod-a", "pod-b")),
        timeout=60,
        what="both pods Ready on KWOK nodes",
    )
    yield found


def test_a_token_bound_to_pod_a_cannot_write_pod_bs_verdict(pods: Pods) -> None:
    sidecar_a = pods.sidecar_of("pod-a")
    message = pods.denied(sidecar_a, "pod-b", _verdict("False"))
    assert NOT_YOURS in message
    assert 'bound to pod "pod-a" may not write pod' in message and "/pod-b" in message
    assert names.POD_COND_METRICS_HEALTHY not in pods.conditions("pod-b")


def test_a_token_bound_to_pod_a_cannot_change_its_ready_condition(pods: Pods) -> None:
    sidecar_a = pods.sidecar_of("pod-a")
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    message = pods.denied(sidecar_a, "pod-a", not_ready)
    assert ONLY_OURS in message and "another condition changed" in message
    assert names.POD_COND_METRICS_HEALTHY in message and names.POD_COND_MODEL_READY in message
    assert pods.conditions("pod-a")["Ready"] == "True"


def test_a_token_bound_to_pod_a_writes_its_own_verdicts(pods: Pods) -> None:
    sidecar_a = pods.sidecar_of("pod-a")
    pods.denied(sidecar_a, "pod-b", _verdict("False"))  # the policy is in force
    assert pods.patch(sidecar_a, "pod-a", _verdict("False")) == (200, "")
    loaded = {"type": names.POD_COND_MODEL_READY, "status": "True", "reason": "ModelLoaded"}
    assert pods.patch(sidecar_a, "pod-a", {"status": {"conditions": [loaded]}}) == (200, "")
    conditions = pods.conditions("pod-a")
    assert conditions[names.POD_COND_METRICS_HEALTHY] == "False"
    assert conditions[names.POD_COND_MODEL_READY] == "True"
    assert conditions["Ready"] == "True"
    assert pods.patch(sidecar_a, "pod-a", _verdict("True")) == (200, "")
    assert pods.conditions("pod-a")[names.POD_COND_METRICS_HEALTHY] == "True"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"status": {"message": "evicted, honestly"}}, "another status field changed"),
        ({"metadata": {"labels": {names.LABEL_NAME: "elsewhere"}}}, "labels or annotations"),
    ],
    ids=["status-field", "label"],
)
def test_nothing_else_on_its_own_pod(pods: Pods, body: dict[str, Any], words: str) -> None:
    message = pods.denied(pods.sidecar_of("pod-a"), "pod-a", body)
    assert words in message
    assert pods.get("pod-a")["metadata"]["labels"][names.LABEL_NAME] == "iris"


def test_a_token_bound_to_no_pod_writes_nothing(pods: Pods) -> None:
    message = pods.denied(pods.sidecar_of(None), "pod-a", _verdict("False"))
    assert NOT_YOURS in message and "bound to pod (none)" in message
    assert names.POD_COND_METRICS_HEALTHY not in pods.conditions("pod-a")


def test_other_identities_are_not_judged_by_the_policy(pods: Pods, cluster: KubeCluster) -> None:
    """The policy matches only the monitor's ServiceAccount: an admin (and the kubelet) may
    still write any condition."""
    not_ready = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    done = cluster.kubectl(
        "patch", "pod", "pod-b", "-n", pods.namespace, "--subresource=status",
        "--type=strategic", "-p", not_ready,
    )  # fmt: skip
    assert "patched" in done.stdout  # (KWOK may set it back at once: the write is what counts)
