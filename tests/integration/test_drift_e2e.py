"""Drift rollbacks end to end: real control plane, KWOK pods running the real server and sidecar
(tests/helpers/pod_runtime.py), each revision pinned to a reference profile built here with
`build_profile` from its training data.

One story: r1, a good classifier under traffic drawn like its training data, is promoted; r2, a
pipeline fitted on inputs in other units (millimetres, while clients send metres: every answer
is 200 OK, the inputs are far from its reference), is rolled back with FeatureDrift; r3, a
constant predictor shipped with r1's profile (a bad export), is rolled back with
PredictionDrift; r4, a good model deployed once the clients' traffic has drifted, breaches
FeatureDrift naming the column, and since r1 breaches too the rollout stops instead of rolling
back onto it. Requests carry 8 rows, so a 5 s window
holds hundreds of rows and sampling noise stays near (bins - 1) / rows, well under 0.5.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy import names
from modeldeploy_serving.profile import build_profile
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import LoadGenerator, PodRuntime, v2_body
from tests.integration.test_cli import cli
from tests.integration.test_rollback_e2e import (
    MD,
    apply,
    condition,
    history,
    runtime,
    spec_for,
    wait_md,
    wait_phase,
    wait_proven,
)
from tests.kube import KubeCluster
from tests.serving.models import SavedModel, save

pytestmark = pytest.mark.kwok
__all__ = ["runtime"]  # the fixture, shared with the rollback tests

ROWS_PER_REQUEST = 8
THRESHOLD = 0.5


def training(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    features = np.random.default_rng(7).normal(size=(n, 6))
    labels = np.digitize(features[:, 0] + 0.5 * features[:, 1], [-0.5, 0.5])
    return features, labels


def reference_body(i: int) -> bytes:
    """Client traffic: drawn like r1's training data."""
    return v2_body(np.random.default_rng(i).normal(size=(ROWS_PER_REQUEST, 6)).round(4))


def drifted_body(i: int) -> bytes:
    """Client traffic after a change upstream (a sensor recalibrated): column 2 moved by three
    standard deviations."""
    rows = np.random.default_rng(i).normal(size=(ROWS_PER_REQUEST, 6))
    rows[:, 2] += 3.0
    return v2_body(rows.round(4))


def profiled(
    estimator: Any, features: np.ndarray, directory: Path, name: str, profile_of: Any = None
) -> tuple[SavedModel, dict[str, str]]:
    saved = save(estimator, directory, name)
    raw = orjson.dumps(build_profile(features, profile_of or estimator))
    path = directory / f"{name}.profile.json"
    path.write_bytes(raw)
    return saved, {"uri": path.resolve().as_uri(), "sha256": hashlib.sha256(raw).hexdigest()}


def stable_runtime(md: dict[str, Any]) -> str | None:
    runtime = (md["status"].get("stable") or {}).get("runtime")
    return str(runtime) if runtime else None


def drift_spec(
    saved: SavedModel, version: str, profile: dict[str, str], **thresholds: float
) -> dict[str, Any]:
    spec = spec_for(saved, version)
    spec["model"]["profile"] = profile
    spec["analysis"]["minRequests"] = 20
    spec["analysis"]["thresholds"].update(thresholds)
    return spec


def test_feature_and_prediction_drift_roll_back_a_good_model_is_promoted(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = op_namespace
    x1, y1 = training()
    good = LogisticRegression(max_iter=500).fit(x1, y1)
    r1, r1_profile = profiled(good, x1, tmp_path, "good")
    # Fitted on inputs in other units (millimetres where clients send metres): a scaler inside
    # the pipeline hides it from the error rate, the profile of its training data does not.
    x1_mm = x1 * 1000.0
    in_mm = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x1_mm, y1)
    r2, r2_profile = profiled(in_mm, x1_mm, tmp_path, "millimetres")
    constant = DummyClassifier(strategy="most_frequent").fit(x1, y1)
    r3, _ = profiled(constant, x1, tmp_path, "constant")
    both = {"predictionDrift": THRESHOLD, "featureDrift": THRESHOLD}

    with LoadGenerator(
        runtime.service_endpoints, rate=20, max_seconds=360, body=reference_body
    ) as load:
        apply(cluster, ns, drift_spec(r1, "1", r1_profile, **both))
        wait_phase(cluster, ns, names.PHASE_STABLE)
        wait_proven(cluster, ns, 1)  # within both drift thresholds on real traffic
        # The compiled runtime serves it, and status says so (from the pods' ModelReady).
        wait_md(cluster, ns, "r1's runtime in status", lambda md: stable_runtime(md) == "onnx", 60)
        # What a person reads: each serving pod's figures, the drift scores among them.
        shown = cli(cluster, "status", MD, "-n", ns)
        assert shown.returncode == 0, shown.stderr
        [health] = [line for line in shown.stdout.splitlines() if line.startswith("  r1 stable")]
        assert "Healthy: " in health and "predictionDrift PSI " in health, health
        assert "featureDrift '" in health and f"<= {THRESHOLD:g}" in health, health

        # Prediction drift unset: this model's answers on these inputs may skew as well,
        # and this revision is about its inputs.
        apply(cluster, ns, drift_spec(r2, "2", r2_profile, featureDrift=THRESHOLD))
        md = wait_md(cluster, ns, "r2 rolled back", lambda md: bool(history(md, 2)), 120)
        assert history(md, 2) == [(names.OUTCOME_ROLLED_BACK, names.REASON_FEATURE_DRIFT)]
        breach = md["status"]["lastBreach"]
        assert breach["reason"] == names.REASON_FEATURE_DRIFT
        assert "featureDrift feature '" in breach["message"] and " rows)" in breach["message"]
        assert md["status"]["stable"]["revision"] == 1

        apply(cluster, ns, drift_spec(r3, "3", r1_profile, **both))
        md = wait_md(cluster, ns, "r3 rolled back", lambda md: bool(history(md, 3)), 120)
        assert history(md, 3) == [(names.OUTCOME_ROLLED_BACK, names.REASON_PREDICTION_DRIFT)]
        degraded = condition(md, names.COND_DEGRADED)
        assert degraded["reason"] == names.REASON_PREDICTION_DRIFT
        assert "predictionDrift PSI" in degraded["message"]
        assert md["status"]["stable"]["revision"] == 1
        assert load.statuses(3)[200] > 0  # r3 answered real requests: 200 OK, wrong answers

        # A good model (retrained on r1's data, with its own profile) while the clients' inputs
        # drift from the training data: nothing is wrong with the model, its traffic is. r1
        # sees the same inputs and breaches too, so rolling back would not help: the rollout
        # stops, r1 keeps serving, and status says why.
        load.body = drifted_body
        retrained = LogisticRegression(C=0.5, max_iter=500).fit(x1, y1)  # a new model, as good
        r4, r4_profile = profiled(retrained, x1, tmp_path, "r4")
        apply(cluster, ns, drift_spec(r4, "4", r4_profile, featureDrift=THRESHOLD))

        def stopped_on_drift(md: dict[str, Any]) -> bool:
            progressing = condition(md, names.COND_PROGRESSING)
            return progressing.get("reason") == names.REASON_FEATURE_DRIFT

        md = wait_md(cluster, ns, "r4's rollout stopped on feature drift", stopped_on_drift, 120)
        breach = md["status"]["lastBreach"]
        assert breach["revision"] == 4 and breach["reason"] == names.REASON_FEATURE_DRIFT
        assert "featureDrift feature '2' PSI " in breach["message"], breach
        degraded = condition(md, names.COND_DEGRADED)
        assert "no rollback onto r1, which breaches too" in degraded["message"], degraded
        assert md["status"]["stable"]["revision"] == 1 and not history(md, 4)
