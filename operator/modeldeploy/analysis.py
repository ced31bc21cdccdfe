"""Is a revision healthy? One pure decision over its pods' `MetricsHealthy` conditions.

The monitoring sidecar of every model pod judges its own analysis window and writes the verdict
on its Pod as the condition `modeldeploy.io/MetricsHealthy`: True/`WithinThresholds` (at least
`minRequests` requests, every threshold holds), False/`MetricBreach` (the message names metric,
value, threshold, window and request count), or no evidence: reason `InsufficientData` (whose
status the sidecar derives from onNoData: hold Unknown, pass True, fail False) or Unknown for
any other reason (e.g. `ScrapeFailed`). This module turns the pods of one revision into one
`Verdict` for the rollout state machine:

- Only Ready, non-terminating pods of that revision count. A pod that is not Ready serves no
  traffic through the Service, so its metrics say nothing about what clients see; a terminating
  pod is leaving and may report a stale verdict.
- One breaching pod is a breach of the revision (`min_breaching=1`). Every pod of a revision runs
  the same artifact and image, so a breach is evidence against the revision, not noise; each pod
  already judged a whole window of at least `minRequests` requests; and a canary is often one or
  two pods, where any majority rule would wait for the whole canary to fail while clients suffer.
- Healthy needs positive evidence: at least one pod reporting True and none breaching. A silent
  pod does not veto the others (keep-alive clients can leave a pod without traffic), but a
  revision where nobody has evidence is never healthy by default.
- A pod Ready for less than one window cannot have a full window of traffic yet, so its missing
  verdict means "not yet" (Pending), not "no data". Without this, onNoData=fail would roll back
  every canary the moment its pods became Ready.
- No data after a full window is what `onNoData` decides: hold (NoData: wait), pass (Healthy)
  or fail (Breached). The operator applies onNoData itself, from the same spec field the sidecar
  got, so a sidecar's `InsufficientData` is never mistaken for evidence or for a breach, and a
  young pod under onNoData=fail (the sidecar says False at once) is not a breach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from modeldeploy.names import (
    LABEL_REVISION,
    MODEL_RUNTIME_MARK,
    POD_COND_METRICS_HEALTHY,
    POD_COND_MODEL_READY,
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_NO_READY_REPLICAS,
    REASON_WARMING_UP,
    REASON_WITHIN_THRESHOLDS,
    RUNTIMES,
)


class Health(StrEnum):
    """The verdict on one revision."""

    HEALTHY = "Healthy"  # positive evidence (or no data with onNoData=pass), nothing breaching
    BREACHED = "Breached"  # a pod breaches (or no data with onNoData=fail)
    NO_DATA = "NoData"  # Ready pods had a full window but none has a verdict; onNoData=hold
    PENDING = "Pending"  # no Ready pod yet, or every Ready pod is younger than one window


class OnNoData(StrEnum):
    """What a revision without evidence after a full window means (`spec.analysis.onNoData`)."""

    HOLD = "hold"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class PodView:
    """What analysis needs from one Pod (see `pod_view` for reading it from the API)."""

    name: str
    revision: int | None  # the `modeldeploy.io/revision` label; None if absent or malformed
    ready: bool
    ready_since: datetime | None  # lastTransitionTime of the Ready condition
    terminating: bool  # metadata.deletionTimestamp is set
    metrics: str | None = None  # MetricsHealthy status: "True" | "False" | "Unknown" | None
    reason: str = ""
    message: str = ""
    runtime: str | None = None  # what predicts, from ModelReady=True's message (sklearn | onnx)


@dataclass(frozen=True)
class Verdict:
    """The health of one revision, with a CamelCase reason and a message naming the pod."""

    health: Health
    reason: str
    message: str
    pod: str | None = None  # the pod the message is about (breaching, or lacking data)
    recheck_at: datetime | None = None  # when this verdict changes by itself (a window ends)


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Read a Pod as returned by the API (a plain dict) into a `PodView`."""
    meta = pod.get("metadata") or {}
    conditions = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    metrics = conditions.get(POD_COND_METRICS_HEALTHY)
    revision = (meta.get("labels") or {}).get(LABEL_REVISION, "")
    return PodView(
        name=str(meta.get("name", "")),
        revision=int(revision) if str(revision).isdigit() else None,
        ready=ready.get("status") == "True",
        ready_since=_parse_time(ready.get("lastTransitionTime")),
        terminating=meta.get("deletionTimestamp") is not None,
        metrics=None if metrics is None else str(metrics.get("status")),
        reason=str((metrics or {}).get("reason") or ""),
        message=str((metrics or {}).get("message") or ""),
        runtime=model_runtime(conditions.get(POD_COND_MODEL_READY)),
    )


def model_runtime(model_ready: Mapping[str, Any] | None) -> str | None:
    """The runtime a loaded model server names in its ModelReady condition, if any."""
    if not model_ready or model_ready.get("status") != "True":
        return None
    _, mark, runtime = str(model_ready.get("message") or "").rpartition(MODEL_RUNTIME_MARK)
    return runtime if mark and runtime in RUNTIMES else None


def runtimes(pods: Iterable[PodView]) -> dict[int, str]:
    """Per revision, the runtime its ready pods report: one name, or "mixed" if they differ
    (an `auto` choice can differ between pods only if conversion failed on some)."""
    seen: dict[int, set[str]] = {}
    for pod in pods:
        if pod.revision is not None and pod.ready and not pod.terminating and pod.runtime:
            seen.setdefault(pod.revision, set()).add(pod.runtime)
    return {rev: next(iter(names)) if len(names) == 1 else "mixed" for rev, names in seen.items()}


def analyze(
    pods: Iterable[PodView],
    revision: int,
    *,
    now: datetime,
    window: timedelta,
    on_no_data: OnNoData,
    min_breaching: int = 1,
) -> Verdict:
    """Judge one revision from its pods (pods of other revisions are ignored)."""
    counted = [p for p in pods if p.revision == revision and p.ready and not p.terminating]
    if not counted:
        return Verdict(
            Health.PENDING, REASON_NO_READY_REPLICAS, f"r{revision} has no Ready pod yet"
        )
    breaching = [p for p in counted if p.metrics == "False" and _has_data(p)]
    if breaching and len(breaching) >= min_breaching:
        first = breaching[0]
        more = (
            f" ({len(breaching)} of {len(counted)} Ready pods breach)" if len(counted) > 1 else ""
        )
        return Verdict(
            Health.BREACHED,
            first.reason or REASON_METRIC_BREACH,
            f"pod {first.name}: {first.message or 'metrics out of thresholds'}{more}",
            first.name,
        )
    within = [p for p in counted if p.metrics == "True" and _has_data(p)]
    if within:
        return Verdict(
            Health.HEALTHY,
            REASON_WITHIN_THRESHOLDS,
            f"{len(within)} of {len(counted)} Ready pods of r{revision} within thresholds",
        )
    silent = [p for p in counted if not _warming(p, now, window)]
    if not silent:
        return Verdict(
            Health.PENDING,
            REASON_WARMING_UP,
            f"r{revision}: Ready pods have served for less than one window ({_secs(window)})",
            recheck_at=min(p.ready_since for p in counted if p.ready_since) + window,
        )
    return _no_data(silent[0], len(silent), revision, window, on_no_data)


def analyze_revisions(
    pods: Iterable[PodView],
    revisions: Iterable[int],
    *,
    now: datetime,
    window: timedelta,
    on_no_data: OnNoData,
    min_breaching: int = 1,
) -> dict[int, Verdict]:
    """`analyze` for several revisions: the map `rollout_types.Observation.verdicts` expects."""
    views = list(pods)
    return {
        n: analyze(
            views, n, now=now, window=window, on_no_data=on_no_data, min_breaching=min_breaching
        )
        for n in revisions
    }


def _no_data(
    pod: PodView, silent: int, revision: int, window: timedelta, on_no_data: OnNoData
) -> Verdict:
    said = f"{pod.reason}: {pod.message}" if pod.reason or pod.message else "no verdict reported"
    message = (
        f"no evidence for r{revision} after one window ({_secs(window)}) from {silent} Ready "
        f"pod(s); pod {pod.name}: {said}; onNoData={on_no_data.value}"
    )
    health = {
        OnNoData.HOLD: Health.NO_DATA,
        OnNoData.PASS: Health.HEALTHY,
        OnNoData.FAIL: Health.BREACHED,
    }[on_no_data]
    return Verdict(health, REASON_INSUFFICIENT_DATA, message, pod.name)


def _has_data(pod: PodView) -> bool:
    return pod.reason != REASON_INSUFFICIENT_DATA


def _warming(pod: PodView, now: datetime, window: timedelta) -> bool:
    return pod.ready_since is not None and now - pod.ready_since < window


def _secs(delta: timedelta) -> str:
    return f"{delta.total_seconds():g}s"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
