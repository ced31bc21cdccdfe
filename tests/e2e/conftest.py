"""The e2e tier: the real node of the local cluster runs the project's image in real pods.

The operator is installed by the Helm chart and runs in the cluster from the image built from
serving_image/Dockerfile (in-cluster config, its own ServiceAccount and RBAC). Models are trained
here and served to the node by a plain HTTP store on the node's IP; clients reach the model
through the Service's ClusterIP, routed by kube-proxy. Without a real node (not root, no kernel
support) every test here is skipped with the reason `make cluster-up` gave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from tests.kube import (
    CLUSTER_DIR,
    REAL_NODE_LABEL,
    ROOT,
    KubeCluster,
    free_port,
    namespace_manifest,
    wait_until,
)

sys.path.insert(0, str(ROOT / "scripts"))
import example_models

RELEASE = "md-e2e"  # not `modeldeploy`: the other tiers apply that release's monitor objects
PREFIX = f"e2e{uuid.uuid4().hex[:4]}"


@dataclass(frozen=True)
class RealNode:
    name: str
    ip: str


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ModelStore:
    directory: Path
    host: str
    port: int
    digests: dict[str, str]

    def uri(self, version: str) -> str:
        return example_models.uri(self.host, version, self.port)


@dataclass(frozen=True)
class E2E:
    """What every e2e test needs: the cluster, its real node, the image and the model store,
    and the namespaces the chart's operator serves."""

    cluster: KubeCluster
    node: RealNode
    image: Image
    store: ModelStore
    namespaces: tuple[str, ...]
    operator_namespace: str


@pytest.fixture(scope="session")
def real_node(cluster: KubeCluster) -> RealNode:
    try:
        return find_real_node(cluster)
    except LookupError as err:
        pytest.skip(f"the local cluster has no real node: {err}")


def find_real_node(cluster: KubeCluster) -> RealNode:
    """The cluster's real node once Ready; LookupError says why there is none."""
    nodes = cluster.get_json("nodes", "-l", f"{REAL_NODE_LABEL}=true")["items"]
    if not nodes:
        why = ROOT / ".cluster" / "node" / "unavailable"
        raise LookupError(why.read_text().strip() if why.exists() else "no node labelled real-node")
    node = nodes[0]
    name = node["metadata"]["name"]
    wait_until(lambda: _ready(cluster, name), 60, f"node {name} Ready")
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return RealNode(name, ip)


def _ready(cluster: KubeCluster, node: str) -> bool:
    conditions = cluster.get_json("node", node)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="session")
def image(real_node: RealNode) -> Image:
    """The project image, built from serving_image/Dockerfile and imported into the node's
    containerd by `make cluster-up` (rebuilt only when its inputs change)."""
    found = built_image()
    if found is None:
        # The sources changed since the cluster came up: `up` on a running cluster builds
        # their image and imports it into the node (minutes, once per change).
        up = [sys.executable, str(ROOT / "scripts" / "cluster.py"), "up", "--dir", str(CLUSTER_DIR)]
        subprocess.run(up, check=False, timeout=1800)
        found = built_image()
    if found is None:
        pytest.fail("the serving image of these sources is not built (`make image`)")
    return found


def built_image() -> Image | None:
    """The serving image of the current sources, if it is built."""
    ref = [sys.executable, str(ROOT / "scripts" / "images.py"), "print", "--ref"]
    out = subprocess.run(ref, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None
    repository, _, tag = out.stdout.strip().rpartition(":")
    return Image(repository, tag)


@pytest.fixture(scope="session")
def store(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStore]:
    directory = tmp_path_factory.mktemp("models")
    digests = example_models.train(directory)
    port = free_port(real_node.ip)
    example_models.serve(directory, real_node.ip, port)
    try:
        yield ModelStore(directory, real_node.ip, port, digests)
    finally:
        example_models.stop(directory)


# Package scope: the release's cluster-wide objects (its ClusterRoles, its verdict admission
# policy) are gone before the next tier starts, so no other test meets a second copy of them.
@pytest.fixture(scope="package")
def e2e(
    cluster: KubeCluster, real_node: RealNode, image: Image, store: ModelStore
) -> Iterator[E2E]:
    """The chart installed once for the e2e tier, serving three fresh restricted namespaces."""
    with installed(cluster, real_node, image, store, PREFIX) as found:
        yield found


@contextmanager
def installed(
    cluster: KubeCluster, node: RealNode, image: Image, store: ModelStore, prefix: str
) -> Iterator[E2E]:
    """The chart's operator running from `image`, serving three restricted namespaces named
    after `prefix`; uninstalled and the namespaces deleted afterwards."""
    served = tuple(f"{prefix}-{i}" for i in range(3))
    operator_ns = f"{prefix}-system"
    for ns in (*served, operator_ns):
        _namespace(cluster, ns)
    values = {
        "image": {"repository": image.repository, "tag": image.tag, "pullPolicy": "Never"},
        "watchNamespaces": list(served),
        "replicas": 1,
    }
    values_file = store.directory / "values.json"
    values_file.write_text(json.dumps(values))
    cluster.helm(
        "install",
        RELEASE,
        str(ROOT / "charts" / "modeldeploy"),
        "--namespace",
        operator_ns,
        "--values",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    )
    try:
        yield E2E(cluster, node, image, store, served, operator_ns)
    finally:
        cluster.helm("uninstall", RELEASE, "--namespace", operator_ns, check=False)
        for ns in (*served, operator_ns):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _namespace(cluster: KubeCluster, name: str) -> None:
    """A namespace whose pods run on the real node, under Pod Security "restricted"."""
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    cluster.kubectl("apply", "-f", "-", input=namespace_manifest(name, labels, real_node=True))
    wait_until(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        30,
        f"default ServiceAccount in {name}",
    )


def model_manifest(
    e2e: E2E, namespace: str, name: str, version: str, **spec: Any
) -> dict[str, Any]:
    """An iris ModelDeployment of the example store's `version`, quick to roll out."""
    body: dict[str, Any] = {
        "model": {
            "name": "iris",
            "version": version,
            "uri": e2e.store.uri(version),
            "sha256": e2e.store.digests[version],
            "format": "joblib",
        },
        "serving": {"resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        "rollout": {"steps": [{"weight": 50, "pause": "10s"}], "bakeTime": "10s"},
        "analysis": {
            "window": "10s",
            "minRequests": 10,
            "onNoData": "hold",
            "thresholds": {"errorRate": 0.05, "latencyP99Ms": 1000},
        },
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
