"""`kubectl modeldeploy` as a user runs it: a subprocess against the real API server.

The test writes the ModelDeployment's status itself (`kubectl patch --subresource=status`), as
the operator would, because what is under test is the CLI: what it prints, which annotations it
sets, that spec never changes, and how it fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from tests.kube import KubeCluster, wait_until

PLUGIN = Path(sys.executable).parent / "kubectl-modeldeploy"
SPEC = {
    "model": {
        "name": "iris",
        "version": "3",
        "uri": "https://models.example.com/iris/3/model.joblib",
        "sha256": "a" * 64,
    },
    "replicas": 2,
    "rollout": {"steps": [{"weight": 10}, {"weight": 50}]},
}
STATUS = {
    "phase": names.PHASE_PROGRESSING,
    "observedGeneration": 1,
    "message": "canary r4 at 10%, analysing",
    "canaryWeight": "10%",
    "canaryTraffic": "33%",
    "readyPods": "3/3",
    "readyReplicas": 3,
    "stable": {"revision": 3, "modelVersion": "2", "sha256": "b" * 64, "specHash": "h3",
               "weight": 90, "traffic": 67},
    "canary": {"revision": 4, "modelVersion": "3", "sha256": "a" * 64, "specHash": "h4",
               "weight": 10, "traffic": 33, "step": 0},
    "quarantinedSpecHashes": ["h2"],
    "history": [
        {"revision": 1, "modelVersion": "1", "specHash": "h1", "outcome": names.OUTCOME_PROMOTED},
        {"revision": 2, "modelVersion": "1.1", "specHash": "h2",
         "outcome": names.OUTCOME_ROLLED_BACK, "reason": "MetricBreach",
         "message": "errorRate 0.2 > 0.01"},
        {"revision": 3, "modelVersion": "2", "specHash": "h3", "outcome": names.OUTCOME_PROMOTED},
    ],
    "lastBreach": {"revision": 2, "pod": "iris-r2-x", "reason": "MetricBreach",
                   "message": "errorRate 0.2 > 0.01 over 30s (120 requests)",
                   "time": "2026-01-02T11:58:00Z"},
    "conditions": [
        {"type": names.COND_READY, "status": "True", "reason": "StableServing",
         "message": "r3 serves", "lastTransitionTime": "2026-01-02T11:00:00Z"},
    ],
}  # fmt: skip


@pytest.fixture
def model(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    """A ModelDeployment with the status an operator would have written mid-rollout."""
    obj = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": SPEC,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    cluster.kubectl(
        "patch", names.PLURAL, "iris", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": STATUS}),
    )  # fmt: skip
    stored: dict[str, Any] = cluster.get_json(names.PLURAL, "iris", "-n", namespace)
    # Nothing pruned: the status is shaped like the CRD's, as the operator's would be.
    assert stored["status"] == STATUS
    return stored


def cli(
    cluster: KubeCluster, *args: str, via_kubectl: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env, "PATH": f"{PLUGIN.parent}{os.pathsep}{cluster.env['PATH']}"}
    env.pop("NO_COLOR", None)
    command = [str(cluster.bin_dir / "kubectl"), "modeldeploy"] if via_kubectl else [str(PLUGIN)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def fetch(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.get_json(names.PLURAL, "iris", "-n", namespace)
    return obj


def test_status_through_kubectl_plugin_discovery(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    proc = cli(cluster, "status", "iris", "-n", namespace, via_kubectl=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["Name:", f"{namespace}/iris"]
    assert "Phase:       Progressing" in lines
    assert "Traffic:     stable r3 67% (intended 90%), canary r4 33% (intended 10%)" in lines
    assert any(line.startswith("Last breach: MetricBreach: errorRate 0.2 > 0.01") for line in lines)
    assert "\x1b[" not in proc.stdout  # not a terminal: no colour codes


def test_machine_readable_status_and_history(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    status = json.loads(cli(cluster, "-n", namespace, "-o", "json", "status", "iris").stdout)
    assert status["status"]["canary"]["revision"] == 4
    history = yaml.safe_load(cli(cluster, "-n", namespace, "-o", "yaml", "history", "iris").stdout)
    assert [h["outcome"] for h in history["history"]] == ["Promoted", "RolledBack", "Promoted"]
    text = cli(cluster, "-n", namespace, "history", "iris").stdout.splitlines()
    assert text[-2] == "* stable revision r3"


@pytest.mark.parametrize(
    ("args", "annotation", "value"),
    [
        (["rollback", "iris", "--to", "1"], names.ANNOTATION_ROLLBACK_TO, "1@"),
        (["promote", "iris"], names.ANNOTATION_PROMOTE, None),
        (["abort", "iris"], names.ANNOTATION_ABORT, None),
        (["retry", "iris"], names.ANNOTATION_RETRY, None),
        (["pause", "iris"], names.ANNOTATION_PAUSED, "true"),
    ],
)
def test_actions_set_annotations_and_never_touch_spec(
    cluster: KubeCluster,
    namespace: str,
    model: dict[str, Any],
    args: list[str],
    annotation: str,
    value: str | None,
) -> None:
    proc = cli(cluster, "-n", namespace, *args)
    assert proc.returncode == 0, proc.stderr
    after = fetch(cluster, namespace)
    written = after["metadata"]["annotations"][annotation]
    if value == "true":
        assert written == value
    else:  # a unique token, after the revision number for a rollback
        assert written.startswith(value or "")
        assert len(written) > len(value or "") + 10
    assert after["spec"] == model["spec"]
    assert after["metadata"]["generation"] == model["metadata"]["generation"]
    assert after["status"] == model["status"]


def test_unique_tokens_differ_and_resume_removes_the_pause(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    tokens = []
    for _ in range(2):
        assert cli(cluster, "-n", namespace, "retry", "iris").returncode == 0
        tokens.append(fetch(cluster, namespace)["metadata"]["annotations"][names.ANNOTATION_RETRY])
    assert tokens[0] != tokens[1]

    assert cli(cluster, "-n", namespace, "pause", "iris").returncode == 0
    assert cli(cluster, "-n", namespace, "resume", "iris").returncode == 0
    annotations = fetch(cluster, namespace)["metadata"].get("annotations") or {}
    assert names.ANNOTATION_PAUSED not in annotations


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nope"], 'error: modeldeployment "nope" not found in namespace "{ns}"'),
        (["rollback", "iris", "--to", "2"], "error: revision 2 of {ns}/iris was rolled back"),
        (["rollback", "iris", "--to", "3"], "error: revision 3 is already the stable revision"),
        (["rollback", "iris", "--to", "7"], "error: revision 7 is not in the history of {ns}/iris"),
    ],
)
def test_errors_are_one_line_with_exit_code_1(
    cluster: KubeCluster, namespace: str, model: dict[str, Any], args: list[str], message: str
) -> None:
    proc = cli(cluster, "-n", namespace, *args)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(message.format(ns=namespace)), proc.stderr
    annotations = fetch(cluster, namespace)["metadata"].get("annotations") or {}
    assert names.ANNOTATION_ROLLBACK_TO not in annotations


def test_wrong_namespace_names_the_right_one(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    proc = cli(cluster, "-n", "default", "status", "iris")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(
        'error: modeldeployment "iris" not found in namespace "default" (it exists in: '
    )
    # Other tests' namespaces may hold an "iris" too; this one must be among them.
    listed = proc.stderr.split("(it exists in: ")[1].split(";")[0].split(", ")
    assert namespace in listed


def test_watch_shows_changes_and_stops_at_the_timeout(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    env = {**cluster.env}
    watcher = subprocess.Popen(
        [str(PLUGIN), "-n", namespace, "-o", "json", "watch", "iris", "--timeout", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        first = watcher.stdout.readline() if watcher.stdout else ""
        assert json.loads(first)["status"]["phase"] == names.PHASE_PROGRESSING
        cluster.kubectl(
            "patch", names.PLURAL, "iris", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"phase": names.PHASE_ROLLED_BACK}}),
        )  # fmt: skip
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    phases = [json.loads(line)["status"]["phase"] for line in out.splitlines() if line]
    assert phases[-1] == names.PHASE_ROLLED_BACK
    assert len(phases) == len(set(phases)), "an unchanged object was printed twice"


def set_status(cluster: KubeCluster, namespace: str, **status: Any) -> None:
    cluster.kubectl(
        "patch", names.PLURAL, "iris", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        (names.PHASE_STABLE, 0),
        (names.PHASE_ROLLED_BACK, 3),
        (names.PHASE_FAILED, 4),
        (names.PHASE_DEGRADED, 5),
    ],
)
def test_status_wait_exit_codes(
    cluster: KubeCluster, namespace: str, model: dict[str, Any], phase: str, code: int
) -> None:
    set_status(cluster, namespace, phase=phase)
    proc = cli(cluster, "-n", namespace, "status", "iris", "--wait=30s")
    assert proc.returncode == code, proc.stderr
    assert f"Phase:       {phase}" in proc.stdout.splitlines()


def test_status_wait_follows_the_rollout_and_times_out(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    assert cli(cluster, "-n", namespace, "status", "iris", "--wait=2s").returncode == 6
    waiter = subprocess.Popen(
        [str(PLUGIN), "-n", namespace, "status", "iris", "--wait=60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
    )  # fmt: skip
    try:
        first = waiter.stdout.readline() if waiter.stdout else ""
        assert "Progressing: canary r4 at 10%, analysing" in first
        # A status about an older generation is not the desired spec's, even when Stable.
        obj = fetch(cluster, namespace)
        obj["spec"]["model"]["version"] = "4"
        cluster.kubectl("apply", "-f", "-", input=json.dumps(
            {k: obj[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {
                "name": "iris", "namespace": namespace}}))  # fmt: skip
        set_status(cluster, namespace, phase=names.PHASE_STABLE, message="old news")
        set_status(cluster, namespace, message="r5 rolling out")
        set_status(cluster, namespace, observedGeneration=2, message="r5 serves 100%")
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert "Stable: r5 serves 100%" not in out.splitlines()[0]
    assert "Message:     r5 serves 100%" in out.splitlines()


def test_list_across_namespaces_with_a_selector(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    cluster.kubectl("label", names.PLURAL, "iris", "-n", namespace, f"suite={namespace}")
    proc = cli(cluster, "list", "-A", "-l", f"suite={namespace}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "PHASE", "VERSION", "CANARY", "TRAFFIC", "READY", "AGE", "MESSAGE",
    ]  # fmt: skip
    assert lines[1].split()[:7] == [namespace, "iris", "Progressing", "3", "10%", "33%", "3/3"]
    assert len(lines) == 2
    doc = yaml.safe_load(cli(cluster, "-n", namespace, "list", "-o", "yaml").stdout)
    assert [(d["namespace"], d["name"]) for d in doc["items"]] == [(namespace, "iris")]
    assert cli(cluster, "list", "-l", "suite=none", "-n", namespace).stdout == (
        "No ModelDeployments found.\n"
    )


def test_promote_during_a_bake_and_abort_need_something_in_flight(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    set_status(cluster, namespace, canary=None, phase=names.PHASE_STABLE)
    assert cli(cluster, "-n", namespace, "promote", "iris").returncode == 1
    proc = cli(cluster, "-n", namespace, "abort", "iris")
    assert (proc.returncode, proc.stderr.split(":")[1].strip()) == (1, "nothing to abort")
    set_status(
        cluster, namespace, phase=names.PHASE_PROGRESSING, bakeUntil="2030-01-01T00:00:00Z",
        previous={"revision": 2, "specHash": "h2", "weight": 0, "traffic": 0},
    )  # fmt: skip
    proc = cli(cluster, "-n", namespace, "promote", "iris")
    assert proc.returncode == 0, proc.stderr
    assert "end of its bake requested (a manual promotion)" in proc.stdout
    assert cli(cluster, "-n", namespace, "abort", "iris").returncode == 0


def _deployment(namespace: str, revision: int, replicas: int) -> dict[str, Any]:
    labels = {names.LABEL_NAME: "iris", names.LABEL_REVISION: str(revision)}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"iris-r{revision}", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "model-server", "image": "fake"}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                },
            },
        },
    }  # fmt: skip


def test_get_shows_the_tree_of_revisions_deployments_and_pods(
    cluster: KubeCluster, namespace: str, model: dict[str, Any]
) -> None:
    for revision, replicas in ((3, 2), (4, 1)):
        cluster.kubectl(
            "apply", "-f", "-", input=json.dumps(_deployment(namespace, revision, replicas))
        )
    wait_until(
        lambda: len(cluster.get_json("pods", "-n", namespace)["items"]) == 3, 60, "three pods"
    )
    proc = cli(cluster, "-n", namespace, "get", "iris")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{namespace}/iris  Progressing  model iris 3 (desired)"
    assert lines[2] == "r3 stable  model 2  weight 90%  traffic 67%"
    assert lines[3].startswith("└─ Deployment iris-r3  ")
    pods = [line for line in lines if "pod iris-r" in line]
    assert len(pods) == 3 and all(" - " in p or "  -  " in p for p in pods)  # no sidecar verdict
    doc = json.loads(cli(cluster, "-n", namespace, "-o", "json", "get", "iris").stdout)
    assert sorted(d["metadata"]["name"] for d in doc["deployments"]) == ["iris-r3", "iris-r4"]


def _on_a_terminal(cluster: KubeCluster, columns: int, *args: str) -> str:
    """Run the CLI with its stdout on a pseudo-terminal `columns` wide; return what it drew."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in cluster.env.items() if k not in ("COLUMNS", "NO_COLOR")}
    proc = subprocess.Popen([str(PLUGIN), *args], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


@pytest.mark.parametrize("columns", [80, 160])
def test_terminal_output_is_cut_to_the_width_and_colours_only_trouble(
    cluster: KubeCluster, namespace: str, model: dict[str, Any], columns: int
) -> None:
    set_status(cluster, namespace, message="canary r4 at 10%, analysing; " + "detail " * 40)
    drawn = _on_a_terminal(cluster, columns, "-n", namespace, "status", "iris")
    visible = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in drawn.splitlines()]
    assert max(len(line) for line in visible) <= columns
    assert any(line.endswith("…") for line in visible)
    assert "\x1b[31m" in drawn  # the last breach is red: it needs attention
    phase = next(line for line in drawn.splitlines() if line.startswith("Phase:"))
    assert "\x1b[" not in phase  # Progressing is not news
