"""The validation gate on a real server process: models trained here on synthetic data, scored
at warm-up on a held-out labelled CSV or Parquet file; ready only when the threshold is met."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score

from tests.helpers.parquet_files import decoder_crash, write_parquet
from tests.serving import models
from tests.serving.process import ServerProcess

N = models.N_FEATURES


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def _csv(directory: Path, name: str, features: np.ndarray, labels: np.ndarray) -> tuple[str, str]:
    """A CSV with columns f0..f5 and `label`; its URI and sha256."""
    header = ",".join([*(f"f{i}" for i in range(features.shape[1])), "label"])
    lines = [
        header,
        *(
            ",".join(map(repr, [*row, label]))
            for row, label in zip(features.tolist(), labels.tolist(), strict=True)
        ),
    ]
    path = directory / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path.resolve().as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def _parquet(path: Path, frame: pd.DataFrame) -> tuple[str, str]:
    """`frame` written as Parquet at `path`; its URI and sha256."""
    write_parquet(path, frame)
    return path.resolve().as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def _held_out_frame(features: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    columns = {f"f{i}": features[:, i] for i in range(features.shape[1])}
    return pd.DataFrame({**columns, "label": labels})


def _gate(uri: str, sha256: str, metric: str, threshold: float) -> tuple[str, ...]:
    return (
        "--validation-uri", uri,
        "--validation-sha256", sha256,
        "--validation-metric", metric,
        "--validation-threshold", str(threshold),
    )  # fmt: skip


def _not_ready(server: ServerProcess) -> dict[str, Any]:
    server.wait_for_log("model load failed")
    reply = server.request("GET", "/v2/health/ready")
    assert reply.status == 503
    assert server.request("GET", "/v2/health/live").status == 200  # live, never ready
    body: dict[str, Any] = reply.json()
    return body


@pytest.fixture(scope="module")
def classification(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("validation")
    features, labels = make_classification(
        n_samples=600, n_features=N, n_informative=4, n_classes=3, class_sep=2.0, random_state=3
    )
    train_x, train_y, held_x, held_y = features[:400], labels[:400], features[400:], labels[400:]
    shuffled = np.random.default_rng(0).permutation(train_y)
    uri, sha = _csv(directory, "held-out", held_x, held_y)
    # Named like a dataset fetched from an object store: a fixed path, no extension.
    parquet_uri, parquet_sha = _parquet(directory / "data", _held_out_frame(held_x, held_y))
    return {
        "uri": uri,
        "sha256": sha,
        "parquet_uri": parquet_uri,
        "parquet_sha256": parquet_sha,
        "parquet_path": directory / "data",
        "held_x": held_x,
        "held_y": held_y,
        "good": models.save(
            LogisticRegression(max_iter=500).fit(train_x, train_y), directory, "good"
        ),
        "shuffled": models.save(
            LogisticRegression(max_iter=500).fit(train_x, shuffled), directory, "shuffled"
        ),
        "constant": models.save(
            DummyClassifier(strategy="most_frequent").fit(train_x, train_y), directory, "constant"
        ),
    }


def test_a_good_model_passes_the_gate_and_becomes_ready(
    classification: dict[str, Any], servers: list[ServerProcess]
) -> None:
    gate = _gate(classification["uri"], classification["sha256"], "accuracy", 0.7)
    server = ServerProcess(classification["good"], *gate)
    servers.append(server)
    server.wait_ready()
    server.wait_for_log(r"validation passed: accuracy 0\.\d+ meets the threshold 0\.7 on 200")


@pytest.mark.parametrize(("model", "metric"), [("constant", "accuracy"), ("shuffled", "f1")])
def test_a_silently_wrong_model_fails_the_gate_with_its_reason(
    classification: dict[str, Any], servers: list[ServerProcess], model: str, metric: str
) -> None:
    gate = _gate(classification["uri"], classification["sha256"], metric, 0.7)
    server = ServerProcess(classification[model], *gate)
    servers.append(server)
    body = _not_ready(server)
    assert body["cause"] == "ValidationFailed"
    assert f"{metric} " in body["reason"] and "is below the threshold 0.7 on 200" in body["reason"]


def test_a_wrong_dataset_sha256_is_refused(
    classification: dict[str, Any], servers: list[ServerProcess]
) -> None:
    gate = _gate(classification["uri"], "0" * 64, "accuracy", 0.7)
    server = ServerProcess(classification["good"], *gate)
    servers.append(server)
    body = _not_ready(server)
    assert body["cause"] == "Sha256Mismatch"
    assert "validation dataset" in body["reason"]


@pytest.mark.parametrize(("model", "ready"), [("good", True), ("constant", False)])
def test_a_parquet_dataset_gates_like_the_csv(
    classification: dict[str, Any], servers: list[ServerProcess], model: str, ready: bool
) -> None:
    gate = _gate(classification["parquet_uri"], classification["parquet_sha256"], "accuracy", 0.7)
    server = ServerProcess(classification[model], *gate)
    servers.append(server)
    estimator = classification[model].estimator
    accuracy = accuracy_score(classification["held_y"], estimator.predict(classification["held_x"]))
    if ready:
        server.wait_ready()
        server.wait_for_log(
            rf"validation passed: accuracy {accuracy:.4g} meets the threshold 0\.7 on 200 "
        )
        return
    body = _not_ready(server)
    assert body["cause"] == "ValidationFailed"
    assert body["reason"].endswith(
        f"ValidationFailed: accuracy {accuracy:.4g} is below the threshold 0.7 "
        "on 200 validation rows"
    )


def _refusal(
    classification: dict[str, Any], servers: list[ServerProcess], path: Path, frame: pd.DataFrame
) -> tuple[str, str]:
    """The good model gated on `frame` as Parquet at `path`: its dataset URI and the reason
    the server gives for not becoming ready, which must be the gate's."""
    uri, sha = _parquet(path, frame)
    server = ServerProcess(classification["good"], *_gate(uri, sha, "accuracy", 0.7))
    servers.append(server)
    body = _not_ready(server)
    assert body["cause"] == "ValidationFailed"
    return uri, body["reason"]


def test_a_parquet_dataset_without_the_label_column_is_refused_by_name(
    classification: dict[str, Any], servers: list[ServerProcess], tmp_path: Path
) -> None:
    frame = _held_out_frame(classification["held_x"], classification["held_y"])
    uri, reason = _refusal(classification, servers, tmp_path / "data", frame.drop(columns="label"))
    assert reason.endswith(
        f"validation dataset {uri}: no label column 'label'; columns are f0, f1, f2, f3, f4, f5"
    )


def test_a_text_column_for_a_model_fitted_on_numbers_is_refused_by_name(
    classification: dict[str, Any], servers: list[ServerProcess], tmp_path: Path
) -> None:
    frame = _held_out_frame(classification["held_x"], classification["held_y"])
    frame["f2"] = np.where(frame["f2"] > 0, "high", "low")  # a column the model never saw as text
    uri, reason = _refusal(classification, servers, tmp_path / "data", frame)
    assert reason.endswith(
        f"validation dataset {uri}: column f2 holds text (e.g. {frame['f2'].iloc[0]!r}), but the "
        "model was fitted on numbers only, without column names"
    )


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]  # a download cut off half-way


def _garbled(data: bytes) -> bytes:
    # The footer's length (the 4 bytes before the closing PAR1) pointing past the file's start.
    return data[:-8] + (len(data) * 2).to_bytes(4, "little") + data[-4:]


def _garbled_page(data: bytes) -> bytes:
    # The first column's first page header (right after the opening PAR1) overwritten.
    return data[:4] + b"\xff" * 16 + data[20:]


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_cut, r"is not readable Parquet: it begins with PAR1 but does not end with it \(\d+ "),
        (_garbled, r"is not readable Parquet: its footer \(schema and row groups\) cannot be "),
        (_garbled_page, r"is not readable Parquet: its column data cannot be decoded: \w+: "),
        (gzip.compress, r"is neither Parquet nor CSV: UnicodeDecodeError: "),
    ],
    ids=["cut-off", "garbled-footer", "garbled-page", "gzip"],
)
def test_an_unreadable_dataset_is_a_clear_load_failure(
    classification: dict[str, Any],
    servers: list[ServerProcess],
    tmp_path: Path,
    damage: Any,
    said: str,
) -> None:
    whole = classification["parquet_path"].read_bytes()
    path = tmp_path / "data"
    path.write_bytes(damage(whole))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    server = ServerProcess(classification["good"], *_gate(path.as_uri(), digest, "accuracy", 0.7))
    servers.append(server)
    body = _not_ready(server)  # live and answering, not crashed
    assert body["cause"] == "ValidationFailed"
    assert re.search(f"ValidationFailed: validation dataset {path.as_uri()} {said}", body["reason"])


def test_a_dataset_that_crashes_the_parquet_decoder_is_a_clear_load_failure(
    classification: dict[str, Any], servers: list[ServerProcess], tmp_path: Path
) -> None:
    """Damaged column data can kill fastparquet's native decoder (signal 11). It runs in a
    child process, so the server stays up and the canary fails at once with the reason."""
    damaged = decoder_crash(classification["parquet_path"].read_bytes())
    if damaged is None:
        pytest.skip("this fastparquet survived 3000 one-byte corruptions: nothing to isolate")
    path = tmp_path / "data"
    path.write_bytes(damaged)
    digest = hashlib.sha256(damaged).hexdigest()
    server = ServerProcess(classification["good"], *_gate(path.as_uri(), digest, "accuracy", 0.7))
    servers.append(server)
    body = _not_ready(server)  # live and answering: the crash ended only the child
    assert body["cause"] == "ValidationFailed"
    assert body["reason"].endswith(
        f"validation dataset {path.as_uri()} is not readable Parquet: the Parquet decoder "
        "crashed (SIGSEGV): its column data is damaged"
    )


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("regression")
    features, target = make_regression(n_samples=300, n_features=N, noise=5.0, random_state=4)
    uri, sha = _csv(directory, "held-out", features[200:], target[200:])
    return {
        "uri": uri,
        "sha256": sha,
        "good": models.save(
            LinearRegression().fit(features[:200], target[:200]), directory, "good"
        ),
        "constant": models.save(
            LinearRegression().fit(features[:200], np.full(200, target[:200].mean())),
            directory,
            "flat",
        ),
    }


@pytest.mark.parametrize(
    ("model", "metric", "threshold", "ready"),
    [
        ("good", "mae", 10.0, True),  # noise 5: mae about 4
        ("good", "r2", 0.9, True),
        ("constant", "mae", 10.0, False),
        ("constant", "r2", 0.5, False),
    ],
)
def test_a_regressor_is_gated_on_mae_or_r2(
    regression: dict[str, Any],
    servers: list[ServerProcess],
    model: str,
    metric: str,
    threshold: float,
    ready: bool,
) -> None:
    gate = _gate(regression["uri"], regression["sha256"], metric, threshold)
    server = ServerProcess(regression[model], *gate)
    servers.append(server)
    if ready:
        server.wait_ready()
        return
    body = _not_ready(server)
    relation = "is above" if metric == "mae" else "is below"
    assert body["cause"] == "ValidationFailed"
    assert f"{metric} " in body["reason"] and f"{relation} the threshold" in body["reason"]


def test_a_dataframe_pipeline_is_scored_through_its_named_columns(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    saved = models.train_mixed(tmp_path)
    frame = models.mixed_frame(n_rows=120, seed=9)
    frame["label"] = models.mixed_labels(frame)
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    server = ServerProcess(saved, *_gate(path.as_uri(), digest, "accuracy", 0.6))
    servers.append(server)
    server.wait_ready()
    server.wait_for_log(r"validation passed: accuracy .* on 120 validation rows")


def test_typed_parquet_columns_reach_a_dataframe_pipeline_like_the_csv(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """Parquet keeps the types a CSV loses: a categorical city, text, a nullable integer age
    (pandas' NA for missing), float income with NaN. The pipeline must score them exactly as
    it scores the same rows read from CSV (the frame, as floats and plain strings)."""
    saved = models.train_mixed(tmp_path)
    frame = models.mixed_frame(n_rows=120, seed=9)
    frame.loc[::7, "age"] = np.nan
    labels = models.mixed_labels(frame.fillna({"age": 50.0}))
    expected = accuracy_score(labels, saved.estimator.predict(frame))
    typed = frame.astype({"city": "category", "age": "Int64"}).assign(label=labels)
    assert typed["age"].isna().sum() == 18
    uri, digest = _parquet(tmp_path / "data", typed)
    server = ServerProcess(saved, *_gate(uri, digest, "accuracy", 0.6))
    servers.append(server)
    server.wait_ready()
    server.wait_for_log(
        rf"validation passed: accuracy {expected:.4g} meets the threshold 0\.6 on 120 validation"
    )
