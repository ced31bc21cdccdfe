"""Why the model server is not ready, as a pod condition the operator can read. Pure.

The server already knows (its LoadError cause: Sha256Mismatch, InvalidArtifact, WarmupFailed,
...) and says so in the body of ``/v2/health/ready``; the kubelet's readiness probe only keeps
the status code. The sidecar reads the body and writes ``modeldeploy.io/ModelReady`` on its own
Pod: True/``ModelLoaded``, or False with the cause as reason and the server's own line as
message. Written only when (status, reason) changes: a load ends once, so this is one or two
writes per pod.

Why a condition rather than the container's termination message: the server never exits on a
load failure (a crash loop would hide the reason behind back-off), so a termination message
would not be published while the pod waits; and the condition arrives through the same pod
watch the operator already has. (The server still writes its termination log, which the
operator reads too if the container does end.)
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, TypeAlias

import orjson

from modeldeploy.names import (
    MODEL_RUNTIME_MARK,
    POD_COND_MODEL_READY,
    REASON_MODEL_LOADED,
    RUNTIMES,
)
from modeldeploy_serving.monitor.report import timestamp
from modeldeploy_serving.monitor.verdict import Status, Verdict

LOADED_MESSAGE: Final = "model verified, loaded and warmed up"
REASON_NOT_READY: Final = "NotReady"  # a server that gave no usable cause
CAUSE_DRAINING: Final = "Draining"  # shutting down: the pod is leaving, not worth a write
_CAMEL: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,127}")
MAX_MESSAGE: Final = 1024


# One pod condition's value, like a metrics verdict: status, reason, message; written when
# (status, reason) changes.
ModelReadiness: TypeAlias = Verdict


def parse_ready(body: bytes) -> ModelReadiness | None:
    """Read a /v2/health/ready body; None when there is nothing worth writing (not our
    server's format, or a server that is shutting down)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ready"), bool):
        return None
    if data["ready"]:
        runtime = data.get("runtime")
        shown = f"{MODEL_RUNTIME_MARK}{runtime}" if runtime in RUNTIMES else ""
        return ModelReadiness(Status.TRUE, REASON_MODEL_LOADED, LOADED_MESSAGE + shown)
    cause = data.get("cause")
    if cause == CAUSE_DRAINING:
        return None
    reason = cause if isinstance(cause, str) and _CAMEL.fullmatch(cause) else REASON_NOT_READY
    message = str(data.get("reason") or "")[:MAX_MESSAGE]
    return ModelReadiness(Status.FALSE, reason, message)


def condition_patch(
    readiness: ModelReadiness, transition: datetime, now: datetime
) -> dict[str, Any]:
    """Strategic-merge patch body for ``pods/status`` (conditions merge by type)."""
    condition = {
        "type": POD_COND_MODEL_READY,
        "status": readiness.status.value,
        "reason": readiness.reason,
        "message": readiness.message,
        "lastTransitionTime": timestamp(transition),
        "lastProbeTime": timestamp(now),
    }
    return {"status": {"conditions": [condition]}}
