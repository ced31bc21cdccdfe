"""What the real node changes on the host, recorded before it starts and put back after it stops.

The kubelet rewrites kernel sysctls, kube-proxy and the CNI plugins add iptables chains, the
kubelet makes `kubepods` in every cgroup hierarchy, containerd makes `cni-*` network namespaces
and the bridge, and a few host paths appear. `snapshot()` reads all of it; `diff()` (pure) says
what differs; `restore()` removes and rewrites what the node changed, and is safe to run again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from node_config import BRIDGE, CHAIN_PREFIXES, chains_of, strip_added_chains

SYSCTLS: Final = (
    # the kubelet (setupKernelTunables)
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    # kube-proxy
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    # the bridge plugin (ip_forward also resets every interface's forwarding: restored last)
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.ip_forward",
)
# Host paths a node's components may create although their own state is in the node's folder.
WATCHED_PATHS: Final = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/opt/containerd",
    "/run/nri",
    "/etc/cni",
    "/usr/libexec/kubernetes",
    "/run/netns",
)
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
NETNS_DIR: Final = Path("/run/netns")
IPTABLES: Final = ("iptables", "ip6tables")


# --- reading the host ---------------------------------------------------------------------------


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in SYSCTLS:
        try:
            out[key] = _sysctl_path(key).read_text().strip()
        except OSError:
            out[key] = None  # module not loaded (e.g. br_netfilter): nothing to restore
    return out


def _save(tool: str) -> str:
    try:
        proc = subprocess.run(
            [f"{tool}-save"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def cgroup_hierarchies() -> list[Path]:
    """Every mounted hierarchy: /sys/fs/cgroup/<ctrl> on v1/hybrid, /sys/fs/cgroup itself on v2."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return sorted(
        p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink() and os.path.ismount(p)
    )


def read_cgroups() -> dict[str, list[str]]:
    return {str(h): sorted(d.name for d in h.iterdir() if d.is_dir()) for h in cgroup_hierarchies()}


def read_links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def read_netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def read_mounts(under: Path) -> list[str]:
    """Mount points below `under` or in /run/netns (a node's leftovers)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(f"{under}/") or point.startswith(f"{NETNS_DIR}/"):
            points.append(point)
    return points


def snapshot(node_dir: Path) -> dict[str, Any]:
    return {
        "sysctls": read_sysctls(),
        "chains": {
            tool: {t: sorted(c) for t, c in chains_of(_save(tool)).items()} for tool in IPTABLES
        },
        "cgroups": read_cgroups(),
        "links": read_links(),
        "netns": read_netns(),
        "paths": {p: os.path.lexists(p) for p in WATCHED_PATHS},
        "mounts": read_mounts(node_dir),
    }


# --- comparing (pure) ----------------------------------------------------------------------------


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What `after` has that `before` did not (one line each); empty when the host is as found."""
    out = []
    for key, value in before["sysctls"].items():
        now = after["sysctls"].get(key)
        if value is not None and now != value:
            out.append(f"sysctl {key} = {now} (was {value})")
    for tool, tables in after["chains"].items():
        for table, chains in tables.items():
            had = set(before["chains"].get(tool, {}).get(table, []))
            for chain in sorted(set(chains) - had):
                if chain.startswith(CHAIN_PREFIXES):
                    out.append(f"{tool} chain {table}/{chain}")
    for hier, dirs in after["cgroups"].items():
        for d in sorted(set(dirs) - set(before["cgroups"].get(hier, []))):
            if d.startswith("kubepods"):
                out.append(f"cgroup {hier}/{d}")
    out += [f"link {n}" for n in sorted(set(after["links"]) - set(before["links"]))]
    out += [f"netns {n}" for n in sorted(set(after["netns"]) - set(before["netns"]))]
    for path, existed in after["paths"].items():
        if existed and not before["paths"].get(path, False):
            out.append(f"path {path}")
    out += [f"mount {m}" for m in after["mounts"] if m not in before["mounts"]]
    return out


# --- putting the host back -----------------------------------------------------------------------


def _kill_cgroup_procs(dirs: list[Path]) -> None:
    """SIGKILL whatever still runs in the given cgroups (leftover containers after a crash)."""
    for _ in range(20):
        pids = set()
        for d in dirs:
            for procs in d.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in procs.read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.25)


def _rmdir_tree(top: Path) -> list[str]:
    """rmdir a cgroup tree deepest first (cgroup dirs cannot be removed with files in them)."""
    problems = []
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError as err:
            problems.append(f"rmdir {d}: {err.strerror}")
    try:
        top.rmdir()
    except OSError as err:
        problems.append(f"rmdir {top}: {err.strerror}")
    return problems


def _umount_lazy(point: str) -> None:
    subprocess.run(["umount", "-l", point], capture_output=True, timeout=10, check=False)


def restore(before: dict[str, Any], node_dir: Path) -> list[str]:
    """Remove what the node added and rewrite the recorded sysctls. Returns what could not be
    put back (empty on success). Run after the node's processes have stopped."""
    problems: list[str] = []
    # Mounts first: pod volumes, rootfs and shm under the node folder, netns bind mounts.
    for point in sorted(read_mounts(node_dir), key=len, reverse=True):
        if point not in before["mounts"]:
            _umount_lazy(point)
    for name in set(read_netns()) - set(before["netns"]):
        _umount_lazy(str(NETNS_DIR / name))
        try:
            (NETNS_DIR / name).unlink()
        except OSError as err:
            problems.append(f"netns {name}: {err.strerror}")
    for name in set(read_links()) - set(before["links"]):
        if name == BRIDGE or name.startswith("veth"):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    for tool in IPTABLES:
        save = _save(tool)
        had = {t: set(c) for t, c in before["chains"].get(tool, {}).items()}
        text, removed = strip_added_chains(save, had)
        if removed:
            proc = subprocess.run(
                [f"{tool}-restore"], input=text, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                problems.append(f"{tool}-restore: {proc.stderr.strip()}")
    new_cgroups = [
        Path(hier) / d
        for hier, dirs in read_cgroups().items()
        for d in set(dirs) - set(before["cgroups"].get(hier, []))
        if d.startswith("kubepods")
    ]
    _kill_cgroup_procs(new_cgroups)
    for top in new_cgroups:
        problems += _rmdir_tree(top)
    for path, existed in before["paths"].items():
        if not existed and os.path.lexists(path):
            if os.path.ismount(path):
                _umount_lazy(path)
            shutil.rmtree(path, ignore_errors=True)
    for key, value in before["sysctls"].items():
        if value is None:
            continue
        target = _sysctl_path(key)
        try:
            if target.read_text().strip() != value:
                target.write_text(value)
        except OSError as err:
            problems.append(f"sysctl {key}: {err.strerror}")
    return problems
