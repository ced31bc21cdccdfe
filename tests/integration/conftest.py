"""Integration fixtures: the real operator process, watching only `op-*` namespaces so that
tests which run their own operator (the chart's RBAC test) never share objects with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.operator_proc import OperatorProcess
from tests.kube import KubeCluster

OPERATOR_NAMESPACES = "op-*"


@pytest.fixture(scope="session")
def operator(cluster: KubeCluster) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, namespaces=[OPERATOR_NAMESPACES])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def op_namespace(cluster: KubeCluster, operator: OperatorProcess) -> Iterator[str]:
    """A fresh namespace that the session's operator watches."""
    with cluster.fresh_namespace(prefix="op") as name:
        yield name
