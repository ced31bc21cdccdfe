"""Integration fixtures: the real operator process, watching only this test session's own
`op<id>-*` namespaces, so tests that run their own operator (the chart's RBAC test) and other
pytest sessions on the same cluster never share objects with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.operator_proc import OperatorProcess
from tests.kube import KubeCluster

SESSION_PREFIX = f"op{uuid.uuid4().hex[:4]}"


@pytest.fixture(scope="session")
def operator(cluster: KubeCluster) -> Iterator[OperatorProcess]:
    # The e2e tests serve real models from file:// paths, a development-only scheme.
    proc = OperatorProcess(cluster, namespaces=[f"{SESSION_PREFIX}-*"], allow_file_uris=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def op_namespace(cluster: KubeCluster, operator: OperatorProcess) -> Iterator[str]:
    """A fresh namespace that the session's operator watches."""
    with cluster.fresh_namespace(prefix=SESSION_PREFIX) as name:
        yield name
