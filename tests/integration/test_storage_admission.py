"""Object-store URIs, the fetcher's env/envFrom and serviceAccountName on a real API server:
accepted when valid, and the rendered pod passes Pod Security "restricted". Refusals naming
the field run in test_admission.py, whose table includes STORAGE_INVALID."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from modeldeploy.builders import Owner, revision_deployment
from modeldeploy.spec import parse_spec
from tests.helpers.spec_cases import valid_manifest
from tests.helpers.storage_cases import ENV_FROM, ENV_URIS, SECRET_ENV, VALID_URIS
from tests.integration.test_admission import dry_run
from tests.kube import KubeCluster


@pytest.fixture(scope="module")
def ns(cluster: KubeCluster) -> Iterator[str]:
    with cluster.fresh_namespace(prefix="stor", enforce=True) as name:
        yield name


@pytest.mark.parametrize("uri", ENV_URIS)
def test_fetched_uris_with_credentials_are_accepted(
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
