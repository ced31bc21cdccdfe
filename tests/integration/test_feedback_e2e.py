"""Live accuracy from feedback, end to end: real control plane, KWOK pods running the real server
and sidecar (tests/helpers/pod_runtime.py).

r1, a good classifier, is promoted under inference traffic while clients post labelled feedback
through the Service (8 rows per request, true labels from the rule the data was made by). r2 was
trained on shuffled labels: it answers every request with 200 OK and a plausible class, so error
rate and latency hold, but the feedback rows it scores fall far below minAccuracy. It is rolled
back with AccuracyBelowThreshold while r1 keeps serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import names
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import LoadGenerator, PodRuntime
from tests.integration.test_drift_e2e import reference_body, training
from tests.integration.test_rollback_e2e import (
    apply,
    history,
    runtime,
    spec_for,
    wait_md,
    wait_phase,
    wait_proven,
)
from tests.kube import KubeCluster, wait_until
from tests.serving.models import SavedModel, save

pytestmark = pytest.mark.kwok
__all__ = ["runtime"]  # the fixture, shared with the rollback tests

ROWS_PER_REQUEST = 8
MIN_ACCURACY = 0.7


def feedback_body(i: int) -> bytes:
    """Labelled rows drawn like the training data, with their true labels."""
    rows = np.random.default_rng(10_000 + i).normal(size=(ROWS_PER_REQUEST, 6)).round(4)
    labels = np.digitize(rows[:, 0] + 0.5 * rows[:, 1], [-0.5, 0.5])
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64"}
    body = {"inputs": [{**tensor, "data": rows.ravel().tolist()}], "labels": labels.tolist()}
    return json.dumps(body).encode()


def feedback_spec(saved: SavedModel, version: str) -> dict[str, Any]:
    """Long enough a step and bake that the canary is judged while it still has the stable."""
    spec = spec_for(saved, version, steps=[{"weight": 50, "pause": "60s"}], bake="30s")
    spec["analysis"]["thresholds"]["minAccuracy"] = MIN_ACCURACY
    spec["analysis"].update({"feedbackWindow": "20s", "minFeedback": 50})
    return spec


def test_a_model_trained_on_shuffled_labels_is_rolled_back_on_feedback(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = op_namespace
    features, labels = training()
    good = save(LogisticRegression(max_iter=500).fit(features, labels), tmp_path, "good")
    shuffled_labels = np.random.default_rng(3).permutation(labels)
    shuffled = LogisticRegression(max_iter=500).fit(features, shuffled_labels)
    r2 = save(shuffled, tmp_path, "shuffled")

    with (
        LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=240, body=reference_body),
        LoadGenerator(
            runtime.service_endpoints,
            rate=10,
            max_seconds=240,
            body=feedback_body,
            route="feedback",
        ) as feedback,
    ):
        apply(cluster, ns, feedback_spec(good, "1"))
        wait_phase(cluster, ns, names.PHASE_STABLE)
        wait_proven(cluster, ns, 1)  # healthy, feedback accuracy included
        wait_until(lambda: feedback.statuses(1)[200] >= 20, 60, "r1 scores feedback")

        apply(cluster, ns, feedback_spec(r2, "2"))
        md = wait_md(cluster, ns, "r2 rolled back", lambda md: bool(history(md, 2)), 120)
        assert history(md, 2) == [
            (names.OUTCOME_ROLLED_BACK, names.REASON_ACCURACY_BELOW_THRESHOLD)
        ]
        breach = md["status"]["lastBreach"]
        assert breach["reason"] == names.REASON_ACCURACY_BELOW_THRESHOLD
        assert "minAccuracy: accuracy " in breach["message"], breach
        assert f"< {MIN_ACCURACY} over 20s (" in breach["message"], breach
        assert md["status"]["stable"]["revision"] == 1
        assert feedback.statuses(2)[200] > 0  # r2 scored real feedback: 200 OK, wrong answers

        # The stable keeps serving: more feedback and inference answered by r1 after the rollback.
        served = feedback.statuses(1)[200]
        wait_until(lambda: feedback.statuses(1)[200] > served + 10, 60, "r1 still serving")
        assert names.OUTCOME_ROLLED_BACK not in {outcome for outcome, _ in history(md, 1)}
        assert {s for s in feedback.statuses().elements() if s != 200} <= {0, 503}
