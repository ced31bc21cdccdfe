"""What a reconcile tells the outside world beyond Kubernetes: the notices posted to the
optional webhook (Promoted, RolledBack, Failed) and the per-object gauge values. Pure: the
controller passes the status before and after its write and the events it posted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from modeldeploy import names

# Event reasons that are worth waking a human or a pipeline for.
NOTIFY_EVENT_REASONS: Final = (names.REASON_PROMOTED, names.REASON_ROLLED_BACK)
FAILED: Final = names.PHASE_FAILED


@dataclass(frozen=True)
class Notice:
    """One webhook post. `event` is Promoted, RolledBack or Failed."""

    namespace: str
    name: str
    uid: str
    event: str
    message: str
    phase: str
    stable_revision: int | None
    canary_revision: int | None
    time: str

    def payload(self) -> dict[str, Any]:
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "event": self.event,
            "message": self.message,
            "phase": self.phase,
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "time": self.time,
        }


@dataclass(frozen=True)
class ObjectSeries:
    """The per-ModelDeployment gauge values, read from its status."""

    phase: str
    stable_revision: str  # "" when none: Prometheus labels are strings
    canary_revision: str
    canary_weight: float  # percent; 0 without a canary
    canary_traffic: float


def revision_number(status: Mapping[str, Any], slot: str) -> int | None:
    entry = status.get(slot)
    number = entry.get("revision") if isinstance(entry, Mapping) else None
    return number if isinstance(number, int) else None


def _percent(text: Any) -> float:
    """ "25%" -> 25.0; "-" (no canary) or anything unreadable -> 0."""
    if isinstance(text, str) and text.endswith("%"):
        try:
            return float(text[:-1])
        except ValueError:
            return 0.0
    return 0.0


def object_series(status: Mapping[str, Any]) -> ObjectSeries | None:
    """None until the operator has written a phase."""
    phase = status.get("phase")
    if not isinstance(phase, str) or not phase:
        return None
    stable, canary = revision_number(status, "stable"), revision_number(status, "canary")
    return ObjectSeries(
        phase=phase,
        stable_revision="" if stable is None else str(stable),
        canary_revision="" if canary is None else str(canary),
        canary_weight=_percent(status.get("canaryWeight")),
        canary_traffic=_percent(status.get("canaryTraffic")),
    )


def notices(
    meta: Mapping[str, Any],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    events: Iterable[Mapping[str, str]],
    time: str,
) -> list[Notice]:
    """The notices one reconcile owes: one per Promoted or RolledBack event it posted, and one
    Failed when the phase turned Failed (a Failed phase has several causes and events)."""

    def notice(event: str, message: str) -> Notice:
        return Notice(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            event=event,
            message=message,
            phase=str(after.get("phase", "")),
            stable_revision=revision_number(after, "stable"),
            canary_revision=revision_number(after, "canary"),
            time=time,
        )

    found = [
        notice(e["reason"], e["message"]) for e in events if e["reason"] in NOTIFY_EVENT_REASONS
    ]
    if after.get("phase") == FAILED and before.get("phase") != FAILED:
        found.append(notice(FAILED, str(after.get("message", ""))))
    return found
