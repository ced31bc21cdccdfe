"""Every wire form of the same rows gets the same answer, and every malformed body the same 4xx
body, word for word: v1 and v2 on the pipeline benchmark's model (two categorical string
columns, four numbers, a text column, served by ONNX Runtime) and on numeric models, through
real server processes. The decode and encode paths these pin are the ones
bench/serving/decode_profile.py measures; a faster path must answer exactly as the slow one.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.serving.models import SavedModel, save
from tests.serving.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
# bench/serving is not a package; its modules import each other the way `python bench/...` does.
sys.path.insert(0, str(ROOT / "bench" / "serving"))

import pipeline_model  # noqa: E402

MAX_ROWS = 4
STRINGS = ("city", "plan", "review")
ORDER = ("city", "plan", "age", "income", "tenure_months", "monthly_spend", "review")
COLUMNS_ARE = f"columns are {', '.join(ORDER)}"
NUMBER_TAKES = "a number column takes one of FP32, FP64, INT32, INT64"
SHAPE_RULE = "expected an array of non-negative integers such as [1, n]"
RAGGED = "city: 2, plan: 1, age: 1, income: 1, tenure_months: 1, monthly_spend: 1, review: 1"


@pytest.fixture(scope="module")
def churn(
    tmp_path_factory: pytest.TempPathFactory, launch: Callable[..., ServerProcess]
) -> tuple[Any, ServerProcess]:
    """The pipeline benchmark's model, served as the benchmark serves it (name `churn`)."""
    built = pipeline_model.build_model(tmp_path_factory.mktemp("churn"))
    estimator = joblib.load(built.path)
    saved = SavedModel(built.path, built.sha256, "joblib", 7, estimator)
    server = launch(saved, "--max-request-rows", str(MAX_ROWS), name=built.key)
    return estimator, server.wait_ready(timeout=300)


@pytest.fixture(scope="module")
def named_numeric(
    tmp_path_factory: pytest.TempPathFactory, launch: Callable[..., ServerProcess]
) -> tuple[Any, ServerProcess]:
    """A LogisticRegression fitted on a DataFrame of numbers: named columns, a float batch."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    estimator = LogisticRegression().fit(frame, (frame["a"] + frame["b"] > 0).astype(int))
    saved = save(estimator, tmp_path_factory.mktemp("named-numeric"), "numbers")
    return estimator, launch(saved, name="numbers").wait_ready(timeout=120)


def _churn_rows(n_rows: int) -> list[dict[str, Any]]:
    frame = _training_frame()
    return [
        {k: (str(v) if k in STRINGS else float(v)) for k, v in row.items()}
        for row in frame.iloc[:n_rows].to_dict("records")
    ]


@functools.cache
def _training_frame() -> Any:
    return pipeline_model.training_frame()[0]


def _tensors(
    rows: list[dict[str, Any]],
    *,
    pd_parameter: bool = True,
    flat: bool = False,
    nested: bool = False,
    datatype: str = "FP64",
    integers: bool = False,
) -> dict[str, Any]:
    """v2, a tensor per column, as pipeline_model.v2_pandas_body makes it, with variations."""
    inputs = []
    for name in (name for name in ORDER if name in rows[0]):
        data = [row[name] for row in rows]
        text = name in STRINGS
        if integers and not text:
            data = [round(v) for v in data]
        tensor: dict[str, Any] = {
            "name": name,
            "shape": [len(data)] if flat else [len(data), 1],
            "datatype": "BYTES" if text else datatype,
            "data": [[v] for v in data] if nested else data,
        }
        if text:
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    body: dict[str, Any] = {"inputs": inputs}
    if pd_parameter:
        body["parameters"] = {"content_type": "pd"}
    return body


def _v2_answer(server: ServerProcess, outputs: list[dict[str, Any]], **extra: Any) -> Any:
    return {"model_name": server.name, **extra, "outputs": outputs}


def _predict(labels: np.ndarray) -> dict[str, Any]:
    return {"name": "predict", "shape": [len(labels)], "datatype": "INT64", "data": labels.tolist()}


def _post(server: ServerProcess, path: str, body: Any) -> Any:
    reply = server.request("POST", path.format(server.name), body)
    assert reply.status == 200, reply.body
    return reply


V1 = "/v1/models/{}:predict"
V2 = "/v2/models/{}/infer"


def test_every_v2_form_of_the_churn_rows_gets_the_same_answer(
    churn: tuple[Any, ServerProcess],
) -> None:
    estimator, server = churn
    for n_rows in (1, 3):
        rows = _churn_rows(n_rows)
        expected = _v2_answer(server, [_predict(estimator.predict(pd.DataFrame(rows)))])
        reversed_body = _tensors(rows)
        reversed_body["inputs"].reverse()
        forms = {
            "benchmark": _tensors(rows),
            "no content_type": _tensors(rows, pd_parameter=False),
            "shape [n]": _tensors(rows, flat=True),
            "nested [[v]]": _tensors(rows, nested=True),
            "columns reversed": reversed_body,
            "FP32": _tensors(rows, datatype="FP32"),
            "outputs predict twice": {
                **_tensors(rows),
                "outputs": [{"name": "predict"}, {"name": "predict"}],
            },
        }
        answers = {form: _post(server, V2, body).body for form, body in forms.items()}
        assert json.loads(answers["benchmark"]) == expected
        assert set(answers.values()) == {answers["benchmark"]}, answers  # byte for byte


def test_integer_numbers_and_missing_nullable_columns_in_v2(
    churn: tuple[Any, ServerProcess],
) -> None:
    estimator, server = churn
    rows = _churn_rows(2)
    rounded = [{k: (round(v) if k not in STRINGS else v) for k, v in r.items()} for r in rows]
    want = _v2_answer(server, [_predict(estimator.predict(pd.DataFrame(rounded)))])
    for datatype in ("INT64", "INT32", "FP64"):
        body = _tensors(rows, datatype=datatype, integers=True)
        assert _post(server, V2, body).json() == want, datatype
    no_city = [{k: v for k, v in row.items() if k != "city"} for row in rows]
    frame = pd.DataFrame(rows).assign(city=None)
    want = _v2_answer(server, [_predict(estimator.predict(frame))])
    assert _post(server, V2, _tensors(no_city)).json() == want
    with_nulls = _tensors(rows)
    with_nulls["inputs"][0]["data"] = [None, None]
    assert _post(server, V2, with_nulls).json() == want


def test_churn_probabilities_and_id_in_v2(churn: tuple[Any, ServerProcess]) -> None:
    estimator, server = churn
    rows = _churn_rows(3)
    frame = pd.DataFrame(rows)
    body = {**_tensors(rows), "id": "req-9"}
    body["parameters"]["probabilities"] = True
    answer = _post(server, V2, body).json()
    probabilities = answer["outputs"][1].pop("data")
    assert answer == _v2_answer(
        server,
        [
            _predict(estimator.predict(frame)),
            {"name": "predict_proba", "shape": [3, 2], "datatype": "FP64"},
        ],
        id="req-9",
    )
    assert np.abs(np.reshape(probabilities, (3, 2)) - estimator.predict_proba(frame)).max() < 1e-6
    only = _post(server, V2, {**_tensors(rows), "outputs": [{"name": "predict_proba"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["predict_proba"]
    assert only["outputs"][0]["data"] == probabilities


def test_every_v1_form_of_the_churn_rows_gets_the_same_answer(
    churn: tuple[Any, ServerProcess],
) -> None:
    estimator, server = churn
    for n_rows in (1, 3):
        rows = _churn_rows(n_rows)
        want = {"predictions": estimator.predict(pd.DataFrame(rows)).tolist()}
        forms = {
            "records": {"instances": rows},
            "columnar inputs": {"inputs": {k: [r[k] for r in rows] for k in ORDER}},
            "positional rows": {"instances": [[r[k] for k in ORDER] for r in rows]},
        }
        for form, body in forms.items():
            assert _post(server, V1, body).json() == want, form


def _mutated(change: Callable[[dict[str, Any]], object], n_rows: int = 1) -> dict[str, Any]:
    body = copy.deepcopy(_tensors(_churn_rows(n_rows)))
    change(body)
    return body


def _set(tensor: int, key: str, value: Any) -> Callable[[dict[str, Any]], object]:
    return lambda body: body["inputs"][tensor].__setitem__(key, value)


def _two_rows(change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], object]:
    return lambda body: (body.update(_tensors(_churn_rows(2))), change(body))


def _drop(tensor: int, key: str) -> Callable[[dict[str, Any]], object]:
    return lambda body: body["inputs"][tensor].pop(key)


BAD_V2: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "inputs an object": (
        lambda b: b.__setitem__("inputs", {"city": ["oslo"]}),
        "inputs: expected an array of tensors, got an object",
    ),
    "inputs empty": (
        lambda b: b.__setitem__("inputs", []),
        "inputs: expected an array of tensors, got an array",
    ),
    "tensor not an object": (
        lambda b: b["inputs"].__setitem__(2, 5),
        "inputs[2]: expected an object, got a number",
    ),
    "unknown name": (
        _set(0, "name", "town"),
        f"inputs[0].name: unknown column 'town'; {COLUMNS_ARE}",
    ),
    "name a number": (
        _set(0, "name", 3),
        f"inputs[0].name: unknown column 3; {COLUMNS_ARE}",
    ),
    "column twice": (
        lambda b: b["inputs"].append(dict(b["inputs"][0])),
        "inputs[7].name: column 'city' is sent twice",
    ),
    "string column as FP64": (
        _set(0, "datatype", "FP64"),
        "inputs[0] (city).datatype: a string column takes BYTES, got 'FP64'",
    ),
    "number column as BYTES": (
        _set(2, "datatype", "BYTES"),
        f"inputs[2] (age).datatype: {NUMBER_TAKES}, got 'BYTES'",
    ),
    "number column as BOOL": (
        _set(2, "datatype", "BOOL"),
        f"inputs[2] (age).datatype: {NUMBER_TAKES}, got 'BOOL'",
    ),
    "datatype an array": (
        _set(2, "datatype", ["FP64"]),
        f"inputs[2] (age).datatype: {NUMBER_TAKES}, got ['FP64']",
    ),
    "no datatype": (
        _drop(2, "datatype"),
        f"inputs[2] (age).datatype: {NUMBER_TAKES}, got None",
    ),
    "no shape": (
        _drop(2, "shape"),
        f"inputs[2] (age).shape: {SHAPE_RULE}, got None",
    ),
    "negative shape": (
        _set(2, "shape", [-1, 1]),
        f"inputs[2] (age).shape: {SHAPE_RULE}, got [-1, 1]",
    ),
    "fractional shape": (
        _set(2, "shape", [1.0, 1]),
        f"inputs[2] (age).shape: {SHAPE_RULE}, got [1.0, 1]",
    ),
    "boolean shape": (
        _set(2, "shape", [1, True]),
        f"inputs[2] (age).shape: {SHAPE_RULE}, got [1, True]",
    ),
    "wide shape": (
        _set(2, "shape", [1, 2]),
        "inputs[2] (age).shape: a column is [n] or [n, 1], got [1, 2]",
    ),
    "3-d shape": (
        _set(2, "shape", [1, 1, 1]),
        "inputs[2] (age).shape: a column is [n] or [n, 1], got [1, 1, 1]",
    ),
    "empty shape": (
        _set(2, "shape", []),
        f"inputs[2] (age).shape: {SHAPE_RULE}, got []",
    ),
    "no data": (_drop(2, "data"), "inputs[2] (age).data: expected an array, got null"),
    "data a number": (
        _set(2, "data", 63.0),
        "inputs[2] (age).data: expected an array, got a number",
    ),
    "nested row of two": (
        _set(2, "data", [[63.0, 1.0]]),
        "inputs[2] (age).data: nested rows must hold one value each",
    ),
    "nested and flat mixed": (
        _set(2, "data", [[63.0], 5.0]),
        "inputs[2] (age): shape [1, 1] needs 1 values, data has 2",
    ),
    "a row of one among numbers": (
        _two_rows(_set(2, "data", [[63.0], 5.0])),
        "inputs.age: column 'age' takes numbers, found an array",
    ),
    "shape and data disagree": (
        _set(2, "shape", [2, 1]),
        "inputs[2] (age): shape [2, 1] needs 2 values, data has 1",
    ),
    "INT64 with a fraction": (
        lambda b: b["inputs"][2].update(datatype="INT64", data=[63.5]),
        "inputs[2] (age).data: datatype INT64 expects integers, found a fraction",
    ),
    "required column left out": (lambda b: b["inputs"].pop(), "inputs: column 'review' is missing"),
    "ragged columns": (
        lambda b: b["inputs"][0].update(shape=[2, 1], data=["oslo", "lyon"]),
        f"inputs: columns have different lengths (ragged): {RAGGED}",
    ),
    "empty batch": (
        lambda b: [t.update(shape=[0, 1], data=[]) for t in b["inputs"]],
        "inputs: empty batch; send at least one row",
    ),
    "a number in a string column": (
        _set(0, "data", [5]),
        "inputs.city: column 'city' takes strings, found a number",
    ),
    "a string in a number column": (
        _set(2, "data", ["x"]),
        "inputs.age: column 'age' takes numbers, found a string",
    ),
    "null in a required number": (
        _set(2, "data", [None]),
        "inputs.age: null in column 'age', which this model cannot take missing",
    ),
    "null in a required string": (
        _set(6, "data", [None]),
        "inputs.review: null in column 'review', which this model cannot take missing",
    ),
    "true in a number column": (
        _set(2, "data", [True]),
        "inputs.age: column 'age' takes numbers, found a boolean",
    ),
    "an integer beyond 2**53": (
        lambda b: b["inputs"][2].update(datatype="INT64", data=[2**60]),
        "inputs.age: an integer in column 'age' is out of range",
    ),
    "id a number": (lambda b: b.__setitem__("id", 5), "id: expected a string, got a number"),
    "parameters a string": (
        lambda b: b.__setitem__("parameters", "pd"),
        "parameters: expected an object, got a string",
    ),
    "probabilities not a boolean": (
        lambda b: b["parameters"].update(probabilities="yes"),
        "parameters.probabilities: expected true or false",
    ),
    "unknown output": (
        lambda b: b.__setitem__("outputs", [{"name": "decision_function"}]),
        "outputs[0].name: expected one of predict, predict_proba, got 'decision_function'",
    ),
    "outputs a string": (
        lambda b: b.__setitem__("outputs", "predict"),
        "outputs: expected an array, got a string",
    ),
}


@pytest.mark.parametrize("case", list(BAD_V2))
def test_each_malformed_v2_body_gets_its_400_word_for_word(
    churn: tuple[Any, ServerProcess], case: str
) -> None:
    _, server = churn
    change, message = BAD_V2[case]
    reply = server.request("POST", V2.format(server.name), _mutated(change))
    assert (reply.status, reply.json()) == (400, {"error": message, "reason": "invalid_input"})


def test_too_many_rows_per_column_tensor_is_a_413(churn: tuple[Any, ServerProcess]) -> None:
    _, server = churn
    rows = _churn_rows(MAX_ROWS + 1)
    reply = server.request("POST", V2.format(server.name), _tensors(rows))
    assert reply.status == 413
    assert reply.json() == {
        "error": "inputs: 5 rows, limit is 4 per request",
        "reason": "payload_too_large",
    }


BAD_V1: dict[str, tuple[Any, str]] = {
    "no instances": (
        {"rows": []},
        'instances: required; expected {"instances": [[7 numbers], ...]}',
    ),
    "record not an object": (
        {"instances": [*_churn_rows(1), 5]},
        "instances[1]: expected an object keyed by column, got a number",
    ),
    "record with an unknown column": (
        {"instances": [{"town": "oslo"}]},
        f"instances[0]: unknown column 'town'; {COLUMNS_ARE}",
    ),
    "record missing a column": (
        {"instances": [{"city": "oslo", "plan": "basic"}]},
        "instances[0]: column 'age' is missing",
    ),
    "columnar ragged": (
        {"inputs": {k: ["x"] * (2 if k == "city" else 1) for k in ORDER}},
        f"inputs: columns have different lengths (ragged): {RAGGED}",
    ),
    "positional row too short": (
        {"instances": [["oslo", "basic", 63.0]]},
        "instances[0]: expected 7 values, got 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_V1))
def test_each_malformed_v1_body_gets_its_400_word_for_word(
    churn: tuple[Any, ServerProcess], case: str
) -> None:
    _, server = churn
    body, message = BAD_V1[case]
    reply = server.request("POST", V1.format(server.name), body)
    assert (reply.status, reply.json()) == (400, {"error": message, "reason": "invalid_input"})


def test_numeric_model_answers_every_form_alike(
    trained: dict[str, SavedModel], classifier_server: ServerProcess
) -> None:
    """The positional model (no column names): v2 one tensor, flat or nested, FP64 or FP32, and
    v1 rows get the same predictions; probabilities only when asked for."""
    rows = [[1, 0, -2, 3, 0, 1], [0.5, 0, 0, 0, 0, -1.25]]
    tensor = {"name": "input-0", "shape": [2, 6], "datatype": "FP64"}
    flat = [v for row in rows for v in row]
    bodies = [
        {"inputs": [{**tensor, "data": rows}]},
        {"inputs": [{**tensor, "data": flat}]},
        {"inputs": [{**tensor, "datatype": "FP32", "data": flat}]},
    ]
    answers = {_post(classifier_server, V2, body).body for body in bodies}
    labels = trained["classifier-joblib"].estimator.predict(np.array(rows))
    expected = {"model_name": "iris", "model_version": "7", "outputs": [_predict(labels)]}
    assert [json.loads(answer) for answer in answers] == [expected]
    v1 = _post(classifier_server, V1, {"instances": rows}).json()
    assert v1 == {"predictions": labels.tolist()}
    both = _post(classifier_server, V2, {**bodies[0], "parameters": {"probabilities": True}})
    names = [(o["name"], o["shape"]) for o in both.json()["outputs"]]
    assert names == [("predict", [2]), ("predict_proba", [2, 3])]


def test_named_numeric_model_answers_every_form_alike(
    named_numeric: tuple[Any, ServerProcess],
) -> None:
    estimator, server = named_numeric
    rows = [{"a": 0.5, "b": -1.0, "c": 2}, {"a": -0.25, "b": 1.5, "c": 0.0}]
    want = estimator.predict(pd.DataFrame(rows)).tolist()
    columns = {k: [r[k] for r in rows] for k in "abc"}
    per_column = [
        {"name": k, "shape": [2, 1], "datatype": "FP64", "data": v} for k, v in columns.items()
    ]
    one_tensor = {"name": "input-0", "shape": [2, 3], "datatype": "FP64"}
    v2_forms = [
        {"inputs": per_column},
        {"inputs": per_column, "parameters": {"content_type": "pd"}},
        {"inputs": [{**one_tensor, "data": [[r[k] for k in "abc"] for r in rows]}]},
    ]
    answers = {_post(server, V2, body).body for body in v2_forms}
    assert len(answers) == 1
    assert json.loads(answers.pop()) == _v2_answer(server, [_predict(np.array(want))])
    for body in ({"instances": rows}, {"inputs": columns}, {"instances": [[0.5, -1.0, 2]]}):
        predictions = _post(server, V1, body).json()["predictions"]
        assert predictions == want[: len(predictions)]
    bad = {"inputs": [{**per_column[0], "data": ["x", "y"]}, *per_column[1:]]}
    reply = server.request("POST", V2.format(server.name), bad)
    assert (reply.status, reply.json()) == (
        400,
        {"error": "inputs.a: column 'a' takes numbers, found a string", "reason": "invalid_input"},
    )
