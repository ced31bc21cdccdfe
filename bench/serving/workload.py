"""The benchmark's models, request body, wrk script and the in-process predict() floor."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy_serving.prepare import prepare
from modeldeploy_serving.profile import build_profile
from modeldeploy_serving.signature import PREDICT

N_FEATURES = 20


@dataclass(frozen=True)
class BenchModel:
    key: str  # served name and URL segment: /v2/models/<key>/infer
    label: str
    path: Path
    sha256: str

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.key}/infer"


def training_data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=1000, n_features=N_FEATURES, random_state=42)


def build_models(directory: Path) -> dict[str, BenchModel]:
    """RandomForest (100 trees, depth 8) and LogisticRegression, saved once with joblib."""
    directory.mkdir(parents=True, exist_ok=True)
    features, labels = training_data()
    estimators: dict[str, tuple[str, Any]] = {
        "rf": (
            "RandomForestClassifier(100 trees, depth 8)",
            RandomForestClassifier(n_estimators=100, max_depth=8, random_state=42),
        ),
        "lr": ("LogisticRegression", LogisticRegression(max_iter=1000)),
    }
    built = {}
    for key, (label, estimator) in estimators.items():
        path = directory / key / "model.joblib"
        path.parent.mkdir(exist_ok=True)
        joblib.dump(estimator.fit(features, labels), path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        built[key] = BenchModel(key, label, path, digest)
    return built


def reference_profile(model: BenchModel) -> dict[str, Any]:
    """The drift profile of the model's training data: every column and the predictions."""
    return build_profile(training_data()[0], joblib.load(model.path))


def request_body() -> bytes:
    """One row, as Open Inference Protocol v2 JSON: the same bytes go to every server."""
    row = [round(float(value), 6) for value in training_data()[0][0]]
    tensor = {"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def write_wrk_script(path: Path, body: bytes) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"  # a level-2 long string: bodies may hold "]]"
    )
    return path


def predict_floor_us(model: BenchModel, *, cpu: int, calls: int = 300) -> dict[str, Any]:
    """Median in-process predict() time for 1 and 64 rows, pinned to the server's CPU: the
    scikit-learn estimator's ("1", "64"), and the predict the server serves with, in the runtime
    it chose at load ("served": {"runtime", "1", "64"})."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        estimator = joblib.load(model.path)
        features = training_data()[0]
        result: dict[str, Any] = _median_us(estimator.predict, features, calls)
        prepared = prepare(estimator, "auto", None)
        result["served"] = {
            "runtime": prepared.signature.runtime,
            **_median_us(prepared.methods[PREDICT], features, calls),
        }
        return result
    finally:
        os.sched_setaffinity(0, previous)


def _median_us(
    predict: Callable[[np.ndarray], Any], features: np.ndarray, calls: int
) -> dict[str, float]:
    result = {}
    for rows in (1, 64):
        batch = features[:rows]
        for _ in range(20):
            predict(batch)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            predict(batch)
            samples.append(time.perf_counter() - started)
        result[str(rows)] = round(statistics.median(samples) * 1e6, 1)
    return result
