"""Fixtures shared by every test folder. The cluster starts only when a test asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kube import BACKENDS, KubeCluster


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
