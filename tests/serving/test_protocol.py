"""Every endpoint answers as the Open Inference Protocol v2 and the v1 protocol say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import names
from tests.serving.models import SavedModel, sample_rows, save
from tests.serving.process import ServerProcess

KINDS = [
    f"{kind}-{fmt}"
    for kind in ("classifier", "regressor", "pipeline")
    for fmt in ("joblib", "skops")
]


@pytest.fixture(params=KINDS)
def served(
    request: pytest.FixtureRequest,
    conformance_servers: dict[str, tuple[SavedModel, ServerProcess]],
) -> tuple[SavedModel, ServerProcess]:
    return conformance_servers[request.param]


def test_health_endpoints_report_live_and_ready(served: tuple[SavedModel, ServerProcess]) -> None:
    _, server = served
    live = server.request("GET", "/v2/health/live")
    assert (live.status, live.json()) == (200, {"live": True})
    ready = server.request("GET", "/v2/health/ready").json()
    assert ready == {"ready": True, "runtime": ready.get("runtime")}
    assert ready["runtime"] in names.RUNTIMES
    reply = server.request("GET", f"/v2/models/{server.name}/ready")
    assert (reply.status, reply.json()) == (200, {"name": server.name, "ready": True})


def test_model_metadata_describes_inputs_and_outputs(
    served: tuple[SavedModel, ServerProcess],
) -> None:
    saved, server = served
    reply = server.request("GET", f"/v2/models/{server.name}")
    assert reply.status == 200
    metadata = reply.json()
    assert metadata["name"] == server.name
    assert metadata["platform"] == "scikit-learn"
    assert metadata["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, saved.n_features]}
    ]
    outputs = {output["name"]: output for output in metadata["outputs"]}
    if hasattr(saved.estimator, "predict_proba"):
        assert outputs["predict"] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
        classes = len(saved.estimator.classes_)
        assert outputs["predict_proba"] == {
            "name": "predict_proba",
            "datatype": "FP64",
            "shape": [-1, classes],
        }
    else:
        assert list(outputs) == ["predict"]
        assert outputs["predict"]["datatype"] == "FP64"


def test_v2_infer_returns_the_models_predictions(served: tuple[SavedModel, ServerProcess]) -> None:
    saved, server = served
    rows = sample_rows(4)
    reply = server.infer(rows.tolist(), id="req-1")
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["model_name"] == server.name
    assert answer["id"] == "req-1"
    [output] = answer["outputs"]
    assert output["name"] == "predict"
    assert output["shape"] == [4]
    np.testing.assert_allclose(output["data"], saved.estimator.predict(rows), rtol=1e-12)


def test_v1_predict_returns_the_models_predictions(
    served: tuple[SavedModel, ServerProcess],
) -> None:
    saved, server = served
    rows = sample_rows(3, seed=7)
    reply = server.request(
        "POST", f"/v1/models/{server.name}:predict", {"instances": rows.tolist()}
    )
    assert reply.status == 200, reply.body
    np.testing.assert_allclose(reply.json()["predictions"], saved.estimator.predict(rows))


def test_probabilities_on_request(classifier_server: ServerProcess) -> None:
    rows = sample_rows(2)
    by_parameter = classifier_server.infer(rows.tolist(), parameters={"probabilities": True})
    by_name = classifier_server.infer(rows.tolist(), outputs=[{"name": "predict_proba"}])
    assert by_parameter.status == by_name.status == 200
    outputs = {output["name"]: output for output in by_parameter.json()["outputs"]}
    assert list(outputs) == ["predict", "predict_proba"]
    assert outputs["predict_proba"]["shape"] == [2, 3]
    assert outputs["predict_proba"]["datatype"] == "FP64"
    probabilities = np.reshape(outputs["predict_proba"]["data"], (2, 3))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    [only] = by_name.json()["outputs"]
    assert only["name"] == "predict_proba"
    assert only["data"] == outputs["predict_proba"]["data"]


def test_nested_rows_and_integer_datatypes_are_accepted(classifier_server: ServerProcess) -> None:
    rows = [[1, 0, -2, 3, 0, 1], [0, 0, 0, 0, 0, 0]]
    path = f"/v2/models/{classifier_server.name}/infer"
    answers = []
    for datatype, data in [
        ("FP64", rows),
        ("FP32", [float(v) for row in rows for v in row]),
        ("INT64", rows),
        ("INT32", [v for row in rows for v in row]),
    ]:
        tensor = {"name": "x", "shape": [2, 6], "datatype": datatype, "data": data}
        reply = classifier_server.request("POST", path, {"inputs": [tensor]})
        assert reply.status == 200, (datatype, reply.body)
        answers.append(reply.json()["outputs"][0]["data"])
    assert all(answer == answers[0] for answer in answers)


def test_versioned_routes_and_server_metadata(classifier_server: ServerProcess) -> None:
    name = classifier_server.name
    assert classifier_server.request("GET", f"/v2/models/{name}/versions/7").status == 200
    assert classifier_server.request("GET", f"/v2/models/{name}/versions/7/ready").status == 200
    body = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": [0] * 6}]}
    reply = classifier_server.request("POST", f"/v2/models/{name}/versions/7/infer", body)
    assert reply.status == 200
    assert reply.json()["model_version"] == "7"
    server = classifier_server.request("GET", "/v2").json()
    assert server["name"] == "modeldeploy-server"
    assert server["extensions"] == []


def test_text_labels_are_bytes_tensors(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    """A classifier trained on string labels answers with BYTES tensors (v2) and strings (v1)."""
    features = sample_rows(60, seed=3)
    labels = np.where(features[:, 0] > 0, "cat", "dog")
    saved = save(LogisticRegression().fit(features, labels), tmp_path, "labels")
    server = launch(saved, name="labels").wait_ready()
    rows = sample_rows(3)
    output = server.infer(rows.tolist()).json()["outputs"][0]
    assert output["datatype"] == "BYTES"
    assert output["data"] == saved.estimator.predict(rows).tolist()
    reply = server.request("POST", "/v1/models/labels:predict", {"instances": rows.tolist()})
    assert reply.json()["predictions"] == saved.estimator.predict(rows).tolist()
    server.terminate()
