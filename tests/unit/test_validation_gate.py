"""The validation gate's pure parts: the metrics against hand-computed values, the pass rule,
the spec field, and what the pod builder passes to the server."""

from __future__ import annotations

import io
import math
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modeldeploy import names
from modeldeploy.builders import Owner, revision_deployment
from modeldeploy.diagnosis import pod_problem
from modeldeploy.hashing import revision_hash
from modeldeploy.spec import SpecError, parse_spec
from modeldeploy_serving.config import ConfigError, parse_config
from modeldeploy_serving.parquet import ParquetUnreadable, read_parquet, read_parquet_isolated
from modeldeploy_serving.validation import Result, dataset_format, meets, score
from tests.helpers.parquet_files import write_parquet
from tests.helpers.spec_cases import SHA, valid_manifest
from tests.helpers.storage_cases import S3_URI, SECRET_ENV

# --- metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "truth", "predicted", "expected"),
    [
        # 3 of 4 right.
        ("accuracy", [0, 1, 1, 0], [0, 1, 0, 0], 0.75),
        ("accuracy", ["a", "b"], ["b", "a"], 0.0),
        # Class 0: tp 2, fp 1, fn 0 -> f1 = 2*2/(2*2+1+0) = 0.8; class 1: tp 1, fp 0, fn 1 ->
        # f1 = 2/(2+0+1) = 2/3; macro = (0.8 + 2/3) / 2 = 11/15.
        ("f1", [0, 0, 1, 1], [0, 0, 0, 1], 11 / 15),
        # A constant predictor of 3 balanced classes: f1 of the predicted class = 2*2/(2*2+4)
        # = 0.5, the others 0 -> macro 1/6 (accuracy would say 1/3).
        ("f1", [0, 0, 1, 1, 2, 2], [0] * 6, 1 / 6),
        # |1-2| + |2-2| + |3-5| = 3 over 3 rows.
        ("mae", [1.0, 2.0, 3.0], [2.0, 2.0, 5.0], 1.0),
        # SS_res = 1+0+4 = 5, SS_tot around mean 2 = 1+0+1 = 2 -> 1 - 5/2 = -1.5.
        ("r2", [1.0, 2.0, 3.0], [2.0, 2.0, 5.0], -1.5),
        ("r2", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1.0),
    ],
)
def test_scores_match_hand_computed_values(
    metric: Any, truth: list[Any], predicted: list[Any], expected: float
) -> None:
    assert score(metric, np.array(truth), np.array(predicted)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("metric", "value", "threshold", "passes"),
    [
        ("accuracy", 0.9, 0.9, True),  # meeting the threshold is enough
        ("accuracy", 0.89, 0.9, False),
        ("f1", 0.95, 0.9, True),
        ("r2", -0.2, 0.5, False),
        ("mae", 1.0, 1.0, True),  # lower is better for an error
        ("mae", 1.01, 1.0, False),
        ("mae", 0.2, 1.0, True),
        ("r2", math.nan, 0.0, False),  # no score is never a pass
    ],
)
def test_the_metric_decides_which_direction_passes(
    metric: Any, value: float, threshold: float, passes: bool
) -> None:
    assert meets(metric, value, threshold) is passes


def test_the_reason_names_metric_value_threshold_and_rows() -> None:
    assert str(Result("accuracy", 0.34, 0.9, 150)) == (
        "accuracy 0.34 is below the threshold 0.9 on 150 validation rows"
    )
    assert str(Result("mae", 3.25, 1.0, 20)) == (
        "mae 3.25 is above the threshold 1 on 20 validation rows"
    )


# --- dataset format ----------------------------------------------------------------------------


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    write_parquet(buffer, frame)
    return buffer.getvalue()


PARQUET = _parquet_bytes(
    pd.DataFrame({"f0": [1.5, None], "city": ["paris", "lyon"], "label": [0, 1]})
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PARQUET, "parquet"),
        (b"f0,city,label\n1.5,paris,0\n", "csv"),
        (b"", "csv"),  # read as CSV, which then says it has no columns
        (b"PARTNER,label\n1,0\n", "csv"),  # a header may begin with PAR, just not with PAR1
        (PARQUET[: len(PARQUET) // 2], "cut-parquet"),  # a download cut off: no closing magic
        (PARQUET[:-1], "cut-parquet"),
        (b"PAR1", "cut-parquet"),  # one magic is not a file, nor is the magic twice
        (b"PAR1PAR1", "cut-parquet"),
        (b"PAR1" + bytes(4) + b"PAR1", "parquet"),  # the smallest; the reader judges the rest
    ],
    ids=[
        "parquet",
        "csv",
        "empty",
        "header-PARTNER",
        "half",
        "last-byte-missing",
        "magic-only",
        "magic-twice",
        "minimal",
    ],
)
def test_the_dataset_format_is_told_by_content_not_by_name(data: bytes, expected: str) -> None:
    assert dataset_format(data) == expected


def _as_request(series: pd.Series) -> list[Any]:
    return list(series.astype(object).where(series.notna(), None).tolist())


def test_typed_parquet_columns_come_back_with_their_types_and_missing_values() -> None:
    """What the gate scores: categories, nullable integers and booleans keep their types, and
    every kind of missing value (NaN, None, pandas' NA) reads back as missing, never as 0, ""
    or the text "None"."""
    frame = pd.DataFrame(
        {
            "city": pd.Series(["paris", "lyon", None, "nice"], dtype="category"),
            "text": ["good", None, "bad", ""],
            "age": pd.Series([31, None, 45, 0], dtype="Int64"),
            "income": [2500.5, np.nan, 0.0, -1.25],
            "member": pd.Series([True, None, False, True], dtype="boolean"),
            "label": [0, 1, 2, 1],
        }
    )
    back = read_parquet(io.BytesIO(_parquet_bytes(frame)))
    assert list(back.columns) == list(frame.columns)
    assert back["city"].dtype == "category" and list(back["city"].cat.categories) == [
        "lyon",
        "nice",
        "paris",
    ]
    assert back["age"].dtype == "Int64" and back["member"].dtype == "boolean"
    assert back["income"].dtype == np.float64 and back["label"].dtype == np.int64
    assert {name: _as_request(back[name]) for name in back.columns} == {
        "city": ["paris", "lyon", None, "nice"],
        "text": ["good", None, "bad", ""],
        "age": [31, None, 45, 0],
        "income": [2500.5, None, 0.0, -1.25],
        "member": [True, None, False, True],
        "label": [0, 1, 2, 1],
    }


def test_a_corrupt_parquet_footer_is_one_exception_not_a_flood_of_output(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """fastparquet's decoder prints a line per corrupt byte; the container log must not get
    thousands of them, only the reason once."""
    footer_length = int.from_bytes(PARQUET[-8:-4], "little")
    damaged = PARQUET[: -8 - footer_length] + b"\xff" * footer_length + PARQUET[-8:]
    with pytest.raises(ParquetUnreadable, match=r"^its footer \(schema and row groups\) cannot"):
        read_parquet(io.BytesIO(damaged))
    assert capfd.readouterr() == ("", "")


# --- server configuration ----------------------------------------------------------------------

_SERVER = ["--model-uri", "/m.joblib", "--model-name", "m", "--sha256", SHA]


def test_a_validation_uri_needs_its_sha256_and_threshold() -> None:
    with pytest.raises(ConfigError, match="--validation-uri needs --validation-sha256"):
        parse_config([*_SERVER, "--validation-uri", "/v.csv"], {})
    config = parse_config(
        _SERVER,
        {
            names.ENV_VALIDATION_URI: "/v.csv",
            names.ENV_VALIDATION_SHA256: SHA,
            names.ENV_VALIDATION_METRIC: "mae",
            names.ENV_VALIDATION_THRESHOLD: "2.5",
        },
    )
    assert (config.validation_metric, config.validation_threshold) == ("mae", 2.5)
    assert config.validation_label_column == "label"


# --- spec and pod ------------------------------------------------------------------------------

_GATE = {
    "uri": "pvc://data/iris/holdout.csv",
    "sha256": SHA,
    "metric": "accuracy",
    "threshold": 0.9,
}


def _spec(gate: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    spec = valid_manifest()["spec"]
    spec["model"].update(model)
    if gate is not None:
        spec["analysis"] = {"validation": gate}
    return spec


def _server(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = Owner(name="iris", namespace="ml", uid="uid")
    parsed = parse_spec(spec)
    deployment = revision_deployment(
        owner, parsed, revision=2, spec_hash="h", default_image="img", replicas=1
    )
    pod = deployment["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == names.CONTAINER_SERVER)


def test_the_pod_passes_the_gate_to_the_server_with_the_dataset_mounted() -> None:
    pod, server = _server(_spec(_GATE, uri="pvc://models/iris/m.joblib"))
    env = {e["name"]: e["value"] for e in server["env"] if "value" in e}
    assert env[names.ENV_VALIDATION_URI] == "file:///mnt/models/data/iris/holdout.csv"
    assert env[names.ENV_VALIDATION_SHA256] == SHA
    assert env[names.ENV_VALIDATION_METRIC] == "accuracy"
    assert env[names.ENV_VALIDATION_THRESHOLD] == "0.9"
    assert env[names.ENV_VALIDATION_LABEL_COLUMN] == "label"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"models", "data"}
    assert {m["mountPath"] for m in server["volumeMounts"]} >= {
        "/mnt/models/models",
        "/mnt/models/data",
    }


def test_a_dataset_on_the_models_claim_shares_its_mount() -> None:
    gate = {**_GATE, "uri": "pvc://models/iris/holdout.csv"}
    pod, server = _server(_spec(gate, uri="pvc://models/iris/m.joblib"))
    assert [v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == ["model"]
    assert [m["mountPath"] for m in server["volumeMounts"]].count("/mnt/models/models") == 1


def test_an_object_store_dataset_is_fetched_beside_the_model_with_its_credentials() -> None:
    gate = {**_GATE, "uri": "s3://holdout-data/iris/holdout.csv"}
    pod, server = _server(_spec(gate, uri=S3_URI, env=SECRET_ENV))
    init = {c["name"]: c for c in pod["initContainers"]}
    assert [c["name"] for c in pod["initContainers"]] == [
        names.CONTAINER_FETCHER,
        names.CONTAINER_VALIDATION_FETCHER,
        names.CONTAINER_MONITOR,
    ]
    model_fetcher, data_fetcher = (
        init[names.CONTAINER_FETCHER],
        init[names.CONTAINER_VALIDATION_FETCHER],
    )
    data_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in data_fetcher["env"]}
    assert data_env[names.ENV_MODEL_URI] == gate["uri"]
    assert data_env[names.ENV_SHA256] == SHA
    # The same credentials and arguments as the model's fetcher (never deserialize, no
    # loopback), only the target differs.
    assert data_fetcher["env"][-len(SECRET_ENV) :] == model_fetcher["env"][-len(SECRET_ENV) :]
    target = "/mnt/models/fetched/validation-data"
    assert data_fetcher["args"] == [
        f"--fetch-to={target}",
        *[a for a in model_fetcher["args"] if not a.startswith("--fetch-to=")],
    ]
    assert data_fetcher["volumeMounts"] == model_fetcher["volumeMounts"]
    env = {e["name"]: e["value"] for e in server["env"] if "value" in e}
    assert env[names.ENV_VALIDATION_URI] == f"file://{target}"
    assert not any("envFrom" in c or "valueFrom" in str(c.get("env")) for c in pod["containers"])


def test_an_object_store_dataset_needs_an_object_store_model() -> None:
    gate = {**_GATE, "uri": "gs://holdout-data/iris/holdout.csv"}
    with pytest.raises(SpecError) as refused:
        parse_spec(_spec(gate, uri="pvc://models/iris/m.joblib"))
    assert refused.value.field_path == "spec.analysis.validation.uri"
    assert "only when spec.model.uri does" in refused.value.message


def test_without_a_gate_pods_and_spec_hashes_are_unchanged() -> None:
    _, server = _server(_spec())
    assert not any(e["name"].startswith("MODELDEPLOY_VALIDATION_") for e in server["env"])
    plain = parse_spec(_spec())
    gated = parse_spec(_spec(_GATE))
    # The hash of a spec without the gate is what it was before the field existed (computed
    # on the commit before it), so an operator upgrade restarts no revision.
    assert revision_hash(plain, default_image="img") == "5328c7623f"
    assert revision_hash(gated, default_image="img") != revision_hash(plain, default_image="img")


def test_file_uris_for_the_dataset_follow_the_operators_flag() -> None:
    gate = {**_GATE, "uri": "file:///data/holdout.csv"}
    with pytest.raises(SpecError) as refused:
        parse_spec(_spec(gate), allow_file_uris=False)
    assert refused.value.field_path == "spec.analysis.validation.uri"
    assert parse_spec(_spec(gate)).analysis.validation is not None


# --- the reason reaches the operator as a terminal load cause ---------------------------------


def test_a_validation_failure_is_a_terminal_problem() -> None:
    message = "accuracy 0.34 is below the threshold 0.9 on 150 validation rows"
    pod = {
        "metadata": {"name": "iris-r2-x", "labels": {names.LABEL_REVISION: "2"}},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {
                    "type": names.POD_COND_MODEL_READY,
                    "status": "False",
                    "reason": "ValidationFailed",
                    "message": message,
                },
            ]
        },
    }
    problem = pod_problem(pod)
    assert problem is not None
    assert (problem.reason, problem.message, problem.terminal) == (
        "ValidationFailed",
        message,
        True,
    )


def test_a_crashing_parquet_decoder_is_an_unreadable_dataset_not_a_crash() -> None:
    """fastparquet's native decoders can die on damaged column data (signal 11): the server
    decodes in a child, so that becomes a clear reason instead of a crash-looping pod."""
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(ParquetUnreadable, match=r"decoder crashed \(SIGSEGV\)"):
        read_parquet_isolated(b"PAR1...PAR1", command=crash)


def test_the_parquet_child_hands_back_the_frame_and_its_reasons() -> None:
    frame = pd.DataFrame({"city": pd.Categorical(["a", None]), "age": pd.array([1, None])})
    data = io.BytesIO()
    write_parquet(data, frame)
    back = read_parquet_isolated(data.getvalue())
    assert list(back["city"].astype(object).where(back["city"].notna(), None)) == ["a", None]
    assert back["age"].isna().tolist() == [False, True]
    footer_gone = data.getvalue()[:-40] + b"\0" * 36 + b"PAR1"
    with pytest.raises(ParquetUnreadable, match="footer"):
        read_parquet_isolated(footer_gone)
