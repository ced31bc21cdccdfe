"""A real local Kubernetes control plane as plain processes: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK (fake nodes that run pods), plus one real node
(scripts/node.py: containerd, kubelet, kube-proxy, metrics-server) when the machine allows it.

    python scripts/cluster.py up [--dir .cluster] [--nodes 3] [--no-real-node]
    python scripts/cluster.py down [--dir .cluster]
    python scripts/cluster.py status [--dir .cluster]

Binaries come from tools/build.sh (built from Go modules, cached outside the repo). Everything
listens on free ports on 127.0.0.1, authorization is RBAC, and the admin kubeconfig is written to
<dir>/kubeconfig. State (PKI, etcd data, logs, PIDs) lives under <dir>; `down` stops every process
it started, by PID, puts back what the real node changed on the host, and removes the state.
The components' command lines and the state layout are in scripts/components.py.

With a real node the apiserver also listens on the machine's global IPv4 (pods reach it through
10.96.0.1) and the KWOK nodes are tainted: a namespace that wants KWOK pods tolerates the taint
through the PodTolerationRestriction annotation (see tests/kube.py). MODELDEPLOY_REAL_NODE=0 or
--no-real-node: KWOK nodes only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import local_kubectl
import node
import node_config
import pki
from components import (
    TOOLS,
    Layout,
    apiserver_args,
    etcd_args,
    kcm_args,
    kwok_args,
    node_manifests,
    scheduler_args,
    write_kwok_config,
)
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
KUBE_VERSION_PREFIX = "v1.36."
START_TIMEOUT_S = 120.0
# Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """A clear, user-facing reason the cluster could not start."""


# --- small helpers ------------------------------------------------------------------------------


def wait_for(
    what: str,
    check: Callable[[], bool],
    log: Path | None,
    timeout: float,
    pid_file: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file is not None and not alive(int(pid_file.read_text())):
            deadline = 0  # the process exited: no point waiting
            break
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = ""
    if log and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    why = "exited" if deadline == 0 else f"did not become ready within {timeout:.0f}s"
    raise ClusterError(f"{what} {why}. Last log lines:\n{tail}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def build_binaries() -> Path:
    if shutil.which("go") is None:
        raise ClusterError("'go' is not on PATH: Go >= 1.26 is needed to build the control plane")
    proc = subprocess.run(
        ["bash", str(TOOLS / "build.sh")], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(f"tools/build.sh failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


# --- the cluster --------------------------------------------------------------------------------


class Cluster:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    # -- process bookkeeping --
    def _pid_of(self, name: str) -> int | None:
        f = self.layout.pids / name
        return int(f.read_text()) if f.exists() else None

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.layout.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `make`; stopped by PID in `down`
            cwd=self.layout.dir,
        )
        (self.layout.pids / name).write_text(str(proc.pid))

    def running(self) -> dict[str, bool]:
        return {c: (pid := self._pid_of(c)) is not None and alive(pid) for c in COMPONENTS}

    def healthy(self) -> bool:
        if not self.layout.kubeconfig.exists() or not all(self.running().values()):
            return False
        try:
            return self._api_get("/readyz") == "ok"
        except Exception:
            return False

    def stop(self) -> None:
        # The real node first, while the API still runs (its pods are deleted through it).
        problems = node.RealNode(self.layout.dir).stop(cluster_stays=False)
        for problem in problems:
            print(f"warning: real node clean-up: {problem}", file=sys.stderr)
        # Extra processes (e.g. the operator started by `make run`) first, then the components.
        extra = sorted(p.name for p in self.layout.pids.glob("*") if p.name not in COMPONENTS)
        for name in [*extra, *reversed(COMPONENTS)]:
            pid = self._pid_of(name)
            if pid is None or not alive(pid):
                continue
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        if self.layout.dir.exists():
            shutil.rmtree(self.layout.dir, ignore_errors=True)

    # -- API access with the admin client certificate --
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        ctx.load_cert_chain(self.layout.pki / "admin.crt", self.layout.pki / "admin.key")
        return ctx

    def _api_get(self, path: str) -> str:
        ports = json.loads(self.layout.ports_file.read_text())
        url = f"https://127.0.0.1:{ports['apiserver']}{path}"
        with urllib.request.urlopen(url, context=self._ssl(), timeout=5) as resp:
            return str(resp.read().decode())

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return local_kubectl.kubectl(self.layout.dir, *args, input=input, timeout=None)

    # -- bring-up --
    def up(self, bin_dir: Path, nodes: int, advertise: str | None = None) -> None:
        lay = self.layout
        for d in (lay.dir, lay.pki, lay.logs, lay.pids, lay.bin):
            d.mkdir(parents=True, exist_ok=True)
        for tool in ("kubectl", "helm", "kwokctl"):
            link = lay.bin / tool
            link.unlink(missing_ok=True)
            link.symlink_to(bin_dir / tool)

        ports = {k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kcm", "sched", "kwok")}
        lay.ports_file.write_text(json.dumps(ports))
        certs = pki.write_pki(lay.pki)
        pki.write_kubeconfig(lay.kubeconfig, ports["apiserver"], certs)

        self._spawn("etcd", etcd_args(bin_dir, lay, ports))
        wait_for(
            "etcd",
            lambda: (
                b"true"
                in urllib.request.urlopen(
                    f"http://127.0.0.1:{ports['etcd']}/health", timeout=2
                ).read()
            ),
            lay.logs / "etcd.log",
            START_TIMEOUT_S,
            lay.pids / "etcd",
        )
        self._spawn("kube-apiserver", apiserver_args(bin_dir, lay, ports, advertise))
        wait_for(
            "kube-apiserver",
            lambda: self._api_get("/readyz") == "ok",
            lay.logs / "kube-apiserver.log",
            START_TIMEOUT_S,
            lay.pids / "kube-apiserver",
        )
        self._spawn("kube-controller-manager", kcm_args(bin_dir, lay, ports))
        self._spawn("kube-scheduler", scheduler_args(bin_dir, lay, ports))
        config = lay.dir / "kwok.yaml"
        write_kwok_config(config)
        self._spawn("kwok", kwok_args(bin_dir, lay, ports, config))

        self.kubectl("apply", "-f", "-", input=node_manifests(nodes))
        wait_for(
            f"{nodes} Ready KWOK nodes",
            lambda: self._ready_nodes() >= nodes,
            lay.logs / "kwok.log",
            START_TIMEOUT_S,
            lay.pids / "kwok",
        )
        # The serviceaccount controller (kube-controller-manager) creates `default` in every
        # namespace; pods cannot be created before it exists.
        wait_for(
            "kube-controller-manager (default ServiceAccount)",
            lambda: bool(self.kubectl("get", "serviceaccount", "default", "-o", "name")),
            lay.logs / "kube-controller-manager.log",
            START_TIMEOUT_S,
            lay.pids / "kube-controller-manager",
        )
        version = json.loads(self._api_get("/version"))["gitVersion"]
        if not version.startswith(KUBE_VERSION_PREFIX):
            raise ClusterError(f"apiserver reports {version}, expected {KUBE_VERSION_PREFIX}x")

    def _ready_nodes(self) -> int:
        out = self.kubectl("get", "nodes", "-o", "json")
        count = 0
        for item in json.loads(out)["items"]:
            conds = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
            count += conds.get("Ready") == "True"
        return count


# --- CLI ----------------------------------------------------------------------------------------


def start_real_node(layout: Layout, bin_dir: Path) -> str | None:
    """Start the real node; on failure put the host back and say why (KWOK-only then)."""
    real = node.RealNode(layout.dir, bin_dir)
    try:
        real.start()
        return None
    except (node.NodeError, local_kubectl.KubectlError, subprocess.SubprocessError, OSError) as err:
        for problem in real.stop(cluster_stays=True):
            print(f"warning: real node clean-up: {problem}", file=sys.stderr)
        return str(err)


def load_serving_image(layout: Layout) -> str | None:
    """The serving image of these sources on the real node: built from serving_image/Dockerfile
    when its inputs changed (a cache hit otherwise), imported into the node's containerd when
    the node lacks it. Returns why not, or None."""
    import images  # scripts/images.py: needs root, buildah and debootstrap, only for the node

    try:
        with images.locked():
            archive = images.build_serving()
        ref = f"{images.SERVING_NAME}:{images.serving_tag(images.serving_key())}"
        real = node.RealNode(layout.dir)
        if ref not in real.ctr("images", "ls", "-q").stdout.split():
            started = time.monotonic()
            real.import_image(archive, images.SERVING_NAME)
            print(f"imported {ref} into the real node in {time.monotonic() - started:.1f}s")
    except (
        images.ImageError,
        node.NodeError,
        local_kubectl.KubectlError,
        subprocess.SubprocessError,
        OSError,
    ) as err:
        return str(err)
    return None


def record_why_not(layout: Layout, why_not: str | None) -> None:
    """Tests and `make run` say why there is no real node (or image) in their skips."""
    marker = layout.dir / "node" / "unavailable"
    if why_not is None:
        marker.unlink(missing_ok=True)
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(why_not + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--real-node",
        action=argparse.BooleanOptionalAction,
        default=node.enabled_by_env(),
        help="also run one real kubelet node (default on; MODELDEPLOY_REAL_NODE=0 turns it off)",
    )
    args = parser.parse_args(argv)
    layout = Layout(args.dir.resolve())
    cluster = Cluster(layout)

    if args.command == "down":
        cluster.stop()
        print(f"cluster in {layout.dir} stopped and removed")
        return 0
    if args.command == "status":
        state = cluster.running()
        real = node.RealNode(layout.dir).status() if cluster.healthy() else {}
        print(
            json.dumps(
                {"healthy": cluster.healthy(), "processes": state, "real_node": real}, indent=2
            )
        )
        return 0 if cluster.healthy() else 1

    started = time.monotonic()
    if cluster.healthy():
        print(f"cluster in {layout.dir} is already up")
        if node.RealNode(layout.dir).recorded():  # this cluster runs the real node
            # The sources may have changed since the cluster started: their image, then.
            why_not = load_serving_image(layout)
            record_why_not(layout, why_not and f"the serving image: {why_not}")
            if why_not:
                print(f"warning: no serving image on the real node: {why_not}", file=sys.stderr)
    else:
        cluster.stop()  # a stale or half-started previous cluster: clear it first
        try:
            bin_dir = build_binaries()
            built = time.monotonic()
            why_not = (
                node.preflight(layout.dir, bin_dir)
                if args.real_node
                else "turned off (--no-real-node or MODELDEPLOY_REAL_NODE=0)"
            )
            cluster.up(bin_dir, args.nodes, None if why_not else node.node_ip())
        except (ClusterError, local_kubectl.KubectlError, subprocess.CalledProcessError) as err:
            print(f"error: {err}", file=sys.stderr)
            print(f"logs are in {layout.logs}", file=sys.stderr)
            return 1
        plane = time.monotonic()
        if why_not is None:
            why_not = start_real_node(layout, bin_dir)
        image_problem = None if why_not else load_serving_image(layout)
        record_why_not(layout, why_not or (image_problem and f"the serving image: {image_problem}"))
        summary = "no real node" if why_not else f"real node {node_config.NODE_NAME!r}"
        print(
            f"cluster ready in {time.monotonic() - built:.1f}s "
            f"(binaries ready after {built - started:.1f}s, "
            f"real node {time.monotonic() - plane:.1f}s); "
            f"server {json.loads(cluster._api_get('/version'))['gitVersion']}, "
            f"{args.nodes} KWOK nodes, {summary}"
        )
        if why_not:
            print(f"real node not started: {why_not}; KWOK nodes only", file=sys.stderr)
        elif image_problem:
            print(f"warning: no serving image on the real node: {image_problem}", file=sys.stderr)
    print(f"export KUBECONFIG={layout.kubeconfig}")
    # The venv's bin holds kubectl-modeldeploy (make install), so `kubectl modeldeploy` works.
    venv = [f"{Path(sys.prefix) / 'bin'}:"] if sys.prefix != sys.base_prefix else []
    print(f"export PATH={layout.bin}:{''.join(venv)}$PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
