"""Named, typed columns and the compiled runtime, through real server processes.

A ColumnTransformer pipeline (categorical, text and numeric columns) is served in every input
form, v1 and v2, and answers exactly what the in-memory pipeline answers; bad inputs are 4xx
naming the column; tree ensembles and linear models run on ONNX Runtime when it matches
scikit-learn, and a model that does not convert falls back (or fails to load when onnx is
required).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess
from tests.serving.test_fuzz import Poster, assert_no_server_error

V1 = "/v1/models/{}:predict"
V2 = "/v2/models/{}/infer"
COLUMNS = ("city", "review", "age", "income")


@pytest.fixture(scope="module")
def column_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SavedModel]:
    directory = tmp_path_factory.mktemp("column-models")
    saved = {
        "mixed": models.train_mixed(directory),
        "mixed-skops": models.train_mixed(directory, "skops", name="mixed-skops"),
        "mixed-trees": models.train_mixed_trees(directory),
    }
    for kind in ("hist-nan", "gradient", "forest-reg", "forest-nan"):
        saved[kind] = models.train_tree_model(directory, kind)
    saved["forest"] = models.train_forest(directory)
    saved["logistic"] = models.train_classifier(directory, name="logistic")
    saved["linear"] = models.train_regressor(directory, name="linear")
    return saved


@pytest.fixture(scope="module")
def servers(
    column_models: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> dict[str, ServerProcess]:
    started = {}
    for key, saved in column_models.items():
        extra: list[str] = []
        if saved.format == "skops":
            for trusted in skops.io.get_untrusted_types(file=saved.path):
                extra += ["--skops-trusted-type", trusted]
        started[key] = launch(saved, *extra, name=key)
    return {key: server.wait_ready(timeout=300) for key, server in started.items()}


def _rows(n_rows: int = 8, seed: int = 5) -> Any:
    frame = models.mixed_frame(n_rows, seed=seed)
    frame.loc[1, "review"] = "GOOD friendly unknown-word"
    return frame


def _records(frame: Any) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _columnar(frame: Any) -> dict[str, list[Any]]:
    records = _records(frame)
    return {name: [record[name] for record in records] for name in frame.columns}


def _v2_columns(frame: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "datatype": "BYTES" if name in ("city", "review") else "FP64",
            "shape": [len(values), 1],
            "data": values,
        }
        for name, values in _columnar(frame).items()
    ]


def _bodies(frame: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    records = _records(frame)
    return {
        "v1 records": (V1, {"instances": records}),
        "v1 columnar inputs": (V1, {"inputs": _columnar(frame)}),
        "v1 positional rows": (V1, {"instances": [[r[c] for c in COLUMNS] for r in records]}),
        "v2 tensor per column": (V2, {"inputs": _v2_columns(frame)}),
        "v2 content_type pd": (
            V2,
            {"inputs": _v2_columns(frame), "parameters": {"content_type": "pd"}},
        ),
    }


def _predictions(reply: Any, path: str) -> list[Any]:
    assert reply.status == 200, reply.body
    body = reply.json()
    return body["predictions"] if path == V1 else body["outputs"][0]["data"]


@pytest.mark.parametrize("form", list(_bodies(_rows())))
@pytest.mark.parametrize("key", ["mixed", "mixed-skops"])
def test_every_input_form_answers_what_the_pipeline_answers(
    servers: dict[str, ServerProcess], column_models: dict[str, SavedModel], key: str, form: str
) -> None:
    frame = _rows()
    path, body = _bodies(frame)[form]
    reply = servers[key].request("POST", path.format(key), body)
    expected = column_models[key].estimator.predict(frame).tolist()
    assert _predictions(reply, path) == expected


def test_probabilities_of_a_mixed_pipeline_match_within_tolerance(
    servers: dict[str, ServerProcess], column_models: dict[str, SavedModel]
) -> None:
    frame = _rows(20, seed=9)
    body = {"inputs": _v2_columns(frame), "parameters": {"probabilities": True}}
    reply = servers["mixed"].request("POST", V2.format("mixed"), body)
    assert reply.status == 200, reply.body
    probabilities = np.array(reply.json()["outputs"][1]["data"]).reshape(20, -1)
    expected = column_models["mixed"].estimator.predict_proba(frame)
    assert np.abs(probabilities - expected).max() <= 1e-6


def test_metadata_describes_columns_and_runtime(servers: dict[str, ServerProcess]) -> None:
    metadata = servers["mixed"].request("GET", "/v2/models/mixed").json()
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    assert list(inputs) == list(COLUMNS)
    assert inputs["city"]["datatype"] == "BYTES" and inputs["review"]["datatype"] == "BYTES"
    assert inputs["age"]["datatype"] == "FP64"
    # The imputer takes a missing income; the text vectorizer cannot take a missing review.
    assert inputs["income"]["parameters"]["nullable"] is True
    assert inputs["review"]["parameters"]["nullable"] is False
    assert metadata["parameters"]["content_type"] == "pd"
    assert metadata["parameters"]["runtime"] in ("onnx", "sklearn")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"instances": [{"city": "paris", "review": "good", "age": 30}]}, "income"),  # nullable
        ({"instances": [{"city": "paris", "age": 30, "income": 1.0}]}, "review"),
        ({"instances": [{"city": 3, "review": "good", "age": 30, "income": 1.0}]}, "city"),
        ({"instances": [{"city": "paris", "review": "good", "age": "x", "income": 1}]}, "age"),
        ({"instances": [{"city": "paris", "review": None, "age": 1, "income": 1}]}, "review"),
        ({"instances": [{"city": "a", "review": "b", "age": 1, "income": 1, "zip": 1}]}, "zip"),
        ({"inputs": {"city": ["a"], "review": ["b", "c"], "age": [1], "income": [1]}}, "review"),
        ({"instances": [["paris", "good", 30]]}, "got 3"),
    ],
)
def test_bad_column_input_is_a_4xx_naming_the_column(
    servers: dict[str, ServerProcess], body: dict[str, Any], named: str
) -> None:
    reply = servers["mixed"].request("POST", V1.format("mixed"), body)
    if named == "income":  # a nullable column may be left out
        assert reply.status == 200, reply.body
        return
    assert reply.status == 400, reply.body
    assert named in reply.json()["error"]


def test_v2_tensor_of_the_wrong_datatype_for_a_column_is_a_400(
    servers: dict[str, ServerProcess],
) -> None:
    inputs = _v2_columns(_rows(2))
    inputs[0]["datatype"] = "FP64"
    reply = servers["mixed"].request("POST", V2.format("mixed"), {"inputs": inputs})
    assert reply.status == 400 and "city" in reply.json()["error"]


def test_an_unknown_category_for_a_strict_encoder_is_a_400_not_a_model_error(
    servers: dict[str, ServerProcess],
) -> None:
    server = servers["mixed-trees"]
    body = {"instances": [{"city": "berlin", "age": 30, "income": 1000.0}]}
    reply = server.request("POST", V1.format("mixed-trees"), body)
    assert reply.status == 400 and "berlin" in reply.json()["error"]
    good = {"instances": [{"city": "lyon", "age": 30, "income": 1000.0}]}
    assert server.request("POST", V1.format("mixed-trees"), good).status == 200
    assert server.metrics().get("modeldeploy_model_errors_total", 0) == 0


@pytest.mark.parametrize(
    ("key", "runtime"),
    [
        ("forest", "onnx"),
        ("gradient", "onnx"),
        ("forest-reg", "onnx"),
        ("forest-nan", "onnx"),
        ("logistic", "onnx"),
        ("linear", "onnx"),
        ("hist-nan", "sklearn"),  # skl2onnx cannot convert it: the fallback serves
    ],
)
def test_runtime_is_chosen_and_exported(
    servers: dict[str, ServerProcess], key: str, runtime: str
) -> None:
    server = servers[key]
    assert server.metrics()[f'modeldeploy_model_runtime{{runtime="{runtime}"}}'] == 1
    assert server.request("GET", f"/v2/models/{key}").json()["parameters"]["runtime"] == runtime
    if runtime == "sklearn":
        server.wait_for_log("compiled runtime is not used")


@pytest.mark.parametrize(
    "key", ["forest", "gradient", "forest-reg", "forest-nan", "logistic", "linear", "hist-nan"]
)
def test_served_answers_equal_scikit_learn_on_fresh_rows(
    servers: dict[str, ServerProcess], column_models: dict[str, SavedModel], key: str
) -> None:
    rows = models.sample_rows(64, seed=42) * 2
    if key in ("hist-nan", "forest", "forest-reg", "forest-nan"):  # they take missing values
        rows[::5, 2] = np.nan
        rows[::3, 4] = np.nan
    estimator = column_models[key].estimator
    data = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    probabilities = hasattr(estimator, "predict_proba")
    body = {
        "inputs": [{"name": "input-0", "shape": [64, 6], "datatype": "FP64", "data": data}],
        "parameters": {"probabilities": probabilities},
    }
    reply = servers[key].request("POST", V2.format(key), body)
    assert reply.status == 200, reply.body
    outputs = reply.json()["outputs"]
    predicted = np.array(outputs[0]["data"])
    if probabilities:
        assert predicted.tolist() == estimator.predict(rows).tolist()
        proba = np.array(outputs[1]["data"]).reshape(64, -1)
        assert np.abs(proba - estimator.predict_proba(rows)).max() <= 1e-6
    else:
        expected = estimator.predict(rows)
        assert np.all(np.abs(predicted - expected) <= 1e-5 * np.maximum(1, np.abs(expected)))


@pytest.mark.parametrize("key", ["forest", "forest-reg", "forest-nan"])
def test_tree_graphs_answer_rows_with_missing_values_themselves(
    servers: dict[str, ServerProcess], key: str
) -> None:
    """The graph sends a missing value down the child scikit-learn learned for it, so the
    parity sample's rows with NaN match too: no batch is handed back to scikit-learn."""
    line = servers[key].wait_for_log("runtime onnx: float(32|64) graph matches")
    assert "missing values included" in line


def test_runtime_onnx_fails_the_load_when_the_model_does_not_convert(
    column_models: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    server = launch(column_models["hist-nan"], "--runtime", "onnx", name="strict")
    server.wait_for_log("model load failed")
    reply = server.request("GET", "/v2/health/ready")
    assert reply.status == 503
    assert reply.json()["cause"] == "CompiledRuntimeFailed"


def test_runtime_sklearn_skips_the_compiled_runtime(
    column_models: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    server = launch(column_models["forest"], name="plain", env={"MODELDEPLOY_RUNTIME": "sklearn"})
    server.wait_ready()
    assert server.metrics()['modeldeploy_model_runtime{runtime="sklearn"}'] == 1


def test_a_signature_file_beside_the_artifact_sets_kinds_and_example(
    column_models: dict[str, SavedModel], launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    saved = column_models["mixed"]
    artifact = tmp_path / saved.path.name
    artifact.write_bytes(saved.path.read_bytes())
    signature = {
        "inputs": [
            {"name": "city", "type": "string"},
            {"name": "review", "type": "string"},
            {"name": "age", "type": "double"},
            {"name": "income", "type": "double", "required": False},
        ],
        "example": {"city": "lille", "review": "quiet view", "age": 41, "income": 2500.5},
    }
    (tmp_path / f"{artifact.name}.signature.json").write_text(json.dumps(signature))
    moved = SavedModel(artifact, saved.sha256, saved.format, saved.n_features, saved.estimator)
    server = launch(moved, name="signed").wait_ready()
    metadata = server.request("GET", "/v2/models/signed").json()
    assert [tensor["name"] for tensor in metadata["inputs"]] == list(COLUMNS)
    (tmp_path / f"{artifact.name}.signature.json").write_text(
        json.dumps({"inputs": [{"name": "postcode", "type": "string"}]})
    )
    broken = launch(moved, name="broken")
    broken.wait_for_log("model load failed")
    assert "postcode" in broken.request("GET", "/v2/health/ready").json()["reason"]


values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(models.CITIES)
    | st.lists(st.integers(), max_size=2)
)


@st.composite
def mixed_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Mostly well-formed bodies in every form, with values of any type in any column."""
    n_rows = draw(st.integers(0, 3))
    names = draw(
        st.lists(st.sampled_from([*COLUMNS, "extra"]), min_size=3, max_size=5, unique=True)
    )
    records = [{name: draw(values) for name in names} for _ in range(n_rows)]
    form = draw(st.integers(0, 3))
    if form == 0:
        return V1, {"instances": records}
    if form == 1:
        return V1, {"inputs": {n: [r[n] for r in records] for n in names}}
    tensors = [
        {
            "name": n,
            "datatype": draw(st.sampled_from(["BYTES", "FP64", "INT64", "FP32", "BOOL"])),
            "shape": [n_rows, 1],
            "data": [r[n] for r in records],
        }
        for n in names
    ]
    parameters = {"content_type": "pd"} if form == 3 else {}
    return V2, {"inputs": tensors, "parameters": parameters}


@pytest.mark.parametrize("key", ["mixed", "mixed-trees"])
def test_fuzzed_mixed_type_bodies_never_get_5xx(
    servers: dict[str, ServerProcess], key: str
) -> None:
    poster = Poster(servers[key].port)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(mixed_bodies())
    def check(case: tuple[str, dict[str, Any]]) -> None:
        path, body = case
        assert_no_server_error(poster, path.format(key), json.dumps(body).encode())

    check()
