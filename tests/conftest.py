"""Fixtures shared by every test folder. The cluster starts only when a test asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.kube import BACKENDS, KubeCluster

# The `object_stores` fixture (real S3, GCS and Azure Blob servers) for any test folder.
pytest_plugins = ["tests.helpers.object_stores"]

# Property tests judge results, not speed: a shared 2-core machine makes hypothesis' default
# 200 ms per-example deadline a source of flakes (speed is measured by `make bench*`).
settings.register_profile("modeldeploy", deadline=None)
settings.load_profile("modeldeploy")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = os.environ.get("K8S_BACKEND", "local")
    if backend == "local":
        return
    skip = pytest.mark.skip(
        reason=f"needs the local KWOK control plane (K8S_BACKEND={backend}): KWOK makes pods "
        "Ready without running their images, and these tests serve models from placeholder "
        "URIs or start the cluster scripts themselves; run them with K8S_BACKEND=local"
    )
    for item in items:
        if "kwok" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster() -> Iterator[KubeCluster]:
    """A real Kubernetes cluster with the CRDs installed (backend from K8S_BACKEND)."""
    backend = os.environ.get("K8S_BACKEND", "local")
    if backend not in BACKENDS:
        raise pytest.UsageError(f"K8S_BACKEND={backend!r}; expected one of {sorted(BACKENDS)}")
    with BACKENDS[backend]() as kube:
        kube.apply_crds()
        yield kube


@pytest.fixture
def namespace(cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (Pod Security 'restricted' warn+audit)."""
    with cluster.fresh_namespace() as name:
        yield name
