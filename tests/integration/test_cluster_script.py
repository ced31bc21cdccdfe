"""`make cluster-up` / `cluster-down` behaviour a user relies on: a stale previous cluster is
cleared, a second cluster gets its own free ports, `down` leaves no process behind, and a missing
tool fails with a message that names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kube import ROOT, KubeCluster

pytestmark = pytest.mark.kwok

SCRIPT = [sys.executable, str(ROOT / "scripts" / "cluster.py")]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPT, *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_clears_a_stale_cluster_and_down_stops_every_process(
    cluster: KubeCluster, tmp_path: Path
) -> None:
    state = tmp_path / "second"
    (state / "pids").mkdir(parents=True)
    (state / "pids" / "etcd").write_text("999999")  # a PID from a cluster long gone
    (state / "kubeconfig").write_text("stale: true\n")

    up = run("up", "--dir", str(state), "--nodes", "1")
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
    pids = [int(p.read_text()) for p in (state / "pids").iterdir()]
    assert len(pids) == 5 and all(alive(pid) for pid in pids)

    # It runs beside the session's cluster: every port is its own.
    ours = json.loads((state / "ports.json").read_text())
    theirs = json.loads((ROOT / ".cluster" / "ports.json").read_text())
    assert not set(ours.values()) & set(theirs.values())
    nodes = subprocess.run(
        [str(state / "bin" / "kubectl"), "--kubeconfig", str(state / "kubeconfig"),
         "get", "nodes", "-o", "name"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert nodes == ["node/kwok-node-0"]
    # One real node per machine: a second cluster names the one that owns it, runs KWOK only.
    if (ROOT / ".cluster" / "node" / "host-state.json").exists():
        assert f"the real node of the cluster in {ROOT / '.cluster'} runs" in up.stderr
    assert run("status", "--dir", str(state)).returncode == 0

    assert run("down", "--dir", str(state)).returncode == 0
    assert not state.exists()
    assert not any(alive(pid) for pid in pids)


def test_missing_go_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/nonexistent", "MODELDEPLOY_CACHE": str(tmp_path / "cache")}
    result = run("up", "--dir", str(tmp_path / "c"), env=env)
    assert result.returncode != 0
    assert "'go' is not on PATH" in result.stderr


def test_make_names_a_missing_python(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-C", str(ROOT), "install", "PY=python-does-not-exist", f"VENV={tmp_path}/v"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "python-does-not-exist not found" in result.stderr
