"""Proof that the local control plane is a real Kubernetes: admission, controllers, KWOK
pods, garbage collection, RBAC, and the CLIs built from Go modules."""

from __future__ import annotations

import json

import pytest

from tests.kube import KubeCluster, wait_until

SMOKE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.smoke.modeldeploy.io"},
    "spec": {
        "group": "smoke.modeldeploy.io",
        "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_server_reports_kubernetes_1_36(cluster: KubeCluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["clientVersion"]["gitVersion"].startswith("v1.36.")


@pytest.mark.kwok
def test_kwok_nodes_are_ready(cluster: KubeCluster) -> None:
    nodes = cluster.get_json("nodes")["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if {c["type"]: c["status"] for c in n["status"]["conditions"]}.get("Ready") == "True"
    ]
    assert len(ready) >= 3


def test_crd_schema_rejects_invalid_object_at_admission(
    cluster: KubeCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(SMOKE_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/gadgets.smoke.modeldeploy.io", "--timeout=30s"
    )
    bad = {
        "apiVersion": "smoke.modeldeploy.io/v1",
        "kind": "Gadget",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"size": 0},
    }
    rejected = cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr
    good = {**bad, "metadata": {"name": "good", "namespace": namespace}, "spec": {"size": 2}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(good))


@pytest.mark.kwok
def test_deployment_pods_run_on_kwok_nodes(cluster: KubeCluster, namespace: str) -> None:
    cluster.kubectl(
        "create",
        "deployment",
        "web",
        "--image=registry.invalid/web:1",
        "--replicas=3",
        "-n",
        namespace,
    )

    def running_pods() -> list[dict]:
        pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
        return [p for p in pods if p["status"].get("phase") == "Running"] if len(pods) == 3 else []

    pods = wait_until(running_pods, timeout=60, what="3 Running pods")
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)
    rs = cluster.get_json("replicasets", "-n", namespace)["items"]
    assert [r["metadata"]["ownerReferences"][0]["name"] for r in rs] == ["web"]
    cluster.kubectl(
        "wait", "--for=condition=Available", "deployment/web", "-n", namespace, "--timeout=60s"
    )


def test_deleting_an_owner_garbage_collects_what_it_owns(
    cluster: KubeCluster, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(owned))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        lambda: (
            cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=60,
        what="the garbage collector to delete the owned ConfigMap",
    )


def test_rbac_denies_a_service_account_without_a_role(cluster: KubeCluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    denied = cluster.kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        f"--token={token}",
        "--kubeconfig=/dev/null",
        f"--server={_server(cluster)}",
        f"--certificate-authority={_ca(cluster)}",
        check=False,
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert "system:serviceaccount:" + namespace + ":nobody" in denied.stderr


def test_helm_and_kubectl_work_against_the_cluster(cluster: KubeCluster) -> None:
    helm = cluster.helm("version", "--short").stdout
    assert helm.startswith("v3.")
    assert cluster.helm("list", "-A").returncode == 0
    assert "kube-system" in cluster.kubectl("get", "namespaces", "-o", "name").stdout


def _server(cluster: KubeCluster) -> str:
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    return str(config["clusters"][0]["cluster"]["server"])


def _ca(cluster: KubeCluster) -> str:
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    return str(config["clusters"][0]["cluster"]["certificate-authority"])
