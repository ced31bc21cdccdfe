"""The benchmark's plumbing: the two operator builds, the cluster calls, process figures."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.operator_proc import OperatorProcess  # noqa: E402
from tests.kube import KubeCluster, namespace_manifest  # noqa: E402
from watch import Tracker  # noqa: E402

SHA = "0" * 64
GROUP, VERSION, PLURAL = "modeldeploy.io", "v1alpha1", "modeldeployments"
REQUESTS = "modeldeploy_api_requests_total"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def md(name: str, namespace: str, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": name,
            "version": "1",
            "uri": f"https://models.example/{name}.joblib",
            "sha256": SHA,
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
    }
    if rollout is not None:
        spec["rollout"] = {
            "steps": [{"weight": 50, "pause": rollout["pause"]}],
            "bakeTime": rollout["bake"],
        }
        spec["analysis"] = {"window": "5s", "onNoData": "pass"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident set and its peak (VmHWM) in MB."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_cpu() -> dict[str, float]:
    pids = ROOT / ".cluster" / "pids"
    out = {}
    for name in CONTROL_PLANE:
        try:
            out[name] = cpu_seconds(int((pids / name).read_text()))
        except (OSError, ValueError):
            continue
    return out


def machine() -> dict[str, Any]:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "uptime": uptime.strip()}


class Flavor:
    """One operator build: this checkout ("new") or the peer ("old")."""

    def __init__(self, name: str, code: Path | None) -> None:
        self.name = name
        self.env: dict[str, str] = {}
        if code is not None:
            self.env["PYTHONPATH"] = f"{code / 'operator'}:{code / 'serving_image'}"
        probe = "import modeldeploy, os; print(os.path.dirname(modeldeploy.__file__))"
        self.code = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # The peer predates the watch caches; this module is how the two builds differ.
        self.lists_per_reconcile = not (Path(self.code) / "cache.py").exists()
        print(
            f"[{name}] operator code: {self.code} "
            f"({'LIST per reconcile' if self.lists_per_reconcile else 'watch caches'})"
        )


def export_peer(rev: str) -> Path:
    """The peer's operator and serving packages at `rev`, outside any worktree."""
    dest = ROOT / ".cluster" / f"peer-{rev}"
    if not (dest / "operator" / "modeldeploy").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "operator", "serving_image"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


class Bench:
    def __init__(self, cluster: KubeCluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self._local = threading.local()
        self._client = client

    @property
    def objects(self) -> Any:
        """A CustomObjectsApi per thread (the client's connection pool is not for sharing)."""
        if not hasattr(self._local, "objects"):
            self._local.objects = self._client.CustomObjectsApi(self.cluster.api())
        return self._local.objects

    def fresh_namespace(self, name: str) -> None:
        self.cluster.kubectl(
            "delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=600
        )
        self.cluster.kubectl("create", "-f", "-", input=namespace_manifest(name))
        wait_for(
            lambda: (
                self.cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode
                == 0
            ),
            30,
            0.2,
        )

    def tracker(self, namespace: str) -> Tracker:
        tracker = Tracker(self.cluster.bin_dir / "kubectl", self.cluster.env, namespace)
        time.sleep(1)  # the watches are open before anything is created
        return tracker

    def operator(self, flavor: Flavor, namespace: str) -> OperatorProcess:
        op = OperatorProcess(
            self.cluster,
            namespaces=[namespace],
            extra_env=flavor.env,
            leader_election=flavor.name == "new",  # the peer predates leader election
        )
        op.log_path = ROOT / ".cluster" / "logs" / f"bench-operator-{namespace}.log"
        op.log_path.unlink(missing_ok=True)
        op.start()
        return op

    def create(self, body: dict[str, Any]) -> None:
        ns = body["metadata"]["namespace"]
        self.objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def delete(self, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status != 404:
                raise

    def set_version(self, namespace: str, name: str, version: str) -> None:
        patch = {"spec": {"model": {"version": version}}}
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)


def counts(op: OperatorProcess) -> tuple[float, float]:
    return op.metric(REQUESTS, {"kind": "read"}), op.metric(REQUESTS, {"kind": "write"})


def spent(op: OperatorProcess, before: tuple[float, float]) -> tuple[float, float]:
    reads, writes = counts(op)
    return reads - before[0], writes - before[1]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
        "mean": statistics.fmean(values),
    }
