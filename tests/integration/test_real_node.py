"""The local cluster's real node (scripts/node.py): Ready, runs real containers, keeps KWOK pods
on KWOK nodes through the namespace toleration, and a stop puts the host back as recorded.

Skipped, with the reason, when the local cluster runs without a real node (not root, another
cluster on this machine owns it, MODELDEPLOY_REAL_NODE=0)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from tests.kube import CLUSTER_DIR, REAL_NODE_LABEL, ROOT, KubeCluster, wait_until

pytestmark = [pytest.mark.kwok, pytest.mark.realnode]
NODE = "real-node"
PAUSE = "localhost/modeldeploy/pause:3.10.2"
HELLO = "localhost/modeldeploy/hello:1"  # tools/images/hello: HTTP on :8080, answers its name


@pytest.fixture(scope="module")
def real_node(cluster: KubeCluster) -> dict[str, Any]:
    proc = cluster.kubectl("get", "node", NODE, "-o", "json", check=False)
    if proc.returncode != 0:
        pytest.skip(f"the local cluster has no real node (see `make cluster-up`): {proc.stderr}")
    node: dict[str, Any] = json.loads(proc.stdout)
    return node


def _ready(node: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    return conds.get("Ready") == "True"


def test_the_real_node_is_ready_and_labelled(real_node: dict[str, Any]) -> None:
    assert real_node["metadata"]["labels"].get(REAL_NODE_LABEL) == "true"
    assert _ready(real_node)
    assert real_node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")


def _pod(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65535,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "pause",
                        "image": PAUSE,
                        "imagePullPolicy": "Never",
                        "resources": {"limits": {"cpu": "50m", "memory": "16Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )


def test_a_pod_runs_a_real_container_on_the_real_node(
    cluster: KubeCluster, real_node: dict[str, Any]
) -> None:
    with cluster.fresh_namespace(prefix="real", enforce=True, real_node=True) as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=_pod("p"))
        pod = wait_until(
            lambda: (
                p
                if (p := cluster.get_json("pod", "p", "-n", ns))["status"].get("phase") == "Running"
                else None
            ),
            timeout=60,
            what="the pod Running on the real node",
            interval=0.5,
        )
        assert pod["spec"]["nodeName"] == NODE
        status = pod["status"]["containerStatuses"][0]
        assert status["containerID"].startswith("containerd://")
        # A real pod IP from the node's bridge subnet, not KWOK's 10.244.0.0/16.
        assert not pod["status"]["podIP"].startswith("10.244.")
        cluster.kubectl("delete", "pod", "p", "-n", ns, "--wait=true", timeout=60)


def test_kwok_namespaces_tolerate_the_taint_and_stay_on_kwok_nodes(
    cluster: KubeCluster, real_node: dict[str, Any]
) -> None:
    kwok_nodes = cluster.get_json("nodes", "-l", "type=kwok")["items"]
    assert kwok_nodes
    for node in kwok_nodes:
        assert {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"} in node[
            "spec"
        ].get("taints", [])
    with cluster.fresh_namespace(prefix="kw") as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=_pod("k"))
        pod = wait_until(
            lambda: (
                p if (p := cluster.get_json("pod", "k", "-n", ns))["spec"].get("nodeName") else None
            ),
            timeout=30,
            what="the pod scheduled",
        )
        assert pod["spec"]["nodeName"].startswith("kwok-node-")


def _hello(replicas: int) -> str:
    labels = {"app": "hello"}
    container = {
        "name": "hello",
        "image": HELLO,
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": 8080}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [deployment, service]})


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return str(resp.read().decode())


def test_a_cluster_ip_routes_to_real_pods_and_logs_exec_and_metrics_work(
    cluster: KubeCluster, real_node: dict[str, Any]
) -> None:
    with cluster.fresh_namespace(prefix="svc", enforce=True, real_node=True) as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=_hello(2))
        cluster.kubectl("rollout", "status", "-n", ns, "deploy/hello", "--timeout=90s", timeout=100)
        pods = [p["metadata"]["name"] for p in cluster.get_json("pods", "-n", ns)["items"]]
        ip = cluster.get_json("service", "hello", "-n", ns)["spec"]["clusterIP"]

        # kube-proxy's iptables rules take the host's request to both pods behind the ClusterIP.
        seen: set[str] = set()

        def both_answered() -> bool:
            try:
                seen.add(_get(f"http://{ip}/").split()[-1])
            except OSError:  # refused until kube-proxy has written the Service's rules
                return False
            return seen == set(pods)

        wait_until(both_answered, timeout=60, what=f"both pods answering on {ip}", interval=0.1)

        logs = cluster.kubectl("logs", "-n", ns, pods[0]).stdout
        assert "listening on :8080" in logs
        exec_out = cluster.kubectl("exec", "-n", ns, pods[0], "--", "/hello", "ping").stdout
        assert exec_out.strip() == "exec: [ping]"

        # metrics-server scrapes the kubelet: `kubectl top` shows the node and the pods.
        def top() -> str | None:
            proc = cluster.kubectl("top", "pods", "-n", ns, "--no-headers", check=False)
            return proc.stdout if proc.returncode == 0 and pods[0] in proc.stdout else None

        wait_until(top, timeout=120, what="pod metrics from metrics-server", interval=2)
        assert NODE in cluster.kubectl("top", "nodes", "--no-headers").stdout


def test_zz_stop_puts_the_host_back_as_recorded(
    cluster: KubeCluster, real_node: dict[str, Any]
) -> None:
    """Last in this module: stop the suite's real node, compare the host with the record made
    before it started, then start it again for the rest of the session."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "node.py"), "restart", "--dir", str(CLUSTER_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["problems"] == []
    assert report["diff"] == [], "the host differs from its record after a stop"
    assert report["started"] is None, report["started"]
    assert _ready(cluster.get_json("node", NODE))
