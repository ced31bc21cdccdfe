"""spec.serving.serviceAccountName: the pods run as the user's account (cloud workload
identity), so the sidecar's token is of that account. Bound to the monitor ClusterRole by the
user (docs/storage.md), that account is held by the chart's ValidatingAdmissionPolicy to the
same rule as the operator's monitor account: a token bound to pod A writes A's modeldeploy
conditions, never pod B's. RBAC alone would allow both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.monitor_proc import token_kubeconfig
from tests.integration.test_verdict_policy import NOT_YOURS, Pods, _pod, _verdict
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

ACCOUNT = "models-reader"


class OwnAccountPods(Pods):
    def sidecar_of(self, name: str | None) -> Any:
        from kubernetes import client, config

        pod = self.get(name) if name else None
        path = self.tmp / f"{name or 'unbound'}.{ACCOUNT}.kubeconfig"
        kubeconfig = token_kubeconfig(self.cluster, self.namespace, path, ACCOUNT, pod=pod)
        return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _own_account_pod(name: str) -> dict[str, Any]:
    pod = _pod(name)
    pod["spec"]["serviceAccountName"] = ACCOUNT
    pod["metadata"]["labels"][names.LABEL_MANAGED_BY] = names.MANAGED_BY
    return pod


@pytest.fixture
def pods(cluster: KubeCluster, namespace: str, tmp_path: Path) -> Iterator[Pods]:
    ns = ("-n", namespace)
    cluster.kubectl("create", "serviceaccount", ACCOUNT, *ns)
    # What the user does once per account (the operator grants nothing to it).
    cluster.kubectl(
        "create",
        "rolebinding",
        f"{ACCOUNT}-modeldeploy-monitor",
        f"--clusterrole={names.DEFAULT_MONITOR_CLUSTER_ROLE}",
        f"--serviceaccount={namespace}:{ACCOUNT}",
        *ns,
    )
    for name in ("pod-a", "pod-b"):
        manifest = json.dumps(_own_account_pod(name))
        cluster.kubectl("apply", *ns, "-f", "-", input=manifest)
    found = OwnAccountPods(cluster, namespace, tmp_path)
    wait_until(
        lambda: all(found.conditions(n).get("Ready") == "True" for n in ("pod-a", "pod-b")),
        timeout=60,
        what="both pods Ready on KWOK nodes",
    )
    yield found


def test_the_pods_own_account_cannot_write_another_pods_verdict(pods: Pods) -> None:
    sidecar_a = pods.sidecar_of("pod-a")
    message = pods.denied(sidecar_a, "pod-b", _verdict("False"))
    assert NOT_YOURS in message and ACCOUNT in message
    assert names.POD_COND_METRICS_HEALTHY not in pods.conditions("pod-b")


def test_the_pods_own_account_writes_its_own_verdict(pods: Pods) -> None:
    sidecar_a = pods.sidecar_of("pod-a")
    pods.denied(sidecar_a, "pod-b", _verdict("False"))  # the policy is in force
    assert pods.patch(sidecar_a, "pod-a", _verdict("False")) == (200, "")
    assert pods.conditions("pod-a")[names.POD_COND_METRICS_HEALTHY] == "False"
