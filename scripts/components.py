"""The command lines and files of the local cluster's control-plane components (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, KWOK) and where a cluster keeps its
state. Pure apart from locating the KWOK Go module; scripts/cluster.py starts and stops them.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

TOOLS = Path(__file__).resolve().parent.parent / "tools"  # the Go modules the binaries come from
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)

# Per fake node. A model pod requests 260m CPU and 304Mi (server + sidecar defaults), so three
# nodes hold ~2900 pods: enough for the 1000-ModelDeployment burst of `make bench-operator`.
NODE_CAPACITY: Final = {"cpu": "256", "memory": "1Ti", "pods": "1000"}


@dataclass(frozen=True)
class Layout:
    """Where a cluster keeps its state."""

    dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pids(self) -> Path:
        return self.dir / "pids"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def ports_file(self) -> Path:
        return self.dir / "ports.json"


def kwok_module_dir() -> Path:
    proc = subprocess.run(
        ["go", "list", "-m", "-json", "sigs.k8s.io/kwok"],
        cwd=TOOLS / "kwok",
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    module_dir = json.loads(proc.stdout).get("Dir")
    if not module_dir:
        subprocess.run(
            ["go", "mod", "download", "sigs.k8s.io/kwok"], cwd=TOOLS / "kwok", check=True
        )
        return kwok_module_dir()
    return Path(module_dir)


def etcd_args(bin_dir: Path, lay: Layout, p: dict[str, int]) -> list[str]:
    client, peer = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd_peer']}"
    return [
        str(bin_dir / "etcd"),
        "--name=node0",
        f"--data-dir={lay.dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node0={peer}",
        "--unsafe-no-fsync=true",  # test data; durability is not the point
        "--auto-compaction-retention=1",
        "--quota-backend-bytes=4294967296",
    ]


def apiserver_args(
    bin_dir: Path, lay: Layout, p: dict[str, int], advertise: str | None = None
) -> list[str]:
    """`advertise`: the machine's global IPv4 when a real node runs. Its pods reach the API
    through 10.96.0.1 -> that address, so the apiserver must listen beyond 127.0.0.1."""
    k = lay.pki
    if advertise:
        where = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={advertise}",
            "--endpoint-reconciler-type=lease",
        ]
    else:
        # KWOK only: a loopback advertise address needs the endpoint reconciler off.
        where = [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
        ]
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
        f"--secure-port={p['apiserver']}",
        *where,
        f"--cert-dir={k}",
        f"--tls-cert-file={k / 'apiserver.crt'}",
        f"--tls-private-key-file={k / 'apiserver.key'}",
        f"--client-ca-file={k / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={k / 'sa.pub'}",
        f"--service-account-signing-key-file={k / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--authorization-mode=Node,RBAC",
        # Namespaces of KWOK pods tolerate the KWOK nodes' taint through an annotation.
        "--enable-admission-plugins=PodTolerationRestriction",
        "--allow-privileged=true",
        # logs/exec/port-forward on the real node; its webhook authorizer accepts the admin.
        f"--kubelet-client-certificate={k / 'admin.crt'}",
        f"--kubelet-client-key={k / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # metrics-server runs on the host: reach it at its endpoint, not through a ClusterIP.
        "--enable-aggregator-routing=true",
        f"--proxy-client-cert-file={k / 'admin.crt'}",
        f"--proxy-client-key-file={k / 'admin.key'}",
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=0",
        "--max-mutating-requests-inflight=0",
    ]


def kcm_args(bin_dir: Path, lay: Layout, p: dict[str, int]) -> list[str]:
    kc = lay.kubeconfig
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={p['kcm']}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        f"--root-ca-file={lay.pki / 'ca.crt'}",
        f"--service-account-private-key-file={lay.pki / 'sa.key'}",
        "--leader-elect=false",
        "--node-monitor-period=5s",
        "--node-monitor-grace-period=40s",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        # Faster HPA reaction for tests and local runs.
        "--horizontal-pod-autoscaler-sync-period=5s",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
    ]


def scheduler_args(bin_dir: Path, lay: Layout, p: dict[str, int]) -> list[str]:
    kc = lay.kubeconfig
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={p['sched']}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--leader-elect=false",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
    ]


def kwok_args(bin_dir: Path, lay: Layout, p: dict[str, int], config: Path) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={lay.kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=127.0.0.1",
        f"--node-port={p['kwok']}",
        f"--server-address=127.0.0.1:{p['kwok']}",
        "--cidr=10.244.0.0/16",
        "--node-lease-duration-seconds=40",
    ]


def write_kwok_config(path: Path) -> None:
    """The standalone kwok binary has no built-in stages; take the module's own 'fast' set."""
    module = kwok_module_dir()
    # The module's own defaults (parallelism etc.), minus its CRDs: stages come from this file.
    base = yaml.safe_load((module / "kustomize/kwok/kwok.yaml").read_text())
    base["options"].pop("enableCRDs", None)
    docs = [
        yaml.safe_dump(base, sort_keys=False),
        *[(module / stage).read_text() for stage in KWOK_STAGES],
    ]
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")


def node_manifests(count: int) -> str:
    nodes = []
    for i in range(count):
        name = f"kwok-node-{i}"
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "node.alpha.kubernetes.io/ttl": "0",
                        "kwok.x-k8s.io/node": "fake",
                    },
                    "labels": {
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                    },
                },
                "status": {"allocatable": NODE_CAPACITY, "capacity": NODE_CAPACITY},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
