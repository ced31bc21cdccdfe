"""Why pods are not ready, end to end on the real control plane: the scheduler's and the
ReplicaSet's own messages reach the ModelDeployment's status, and a canary whose pods admission
refuses is rolled back at once (not at the progress deadline), with the reason in history.

KWOK runs no containers, so image pulls and model loads cannot fail here (the model server's
reasons are tested with real processes in tests/serving/test_monitor_process.py); scheduling
and admission are real: a request no node can fit is Unschedulable, and a LimitRange refuses
pods (FailedCreate) exactly as Pod Security would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy import names
from tests.integration.test_operator_core import apply, condition, get_md, manifest, wait_phase
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

# Long, so that anything that fails before it was decided at once, not by the deadline.
SLOW = {"steps": [{"weight": 50, "pause": "1h"}], "progressDeadline": "1h"}


def limit_cpu(cluster: KubeCluster, namespace: str, cpu: str) -> None:
    """Admission refuses any container asking for more than `cpu` (like Pod Security would)."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": "cpu-cap", "namespace": namespace},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": cpu}}]},
            }
        ),
    )


def with_cpu(body: dict[str, Any], cpu: str) -> dict[str, Any]:
    body["spec"]["serving"] = {
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"cpu": cpu}}
    }
    return body


def stable(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    body = with_cpu(manifest(name, namespace, rollout=SLOW), "250m")
    apply(cluster, body)
    wait_phase(cluster, namespace, name, names.PHASE_STABLE)
    return body


def message_says(cluster: KubeCluster, namespace: str, name: str, *parts: str) -> dict[str, Any]:
    def said() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        message = (md.get("status") or {}).get("message", "")
        return md if all(p in message for p in parts) else None

    return dict(wait_until(said, 30, f"status.message naming {parts}", interval=0.2))


def test_an_unschedulable_canary_is_named_in_status_and_keeps_waiting(
    cluster: KubeCluster, op_namespace: str
) -> None:
    body = stable(cluster, op_namespace, "greedy")
    apply(cluster, with_cpu(body, "1000"))  # no KWOK node has 1000 cpus (NODE_CAPACITY)
    md = message_says(cluster, op_namespace, "greedy", "Unschedulable", "Insufficient cpu")
    status = md["status"]
    assert status["phase"] == names.PHASE_PROGRESSING
    assert status["message"].startswith("r2 at 50% (step 1/1): 0/")
    assert condition(md, names.COND_PROGRESSING)["reason"] == "Unschedulable"
    assert status["canary"]["revision"] == 2  # transient: only the deadline fails it
    assert "Failed" not in [h["outcome"] for h in status["history"]]


def test_a_canary_refused_by_admission_rolls_back_at_once(
    cluster: KubeCluster, op_namespace: str
) -> None:
    body = stable(cluster, op_namespace, "capped")
    limit_cpu(cluster, op_namespace, "1")
    apply(cluster, with_cpu(body, "2"))
    md = wait_phase(cluster, op_namespace, "capped", names.PHASE_ROLLED_BACK)
    status = md["status"]
    last = status["history"][-1]
    assert (last["revision"], last["outcome"], last["reason"]) == (2, "Failed", "FailedCreate")
    assert "forbidden" in last["message"] and "maximum cpu usage per Container" in last["message"]
    assert status["stable"]["revision"] == 1 and status.get("canary") is None
    assert status["quarantinedSpecHashes"]
    assert condition(md, names.COND_DEGRADED)["reason"] == "FailedCreate"
    deployment = cluster.get_json("deployment", "capped-r2", "-n", op_namespace)
    assert deployment["spec"]["replicas"] == 0
    events = cluster.get_json(
        "events", "-n", op_namespace, "--field-selector", "involvedObject.name=capped"
    )["items"]
    assert any(e["reason"] == "FailedCreate" and e["type"] == "Warning" for e in events)


def test_a_first_revision_refused_by_admission_is_failed_with_the_reason(
    cluster: KubeCluster, op_namespace: str
) -> None:
    limit_cpu(cluster, op_namespace, "1")
    apply(cluster, with_cpu(manifest("first", op_namespace, rollout=SLOW), "2"))
    md = wait_phase(cluster, op_namespace, "first", names.PHASE_FAILED, timeout=30)
    assert "cannot become ready: FailedCreate" in md["status"]["message"]
    assert condition(md, names.COND_READY)["reason"] == "FailedCreate"
    # Nothing is deleted: the Deployment stays, so a fixed LimitRange or a new spec moves on.
    assert cluster.get_json("deployment", "first-r1", "-n", op_namespace)
