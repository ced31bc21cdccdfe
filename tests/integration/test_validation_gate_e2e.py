"""The validation gate end to end: real control plane, KWOK pods running the real server and
sidecar (tests/helpers/pod_runtime.py), iris models trained here, a held-out labelled CSV.

One story: r1, a good classifier without a gate, is promoted under traffic; r2, a model trained
on shuffled labels (answers 200 OK, about one in three right), comes with
`analysis.validation: {metric: accuracy, threshold: 0.8}`: its server scores the hold-out set at
warm-up, never turns ready, and the canary is Failed with reason ValidationFailed (history,
Degraded condition, Warning Event) while r1 keeps serving every request; r3, a good model under
the same gate, passes it and is promoted. A second test fetches model and dataset from a real S3
server through the fetcher init containers (fetch-model, fetch-validation).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from modeldeploy import names
from tests.helpers.object_stores import Stores
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import LoadGenerator, PodRuntime, infer, v2_body
from tests.integration.test_rollback_e2e import (
    MD,
    apply,
    condition,
    event_messages,
    history,
    recorded,
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

THRESHOLD = 0.8


def iris_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    features, labels = load_iris(return_X_y=True)
    split = train_test_split(features, labels, test_size=0.4, random_state=0, stratify=labels)
    return split[0], split[1], split[2], split[3]


def holdout_csv(path: Path, features: np.ndarray, labels: np.ndarray) -> bytes:
    """Columns f0..f3 and `label` (the default label column), a header row."""
    header = ",".join([*(f"f{i}" for i in range(features.shape[1])), "label"])
    rows = (
        ",".join(map(repr, [*r, int(y)])) for r, y in zip(features.tolist(), labels, strict=True)
    )
    path.write_text("\n".join([header, *rows]) + "\n")
    return path.read_bytes()


def gated(model: SavedModel, version: str, uri: str, data: bytes) -> dict[str, Any]:
    spec = spec_for(model, version)
    spec["analysis"]["validation"] = {
        "uri": uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "metric": "accuracy",
        "threshold": THRESHOLD,
    }
    return spec


def iris_body(i: int) -> bytes:
    """Two rows near the iris measurements (4 features)."""
    rng = np.random.default_rng(i)
    return v2_body((rng.normal(size=(2, 4)) * 0.5 + [5.8, 3.0, 3.8, 1.2]).round(2))


def test_a_model_below_the_threshold_never_gets_traffic_a_good_one_is_promoted(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = op_namespace
    x_train, x_test, y_train, y_test = iris_split()
    good = save(LogisticRegression(max_iter=1000).fit(x_train, y_train), tmp_path, "good")
    shuffled = np.random.default_rng(3).permutation(y_train)
    bad_estimator = LogisticRegression(max_iter=1000).fit(x_train, shuffled)
    # The premise: the shuffled model really misses the threshold, the good one meets it.
    assert bad_estimator.score(x_test, y_test) < THRESHOLD <= good.estimator.score(x_test, y_test)
    bad = save(bad_estimator, tmp_path, "shuffled")
    better = save(LogisticRegression(max_iter=1000, C=0.5).fit(x_train, y_train), tmp_path, "r3")
    data = holdout_csv(tmp_path / "holdout.csv", x_test, y_test)
    uri = (tmp_path / "holdout.csv").resolve().as_uri()

    with LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=240, body=iris_body) as load:
        apply(cluster, ns, spec_for(good, "1"))
        wait_phase(cluster, ns, names.PHASE_STABLE)
        wait_proven(cluster, ns, 1)

        apply(cluster, ns, gated(bad, "2", uri, data))
        md = wait_md(cluster, ns, "r2 failed", recorded(2), 120)
        assert history(md, 2) == [(names.OUTCOME_FAILED, "ValidationFailed")]
        (entry,) = [h for h in md["status"]["history"] if h["revision"] == 2]
        # Metric, value, threshold and rows, as the server computed them.
        said = (
            f"accuracy {bad_estimator.score(x_test, y_test):.4g} is below the threshold "
            f"{THRESHOLD:g} on {len(y_test)} validation rows"
        )
        assert said in entry["message"]
        assert md["status"]["stable"]["revision"] == 1
        assert condition(md, names.COND_DEGRADED)["reason"] == "ValidationFailed"
        assert any(said in m for m in event_messages(cluster, ns, "ValidationFailed"))
        # Never ready, so never in the Service: no user request reached r2, r1 kept serving.
        assert load.statuses(2) == {}
        assert runtime.endpoints(2) == []
        served_before = load.statuses(1)[200]
        wait_until(lambda: load.statuses(1)[200] > served_before + 20, 30, "r1 still serving")

        apply(cluster, ns, gated(better, "3", uri, data))
        md = wait_md(cluster, ns, "r3 promoted", recorded(3), 120)
        assert history(md, 3) == [(names.OUTCOME_PROMOTED, names.REASON_PROMOTED)]
        assert md["status"]["stable"]["revision"] == 3
        assert load.statuses(3)[200] > 0
    assert runtime.errors() == []


def test_model_and_dataset_in_s3_are_fetched_and_the_gate_passes(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    object_stores: Stores,
    tmp_path: Path,
) -> None:
    x_train, x_test, y_train, y_test = iris_split()
    model = save(LogisticRegression(max_iter=1000).fit(x_train, y_train), tmp_path, "s3-good")
    data = holdout_csv(tmp_path / "holdout.csv", x_test, y_test)
    spec = gated(model, "1", object_stores.put_s3("gate/iris/holdout.csv", data), data)
    spec["model"]["uri"] = object_stores.put_s3("gate/iris/model.joblib", model.path.read_bytes())
    spec["model"]["env"] = [{"name": k, "value": v} for k, v in object_stores.s3_env().items()]
    apply(cluster, op_namespace, spec)
    wait_phase(cluster, op_namespace, names.PHASE_STABLE)

    (pod,) = cluster.get_json("pods", "-n", op_namespace, "-l", f"{names.LABEL_NAME}={MD}")["items"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [
        names.CONTAINER_FETCHER,
        names.CONTAINER_VALIDATION_FETCHER,
        names.CONTAINER_MONITOR,
    ]
    endpoints = wait_until(runtime.endpoints, timeout=60, what="a ready model server")
    assert infer(endpoints[0], iris_body(0)) == 200
    assert runtime.errors() == []
