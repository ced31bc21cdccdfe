"""ModelDeployment objects as the operator leaves them, shared by the CLI unit tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from modeldeploy import names

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64


def progressing() -> dict[str, Any]:
    """r3 (version 2) stable, r4 (version 3) canary at 10% on step 1 of 2; r2 was rolled back."""
    return copy.deepcopy(
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": "iris", "namespace": "ml", "generation": 4, "annotations": {}},
            "spec": {
                "model": {"name": "iris", "version": "3", "sha256": SHA_A},
                "rollout": {"steps": [{"weight": 10}, {"weight": 50}]},
            },
            "status": {
                "phase": names.PHASE_PROGRESSING,
                "observedGeneration": 4,
                "message": "canary r4 at 10%, analysing",
                "canaryWeight": "10%",
                "canaryTraffic": "33%",
                "readyPods": "3/3",
                "readyReplicas": 3,
                "stable": {"revision": 3, "modelVersion": "2", "sha256": SHA_B, "specHash": "h3",
                           "weight": 90, "traffic": 67, "readyReplicas": 2},
                "canary": {"revision": 4, "modelVersion": "3", "sha256": SHA_A, "specHash": "h4",
                           "weight": 10, "traffic": 33, "step": 0, "readyReplicas": 1,
                           "nextStepAt": "2026-01-02T12:00:52Z"},
                "conditions": [
                    {"type": names.COND_READY, "status": "True", "reason": "StableServing",
                     "message": "r3 serves", "lastTransitionTime": "2026-01-02T11:00:00Z"},
                    {"type": names.COND_DEGRADED, "status": "True", "reason": "MetricBreach",
                     "message": "errorRate high", "lastTransitionTime": "2026-01-02T11:59:30Z"},
                ],
                "quarantinedSpecHashes": ["h2"],
                "history": [
                    {"revision": 1, "modelVersion": "1", "sha256": SHA_B, "specHash": "h1",
                     "outcome": names.OUTCOME_PROMOTED, "startedAt": "2026-01-01T12:00:00Z",
                     "finishedAt": "2026-01-01T12:05:00Z"},
                    {"revision": 2, "modelVersion": "1.1", "specHash": "h2",
                     "outcome": names.OUTCOME_ROLLED_BACK, "reason": "MetricBreach",
                     "message": "errorRate 0.2 > 0.01",
                     "startedAt": "2026-01-02T10:00:00Z", "finishedAt": "2026-01-02T10:01:00Z"},
                    {"revision": 3, "modelVersion": "2", "specHash": "h3",
                     "outcome": names.OUTCOME_PROMOTED, "startedAt": "2026-01-02T11:00:00Z",
                     "finishedAt": "2026-01-02T11:10:00Z"},
                ],
                "lastBreach": {"revision": 2, "pod": "iris-r2-x", "reason": "MetricBreach",
                               "message": "errorRate 0.2 > 0.01 over 30s (120 requests)",
                               "time": "2026-01-02T11:58:00Z"},
            },
        }
    )  # fmt: skip


def stable() -> dict[str, Any]:
    """The same object once r3 is stable and nothing is rolling out."""
    obj = progressing()
    status = obj["status"]
    del status["canary"], status["lastBreach"]
    status.update(phase=names.PHASE_STABLE, message="r3 serves 100%")
    status.update(canaryWeight="-", canaryTraffic="-", readyPods="2/2")
    status["stable"].update(weight=100, traffic=100)
    status["quarantinedSpecHashes"] = []
    return obj
