"""A ModelDeployment served from S3 on the real control plane: the operator renders the fetcher
init container with the Secret and ConfigMap references of spec.model.env, and the pod's
processes (PodRuntime: the fetcher first, with its env resolved from the real Secret as the
kubelet would) fetch from the real S3 server, verify, and serve until the rollout is Stable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.object_stores import Stores
from tests.helpers.pod_runtime import PodRuntime, good_body, infer
from tests.integration.test_rollback_e2e import MD, apply, runtime, spec_for, wait_phase
from tests.kube import KubeCluster, wait_until
from tests.serving.models import train_classifier

pytestmark = pytest.mark.kwok
__all__ = ["runtime"]  # the fixture, shared with the rollback tests


def _ref(name: str, kind: str, obj: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {kind: {"name": obj, "key": key}}}


def test_a_model_in_s3_with_credentials_from_a_secret_is_served(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    object_stores: Stores,
    tmp_path: Path,
) -> None:
    model = train_classifier(tmp_path, name="s3-classifier")
    uri = object_stores.put_s3("rollout/iris/1/model.joblib", model.path.read_bytes())
    s3 = object_stores.s3_env()
    ns = ("-n", op_namespace)
    cluster.kubectl(
        "create", "secret", "generic", "s3-reader", *ns,
        f"--from-literal=access-key={s3['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=secret-key={s3['AWS_SECRET_ACCESS_KEY']}",
    )  # fmt: skip
    cluster.kubectl(
        "create", "configmap", "s3-endpoint", *ns, f"--from-literal=url={s3['AWS_ENDPOINT_URL']}"
    )  # fmt: skip
    spec = spec_for(model, "1")
    spec["model"]["uri"] = uri
    spec["model"]["env"] = [
        _ref("AWS_ACCESS_KEY_ID", "secretKeyRef", "s3-reader", "access-key"),
        _ref("AWS_SECRET_ACCESS_KEY", "secretKeyRef", "s3-reader", "secret-key"),
        _ref("AWS_ENDPOINT_URL", "configMapKeyRef", "s3-endpoint", "url"),
        {"name": "AWS_REGION", "value": s3["AWS_REGION"]},
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
    ]
    apply(cluster, op_namespace, spec)
    wait_phase(cluster, op_namespace, names.PHASE_STABLE)

    pods = cluster.get_json("pods", *ns, "-l", f"{names.LABEL_NAME}={MD}")["items"]
    (pod,) = pods
    init = [c["name"] for c in pod["spec"]["initContainers"]]
    assert init == [names.CONTAINER_FETCHER, names.CONTAINER_MONITOR]
    server = next(c for c in pod["spec"]["containers"] if c["name"] == names.CONTAINER_SERVER)
    assert "Secret" not in json.dumps(server) and "secretKeyRef" not in json.dumps(server)

    endpoints = wait_until(runtime.endpoints, timeout=60, what="a ready model server")
    assert infer(endpoints[0], good_body(0)) == 200
    assert runtime.errors() == []
