"""What one reconcile observes in the cluster, read for its plan (modeldeploy.reconcile): the
children by revision, the ready pods per revision, the rollout's Observation, the revisions
whose Deployment the API refused, and when the breach behind a rollback began.

Pure: reads the observed objects, does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.analysis import OnNoData, PodView, analyze
from modeldeploy.rollout_types import Breach, Observation, RollbackRequest, RolloutState
from modeldeploy.spec import ModelDeploymentSpec


def observation_from(
    spec: ModelDeploymentSpec,
    spec_hash: str,
    meta: Mapping[str, Any],
    deployments: Mapping[int, dict[str, Any]],
    pods: list[PodView],
    ready: Mapping[int, int],
    state: RolloutState,
    now: datetime,
) -> Observation:
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    # `onNoData` judges a revision under analysis. A revision already proven healthy that sees
    # no traffic is idle, not failing: no data there holds (it can never read as a breach).
    proven = {
        rev.number for rev in (state.stable, state.previous) if rev is not None and rev.proven
    }
    verdicts = {
        revision: analyze(
            pods,
            revision,
            now=now,
            window=spec.analysis.window,
            on_no_data=OnNoData.HOLD if revision in proven else OnNoData(spec.analysis.on_no_data),
        )
        for revision in sorted(deployments)
    }
    # "N" or "N@<nonce>": the nonce makes a repeated request to the same revision a new one.
    rollback_to = annotations.get(names.ANNOTATION_ROLLBACK_TO)
    target = (rollback_to or "").split("@", 1)[0]
    return Observation(
        spec_hash=spec_hash,
        model_version=spec.model.version,
        model_sha256=spec.model.sha256,
        replicas={
            r: int((d.get("spec") or {}).get("replicas") or 0) for r, d in deployments.items()
        },
        ready=ready,
        verdicts=verdicts,
        retry=annotations.get(names.ANNOTATION_RETRY),
        promote=annotations.get(names.ANNOTATION_PROMOTE),
        rollback=(
            RollbackRequest(revision=int(target), token=rollback_to)
            if rollback_to and target.isdigit()
            else None
        ),
        abort=annotations.get(names.ANNOTATION_ABORT),
        paused=annotations.get(names.ANNOTATION_PAUSED, "").lower() == "true",
    )


def by_revision(deployments: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    result: dict[int, dict[str, Any]] = {}
    for d in deployments:
        label = (d["metadata"].get("labels") or {}).get(names.LABEL_REVISION, "")
        if label.isdigit() and not d["metadata"].get("deletionTimestamp"):
            result[int(label)] = d
    return result


def ready_by_revision(
    deployments: Mapping[int, dict[str, Any]], pods: list[PodView]
) -> dict[int, int]:
    """Ready pods per revision, counted from the pods themselves: their events are what wake
    the operator, so the count is never older than the event (a Deployment's readyReplicas
    lags behind its pods)."""
    ready = dict.fromkeys(deployments, 0)
    for pod in pods:
        if pod.revision in ready and pod.ready and not pod.terminating:
            ready[pod.revision] += 1
    return ready


def refused_revisions(md_name: str, refused: list[dict[str, Any]]) -> dict[int, str]:
    """Revision -> "Deployment <name>-r<n>: <the API's words>" for refused revision applies."""
    found = {}
    for r in refused:
        prefix = f"{md_name}-r"
        number = str(r["name"])[len(prefix) :]
        if r["kind"] == "Deployment" and str(r["name"]).startswith(prefix) and number.isdigit():
            found[int(number)] = f"Deployment {r['name']}: {r['message']}"
    return found


def breach_started(breach: Breach, pods: list[dict[str, Any]]) -> datetime | None:
    """The breaching pod's condition transition time: the start of time-to-rollback."""
    for pod in pods:
        if pod["metadata"]["name"] != breach.pod:
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == names.POD_COND_METRICS_HEALTHY and cond.get("status") == "False":
                stamp = cond.get("lastTransitionTime")
                if stamp:
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return breach.at
