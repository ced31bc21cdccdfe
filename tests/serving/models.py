"""Train and save small models for tests in any folder: each returns where it is and its sha256.

    from tests.serving.models import train_classifier, train_failing
    saved = train_failing(tmp_path, failure_rate=0.3)
    # modeldeploy-server --model-uri saved.path --sha256 saved.sha256 --format saved.format

The failing and slow estimators are classes of this module, so a server process loading them
must be able to import `tests.serving.models` (run it with the repository root on PYTHONPATH).
They pass the server's warm-up (one row of zeros) like a model that only breaks on real data,
so the pod becomes Ready and then fails, which is what a rollback test needs.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import skops.io
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Format = Literal["joblib", "skops"]
N_FEATURES = 6


@dataclass(frozen=True)
class SavedModel:
    path: Path
    sha256: str
    format: Format
    n_features: int
    estimator: Any  # the in-memory estimator, to compare the server's answers with

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()


def sample_rows(n_rows: int = 5, n_features: int = N_FEATURES, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_rows, n_features)).round(6)


def save(estimator: Any, directory: Path, name: str, fmt: Format = "joblib") -> SavedModel:
    path = Path(directory) / f"{name}.{fmt}"
    if fmt == "skops":
        path.write_bytes(skops.io.dumps(estimator))
    else:
        joblib.dump(estimator, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SavedModel(path, digest, fmt, int(estimator.n_features_in_), estimator)


def _classification(n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(
        n_samples=200, n_features=n_features, n_informative=3, n_classes=3, random_state=0
    )


def train_classifier(
    directory: Path, fmt: Format = "joblib", name: str = "classifier"
) -> SavedModel:
    """A 3-class LogisticRegression with predict_proba."""
    features, labels = _classification()
    return save(LogisticRegression(max_iter=500).fit(features, labels), directory, name, fmt)


def train_forest(directory: Path, fmt: Format = "joblib", name: str = "forest") -> SavedModel:
    features, labels = _classification()
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    return save(forest.fit(features, labels), directory, name, fmt)


def train_regressor(directory: Path, fmt: Format = "joblib", name: str = "regressor") -> SavedModel:
    features, target = make_regression(n_samples=200, n_features=N_FEATURES, random_state=0)
    return save(LinearRegression().fit(features, target), directory, name, fmt)


def train_pipeline(directory: Path, fmt: Format = "joblib", name: str = "pipeline") -> SavedModel:
    """StandardScaler + LogisticRegression, the usual shape of a production model."""
    features, labels = _classification()
    pipeline = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    return save(pipeline.fit(features, labels), directory, name, fmt)


def train_failing(
    directory: Path,
    failure_rate: float = 1.0,
    *,
    fail_warmup: bool = False,
    poison_value: float | None = None,
    delay_seconds: float = 0.0,
    name: str = "failing",
) -> SavedModel:
    """A classifier whose predict() raises for `failure_rate` of the calls on real data, and
    for any call with a row whose first feature equals `poison_value`."""
    features, labels = _classification()
    model = FailingClassifier(
        failure_rate=failure_rate,
        fail_warmup=fail_warmup,
        poison_value=poison_value,
        delay_seconds=delay_seconds,
    )
    return save(model.fit(features, labels), directory, name)


def train_slow(directory: Path, delay_seconds: float = 0.5, name: str = "slow") -> SavedModel:
    """A classifier whose predict() on real data sleeps first (in-flight requests on demand)."""
    features, labels = _classification()
    return save(SlowClassifier(delay_seconds=delay_seconds).fit(features, labels), directory, name)


def _is_warmup(rows: np.ndarray) -> bool:
    return len(rows) == 1 and not np.any(rows)


class FailingClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression inside; predict() raises RuntimeError for a share of the calls."""

    def __init__(
        self,
        failure_rate: float = 1.0,
        fail_warmup: bool = False,
        poison_value: float | None = None,
        delay_seconds: float = 0.0,
        seed: int = 0,
    ):
        self.failure_rate = failure_rate
        self.fail_warmup = fail_warmup
        self.poison_value = poison_value
        self.delay_seconds = delay_seconds
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray) -> FailingClassifier:
        self.inner_ = LogisticRegression(max_iter=500).fit(features, labels)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = features.shape[1]
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if _is_warmup(features) and not self.fail_warmup:
            return self.inner_.predict(features)
        if not hasattr(self, "random_"):
            self.random_ = np.random.default_rng(self.seed)
        time.sleep(self.delay_seconds)
        if self.poison_value is not None and np.any(features[:, 0] == self.poison_value):
            raise RuntimeError("injected model failure: poisoned row")
        if self.fail_warmup or self.random_.random() < self.failure_rate:
            raise RuntimeError("injected model failure")
        return self.inner_.predict(features)


class SlowClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, delay_seconds: float = 0.5):
        self.delay_seconds = delay_seconds

    def fit(self, features: np.ndarray, labels: np.ndarray) -> SlowClassifier:
        self.inner_ = LogisticRegression(max_iter=500).fit(features, labels)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = features.shape[1]
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if not _is_warmup(features):
            time.sleep(self.delay_seconds)
        return self.inner_.predict(features)


def train_degrading(
    directory: Path, trigger_value: float, delay_seconds: float = 1.0, name: str = "degrading"
) -> SavedModel:
    """A classifier that is fast until it sees a row whose first feature equals `trigger_value`,
    and slow (`delay_seconds` per predict) from then on: a model that passes its canary and
    degrades later, at the moment a test chooses (a latency breach during the bake)."""
    features, labels = _classification()
    model = DegradingClassifier(trigger_value=trigger_value, delay_seconds=delay_seconds)
    return save(model.fit(features, labels), directory, name)


class DegradingClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression inside; predict() sleeps once the trigger row has been seen."""

    def __init__(self, trigger_value: float = 1e6, delay_seconds: float = 1.0):
        self.trigger_value = trigger_value
        self.delay_seconds = delay_seconds

    def fit(self, features: np.ndarray, labels: np.ndarray) -> DegradingClassifier:
        self.inner_ = LogisticRegression(max_iter=500).fit(features, labels)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = features.shape[1]
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if np.any(features[:, 0] == self.trigger_value):
            self.degraded_ = True
        if getattr(self, "degraded_", False):
            time.sleep(self.delay_seconds)
        return self.inner_.predict(features)


# --- models on named, typed columns (a DataFrame), and tree ensembles -----------------------
CITIES = ("paris", "lyon", "nice", "lille")
WORDS = ("good", "bad", "service", "food", "view", "great", "slow", "friendly", "cold", "quiet")


def mixed_frame(n_rows: int = 300, seed: int = 0) -> Any:
    """city (categorical), review (free text), age and income (numbers, income sometimes NaN)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    reviews = [" ".join(rng.choice(WORDS, rng.integers(1, 5))) for _ in range(n_rows)]
    income = rng.normal(3000, 800, n_rows)
    income[rng.random(n_rows) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "city": rng.choice(CITIES, n_rows),
            "review": reviews,
            "age": rng.integers(18, 80, n_rows).astype(float),
            "income": income,
        }
    )


def mixed_labels(frame: Any) -> np.ndarray:
    score = (frame["age"] > 45).astype(int) + frame["review"].str.contains("good").astype(int)
    return np.asarray(score + (frame["city"] == "nice").astype(int)).clip(0, 2)


def train_mixed(directory: Path, fmt: Format = "joblib", name: str = "mixed") -> SavedModel:
    """ColumnTransformer(OneHotEncoder, TfidfVectorizer, impute+scale) + LogisticRegression: the
    shape of most tabular scikit-learn work."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    frame = mixed_frame()
    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("review", TfidfVectorizer(), "review"),
            ("numbers", numbers, ["age", "income"]),
        ]
    )
    model = Pipeline([("columns", columns), ("classify", LogisticRegression(max_iter=500))])
    return save(model.fit(frame, mixed_labels(frame)), directory, name, fmt)


def signup_year(frame: Any) -> np.ndarray:
    """The year of ISO dates ("2021-06-30"): refuses numbers and arbitrary text, as real
    feature code does, so only a date-shaped warm-up row gets through it."""
    return np.asarray(frame.iloc[:, 0].str.slice(0, 4).astype(float)).reshape(-1, 1)


def dated_frame(n_rows: int = 300, seed: int = 0) -> Any:
    """mixed_frame() plus signup, an ISO date string."""
    rng = np.random.default_rng(seed)
    frame = mixed_frame(n_rows, seed)
    frame["signup"] = [f"{year}-0{rng.integers(1, 10)}-1{rng.integers(0, 10)}" for year in
                       rng.integers(2015, 2025, n_rows)]  # fmt: skip
    return frame


# What train_dated's model needs shipped beside it: the date column's kind and a real row.
DATED_SIGNATURE = {
    "inputs": [
        {"name": "city", "type": "string"},
        {"name": "signup", "type": "string"},
        {"name": "age", "type": "double"},
        {"name": "income", "type": "double"},
    ],
    "example": {"city": "lyon", "signup": "2021-06-30", "age": 41, "income": 2500.5},
}


def train_dated(directory: Path, name: str = "dated") -> SavedModel:
    """A ColumnTransformer whose date column goes through a FunctionTransformer: nothing fitted
    says that column is a string, so without a signature file the model warms up on a number
    and fails (WarmupFailed); with one (kinds + a real example row) it loads."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    frame = dated_frame().drop(columns=["review"]).fillna({"income": 3000.0})
    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            (
                "signup",
                Pipeline([("year", FunctionTransformer(signup_year)), ("scale", StandardScaler())]),
                ["signup"],
            ),
            ("numbers", StandardScaler(), ["age", "income"]),
        ]
    )
    model = Pipeline([("columns", columns), ("classify", LogisticRegression(max_iter=500))])
    return save(model.fit(frame, mixed_labels(mixed_frame())), directory, name)


def train_mixed_trees(directory: Path, name: str = "mixed-trees") -> SavedModel:
    """Strict categories (unknown city = error) and a forest: an unknown city must be a 400."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame = mixed_frame().drop(columns=["review"]).fillna({"income": 3000.0})
    columns = ColumnTransformer(
        [("city", OneHotEncoder(), ["city"]), ("numbers", "passthrough", ["age", "income"])]
    )
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    model = Pipeline([("columns", columns), ("forest", forest)])
    return save(model.fit(frame, mixed_labels(mixed_frame())), directory, name)


def train_tree_model(directory: Path, kind: str) -> SavedModel:
    """kind: hist-nan (HistGradientBoosting fitted with NaN), gradient, forest-reg, forest-nan
    (a RandomForest fitted with NaN: some splits part the missing values from the rest)."""
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestRegressor,
    )

    features, labels = _classification()
    if kind == "hist-nan":
        features = features.copy()
        features[np.random.default_rng(0).random(features.shape) < 0.1] = np.nan
        model: Any = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    elif kind == "gradient":
        model = GradientBoostingClassifier(n_estimators=20, random_state=0)
    elif kind == "forest-nan":
        features = features.copy()
        features[np.random.default_rng(0).random(features.shape) < 0.1] = np.nan
        model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)
    elif kind == "forest-reg":
        features, labels = make_regression(n_samples=200, n_features=N_FEATURES, random_state=0)
        model = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)
    else:
        raise ValueError(kind)
    return save(model.fit(features, labels), directory, kind)
