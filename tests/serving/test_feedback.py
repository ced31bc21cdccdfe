"""POST .../feedback on a real server process: labelled rows are scored with the served model and
counted in the feedback series only, never as inference traffic (requests, errors, latency,
upload, drift); every malformed feedback body is a 4xx naming the problem."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess
from tests.serving.test_drift_counters import write_profile

ROWS = models.sample_rows(8).tolist()
FEEDBACK = "modeldeploy_feedback_rows_total"
CORRECT = "modeldeploy_feedback_correct_rows_total"
ABSOLUTE_ERROR = "modeldeploy_feedback_absolute_error_total"
# Everything the sidecar's error rate, p99 and drift scores read, and the other inference series.
INFERENCE_SERIES = (
    "modeldeploy_requests_total",
    "modeldeploy_model_errors_total",
    "modeldeploy_client_errors_total",
    "modeldeploy_request_duration_seconds",
    "modeldeploy_request_upload_duration_seconds",
    "modeldeploy_drift_rows_total",
)


def v2_feedback(rows: list[list[float]], labels: Any, **extra: Any) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    tensor = {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64"}
    return {"inputs": [{**tensor, "data": flat}], "labels": labels, **extra}


def post(server: ServerProcess, body: Any, path: str | None = None) -> tuple[int, Any]:
    reply = server.request("POST", path or f"/v2/models/{server.name}/feedback", body)
    return reply.status, reply.json()


def inference_series(server: ServerProcess) -> dict[str, float]:
    return {k: v for k, v in server.metrics().items() if k.startswith(INFERENCE_SERIES)}


def delta(server: ServerProcess, before: dict[str, float], name: str) -> float:
    return server.metrics().get(name, 0.0) - before.get(name, 0.0)


def wrong(labels: list[int], n: int) -> list[int]:
    """The first n labels changed to another class (3 classes: 0, 1, 2)."""
    return [(label + 1) % 3 if i < n else label for i, label in enumerate(labels)]


@pytest.fixture(scope="module")
def string_classes(
    tmp_path_factory: pytest.TempPathFactory, launch: Callable[..., ServerProcess]
) -> Iterator[tuple[SavedModel, ServerProcess]]:
    features, labels = models._classification()
    text = np.array(["setosa", "versicolor", "virginica"])[labels]
    estimator = LogisticRegression(max_iter=500).fit(features, text)
    saved = models.save(estimator, tmp_path_factory.mktemp("text"), "text")
    yield saved, launch(saved, name="flowers").wait_ready()


def test_v2_feedback_counts_correct_rows_of_a_classifier(
    trained: dict[str, SavedModel], classifier_server: ServerProcess
) -> None:
    labels = [int(v) for v in trained["classifier-joblib"].estimator.predict(np.array(ROWS))]
    before = classifier_server.metrics()
    status, answer = post(classifier_server, v2_feedback(ROWS, wrong(labels, 3), id="batch-1"))
    assert status == 200, answer
    assert answer == {
        "model_name": "iris",
        "model_version": "7",
        "id": "batch-1",
        "task": "classification",
        "rows": 8,
        "correct": 5,
        "accuracy": 5 / 8,
    }
    assert delta(classifier_server, before, FEEDBACK + '{task="classification"}') == 8
    assert delta(classifier_server, before, CORRECT) == 5


def test_v1_feedback_takes_instances_and_labels(
    trained: dict[str, SavedModel], classifier_server: ServerProcess
) -> None:
    labels = [int(v) for v in trained["classifier-joblib"].estimator.predict(np.array(ROWS))]
    before = classifier_server.metrics()
    path = f"/v1/models/{classifier_server.name}:feedback"
    status, answer = post(classifier_server, {"instances": ROWS, "labels": labels}, path)
    assert status == 200, answer
    assert (answer["rows"], answer["correct"], answer["accuracy"]) == (8, 8, 1.0)
    assert delta(classifier_server, before, CORRECT) == 8


def test_regressor_feedback_sums_absolute_errors(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    saved = trained["regressor-joblib"]
    server = launch(saved, name="prices").wait_ready()
    predicted = saved.estimator.predict(np.array(ROWS))
    offsets = [1.0, -2.0, 0.5, 0.0, 3.0, -1.5, 2.0, -4.0]  # |offsets| sum to 14
    before = server.metrics()
    status, answer = post(
        server, v2_feedback(ROWS, [float(p + o) for p, o in zip(predicted, offsets, strict=True)])
    )
    assert status == 200, answer
    assert answer["task"] == "regression" and answer["rows"] == 8
    assert answer["absolute_error"] == pytest.approx(14.0)
    assert answer["mae"] == pytest.approx(14.0 / 8)
    assert delta(server, before, FEEDBACK + '{task="regression"}') == 8
    assert delta(server, before, ABSOLUTE_ERROR) == pytest.approx(14.0)
    assert delta(server, before, CORRECT) == 0


def test_text_classes_take_text_labels(string_classes: tuple[SavedModel, ServerProcess]) -> None:
    saved, server = string_classes
    labels = [str(v) for v in saved.estimator.predict(np.array(ROWS))]
    labels[0] = "setosa" if labels[0] != "setosa" else "virginica"
    status, answer = post(server, v2_feedback(ROWS, labels))
    assert status == 200, answer
    assert answer["correct"] == 7
    status, answer = post(server, v2_feedback(ROWS, [0] * 8))
    assert status == 400 and "labels[0]: expected strings" in answer["error"], answer


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (v2_feedback(ROWS, None), "labels: required"),
        ({"inputs": v2_feedback(ROWS, [])["inputs"]}, "labels: required"),
        (v2_feedback(ROWS, [0, 1, 2]), "labels: 3 labels for 8 rows"),
        (v2_feedback(ROWS, "0,1"), "labels: expected an array, got a string"),
        (v2_feedback(ROWS, [0, 1, "2", 0, 0, 0, 0, 0]), "labels[2]: expected numbers"),
        (v2_feedback(ROWS, [0, None, 0, 0, 0, 0, 0, 0]), "labels[1]: expected numbers"),
        (v2_feedback(ROWS, [True] * 8), "labels[0]: expected numbers"),
        (v2_feedback([[0.5] * 5], [0]), "features"),
        ({"labels": [0]}, "inputs"),
        (b'{"inputs": [', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_feedback_is_a_4xx_naming_the_problem_and_never_inference(
    classifier_server: ServerProcess, body: Any, expected: str
) -> None:
    before, metrics = inference_series(classifier_server), classifier_server.metrics()
    status, answer = post(classifier_server, body)
    assert status == 400, answer
    assert expected in answer["error"], answer
    assert inference_series(classifier_server) == before
    assert (
        delta(classifier_server, metrics, 'modeldeploy_feedback_requests_total{status_class="4xx"}')
        == 1
    )
    assert delta(classifier_server, metrics, FEEDBACK + '{task="classification"}') == 0


def test_unknown_model_is_a_404(classifier_server: ServerProcess) -> None:
    status, answer = post(
        classifier_server, v2_feedback(ROWS, [0] * 8), "/v2/models/other/feedback"
    )
    assert (status, answer["reason"]) == (404, "model_not_found"), answer


def test_feedback_is_not_inference_traffic(
    trained: dict[str, SavedModel],
    launch: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    """Neither requests, errors, latency, uploads nor drift move; the feedback series do."""
    saved = trained["classifier-joblib"]
    features, _ = models._classification()
    path, sha = write_profile(saved, tmp_path, features)
    server = launch(saved, "--profile-uri", str(path), "--profile-sha256", sha, name="iris")
    server.wait_ready()
    assert server.infer(ROWS).status == 200  # every inference series exists before
    before = inference_series(server)
    assert any(k.startswith("modeldeploy_drift_rows_total") for k in before)
    metrics = server.metrics()
    for _ in range(5):
        assert post(server, v2_feedback(ROWS, [0] * 8))[0] == 200
    assert inference_series(server) == before
    assert delta(server, metrics, FEEDBACK + '{task="classification"}') == 40
    assert delta(server, metrics, 'modeldeploy_feedback_requests_total{status_class="2xx"}') == 5
