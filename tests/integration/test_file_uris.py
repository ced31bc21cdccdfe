"""file:// models are for development: the CRD admits them (the cluster cannot know the
operator's flags), and an operator run without --allow-file-uris reports InvalidSpec and
creates nothing. (The session's operator runs with the flag: the e2e tests serve file:// models.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.operator_proc import OperatorProcess
from tests.integration.test_operator_core import apply, get_md, manifest
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok


@pytest.fixture
def strict_namespace(cluster: KubeCluster) -> Iterator[str]:
    """A namespace watched only by an operator started without --allow-file-uris."""
    with cluster.fresh_namespace(prefix="nofile") as ns:
        proc = OperatorProcess(cluster, namespaces=[ns], name="nofile")
        proc.start()
        try:
            yield ns
        finally:
            proc.stop()


def test_without_the_flag_a_file_uri_is_reported_invalid_and_nothing_is_created(
    cluster: KubeCluster, strict_namespace: str
) -> None:
    ns = strict_namespace
    body = manifest("local", ns)
    body["spec"]["model"]["uri"] = "file:///models/local/1.joblib"
    apply(cluster, body)  # admitted: the CRD allows file://

    def invalid() -> dict[str, Any] | None:
        md = get_md(cluster, ns, "local")
        status = md.get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return md if ready and ready[0]["reason"] == "InvalidSpec" else None

    md = wait_until(invalid, 30, "Ready=False/InvalidSpec")
    said = next(c for c in md["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert "spec.model.uri: file:// URIs are allowed only" in said["message"]
    assert "--allow-file-uris" in said["message"]
    assert cluster.get_json("deployments", "-n", ns)["items"] == []
