"""`kubectl modeldeploy` as a user runs it: a subprocess against the real API server.

The test writes the ModelDeployment's status itself (`kubectl patch --subresource=status`), as
the operator would, because what is under test is the CLI: what it prints, which annotations it
sets, that spec never changes, and how it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from tests.kube import KubeCluster

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
    "weight": 10,
    "readyReplicas": 3,
    "stable": {"revision": 3, "modelVersion": "2", "sha256": "b" * 64, "specHash": "h3"},
    "canary": {"revision": 4, "modelVersion": "3", "sha256": "a" * 64, "specHash": "h4",
               "weight": 10, "step": 0},
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
    assert "Traffic:     stable r3 90%, canary r4 10%" in lines
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
