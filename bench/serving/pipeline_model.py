"""The pipeline benchmark's model and requests: a mixed-type DataFrame pipeline (two categorical
string columns, four numbers, one short text), trained on synthetic data, and one row encoded the
way each server takes a DataFrame row."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from workload import BenchModel

KEY = "churn"
LABEL = (
    "Pipeline(ColumnTransformer(OneHotEncoder on 2 string columns, StandardScaler on 4 numbers, "
    "TfidfVectorizer on 1 text column), LogisticRegression)"
)
CATEGORICAL = {
    "city": ["paris", "lyon", "berlin", "madrid", "rome", "lisbon", "vienna", "oslo"],
    "plan": ["basic", "plus", "pro"],
}
NUMERIC = ["age", "income", "tenure_months", "monthly_spend"]
TEXT = "review"
_GOOD = ["great", "fast", "friendly", "reliable", "cheap", "helpful"]
_BAD = ["slow", "broken", "rude", "expensive", "outage", "cancel"]
_NEUTRAL = ["service", "app", "support", "price", "network", "billing", "the", "was", "and"]


def training_frame(rows: int = 4000, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic churn data whose label depends on every column kind, so none is dead weight."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(CATEGORICAL["city"], rows),
            "plan": rng.choice(CATEGORICAL["plan"], rows, p=[0.5, 0.3, 0.2]),
            "age": rng.integers(18, 80, rows).astype(float),
            "income": rng.lognormal(10.3, 0.5, rows).round(2),
            "tenure_months": rng.integers(0, 120, rows).astype(float),
            "monthly_spend": rng.gamma(3.0, 15.0, rows).round(2),
        }
    )
    sentiment = rng.normal(0, 1, rows)
    frame[TEXT] = [_review(rng, s) for s in sentiment]
    score = (
        1.2 * sentiment
        - 0.02 * (frame["tenure_months"] - 60)
        + 0.8 * (frame["plan"] == "basic")
        - 0.5 * frame["city"].isin(["oslo", "vienna"])
        + 0.01 * (frame["monthly_spend"] - 45)
        + rng.normal(0, 0.5, rows)
    )
    return frame, (score > 0).astype(int).to_numpy()


def _review(rng: np.random.Generator, sentiment: float) -> str:
    mood = _BAD if sentiment > 0 else _GOOD  # a high churn score reads as a bad review
    words = [*rng.choice(mood, 2), *rng.choice(_NEUTRAL, int(rng.integers(2, 6)))]
    rng.shuffle(words)
    return " ".join(str(word) for word in words)


def pipeline() -> Pipeline:
    columns = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ("numbers", StandardScaler(), NUMERIC),
            ("text", TfidfVectorizer(), TEXT),
        ]
    )
    return Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=1000))])


def build_model(directory: Path) -> BenchModel:
    """Fit on the DataFrame and save with joblib as `model.joblib` (the name KServe looks for)."""
    directory.mkdir(parents=True, exist_ok=True)
    frame, labels = training_frame()
    path = directory / "model.joblib"
    joblib.dump(pipeline().fit(frame, labels), path)
    return BenchModel(KEY, LABEL, path, hashlib.sha256(path.read_bytes()).hexdigest())


def request_row() -> dict[str, Any]:
    """The one row every request carries (plain Python values, so every encoding agrees)."""
    frame, _ = training_frame()
    row = frame.iloc[0].to_dict()
    return {k: (float(v) if k in NUMERIC else str(v)) for k, v in row.items()}


def expected_prediction(model: BenchModel, row: dict[str, Any]) -> int:
    estimator = joblib.load(model.path)
    return int(estimator.predict(pd.DataFrame([row]))[0])


def v2_pandas_body(row: dict[str, Any]) -> bytes:
    """v2 with one tensor per column and `content_type: "pd"`, shaped as MLServer's PandasCodec
    encodes a DataFrame (`[rows, 1]`, strings as BYTES marked `content_type: "str"`)."""
    inputs = []
    for name, value in row.items():
        text = isinstance(value, str)
        tensor: dict[str, Any] = {
            "name": name,
            "shape": [1, 1],
            "datatype": "BYTES" if text else "FP64",
            "data": [value],
        }
        if text:
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def v1_records_body(row: dict[str, Any]) -> bytes:
    """v1 `instances` as records: one object per row, a scalar per column."""
    return json.dumps({"instances": [row]}).encode()


def kserve_instances_body(row: dict[str, Any]) -> bytes:
    """KServe's v1 dict instances: each instance is a small DataFrame, column → list of values
    (its get_predict_input builds `pd.DataFrame(instance)` per instance and concatenates)."""
    return json.dumps({"instances": [{k: [v] for k, v in row.items()}]}).encode()


def predict_us(model: BenchModel, row: dict[str, Any], *, cpu: int, calls: int = 300) -> float:
    """Median in-process predict() on a one-row DataFrame, pinned to the server's CPU."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        estimator = joblib.load(model.path)
        samples = []
        for index in range(calls + 20):
            started = time.perf_counter()
            estimator.predict(pd.DataFrame([row]))
            if index >= 20:
                samples.append(time.perf_counter() - started)
        return round(statistics.median(samples) * 1e6, 1)
    finally:
        os.sched_setaffinity(0, previous)
