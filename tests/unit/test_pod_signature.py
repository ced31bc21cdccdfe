"""spec.model.signature reaches the model server: its URI and sha256 as the server's
--signature-uri/--signature-sha256 variables (a pvc:// signature mounted read-only, one volume per
claim), never the fetcher's or the sidecar's; unset, the pod is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.pod import PodSettings, pod_template
from modeldeploy.spec import SpecError, parse_spec
from tests.helpers.spec_cases import SHA, valid_manifest

SIGNATURE_SHA = "e" * 64
HTTP_SIGNATURE = {
    "uri": "https://models.example.com/iris/3/signature.json",
    "sha256": SIGNATURE_SHA,
}


def _pod(model: dict[str, Any] | None = None) -> Any:
    raw = valid_manifest()["spec"]
    raw["model"].update(model or {})
    return pod_template(
        parse_spec(raw),
        md_name="iris",
        md_uid="u",
        labels={},
        default_image="img",
        settings=PodSettings(),
    )["spec"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def _claims(pod: dict[str, Any]) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]


def test_without_a_signature_pods_are_unchanged() -> None:
    server = _env(_pod()["containers"][0])
    assert names.ENV_SIGNATURE_URI not in server
    assert names.ENV_SIGNATURE_SHA256 not in server


def test_an_http_signature_reaches_the_server_only() -> None:
    pod = _pod({"signature": HTTP_SIGNATURE})
    server = _env(pod["containers"][0])
    assert server[names.ENV_SIGNATURE_URI] == HTTP_SIGNATURE["uri"]
    assert server[names.ENV_SIGNATURE_SHA256] == SIGNATURE_SHA
    for other in pod["initContainers"]:
        assert names.ENV_SIGNATURE_URI not in _env(other)


def test_an_object_store_models_signature_over_http_is_read_by_the_server() -> None:
    # The fetcher downloads the model; the server reads the signature itself.
    pod = _pod({"uri": "s3://models/iris.joblib", "signature": HTTP_SIGNATURE})
    fetcher, *_ = pod["initContainers"]
    assert fetcher["name"] == names.CONTAINER_FETCHER
    assert names.ENV_SIGNATURE_URI not in _env(fetcher)
    assert _env(pod["containers"][0])[names.ENV_SIGNATURE_URI] == HTTP_SIGNATURE["uri"]


def test_a_pvc_signature_is_mounted_read_only_once_per_claim() -> None:
    model = {
        "uri": "pvc://models/iris.joblib",
        "sha256": SHA,
        "signature": {"uri": "pvc://signatures/iris.json", "sha256": SIGNATURE_SHA},
    }
    pod = _pod(model)
    assert _claims(pod) == ["models", "signatures"]
    server = pod["containers"][0]
    uri = _env(server)[names.ENV_SIGNATURE_URI]
    assert uri == f"file://{names.MODEL_MOUNT_ROOT}/signatures/iris.json"
    mount = next(m for m in server["volumeMounts"] if m["name"] == "signature")
    assert mount == {
        "name": "signature",
        "mountPath": f"{names.MODEL_MOUNT_ROOT}/signatures",
        "readOnly": True,
    }
    beside = {**model, "signature": {"uri": "pvc://models/iris.sig.json", "sha256": SIGNATURE_SHA}}
    assert _claims(_pod(beside)) == ["models"]


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://169.254.169.254/s.json", "loopback, link-local or cloud metadata"),
        # The model is at an https:// URI: its store's credentials cannot fetch the file.
        ("s3://models/s.json", "only when spec.model.uri does"),
        ("mlflow://iris/3", "must not be an mlflow:// URI"),
    ],
)
def test_the_signature_uri_obeys_the_profile_uri_rules(uri: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        _pod({"signature": {"uri": uri, "sha256": SIGNATURE_SHA}})
    assert err.value.field_path == "spec.model.signature.uri"
    assert says in str(err.value)


def test_a_file_signature_needs_the_dev_flag() -> None:
    raw = valid_manifest()["spec"]
    raw["model"]["signature"] = {"uri": "file:///models/s.json", "sha256": SIGNATURE_SHA}
    parse_spec(raw)
    with pytest.raises(SpecError) as err:
        parse_spec(raw, allow_file_uris=False)
    assert err.value.field_path == "spec.model.signature.uri"
