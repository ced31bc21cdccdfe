"""Pure parts of named-column serving: signature derivation, input decoding, the parity rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modeldeploy_serving.columns import derive, needs_frame, parse_signature_file
from modeldeploy_serving.compiled import parity_problem
from modeldeploy_serving.errors import InvalidArtifact, InvalidInput
from modeldeploy_serving.protocol import named
from modeldeploy_serving.signature import Column, ModelSignature, OutputSpec


def _pipeline(unknown: str = "ignore") -> Pipeline:
    frame = pd.DataFrame(
        {
            "city": ["paris", "lyon", "nice", "paris"] * 5,
            "note": ["good food", "bad", "quiet view", "good"] * 5,
            "age": [30.0, 40.0, None, 50.0] * 5,
        }
    )
    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown=unknown), ["city"]),
            ("note", TfidfVectorizer(), "note"),
            ("age", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["age"]),
        ]
    )
    labels = [0, 1, 0, 1] * 5
    return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, labels)


def test_columns_are_derived_from_a_column_transformer() -> None:
    profiles = derive(_pipeline(unknown="error"), None)
    columns = {p.column.name: p for p in profiles}
    assert [p.column.name for p in profiles] == ["city", "note", "age"]
    assert columns["city"].column.kind == "string"
    assert columns["city"].column.categories == ("lyon", "nice", "paris")  # strict encoder
    assert columns["note"].column.kind == "string" and columns["note"].text
    assert "good" in columns["note"].vocabulary
    assert columns["age"].column.kind == "number" and columns["age"].center == pytest.approx(40.0)
    assert needs_frame(_pipeline(), profiles)


def test_an_encoder_that_ignores_unknowns_leaves_the_categories_open() -> None:
    (city, *_) = derive(_pipeline(unknown="ignore"), None)
    assert city.column.categories is None and city.known == ("lyon", "nice", "paris")


def test_a_signature_file_overrides_kinds_and_must_name_known_columns() -> None:
    raw = b'{"inputs": "[{\\"name\\": \\"age\\", \\"type\\": \\"long\\", \\"required\\": false}]"}'
    parsed = parse_signature_file(raw)  # MLflow's string-encoded column specs
    assert parsed.kinds == {"age": ("number", True)}
    age = derive(_pipeline(), parsed)[2].column
    assert age.nullable
    with pytest.raises(InvalidArtifact, match="zip"):
        derive(
            _pipeline(), parse_signature_file(b'{"inputs": [{"name": "zip", "type": "string"}]}')
        )
    with pytest.raises(InvalidArtifact, match="type"):
        parse_signature_file(b'{"inputs": [{"name": "a", "type": "tensor"}]}')


SIGNATURE = ModelSignature(
    n_features=3,
    allow_nan=False,
    outputs=(OutputSpec("predict", np.dtype("int64"), ()),),
    columns=(
        Column("city", "string", categories=("lyon", "paris")),
        Column("note", "string"),
        Column("age", "number", nullable=True),
    ),
    frame=True,
)


def test_records_and_columns_make_the_same_batch() -> None:
    records = [{"city": "paris", "note": "x", "age": 3}, {"city": "lyon", "note": "y"}]
    by_record = named.from_records(records, SIGNATURE, field="instances", max_rows=10)
    columns = {"city": ["paris", "lyon"], "note": ["x", "y"], "age": [3, None]}
    by_column = named.from_columns(columns, SIGNATURE, field="inputs", max_rows=10)
    assert by_record.dtype == object and by_record.shape == (2, 3)
    assert by_record[0].tolist() == by_column[0].tolist() == ["paris", "x", 3]
    assert np.isnan(by_record[1, 2]) and np.isnan(by_column[1, 2])


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"city": ["paris"], "note": ["x"], "age": [1], "zip": [1]}, "unknown column 'zip'"),
        ({"city": ["paris"], "age": [1]}, "column 'note' is missing"),
        ({"city": ["paris"], "note": ["x", "y"], "age": [1]}, "ragged"),
        ({"city": ["berlin"], "note": ["x"], "age": [1]}, "not a category of column 'city'"),
        ({"city": ["paris"], "note": [None], "age": [1]}, "null in column 'note'"),
        ({"city": ["paris"], "note": [1], "age": [1]}, "column 'note' takes strings"),
        ({"city": ["paris"], "note": ["x"], "age": [True]}, "column 'age' takes numbers"),
        ({"city": [], "note": [], "age": []}, "empty batch"),
    ],
)
def test_bad_columns_are_refused_naming_the_column(columns: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        named.from_columns(columns, SIGNATURE, field="inputs", max_rows=10)


def test_a_numeric_model_keeps_a_float_batch() -> None:
    numeric = ModelSignature(
        n_features=2,
        allow_nan=False,
        outputs=SIGNATURE.outputs,
        columns=(Column("a", "number"), Column("b", "number")),
    )
    batch = named.from_records([{"a": 1, "b": 2.5}], numeric, field="instances", max_rows=5)
    assert batch.dtype == np.float64 and batch.tolist() == [[1.0, 2.5]]


def test_the_parity_rule() -> None:
    labels = np.array([0, 1, 2])
    proba = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    same = {"predict": labels, "predict_proba": proba}
    assert parity_problem(same, {"predict": labels.copy(), "predict_proba": proba + 5e-7}) is None
    flipped = {"predict": np.array([0, 2, 2]), "predict_proba": proba}
    assert "labels differ on 1 of 3 rows" in str(parity_problem(same, flipped))
    drifted = {"predict": labels, "predict_proba": proba + 2e-6}
    assert "predict_proba differs" in str(parity_problem(same, drifted))
    values = {"predict": np.array([1000.0, 0.5])}
    assert parity_problem(values, {"predict": np.array([1000.005, 0.500001])}) is None
    assert parity_problem(values, {"predict": np.array([1000.5, 0.5])}) is not None
