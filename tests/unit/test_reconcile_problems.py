"""reconcile.plan fills `Observation.problems` from the observed pods and Deployments, and maps
`spec.rollout.progressDeadline` onto the rollout policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modeldeploy import names
from modeldeploy.reconcile import policy_from
from modeldeploy.spec import parse_spec
from tests.unit.test_reconcile import NOW, body, deployment, pod, run, stored_after

FORBIDDEN = 'pods "iris-r2-x" is forbidden: maximum cpu usage per Container is 1, but limit is 2'


def refused(revision: int) -> dict[str, Any]:
    d = deployment(revision, 1)
    d["status"] = {
        "readyReplicas": 0,
        "conditions": [
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": FORBIDDEN},
        ],
    }  # fmt: skip
    return d


def stable_iris() -> dict[str, Any]:
    """r1 Stable, then a new model version applied (r2 starts as a canary)."""
    md = body()
    first = run(md)
    md = stored_after(md, first)
    ready = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0), pod(1, 1)]}
    md = stored_after(md, run(md, **ready))
    md["spec"]["model"]["version"] = "2"
    md["spec"]["model"]["sha256"] = "cd" * 32
    md["metadata"]["generation"] = 2
    md = stored_after(md, run(md, **ready))
    assert md["status"]["canary"]["revision"] == 2
    return md


def test_a_canary_refused_by_admission_fails_at_once_with_the_reason() -> None:
    md = stable_iris()
    seen = {"deployments": [deployment(1, 2), refused(2)], "pods": [pod(1, 0), pod(1, 1)]}
    result = run(md, NOW + timedelta(seconds=1), **seen)
    status = stored_after(md, result)["status"]
    assert status["phase"] == names.PHASE_ROLLED_BACK
    last = status["history"][-1]
    assert (last["revision"], last["outcome"], last["reason"]) == (2, "Failed", "FailedCreate")
    assert FORBIDDEN in last["message"]
    assert ("Deployment", "iris-r2") not in result.delete
    assert result.scale.get("iris-r2") == 0
    assert any(e["reason"] == "FailedCreate" for e in result.events)


def test_a_stuck_canary_pod_is_named_in_status() -> None:
    md = stable_iris()
    stuck = pod(2, 0)
    stuck["status"] = {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."},
        ]
    }  # fmt: skip
    pods = [pod(1, 0), pod(1, 1), stuck]
    seen = {"deployments": [deployment(1, 2), deployment(2, 1)], "pods": pods}
    status = stored_after(md, run(md, NOW + timedelta(seconds=1), **seen))["status"]
    assert status["phase"] == names.PHASE_PROGRESSING
    assert status["message"].endswith(
        "0/2 pods ready: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "Unschedulable"


def test_progress_deadline_reaches_the_policy() -> None:
    spec = parse_spec({**body()["spec"], "rollout": {"progressDeadline": "90s"}})
    assert policy_from(spec).progress_deadline == timedelta(seconds=90)
    assert policy_from(parse_spec(body()["spec"])).progress_deadline == timedelta(minutes=10)
