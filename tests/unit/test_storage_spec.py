"""Object-store URIs and the fetcher's environment in the operator's own checks (the CRD's CEL
holds the same cases: tests/integration/test_storage_admission.py)."""

from __future__ import annotations

import pytest

from modeldeploy.hashing import revision_hash
from modeldeploy.spec import SpecError, parse_spec
from tests.helpers.spec_cases import Invalid, valid_manifest
from tests.helpers.storage_cases import ENV_FROM, ENV_URIS, SECRET_ENV, STORAGE_INVALID, VALID_URIS


@pytest.mark.parametrize("uri", VALID_URIS)
def test_object_store_uris_are_allowed(uri: str) -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = uri
    assert parse_spec(manifest["spec"]).model.uri == uri


@pytest.mark.parametrize("case", STORAGE_INVALID, ids=[c.id for c in STORAGE_INVALID])
def test_invalid_storage_spec_is_rejected_naming_the_field(case: Invalid) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(case.manifest()["spec"])
    assert caught.value.field_path.startswith(case.field), caught.value
    if case.operator_says_too:
        assert case.says in caught.value.message


@pytest.mark.parametrize("uri", ENV_URIS)
def test_the_fetchers_environment_goes_with_object_stores_and_mlflow(uri: str) -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"].update(uri=uri, env=SECRET_ENV, envFrom=ENV_FROM)
    assert parse_spec(manifest["spec"]).model.env_from is not None


def test_env_from_secrets_and_config_maps_parses() -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"].update(uri=VALID_URIS[0], env=SECRET_ENV, envFrom=ENV_FROM)
    manifest["spec"]["serving"] = {"serviceAccountName": "models-reader"}
    spec = parse_spec(manifest["spec"])
    assert spec.model.env is not None and spec.model.env[0].value_from is not None
    assert spec.model.env[0].value_from.secret_key_ref is not None
    assert spec.model.env_from is not None and spec.model.env_from[1].prefix == "P_"
    assert spec.serving.service_account_name == "models-reader"


def test_existing_specs_keep_their_revision_hash() -> None:
    """The new optional fields are unset, not empty: an operator upgrade rolls nothing. The
    value is the hash of the minimal spec before spec.model.env existed."""
    spec = parse_spec(valid_manifest()["spec"])
    assert revision_hash(spec, default_image="i:1") == "db9a0138d0"


def test_credentials_change_the_revision() -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = VALID_URIS[0]
    before = revision_hash(parse_spec(manifest["spec"]), default_image="i:1")
    manifest["spec"]["model"]["envFrom"] = [{"secretRef": {"name": "other"}}]
    assert revision_hash(parse_spec(manifest["spec"]), default_image="i:1") != before
