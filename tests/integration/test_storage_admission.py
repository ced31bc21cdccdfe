"""Object-store URIs, the fetcher's env/envFrom and serviceAccountName on a real API server:
refused naming the field (the same table as the operator's own checks), accepted when valid,
and the rendered pod passes Pod Security "restricted"."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy.builders import Owner, revision_deployment
from modeldeploy.spec import parse_spec
from tests.helpers.spec_cases import Invalid, valid_manifest
from tests.helpers.storage_cases import ENV_FROM, SECRET_ENV, STORAGE_INVALID, VALID_URIS
from tests.kube import KubeCluster

ADMISSION_CASES = [c for c in STORAGE_INVALID if c.admission]


@pytest.fixture(scope="module")
def ns(cluster: KubeCluster) -> Iterator[str]:
    with cluster.fresh_namespace(prefix="stor", enforce=True) as name:
        yield name


def dry_run(cluster: KubeCluster, obj: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )


@pytest.mark.parametrize("case", ADMISSION_CASES, ids=[c.id for c in ADMISSION_CASES])
def test_invalid_storage_spec_is_rejected_naming_the_field(
    cluster: KubeCluster, ns: str, case: Invalid
) -> None:
    result = dry_run(cluster, case.manifest(namespace=ns))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert case.field in result.stderr
    assert case.says in result.stderr


@pytest.mark.parametrize("uri", VALID_URIS)
def test_object_store_uris_with_credentials_are_accepted(
    cluster: KubeCluster, ns: str, uri: str
) -> None:
    manifest = valid_manifest(namespace=ns)
    manifest["spec"]["model"].update(uri=uri, env=SECRET_ENV, envFrom=ENV_FROM)
    manifest["spec"]["serving"] = {"serviceAccountName": "models-reader"}
    result = dry_run(cluster, manifest)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr


def test_the_fetcher_pod_passes_restricted_pod_security(cluster: KubeCluster, ns: str) -> None:
    """The Deployment the operator would create, with a fetcher init container holding
    Secret references, is accepted by a namespace that enforces "restricted"."""
    manifest = valid_manifest(namespace=ns)
    manifest["spec"]["model"].update(uri=VALID_URIS[0], env=SECRET_ENV, envFrom=ENV_FROM)
    manifest["spec"]["serving"] = {"serviceAccountName": "models-reader"}
    owner = Owner(name="iris", namespace=ns, uid=str(uuid.uuid4()))
    deployment = revision_deployment(
        owner,
        parse_spec(manifest["spec"]),
        revision=1,
        spec_hash="h",
        default_image="registry.invalid/serving:1",
        replicas=1,
    )
    result = dry_run(cluster, deployment)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # "would violate PodSecurity" is a warning here
