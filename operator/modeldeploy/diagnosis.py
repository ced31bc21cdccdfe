"""Why are a revision's pods not ready? One pure reading of its pods and its Deployment.

The rollout waits for ready pods; this module says what it is waiting on, so the status names
the cause within seconds instead of "0/1 pods ready" until the progress deadline. Sources, in
the order a pod is read:

1. the sidecar's `modeldeploy.io/ModelReady=False` condition: the model server's own reason
   (its LoadError cause, e.g. Sha256Mismatch, with the server's message);
2. container states: waiting reasons the kubelet sets (ImagePullBackOff, CrashLoopBackOff, ...)
   and the last termination (OOMKilled, or a termination message naming a load cause, such as
   the fetcher init container's FetchFailed);
3. `PodScheduled=False/Unschedulable`: the scheduler's message (insufficient cpu, missing PVC);
and, for pods that could not even be created, the Deployment's `ReplicaFailure=True` condition
(the ReplicaSet's FailedCreate message, e.g. forbidden by Pod Security or a LimitRange).

`Problem.terminal` means it will not fix itself: the same bytes, image name or admission rule
fail the same way on every retry, so the rollout fails at once instead of at the deadline.
Everything else (image pulls, crash loops, scheduling) may clear up and fails only at the
deadline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from modeldeploy import names

MAX_MESSAGE: Final = 512  # a kubelet or scheduler message can be long; status stays readable

# Kubelet waiting reasons that mean "stuck", not "on its way" (ContainerCreating, PodInitializing).
WAITING_REASONS: Final = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# No retry can fix these: the image reference itself is malformed.
TERMINAL_WAITING: Final = frozenset({"InvalidImageName"})
REASON_OOM_KILLED: Final = "OOMKilled"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_REPLICA_FAILURE: Final = "ReplicaFailure"
# A FailedCreate refused by admission stays refused; a quota may free up as other pods leave.
_FORBIDDEN: Final = re.compile(r"\bforbidden\b|violates PodSecurity|denied request", re.I)
_QUOTA: Final = re.compile(r"exceeded quota", re.I)


@dataclass(frozen=True)
class Problem:
    """Why a revision's pods are not ready: a CamelCase reason, the detail, and whether it can
    fix itself (`terminal=False`) or never will (`terminal=True`)."""

    reason: str
    message: str
    terminal: bool = False

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def revision_problem(
    pods: Iterable[Mapping[str, Any]], deployment: Mapping[str, Any] | None, revision: int
) -> Problem | None:
    """The one problem to report for a revision: a terminal one first, else the first found
    (the Deployment's, then its pods' by name, so the choice is stable across reconciles)."""
    found = [deployment_problem(deployment)] if deployment else []
    mine = [p for p in pods if _revision(p) == revision]
    found += [pod_problem(p) for p in sorted(mine, key=_name)]
    problems = [p for p in found if p is not None]
    return next((p for p in problems if p.terminal), problems[0] if problems else None)


def problems_by_revision(
    pods: Iterable[Mapping[str, Any]], deployments: Mapping[int, Mapping[str, Any]]
) -> dict[int, Problem]:
    listed = list(pods)
    found = {rev: revision_problem(listed, d, rev) for rev, d in deployments.items()}
    return {rev: problem for rev, problem in found.items() if problem is not None}


def pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    """Why this pod is not ready, if it is stuck (None while it is merely starting, or ready)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None  # leaving: whatever it says is about to stop mattering
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if (conditions.get("Ready") or {}).get("status") == "True":
        return None
    model = conditions.get(names.POD_COND_MODEL_READY) or {}
    reason = str(model.get("reason") or "")
    if model.get("status") == "False" and reason and reason != names.REASON_MODEL_LOADING:
        return _problem(reason, str(model.get("message") or ""), _load_terminal(reason))
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if problem := _container_problem(container):
            return problem
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == REASON_UNSCHEDULABLE:
        return _problem(REASON_UNSCHEDULABLE, str(scheduled.get("message") or ""), False)
    return None


def deployment_problem(deployment: Mapping[str, Any]) -> Problem | None:
    """`ReplicaFailure=True`: the ReplicaSet could not create pods (reason FailedCreate)."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == REASON_REPLICA_FAILURE and cond.get("status") == "True":
            message = str(cond.get("message") or "")
            terminal = bool(_FORBIDDEN.search(message)) and not _QUOTA.search(message)
            return _problem(str(cond.get("reason") or REASON_REPLICA_FAILURE), message, terminal)
    return None


def _container_problem(container: Mapping[str, Any]) -> Problem | None:
    name = container.get("name", "?")
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    if cause := _load_cause(terminated) or _load_cause(last):
        return cause
    if failed := _fetch_failure(name, terminated) or _fetch_failure(name, last):
        return failed
    if terminated.get("reason") == REASON_OOM_KILLED or (
        waiting.get("reason") == "CrashLoopBackOff" and last.get("reason") == REASON_OOM_KILLED
    ):
        # Only the model server's memory is the spec's to raise; the sidecar's is the operator's.
        limit = (
            "; raise spec.serving.resources.limits.memory"
            if name == names.CONTAINER_SERVER
            else " (its limit is an operator setting, not part of the spec)"
        )
        return _problem(REASON_OOM_KILLED, f"container {name} ran out of memory{limit}", False)
    reason = str(waiting.get("reason") or "")
    if reason not in WAITING_REASONS:
        return None
    message = str(waiting.get("message") or "")
    if reason == "CrashLoopBackOff":  # not the kubelet's "back-off 40s": it grows each restart
        message = "keeps crashing"
        if last:
            exited = f"exit code {last.get('exitCode')}"
            said = str(last.get("message") or "").strip().splitlines()
            message += f"; last exit: {last.get('reason') or 'Error'} ({exited})"
            message += f": {said[-1]}" if said else ""
    return _problem(reason, f"container {name}: {message}", reason in TERMINAL_WAITING)


def _load_cause(terminated: Mapping[str, Any]) -> Problem | None:
    """The server writes `<Cause>: <detail>` to its termination log when a load fails."""
    text = str(terminated.get("message") or "").strip()
    cause, sep, detail = text.partition(": ")
    if sep and _load_terminal(cause):
        return _problem(cause, detail.splitlines()[0] if detail else "", True)
    return None


def _fetch_failure(container: str, terminated: Mapping[str, Any]) -> Problem | None:
    """The fetcher's `FetchFailed: <detail>` (wrong credentials, missing object): named as
    such rather than as the crash loop it causes, and not terminal."""
    text = str(terminated.get("message") or "").strip()
    cause, sep, detail = text.partition(": ")
    if not sep or cause != names.REASON_FETCH_FAILED:
        return None
    return _problem(cause, f"container {container}: {detail.splitlines()[0]}", False)


def _load_terminal(cause: str) -> bool:
    return cause in names.TERMINAL_LOAD_CAUSES


def _problem(reason: str, message: str, terminal: bool) -> Problem:
    text = " ".join(message.split())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return Problem(reason, text, terminal)


def _revision(pod: Mapping[str, Any]) -> int | None:
    label = str(((pod.get("metadata") or {}).get("labels") or {}).get(names.LABEL_REVISION, ""))
    return int(label) if label.isdigit() else None


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))
