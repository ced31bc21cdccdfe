"""What the sidecar writes to the Kubernetes API, and when. Pure: builders return plain dicts.

- The condition goes on the sidecar's own Pod with a strategic-merge patch of ``status``: pod
  conditions merge by ``type``, so the kubelet's conditions (Ready, ...) are left alone and the
  sidecar never needs to read its Pod (its Role has no ``get``).
- A write is due when the verdict's (status, reason) changes, or ``refresh_seconds`` after the
  last write (fresh numbers in the message, proof the sidecar is alive).
- ``lastTransitionTime`` moves only when the status changes.
- An Event goes on the ModelDeployment each time the written verdict turns False.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from modeldeploy.names import API_VERSION, KIND, POD_COND_METRICS_HEALTHY
from modeldeploy_serving.monitor.verdict import Status, Verdict

COMPONENT: Final = "modeldeploy-monitor"  # Event source.component
REPORTING_CONTROLLER: Final = "modeldeploy.io/monitor"  # Event reportingComponent
_MAX_NAME: Final = 253


class ReportError(Exception):
    """A write the API server did not accept (or never received); worth retrying."""


@dataclass(frozen=True, slots=True)
class Written:
    """The last condition the API server accepted."""

    key: tuple[Status, str]
    transition_time: datetime
    written_at: float  # monotonic seconds


def due(last: Written | None, verdict: Verdict, now: float, refresh_seconds: float) -> bool:
    """Whether ``verdict`` should be written at monotonic time ``now``."""
    return last is None or last.key != verdict.key or now - last.written_at >= refresh_seconds


def transition_time(last: Written | None, verdict: Verdict, now: datetime) -> datetime:
    if last is not None and last.key[0] == verdict.status:
        return last.transition_time
    return now


def needs_event(last: Written | None, verdict: Verdict) -> bool:
    """A Warning Event when the verdict becomes False (and when a False one changes reason)."""
    return verdict.status == Status.FALSE and (last is None or last.key != verdict.key)


def condition_patch(verdict: Verdict, transition: datetime, now: datetime) -> dict[str, Any]:
    """Strategic-merge patch body for ``pods/status``."""
    condition = {
        "type": POD_COND_METRICS_HEALTHY,
        "status": verdict.status.value,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": timestamp(transition),
        "lastProbeTime": timestamp(now),
    }
    return {"status": {"conditions": [condition]}}


def verdict_event(
    *,
    deployment: str,
    deployment_uid: str,
    namespace: str,
    pod: str,
    verdict: Verdict,
    now: datetime,
    suffix: str,
) -> dict[str, Any]:
    """A core/v1 Warning Event on the ModelDeployment; ``suffix`` makes the name unique."""
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{deployment[: _MAX_NAME - len(suffix) - 1]}.{suffix}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": deployment,
            "namespace": namespace,
            "uid": deployment_uid,
        },
        "related": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace},
        "type": "Warning",
        "reason": verdict.reason,
        "message": f"pod {pod}: {verdict.message}",
        "source": {"component": COMPONENT},
        "reportingComponent": REPORTING_CONTROLLER,
        "reportingInstance": pod[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes stores metav1.Time."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
