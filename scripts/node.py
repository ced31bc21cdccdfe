"""One real kubelet node beside the KWOK nodes: containerd + runc + the bridge CNI + kubelet +
kube-proxy + metrics-server, as host processes of the local cluster in <dir>.

    python scripts/node.py status [--dir .cluster]
    python scripts/node.py import ARCHIVE NAME [--dir .cluster]   # an OCI archive into containerd

`scripts/cluster.py up/down` call `preflight`, `start` and `stop`. Everything the node changes on
the host is recorded first (<dir>/node/host-state.json) and put back by `stop`, also after a
crashed start. The node uses host-wide resources (ports, iptables, cgroups), so one machine runs
one real node: a lock file names the cluster that owns it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

import yaml

import host_state
import local_kubectl
import pki
from local_kubectl import KubectlError
from node_config import (
    HOST_PORTS,
    KWOK_TAINT,
    NODE_LABEL,
    NODE_NAME,
    NodePaths,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    metrics_server_objects,
    pick_pod_subnet,
    route_destinations,
)

ROOT = Path(__file__).resolve().parent.parent
LOCK: Final = Path(os.environ.get("MODELDEPLOY_REAL_NODE_LOCK", "/run/modeldeploy-real-node.lock"))
CACHE = Path(
    os.environ.get("MODELDEPLOY_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modeldeploy"
)
PAUSE_ARCHIVE: Final = CACHE / "images" / "pause.tar"
# The test image (tools/images/hello): localhost/modeldeploy/hello:1, imported when present.
HELLO_ARCHIVE: Final = CACHE / "images" / "hello.tar"
BINARIES: Final = (
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "runc",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
    "kubelet",
    "kube-proxy",
    "metrics-server",
)
# Started in this order, stopped in reverse.
PROCESSES: Final = ("containerd", "kubelet", "kube-proxy", "metrics-server")
START_TIMEOUT_S: Final = 90.0


class NodeError(RuntimeError):
    """Why the real node did not start (the cluster then runs with KWOK nodes only)."""


def enabled_by_env() -> bool:
    return os.environ.get("MODELDEPLOY_REAL_NODE", "1") != "0"


# --- preconditions -------------------------------------------------------------------------------


def node_ip() -> str | None:
    """The machine's global IPv4: the apiserver advertises it and the kubelet serves on it."""
    proc = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        words = line.split()
        if "inet" in words:
            return words[words.index("inet") + 1].split("/")[0]
    return None


def pod_subnet() -> str | None:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False)
    return pick_pod_subnet(route_destinations(routes.stdout))


def lock_owner() -> str | None:
    """The cluster dir owning the machine's real node, if one still does: its node state is
    recorded, or the process that took the lock is still starting it."""
    try:
        lock = json.loads(LOCK.read_text())
        owner, pid = str(lock["dir"]), int(lock["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if NodePaths(Path(owner) / "node").host_state.exists() or _alive(pid):
        return owner
    return None


def preflight(cluster_dir: Path, bin_dir: Path) -> str | None:
    """Why a real node cannot start here, or None. Cheap, never waits."""
    if not enabled_by_env():
        return "MODELDEPLOY_REAL_NODE=0"
    if os.geteuid() != 0:
        return "not root (containerd, the kubelet and kube-proxy need root)"
    missing = [b for b in BINARIES if not (bin_dir / b).exists()]
    if missing:
        return f"binaries missing from {bin_dir}: {', '.join(missing)} (run `make tools`)"
    if not PAUSE_ARCHIVE.exists():
        return f"the pause image {PAUSE_ARCHIVE} is missing (run `make tools`)"
    if not Path("/dev/kmsg").exists():
        return "/dev/kmsg is missing (the kubelet's OOM watcher reads it)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (containerd's snapshotter)"
    hierarchies = host_state.cgroup_hierarchies()
    controllers = {c for h in hierarchies for c in h.name.split(",")}
    if hierarchies != [host_state.CGROUP_ROOT] and not {"cpu", "memory"} <= controllers:
        return f"no cpu and memory cgroup hierarchies under {host_state.CGROUP_ROOT}"
    for tool in ("iptables", "ip", "conntrack"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (run `make tools`: tools/host-packages.sh)"
    probe = subprocess.run(
        ["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"iptables does not work: {probe.stderr.strip()}"
    if node_ip() is None:
        return "no global IPv4 address (`ip -4 addr show scope global` is empty)"
    if pod_subnet() is None:
        return "every candidate pod /24 collides with a host route"
    owner = lock_owner()
    if owner is not None and Path(owner) != cluster_dir:
        stale = RealNode(Path(owner), bin_dir)
        if any(stale.running().values()):
            return f"the real node of the cluster in {owner} runs on this machine (one per machine)"
        # Its processes are gone (the session that started it ended, as before each CI run):
        # put the host back from its record, then this cluster may have the node.
        print(f"the real node of {owner} is not running: restoring the host", file=sys.stderr)
        problems = stale.stop(cluster_stays=False)
        if problems:
            return f"the stale real node of {owner} left the host changed: {'; '.join(problems)}"
    for port in HOST_PORTS:
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
            except OSError:
                return f"port {port} is in use (the kubelet/kube-proxy/metrics-server need it)"
    return None


# --- processes -----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, OSError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class RealNode:
    def __init__(self, cluster_dir: Path, bin_dir: Path | None = None) -> None:
        self.dir = cluster_dir
        self.paths = NodePaths(cluster_dir / "node")
        self.bin = bin_dir or CACHE / "bin"
        self.logs = cluster_dir / "logs"

    # -- helpers --
    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return local_kubectl.kubectl(self.dir, *args, input=input, timeout=timeout)

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "ctr"), "--address", str(self.paths.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _pid(self, name: str) -> int | None:
        f = self.paths.pids / name
        return int(f.read_text()) if f.exists() else None

    def running(self) -> dict[str, bool]:
        return {p: (pid := self._pid(p)) is not None and _alive(pid) for p in PROCESSES}

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        }
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.paths.root,
            env=env,
        )
        (self.paths.pids / name).write_text(str(proc.pid))

    def _wait(self, what: str, check: Callable[[], bool], name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = self._pid(name)
        while time.monotonic() < deadline:
            if pid is not None and not _alive(pid):
                break
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        log = self.logs / f"{name}.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-12:]) if log.exists() else ""
        why = "exited" if pid is not None and not _alive(pid) else f"not ready after {timeout:.0f}s"
        raise NodeError(f"{what} {why}. Last lines of {log}:\n{tail}")

    def _terminate(self, name: str, grace: float = 10) -> None:
        pid = self._pid(name)
        if pid is None or not _alive(pid):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)

    # -- start --
    def _take_lock(self) -> None:
        record = json.dumps({"dir": str(self.dir), "pid": os.getpid()}).encode()
        try:  # O_EXCL: of two clusters starting at once, one gets the node
            fd = os.open(LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = lock_owner()
            if owner is not None and Path(owner) != self.dir:
                raise NodeError(
                    f"the real node of the cluster in {owner} runs on this machine "
                    "(one per machine)"
                ) from None
            LOCK.write_bytes(record)  # stale, or ours from a crashed start
            return
        with os.fdopen(fd, "wb") as f:
            f.write(record)

    def start(self) -> None:
        p = self.paths
        for d in (p.root, p.pids, p.containerd, p.cni_conf, p.cni_ipam, p.kubelet, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if not p.host_state.exists():  # after a crash the first record is the true one
            p.host_state.write_text(json.dumps(host_state.snapshot(p.root), indent=1))
        ip, subnet = node_ip(), pod_subnet()
        if ip is None or subnet is None:
            raise NodeError("no node IP or pod subnet")
        apiserver_port = json.loads((self.dir / "ports.json").read_text())["apiserver"]
        pki_dir = self.dir / "pki"
        ca = pki_dir / "ca.crt"
        kubeconfigs = {}
        for stem, cn, org in (
            ("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
            ("kube-proxy", "system:kube-proxy", None),
        ):
            crt, key = pki.write_client_cert(pki_dir, stem, cn, org)
            kubeconfigs[stem] = p.root / f"{stem}.kubeconfig"
            pki.write_kubeconfig(
                kubeconfigs[stem], apiserver_port, pki.Certs(ca, crt, key), user=cn
            )

        (p.containerd / "config.toml").write_text(containerd_config(p, self.bin))
        (p.cni_conf / "10-modeldeploy.conflist").write_text(
            json.dumps(cni_conflist(subnet, p), indent=1)
        )
        (p.root / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(p, ip, subnet, ca)))
        (p.root / "kube-proxy.yaml").write_text(
            yaml.safe_dump(kube_proxy_config(kubeconfigs["kube-proxy"], subnet))
        )

        self._spawn(
            "containerd",
            [str(self.bin / "containerd"), "--config", str(p.containerd / "config.toml")],
        )
        self._wait(
            "containerd", lambda: self.ctr("version", timeout=5).returncode == 0, "containerd", 30
        )
        self.import_image(PAUSE_ARCHIVE, "localhost/modeldeploy/pause")
        if HELLO_ARCHIVE.exists():
            self.import_image(HELLO_ARCHIVE, "localhost/modeldeploy/hello")

        self._spawn(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                f"--config={p.root / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfigs['kubelet']}",
                f"--root-dir={p.kubelet}",
                f"--cert-dir={p.kubelet / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={ip}",
                f"--node-labels={NODE_LABEL}=true",
            ],
        )
        self._wait("the kubelet (node Ready)", self.node_ready, "kubelet", START_TIMEOUT_S)

        self._spawn(
            "kube-proxy", [str(self.bin / "kube-proxy"), f"--config={p.root / 'kube-proxy.yaml'}"]
        )
        self._wait(
            "kube-proxy",
            lambda: (
                urllib.request.urlopen("http://127.0.0.1:10256/healthz", timeout=2).status == 200
            ),
            "kube-proxy",
            30,
        )

        admin = str(self.dir / "kubeconfig")
        self._spawn(
            "metrics-server",
            [
                str(self.bin / "metrics-server"),
                f"--kubeconfig={admin}",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                f"--bind-address={ip}",
                "--secure-port=4443",
                f"--cert-dir={p.root / 'metrics-server'}",
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-use-node-status-port",
                "--metric-resolution=15s",
            ],
        )
        self.kubectl("apply", "-f", "-", input=json.dumps(metrics_server_objects(ip)))
        # Real workloads go to the real node unless a namespace tolerates the KWOK taint.
        taint = f"{KWOK_TAINT['key']}={KWOK_TAINT['value']}:{KWOK_TAINT['effect']}"
        self.kubectl("taint", "nodes", "-l", "type=kwok", taint, "--overwrite")

    def node_ready(self) -> bool:
        node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json", timeout=10))
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True"

    def import_image(self, archive: Path, name: str) -> None:
        """Import an OCI archive into the node's containerd (k8s.io namespace); `name` is the
        repository (e.g. localhost/modeldeploy/serving), the archive's ref annotation the tag."""
        proc = self.ctr("images", "import", "--base-name", name, str(archive), timeout=300)
        if proc.returncode != 0:
            raise NodeError(f"ctr images import {archive} failed: {proc.stderr.strip()}")
        # ctr drops, silently, refs that name another repository than `name`.
        if not any(r.startswith(f"{name}:") for r in self.ctr("images", "ls", "-q").stdout.split()):
            raise NodeError(f"{archive} holds no image tagged {name}:<tag>")

    # -- stop --
    def recorded(self) -> bool:
        return self.paths.host_state.exists()

    def stop(self, cluster_stays: bool) -> list[str]:
        """Stop the node and put the host back as recorded. Returns what could not be restored."""
        if not self.recorded():
            self._release_lock()
            return []
        running = self.running()
        if running["kubelet"]:
            # With the API and kubelet up, the kubelet runs CNI DEL and unmounts for each pod.
            try:
                self.kubectl(
                    "delete",
                    "pods",
                    "--all-namespaces",
                    f"--field-selector=spec.nodeName={NODE_NAME}",
                    "--grace-period=2",
                    "--timeout=30s",
                    timeout=40,
                )
            except (KubectlError, subprocess.TimeoutExpired) as err:
                print(f"warning: deleting the real node's pods: {err}", file=sys.stderr)
        if cluster_stays:
            self._detach_from_cluster()
        for name in ("metrics-server", "kube-proxy", "kubelet"):
            self._terminate(name)
        if (self.bin / "kube-proxy").exists():
            subprocess.run(
                [str(self.bin / "kube-proxy"), "--cleanup"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        if self.running()["containerd"]:
            self._kill_tasks()
        self._terminate("containerd")
        self._kill_shims()
        before = json.loads(self.paths.host_state.read_text())
        problems = host_state.restore(before, self.paths.root)
        if not problems:
            shutil.rmtree(self.paths.root, ignore_errors=True)
            self._release_lock()
        return problems

    def _detach_from_cluster(self) -> None:
        taint = f"{KWOK_TAINT['key']}={KWOK_TAINT['value']}:{KWOK_TAINT['effect']}-"
        for args in (
            ("taint", "nodes", "-l", "type=kwok", taint),
            ("delete", "apiservice", "v1beta1.metrics.k8s.io", "--ignore-not-found"),
            ("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false"),
        ):
            with contextlib.suppress(KubectlError, subprocess.TimeoutExpired):
                self.kubectl(*args, timeout=20)

    def _kill_tasks(self) -> None:
        tasks = self.ctr("tasks", "ls", "-q", timeout=20).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, timeout=10)
        for task in tasks:
            self.ctr("tasks", "delete", "-f", task, timeout=10)

    def _kill_shims(self) -> None:
        """Shims daemonize out of containerd's process group: find ours by socket address."""
        address = str(self.paths.socket)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)

    def _release_lock(self) -> None:
        try:
            if json.loads(LOCK.read_text()).get("dir") == str(self.dir):
                LOCK.unlink()
        except (OSError, ValueError):
            pass

    def status(self) -> dict[str, object]:
        ready = False
        if self.recorded():
            with contextlib.suppress(KubectlError, subprocess.TimeoutExpired, ValueError):
                ready = self.node_ready()
        return {
            "name": NODE_NAME,
            "ready": ready,
            "processes": self.running() if self.recorded() else {},
        }


def import_image(archive_path: Path, name: str, cluster_dir: Path = ROOT / ".cluster") -> None:
    """Load an OCI archive (e.g. the serving image) into the real node's containerd."""
    RealNode(cluster_dir.resolve()).import_image(archive_path, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["status", "import", "restart"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    node = RealNode(args.dir.resolve())
    if args.command == "import":
        if len(args.args) != 2:
            parser.error("import ARCHIVE NAME")
        node.import_image(Path(args.args[0]), args.args[1])
        return 0
    if args.command == "restart":
        # Stop, compare the host with its record (what tests check), start again.
        if not node.recorded():
            print("no real node runs for this cluster", file=sys.stderr)
            return 1
        before = json.loads(node.paths.host_state.read_text())
        problems = node.stop(cluster_stays=True)
        left = host_state.diff(before, host_state.snapshot(node.paths.root))
        started: str | None = None
        try:
            node.start()
        except (NodeError, KubectlError, subprocess.SubprocessError, OSError) as err:
            started = str(err)
        print(json.dumps({"problems": problems, "diff": left, "started": started}, indent=2))
        return 0
    print(json.dumps(node.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
