"""Test backends for a real Kubernetes cluster.

K8S_BACKEND selects where the integration tests run:
- ``local`` (default): the project's own control plane (scripts/cluster.py), started once per
  session and reused if one is already healthy in .cluster/.
- ``existing``: whatever KUBECONFIG points at.
- ``kind``: a kind cluster created by pytest-kind (needs a Docker engine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / ".cluster"
# scripts/ports.py, the one way the project picks ports (appended: nothing there shadows a module).
sys.path.append(str(ROOT / "scripts"))
from ports import free_port as free_port  # noqa: E402  (re-exported for the test helpers)

# While the local cluster runs a real node, its KWOK nodes carry this taint (scripts/node_config.py
# KWOK_TAINT) and pods land on the real node. A namespace whose pods should run on KWOK nodes
# tolerates it through the PodTolerationRestriction annotation; other backends ignore it.
KWOK_TOLERATION = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Equal",
    "value": "fake",
    "effect": "NoSchedule",
}
KWOK_NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([KWOK_TOLERATION])
}
REAL_NODE_LABEL = "modeldeploy.io/real-node"


def namespace_manifest(
    name: str, labels: dict[str, str] | None = None, real_node: bool = False
) -> str:
    """A Namespace whose pods go to KWOK nodes (default) or, with `real_node`, the real node."""
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if not real_node:
        metadata["annotations"] = KWOK_NAMESPACE_ANNOTATIONS
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


@dataclass
class KubeCluster:
    """A reachable cluster plus the CLIs that talk to it."""

    kubeconfig: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def _run(
        self, tool: str, args: tuple[str, ...], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / tool), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", args, input, check, timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self._run("helm", args, input, check, timeout)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def api(self) -> Any:
        """A new kubernetes.client.ApiClient for this cluster."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def apply_crds(self) -> None:
        """The CRDs, plus what the chart installs cluster-wide for the sidecar (its ClusterRole
        and the verdict admission policy), for tests that run the operator without the chart."""
        crds = sorted((ROOT / "crds").glob("*.yaml"))
        for crd in crds:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        if crds:
            # A CRD created a moment ago may have no status yet, and `kubectl wait` then fails
            # at once ("accessor error: <nil>") instead of waiting: ask again until it waits.
            wait = ("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            wait_until(
                lambda: self.kubectl(*wait, check=False).returncode == 0,
                timeout=90,
                what="the CRDs to be Established",
                interval=0.5,
            )
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=monitor_manifests(self)
        )

    @contextmanager
    def fresh_namespace(
        self, prefix: str = "t", enforce: bool = False, real_node: bool = False
    ) -> Iterator[str]:
        """A new namespace with Pod Security "restricted" warnings (or enforcement). Its pods
        run on KWOK nodes, or on the real node with `real_node=True`."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        mode = "enforce" if enforce else "audit"
        labels = {
            "pod-security.kubernetes.io/warn": "restricted",
            f"pod-security.kubernetes.io/{mode}": "restricted",
        }
        self.kubectl("apply", "-f", "-", input=namespace_manifest(name, labels, real_node))
        wait_until(
            lambda: self.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
            timeout=30,
            what=f"default ServiceAccount in {name}",
        )
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)


# The release name the tests render the chart's cluster-scoped monitor objects with: its
# ClusterRole is then `modeldeploy-monitor`, the operator's default --monitor-cluster-role.
MONITOR_RELEASE = "modeldeploy"
MONITOR_TEMPLATE = "templates/monitor.yaml"


def monitor_manifests(cluster: KubeCluster) -> str:
    """charts/modeldeploy/templates/monitor.yaml rendered by helm: the one source of the policy."""
    chart = ROOT / "charts" / "modeldeploy"
    proc = cluster.helm("template", MONITOR_RELEASE, str(chart), "--show-only", MONITOR_TEMPLATE)
    return proc.stdout


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def build_tools() -> Path:
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "build.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(proc.stdout.strip().splitlines()[-1])


@contextmanager
def local_cluster() -> Iterator[KubeCluster]:
    script = [sys.executable, str(ROOT / "scripts" / "cluster.py")]
    status = subprocess.run([*script, "status", "--dir", str(CLUSTER_DIR)], capture_output=True)
    started_here = status.returncode != 0
    if started_here:
        subprocess.run([*script, "up", "--dir", str(CLUSTER_DIR)], check=True)
    try:
        yield KubeCluster(kubeconfig=CLUSTER_DIR / "kubeconfig", bin_dir=CLUSTER_DIR / "bin")
    finally:
        if started_here and not os.environ.get("MODELDEPLOY_KEEP_CLUSTER"):
            subprocess.run([*script, "down", "--dir", str(CLUSTER_DIR)], check=False)


@contextmanager
def existing_cluster() -> Iterator[KubeCluster]:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        raise RuntimeError("K8S_BACKEND=existing needs KUBECONFIG pointing at the cluster")
    yield KubeCluster(kubeconfig=Path(kubeconfig), bin_dir=build_tools())


@contextmanager
def kind_cluster() -> Iterator[KubeCluster]:
    """For users with Docker: pytest-kind creates the cluster; kubectl/helm are our own builds."""
    from pytest_kind import KindCluster  # type: ignore[import-untyped]

    if shutil.which("docker") is None:
        raise RuntimeError("K8S_BACKEND=kind needs Docker and a running engine")
    bin_dir = build_tools()  # our own kubectl and helm, so pytest-kind downloads only kind
    kind = KindCluster(
        "modeldeploy",
        kubectl_path=bin_dir / "kubectl",
        kind_path=Path(found) if (found := shutil.which("kind")) else None,
    )
    kind.create()
    try:
        yield KubeCluster(kubeconfig=Path(kind.kubeconfig_path), bin_dir=bin_dir)
    finally:
        if not os.environ.get("MODELDEPLOY_KEEP_CLUSTER"):
            kind.delete()


BACKENDS = {"local": local_cluster, "existing": existing_cluster, "kind": kind_cluster}
