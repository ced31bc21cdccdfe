"""diagnosis: why a revision's pods are not ready, from pod and Deployment JSON as the API
server returns it (shapes copied from real kubelet, scheduler and ReplicaSet output)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.diagnosis import (
    Problem,
    deployment_problem,
    pod_problem,
    problems_by_revision,
    revision_problem,
)


def pod(
    name: str = "iris-r2-7d9f-abcde",
    revision: int = 2,
    *,
    ready: bool = False,
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ml",
        "labels": {names.LABEL_NAME: "iris", names.LABEL_REVISION: str(revision)},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    base = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-03-01T12:00:00Z"},
        {"type": "Ready", "status": "True" if ready else "False", "reason": "ContainersNotReady"},
    ]
    by_type = {c["type"]: c for c in [*base, *(conditions or [])]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "status": {
            "phase": "Pending",
            "conditions": list(by_type.values()),
            "initContainerStatuses": init or [_running(names.CONTAINER_MONITOR)],
            "containerStatuses": containers or [_running(names.CONTAINER_SERVER)],
        },
    }


def _running(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": 0,
        "image": "ghcr.io/modeldeploy/modeldeploy:0.1.0",
        "state": {"running": {"startedAt": "2026-03-01T12:00:05Z"}},
    }


def _waiting(
    reason: str,
    message: str,
    last: dict[str, Any] | None = None,
    name: str = names.CONTAINER_SERVER,
) -> dict[str, Any]:
    status = _running(name)
    status["state"] = {"waiting": {"reason": reason, "message": message}}
    if last:
        status["lastState"] = {"terminated": last}
        status["restartCount"] = 4
    return status


def _model_ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": names.POD_COND_MODEL_READY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-03-01T12:00:07Z",
    }


def deployment(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "iris-r2", "labels": {names.LABEL_REVISION: "2"}},
        "status": {"observedGeneration": 1, "replicas": 0, "conditions": conditions},
    }


SHA_MISMATCH = (
    "model failed to load: Sha256Mismatch: https://models.example.com/iris/3.joblib: expected "
    "sha256 9f86d081884c..., got 2c26b46b68ff..."
)
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod.",
}
NO_PVC = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": '0/3 nodes are available: persistentvolumeclaim "models" not found. '
    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
}
FORBIDDEN_PSA = (
    'pods "iris-r2-7d9f-abcde" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "model-server" must set '
    "securityContext.allowPrivilegeEscalation=false)"
)
FORBIDDEN_LIMIT = (
    'pods "iris-r2-7d9f-abcde" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
)
QUOTA = (
    'pods "iris-r2-7d9f-abcde" is forbidden: exceeded quota: compute, requested: '
    "requests.cpu=250m, used: requests.cpu=2, limited: requests.cpu=2"
)


def replica_failure(message: str) -> dict[str, Any]:
    return {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": message,
        "lastTransitionTime": "2026-03-01T12:00:01Z",
    }


@dataclass(frozen=True)
class Case:
    id: str
    pod: dict[str, Any]
    reason: str | None  # None: no problem
    terminal: bool = False
    says: str = ""


POD_CASES = [
    Case("ready pod: nothing to say", pod(ready=True), None),
    Case("starting container: not a problem yet", pod(), None),
    Case(
        "container creating: not a problem yet",
        pod(containers=[_waiting("ContainerCreating", "")]),
        None,
    ),
    Case(
        "image pull back-off",
        pod(
            containers=[
                _waiting(
                    "ImagePullBackOff",
                    'Back-off pulling image "registry.example.com/iris:typo"',
                )
            ]
        ),
        "ImagePullBackOff",
        False,
        'container model-server: Back-off pulling image "registry.example.com/iris:typo"',
    ),
    Case(
        "image pull error",
        pod(
            containers=[
                _waiting(
                    "ErrImagePull",
                    'failed to pull and unpack image "x": not found',
                )
            ]
        ),
        "ErrImagePull",
        False,
        "not found",
    ),
    Case(
        "invalid image name never fixes itself",
        pod(
            containers=[
                _waiting("InvalidImageName", 'Failed to apply default image tag "UPPER:case"')
            ]
        ),
        "InvalidImageName",
        True,
        "UPPER:case",
    ),
    Case(
        "crash loop names the last exit and its message",
        pod(
            containers=[
                _waiting(
                    "CrashLoopBackOff",
                    "back-off 40s restarting failed container=model-server",
                    {"reason": "Error", "exitCode": 2, "message": "usage: bad flag --x\n"},
                )
            ]
        ),
        "CrashLoopBackOff",
        False,
        "last exit: Error (exit code 2): usage: bad flag --x",
    ),
    Case(
        "a fetcher that cannot download says why, not that it crash-loops",
        pod(
            init=[
                _waiting(
                    "CrashLoopBackOff",
                    "back-off 20s restarting failed container=fetch-model",
                    {
                        "reason": "Error",
                        "exitCode": 3,
                        "message": "FetchFailed: s3://b/m.joblib: access denied (AccessDenied: "
                        "Access Denied); check the credentials given in spec.model.env\n",
                    },
                    name=names.CONTAINER_FETCHER,
                ),
                _running(names.CONTAINER_MONITOR),
            ]
        ),
        "FetchFailed",
        False,
        "container fetch-model: s3://b/m.joblib: access denied (AccessDenied",
    ),
    Case(
        "crash loop after an OOM kill is OOMKilled",
        pod(
            containers=[
                _waiting(
                    "CrashLoopBackOff",
                    "back-off 20s restarting failed container=model-server",
                    {"reason": "OOMKilled", "exitCode": 137},
                )
            ]
        ),
        "OOMKilled",
        False,
        "limits.memory",
    ),
    Case(
        "an OOM-killed sidecar is not the spec's memory to raise",
        pod(
            init=[
                dict(
                    _waiting("CrashLoopBackOff", "back-off", {"reason": "OOMKilled"}),
                    name=names.CONTAINER_MONITOR,
                )
            ]
        ),
        "OOMKilled",
        False,
        "operator setting",
    ),
    Case(
        "config error (a missing ConfigMap may appear)",
        pod(containers=[_waiting("CreateContainerConfigError", 'configmap "iris-env" not found')]),
        "CreateContainerConfigError",
        False,
        "iris-env",
    ),
    Case(
        "the sidecar's image cannot be pulled either",
        pod(init=[dict(_waiting("ImagePullBackOff", "Back-off"), name=names.CONTAINER_MONITOR)]),
        "ImagePullBackOff",
        False,
        "container monitor",
    ),
    Case(
        "unschedulable: insufficient cpu",
        pod(conditions=[UNSCHEDULABLE], containers=[], init=[]),
        "Unschedulable",
        False,
        "Insufficient cpu",
    ),
    Case(
        "unschedulable: missing PVC",
        pod(conditions=[NO_PVC], containers=[], init=[]),
        "Unschedulable",
        False,
        'persistentvolumeclaim "models" not found',
    ),
    Case(
        "server: sha256 mismatch is terminal",
        pod(conditions=[_model_ready("False", "Sha256Mismatch", SHA_MISMATCH)]),
        "Sha256Mismatch",
        True,
        "expected sha256 9f86d081884c",
    ),
    Case(
        "server: unloadable artifact is terminal",
        pod(
            conditions=[
                _model_ready(
                    "False",
                    "InvalidArtifact",
                    "model failed to load: InvalidArtifact: not a joblib file",
                )
            ]
        ),
        "InvalidArtifact",
        True,
    ),
    Case(
        "server: warm-up failure is terminal",
        pod(conditions=[_model_ready("False", "WarmupFailed", "predict on zeros raised")]),
        "WarmupFailed",
        True,
    ),
    Case(
        "server: scikit-learn version skew refused is terminal",
        pod(
            conditions=[
                _model_ready("False", "IncompatibleSklearnVersion", "saved with 1.3, runs 1.6")
            ]
        ),
        "IncompatibleSklearnVersion",
        True,
    ),
    Case(
        "server: a failed fetch may succeed on a restart",
        pod(conditions=[_model_ready("False", "FetchFailed", "HTTP 503 from models.example")]),
        "FetchFailed",
        False,
    ),
    Case(
        "server: still loading is not a problem",
        pod(conditions=[_model_ready("False", names.REASON_MODEL_LOADING, "model is loading")]),
        None,
    ),
    Case(
        "a termination message naming a load cause is terminal",
        pod(
            containers=[
                _waiting(
                    "CrashLoopBackOff",
                    "back-off",
                    {
                        "reason": "Error",
                        "exitCode": 5,
                        "message": "Sha256Mismatch: expected 9f86..., got 2c26...\n",
                    },
                )
            ]
        ),
        "Sha256Mismatch",
        True,
        "expected 9f86..., got 2c26...",
    ),
    Case(
        "a terminating pod says nothing",
        pod(conditions=[_model_ready("False", "Sha256Mismatch", "x")], terminating=True),
        None,
    ),
]


@pytest.mark.parametrize("case", POD_CASES, ids=lambda c: c.id)
def test_pod_problem(case: Case) -> None:
    problem = pod_problem(case.pod)
    if case.reason is None:
        assert problem is None
        return
    assert problem is not None
    assert (problem.reason, problem.terminal) == (case.reason, case.terminal)
    assert case.says in problem.message


@pytest.mark.parametrize(
    ("message", "terminal"),
    [
        (FORBIDDEN_PSA, True),
        (FORBIDDEN_LIMIT, True),
        ("admission webhook denied request: no", True),
        (QUOTA, False),
        ("Internal error occurred: resource quota evaluation timed out", False),
    ],
    ids=["pod-security", "limit-range", "webhook", "quota", "timeout"],
)
def test_failed_create(message: str, terminal: bool) -> None:
    problem = deployment_problem(deployment([replica_failure(message)]))
    assert problem == Problem("FailedCreate", message, terminal)


def test_a_deployment_without_replica_failure_has_no_problem() -> None:
    available = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}
    resolved = dict(replica_failure(QUOTA), status="False")
    assert deployment_problem(deployment([available, resolved])) is None


def test_revision_prefers_a_terminal_problem_and_ignores_other_revisions() -> None:
    pulling = pod("iris-r2-a", containers=[_waiting("ImagePullBackOff", "Back-off")])
    mismatch = pod("iris-r2-b", conditions=[_model_ready("False", "Sha256Mismatch", "x")])
    other = pod("iris-r1-a", revision=1, containers=[_waiting("InvalidImageName", "bad")])
    found = revision_problem([other, pulling, mismatch], None, 2)
    assert found == Problem("Sha256Mismatch", "x", True)
    assert revision_problem([other, pulling], None, 2) == Problem(
        "ImagePullBackOff", "container model-server: Back-off", False
    )
    assert revision_problem([other], None, 2) is None


def test_revision_without_pods_reads_its_deployment() -> None:
    refused = deployment([replica_failure(FORBIDDEN_PSA)])
    assert problems_by_revision([], {2: refused, 1: deployment([])}) == {
        2: Problem("FailedCreate", FORBIDDEN_PSA, True)
    }


def test_long_messages_are_cut_and_whitespace_folded() -> None:
    long = pod(conditions=[dict(UNSCHEDULABLE, message="x\n  y " * 400)], containers=[], init=[])
    problem = pod_problem(long)
    assert problem is not None
    assert len(problem.message) <= 512 and "\n" not in problem.message
    assert problem.message.startswith("x y x y")


def test_input_is_not_modified() -> None:
    original = pod(conditions=[UNSCHEDULABLE])
    seen = copy.deepcopy(original)
    pod_problem(seen)
    assert seen == original


def test_str_is_reason_then_message() -> None:
    assert str(Problem("Unschedulable", "0/3 nodes", False)) == "Unschedulable: 0/3 nodes"
