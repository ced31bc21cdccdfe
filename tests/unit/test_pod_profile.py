"""spec.model.profile and the drift thresholds reach the pod: the server gets the profile's URI
and sha256 (a pvc:// profile mounted read-only), the sidecar its thresholds; unset, nothing."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.pod import PodSettings, pod_template
from modeldeploy.spec import SpecError, parse_spec
from tests.helpers.spec_cases import SHA, valid_manifest

PROFILE_SHA = "b" * 64


def _pod(model: dict[str, Any] | None = None, thresholds: dict[str, Any] | None = None) -> Any:
    raw = valid_manifest()["spec"]
    raw["model"].update(model or {})
    raw["analysis"] = {"thresholds": thresholds or {}}
    spec = parse_spec(raw)
    return pod_template(
        spec, md_name="iris", md_uid="u", labels={}, default_image="img", settings=PodSettings()
    )["spec"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_without_profile_or_drift_thresholds_pods_are_unchanged() -> None:
    pod = _pod()
    assert names.ENV_PROFILE_URI not in _env(pod["containers"][0])
    monitor = _env(pod["initContainers"][0])
    assert names.ENV_MONITOR_MAX_FEATURE_DRIFT not in monitor
    assert names.ENV_MONITOR_MAX_PREDICTION_DRIFT not in monitor


def test_profile_and_thresholds_reach_server_and_sidecar() -> None:
    profile = {"uri": "https://models.example.com/iris/3/profile.json", "sha256": PROFILE_SHA}
    pod = _pod({"profile": profile}, {"predictionDrift": 0.25, "featureDrift": 0.2})
    server = _env(pod["containers"][0])
    assert server[names.ENV_PROFILE_URI] == profile["uri"]
    assert server[names.ENV_PROFILE_SHA256] == PROFILE_SHA
    monitor = _env(pod["initContainers"][0])
    assert monitor[names.ENV_MONITOR_MAX_PREDICTION_DRIFT] == "0.25"
    assert monitor[names.ENV_MONITOR_MAX_FEATURE_DRIFT] == "0.2"


def test_a_pvc_profile_is_mounted_once_per_claim() -> None:
    model = {
        "uri": "pvc://models/iris.joblib",
        "sha256": SHA,
        "profile": {"uri": "pvc://profiles/iris.json", "sha256": PROFILE_SHA},
    }
    pod = _pod(model)
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["models", "profiles"]
    uri = _env(pod["containers"][0])[names.ENV_PROFILE_URI]
    assert uri == f"file://{names.MODEL_MOUNT_ROOT}/profiles/iris.json"
    same = _pod({**model, "profile": {"uri": "pvc://models/p.json", "sha256": PROFILE_SHA}})
    assert len([v for v in same["volumes"] if "persistentVolumeClaim" in v]) == 1


def test_profile_uri_obeys_the_model_uri_rules() -> None:
    with pytest.raises(SpecError) as err:
        _pod({"profile": {"uri": "https://169.254.169.254/p.json", "sha256": PROFILE_SHA}})
    assert err.value.field_path == "spec.model.profile.uri"
