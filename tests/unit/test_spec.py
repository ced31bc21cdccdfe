"""The operator's own validation of a ModelDeployment spec (modeldeploy.spec and .units)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldeploy.spec import SpecError, parse_spec, validate_name
from modeldeploy.units import format_duration, parse_duration, parse_quantity
from tests.helpers.crd import apply_defaults, spec_schema
from tests.helpers.spec_cases import INVALID, Invalid, valid_manifest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _reject(case: Invalid) -> SpecError:
    manifest = case.manifest()
    with pytest.raises(SpecError) as caught:
        if case.field.startswith("metadata."):
            validate_name(manifest["metadata"]["name"])
        else:
            parse_spec(manifest["spec"])
    return caught.value


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_spec_is_rejected_naming_the_field(case: Invalid) -> None:
    error = _reject(case)
    assert error.field_path == case.field
    assert str(error).startswith(f"{case.field}: ")
    if case.operator_says_too:
        assert case.says in error.message


SPEC_CASES = [c for c in INVALID if c.field.startswith("spec")]


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.id for c in SPEC_CASES])
def test_invalid_spec_is_rejected_after_server_defaulting_too(case: Invalid) -> None:
    """The operator sees specs the API server has defaulted; the verdict must not change."""
    raw = apply_defaults(spec_schema(), case.manifest()["spec"])
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert caught.value.field_path == case.field


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(valid_manifest()["spec"])
    assert spec.model.format == "joblib"
    assert spec.serving.port == 8080
    assert spec.serving.image is None
    assert spec.serving.resources.requests is not None
    assert spec.serving.resources.requests.as_dict() == {"cpu": "250m", "memory": "256Mi"}
    assert [(s.weight, s.pause) for s in spec.rollout.steps] == [
        (10, timedelta(seconds=30)),
        (50, timedelta(seconds=60)),
    ]
    assert spec.rollout.bake_time == timedelta(minutes=5)
    assert spec.analysis.window == timedelta(seconds=30)
    assert (spec.analysis.min_requests, spec.analysis.on_no_data) == (20, "hold")
    assert (spec.analysis.thresholds.error_rate, spec.analysis.thresholds.latency_p99_ms) == (
        0.01,
        250,
    )
    assert (spec.rollback.automatic, spec.rollback.history_limit) == (True, 10)
    assert (spec.replicas, spec.autoscaling, spec.fixed_replicas) == (None, None, 1)


def test_parsing_the_server_defaulted_spec_gives_the_same_result() -> None:
    raw = valid_manifest()["spec"]
    assert parse_spec(apply_defaults(spec_schema(), raw)) == parse_spec(raw)


@pytest.mark.parametrize(
    ("changes", "autoscaled", "fixed"),
    [
        ({}, False, 1),
        ({"replicas": 3}, False, 3),
        ({"autoscaling": {"maxReplicas": 5}}, True, None),
        ({"autoscaling": {"maxReplicas": 5, "enabled": False}}, False, 1),
        ({"autoscaling": {"maxReplicas": 5, "enabled": False}, "replicas": 2}, False, 2),
    ],
)
def test_who_owns_the_replica_count(
    changes: dict[str, Any], autoscaled: bool, fixed: int | None
) -> None:
    spec = parse_spec({**valid_manifest()["spec"], **changes})
    assert spec.autoscaling_enabled is autoscaled
    assert spec.fixed_replicas == fixed


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models/iris/3/model.joblib",
        "pvc://my.claim-1/m.skops",
        "https://models.example.com/iris/3/model.joblib",
        "https://models.example.com:8443/m.joblib?versionId=3",
        "http://minio.ml.svc:9000/bucket/m.joblib",
        "file:///models/iris.joblib",
    ],
)
def test_allowed_uris(uri: str) -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = uri
    assert parse_spec(manifest["spec"]).model.uri == uri


def test_parses_the_spec_kopf_hands_to_handlers() -> None:
    import kopf

    body = kopf.Body(valid_manifest())
    assert parse_spec(body.spec) == parse_spec(valid_manifest()["spec"])


def test_spec_is_frozen() -> None:
    spec = parse_spec(valid_manifest()["spec"])
    with pytest.raises(ValueError, match="frozen"):
        spec.replicas = 3  # type: ignore[misc]


def test_quantities_given_as_integers_become_strings() -> None:
    raw = valid_manifest()["spec"]
    raw["serving"] = {"resources": {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"cpu": 2}}}
    resources = parse_spec(raw).serving.resources
    assert resources.requests is not None and resources.limits is not None
    assert resources.requests.as_dict() == {"cpu": "1", "memory": "1Gi"}
    assert resources.limits.as_dict() == {"cpu": "2"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_parse(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    validate_name(manifest["metadata"]["name"])
    parse_spec(manifest["spec"])


def test_there_are_examples_for_autoscaling_fixed_replicas_and_canary_steps() -> None:
    specs = [parse_spec(yaml.safe_load(p.read_text())["spec"]) for p in EXAMPLES]
    assert any(s.autoscaling_enabled for s in specs)
    assert any(s.replicas is not None and not s.autoscaling_enabled for s in specs)
    assert any(len(s.rollout.steps) >= 3 for s in specs)


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("0s", timedelta(0), "0s"),
        ("500ms", timedelta(milliseconds=500), "500ms"),
        ("30s", timedelta(seconds=30), "30s"),
        ("90s", timedelta(seconds=90), "1m30s"),
        ("60s", timedelta(minutes=1), "1m"),
        ("1h30m", timedelta(hours=1, minutes=30), "1h30m"),
        ("2h0m5s", timedelta(hours=2, seconds=5), "2h5s"),
        ("1m1m", timedelta(minutes=2), "2m"),  # Go's ParseDuration adds repeated units too
    ],
)
def test_durations(text: str, expected: timedelta, canonical: str) -> None:
    assert parse_duration(text) == expected
    assert format_duration(expected) == canonical


@pytest.mark.parametrize("text", ["", "30", "30 s", "-5s", "1.5h", "5d", "1us", "s", "123456s"])
def test_malformed_durations(text: str) -> None:
    with pytest.raises(ValueError, match="should match"):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=24)))
def test_formatted_durations_parse_back(value: timedelta) -> None:
    value = timedelta(milliseconds=round(value.total_seconds() * 1000))
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("1", Decimal(1)),
        (2, Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("1Gi", Decimal(2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("100u", Decimal("0.0001")),
    ],
)
def test_quantities(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_requests_equal_to_limits_are_fine() -> None:
    raw = valid_manifest()["spec"]
    raw["serving"] = {"resources": {"requests": {"cpu": "1000m"}, "limits": {"cpu": "1"}}}
    parse_spec(raw)


# --- robustness: whatever arrives, the answer is a spec or a SpecError -------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
_keys = st.sampled_from(
    ["model", "serving", "replicas", "autoscaling", "rollout", "analysis", "rollback"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _json, max_size=4))
def test_garbage_raises_spec_error_only(changes: dict[str, Any]) -> None:
    try:
        parse_spec({**valid_manifest()["spec"], **changes})
    except SpecError as error:
        assert error.field_path.startswith("spec")
