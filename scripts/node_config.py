"""The real node's configuration files and the pure decisions behind them (no I/O here).

Rendered for scripts/node.py: containerd (config v3), the CNI conflist, the kubelet and
kube-proxy configurations, metrics-server's aggregation objects, the pod subnet, and the
iptables clean-up that removes only the chains the node added.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

NODE_NAME: Final = "real-node"
NODE_LABEL: Final = "modeldeploy.io/real-node"
BRIDGE: Final = "mdcni0"
CNI_NETWORK: Final = "modeldeploy"
PAUSE_IMAGE: Final = "localhost/modeldeploy/pause:3.10.2"
# The taint KWOK nodes carry while the real node is up; test namespaces tolerate it.
KWOK_TAINT: Final = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
# Ranges the cluster already uses (services, KWOK pod IPs): the pod subnet must avoid them too.
CLUSTER_RANGES: Final = ("10.96.0.0/16", "10.244.0.0/16")
SUBNET_CANDIDATES: Final = tuple(f"10.{n}.0.0/24" for n in range(88, 96)) + tuple(
    f"172.{n}.0.0/24" for n in range(20, 32)
)
METRICS_PORT: Final = 4443
# Host-wide ports the node's components bind: checked free before anything starts.
HOST_PORTS: Final = (10250, 10248, 10249, 10256, METRICS_PORT)
# Chains the node's components create on the host (kube-proxy, the bridge and portmap plugins).
CHAIN_PREFIXES: Final = ("KUBE-", "CNI-")


@dataclass(frozen=True)
class NodePaths:
    """Where one real node keeps its state: all under <cluster dir>/node."""

    root: Path

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def host_state(self) -> Path:
        return self.root / "host-state.json"


def pick_pod_subnet(routes: list[str]) -> str | None:
    """The first candidate /24 that overlaps no host route and no cluster range, if any."""
    taken = [ipaddress.ip_network(r, strict=False) for r in [*routes, *CLUSTER_RANGES]]
    for candidate in SUBNET_CANDIDATES:
        net = ipaddress.ip_network(candidate)
        if not any(net.overlaps(t) for t in taken):
            return candidate
    return None


def route_destinations(ip_route_output: str) -> list[str]:
    """Destinations of `ip -4 route` lines (the default route covers nothing specific)."""
    out = []
    for line in ip_route_output.splitlines():
        dest = line.split(" ", 1)[0].strip()
        if dest and dest != "default":
            out.append(dest if "/" in dest else f"{dest}/32")
    return out


def containerd_config(paths: NodePaths, bin_dir: Path) -> str:
    """containerd config v3. Every path containerd would put on the host is under the node's
    folder, except the shim sockets (/run/containerd/s, fixed in containerd)."""
    c = paths.containerd
    return f"""version = 3
root = "{c / "root"}"
state = "{c / "state"}"
[grpc]
  address = "{paths.socket}"
[plugins.'io.containerd.internal.v1.opt']
  path = "{c / "opt"}"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  # This machine lacks CAP_SYS_RESOURCE: without this runc fails to write oom_score_adj.
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{bin_dir / "runc"}"
        Root = "{c / "runc"}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{bin_dir}"]
    conf_dir = "{paths.cni_conf}"
"""


def cni_conflist(subnet: str, paths: NodePaths) -> dict[str, Any]:
    net = ipaddress.ip_network(subnet)
    gateway = str(next(net.hosts()))
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam),
                    "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def kubelet_config(paths: NodePaths, node_ip: str, subnet: str, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 (hybrid) here; the machine's cgroup mounts are used as they are.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        "address": node_ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "podCIDR": subnet,
        "maxPods": 50,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        # Kept out of the host's /var/log and /usr/libexec: everything under the node's folder.
        "podLogsDir": str(paths.root / "pod-logs"),
        "volumePluginDir": str(paths.kubelet / "volume-plugins"),
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }


def kube_proxy_config(kubeconfig: Path, subnet: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": subnet,
        "hostnameOverride": NODE_NAME,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # Zero: leave the host's conntrack table size and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        # No NodePorts on 127.0.0.1: that would need route_localnet=1 host-wide.
        "nodePortAddresses": ["primary"],
        "iptables": {"localhostNodePorts": False},
    }


def metrics_server_objects(node_ip: str) -> dict[str, Any]:
    """metrics-server runs on the host: a selector-less Service, a hand-made EndpointSlice to the
    node IP, and the APIService that sends metrics.k8s.io to it."""
    name, ns = "metrics-server", "kube-system"
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": METRICS_PORT}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-host",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "modeldeploy-cluster",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": METRICS_PORT, "protocol": "TCP"}],
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"name": name, "namespace": ns, "port": 443},
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ],
    }


def kwok_toleration_annotation() -> dict[str, str]:
    """The namespace annotation (PodTolerationRestriction) letting its pods onto KWOK nodes."""
    t = KWOK_TAINT
    toleration = {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]}
    return {"scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration])}


# --- iptables: remove only what the node added ---------------------------------------------------


def chains_of(save: str) -> dict[str, set[str]]:
    """Chain names per table in `iptables-save` output."""
    tables: dict[str, set[str]] = {}
    table = ""
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            tables.setdefault(table, set())
        elif line.startswith(":") and table:
            tables[table].add(line[1:].split()[0])
    return tables


def strip_added_chains(save: str, before: dict[str, set[str]]) -> tuple[str, int]:
    """`iptables-save` output without the KUBE-*/CNI-* chains that were not there `before`,
    nor any rule in or jumping to them. Returns the text to restore and how many chains go."""
    out: list[str] = []
    table = ""
    removed = 0
    doomed: set[str] = set()
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            doomed = {
                c
                for c in chains_of(save).get(table, set())
                if c.startswith(CHAIN_PREFIXES) and c not in before.get(table, set())
            }
            removed += len(doomed)
        elif line.startswith(":") and line[1:].split()[0] in doomed:
            continue
        elif line.startswith("-A "):
            words = line.split()
            targets = {words[1]} | {
                words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")
            }
            if targets & doomed:
                continue
        out.append(line)
    return "\n".join(out) + "\n", removed
