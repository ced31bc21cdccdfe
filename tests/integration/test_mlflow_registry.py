"""mlflow:// models end to end: a real `mlflow server` (sqlite, proxied local artifacts), models
registered by mlflow's own client, the real operator resolving through the server's REST API,
and real model servers for the KWOK pods fetching the artifact through the server's proxy.

A registry whose artifacts live in S3 (the real SeaweedFS of scripts/object_stores.py): the
pods' fetcher init container downloads them with the spec's credentials from a real Secret.

The tracking server listens on 127.0.0.1, which a spec may never name; the operator learns it
from its own setting (--mlflow-tracking-uri, here through its environment variable), and the
pods' servers run with the tests-only --allow-loopback-downloads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.mlflow_server import MlflowServer, Registered
from tests.helpers.object_stores import BUCKET, Stores
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import PodRuntime, good_body, infer
from tests.integration.test_cli import cli
from tests.kube import KubeCluster, wait_until
from tests.serving.models import train_classifier

pytestmark = pytest.mark.kwok

MD = "fraud"
MODEL = "fraud-detector"  # the registered model's name in MLflow
PREFIX = f"mlf{uuid.uuid4().hex[:4]}"
LOOPBACK = {"MODELDEPLOY_ALLOW_LOOPBACK_DOWNLOADS": "true"}


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        try:
            yield server
        finally:
            print(f"--- mlflow server log ---\n{server.log_tail()}")


@pytest.fixture(scope="module")
def versions(mlflow: MlflowServer) -> tuple[Registered, Registered]:
    """Two versions of MODEL; the alias `champion` on version 2."""
    first = mlflow.register(MODEL, seed=0)
    second = mlflow.register(MODEL, alias="champion", seed=1)
    assert (first.version, second.version) == ("1", "2")
    return first, second


@pytest.fixture(scope="module")
def registry_operator(cluster: KubeCluster, mlflow: MlflowServer) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        cluster,
        namespaces=[f"{PREFIX}-*"],
        extra_env={names.ENV_MLFLOW_TRACKING_URI: mlflow.url},
        name="mlflow",
    )
    proc.start()
    try:
        yield proc
    finally:
        print(f"--- operator log ---\n{proc.log_tail(80)}")
        proc.stop()


@pytest.fixture
def ns(cluster: KubeCluster, registry_operator: OperatorProcess) -> Iterator[str]:
    with cluster.fresh_namespace(prefix=PREFIX) as name:
        yield name


@pytest.fixture
def runtime(cluster: KubeCluster, ns: str, tmp_path: Path) -> Iterator[PodRuntime]:
    with PodRuntime(cluster, ns, MD, tmp_path / "pods", server_overrides=LOOPBACK) as pods:
        try:
            yield pods
        finally:
            print(f"--- process errors: {pods.errors()}")
            for log in sorted((tmp_path / "pods").glob("*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


def manifest(ns: str, uri: str, sha256: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": MD, "namespace": ns},
        "spec": {
            "model": {"name": MD, "version": version, "uri": uri, "sha256": sha256},
            "replicas": 1,
            "rollout": {"steps": [], "bakeTime": "0s"},
            "analysis": {"onNoData": "pass"},
        },
    }


def apply(cluster: KubeCluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def md(cluster: KubeCluster, ns: str) -> dict[str, Any]:
    return dict(cluster.get_json(names.PLURAL, MD, "-n", ns))


def wait_status(cluster: KubeCluster, ns: str, what: str, check: Any) -> dict[str, Any]:
    """The ModelDeployment once its status is current and `check(status)` holds."""

    def reached() -> dict[str, Any] | None:
        found = md(cluster, ns)
        status = found.get("status") or {}
        current = status.get("observedGeneration") == found["metadata"]["generation"]
        return found if current and check(status) else None

    return dict(wait_until(reached, 180, what, interval=0.3))


def ready_reason(status: dict[str, Any]) -> str | None:
    ready = [c for c in status.get("conditions") or [] if c["type"] == names.COND_READY]
    return str(ready[0]["reason"]) if ready else None


def not_found(cluster: KubeCluster, ns: str) -> dict[str, Any]:
    """The status once the registry said the version or alias does not exist."""
    status: dict[str, Any] = wait_status(
        cluster,
        ns,
        "Ready=False/RegistryModelNotFound",
        lambda s: ready_reason(s) == names.REASON_REGISTRY_MODEL_NOT_FOUND,
    )["status"]
    return status


def serves(runtime: PodRuntime, revision: int) -> bool:
    """A real server of `revision` verified the digest, loaded the model and answers."""
    endpoints = runtime.endpoints(revision)
    return bool(endpoints) and infer(endpoints[0], good_body(0)) == 200


def proxied(mlflow: MlflowServer, version: Registered) -> str:
    path = version.download_uri.removeprefix("mlflow-artifacts:").lstrip("/")
    return f"{mlflow.url}/api/2.0/mlflow-artifacts/artifacts/{path}/{version.file}"


def test_registry_versions_resolve_serve_and_show_in_history(
    cluster: KubeCluster,
    ns: str,
    mlflow: MlflowServer,
    versions: tuple[Registered, Registered],
    runtime: PodRuntime,
) -> None:
    first, second = versions
    # An alias: resolved to version 2, served through the tracking server's artifact proxy.
    apply(cluster, manifest(ns, f"mlflow://{MODEL}/@champion", second.sha256, "champion-a"))
    found = wait_status(cluster, ns, "r1 Stable", lambda s: s.get("phase") == names.PHASE_STABLE)[
        "status"
    ]
    assert (found["stable"]["registryVersion"], found["stable"]["runId"]) == ("2", second.run_id)
    history = cluster.get_json("controllerrevision", f"{MD}-r1", "-n", ns)
    assert history["data"]["resolved"] == {
        "registryVersion": "2",
        "runId": second.run_id,
        "artifactUri": proxied(mlflow, second),
        "format": "skops",  # mlflow 3's default serialization for scikit-learn
    }
    assert history["data"]["spec"]["model"]["uri"] == f"mlflow://{MODEL}/@champion"
    wait_until(lambda: serves(runtime, 1), 120, "r1's server answering", interval=0.5)
    events = cluster.get_json(
        "events", "-n", ns, "--field-selector", f"reason={names.REASON_MODEL_RESOLVED}"
    )["items"]
    assert any(f"is registry version 2, run {second.run_id}" in e["message"] for e in events)

    # A pinned version: a new revision, recorded with its own registry version.
    apply(cluster, manifest(ns, f"mlflow://{MODEL}/1", first.sha256, "pinned-1"))
    found = wait_status(
        cluster,
        ns,
        "r2 Stable",
        lambda s: s.get("phase") == names.PHASE_STABLE and s["stable"]["revision"] == 2,
    )["status"]
    assert (found["stable"]["registryVersion"], found["stable"]["runId"]) == ("1", first.run_id)
    wait_until(lambda: serves(runtime, 2), 120, "r2's server answering", interval=0.5)
    shown = cli(cluster, "history", MD, "-n", ns)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["REVISION", "VERSION", "REGISTRY", "SHA256"]
    row = {line.split()[0]: line.split() for line in lines[1:3]}
    assert row["1"][1:4] == ["champion-a", "v2", "run"]
    assert row["1"][4] == second.run_id[:8]
    assert row["*"][1:5] == ["2", "pinned-1", "v1", "run"]

    # An unknown version: said in status and an Event; r2 keeps serving.
    apply(cluster, manifest(ns, f"mlflow://{MODEL}/99", first.sha256, "missing"))
    found = not_found(cluster, ns)
    assert found["phase"] == names.PHASE_DEGRADED
    assert f"Model Version (name={MODEL}, version=99) not found" in found["message"]
    degraded = next(c for c in found["conditions"] if c["type"] == names.COND_DEGRADED)
    assert "r2 (model pinned-1) keeps serving" in degraded["message"]
    assert found["stable"]["revision"] == 2
    warnings = cluster.get_json(
        "events", "-n", ns, "--field-selector",
        f"reason={names.REASON_REGISTRY_MODEL_NOT_FOUND}",
    )["items"]  # fmt: skip
    assert warnings and "version=99) not found" in warnings[0]["message"]
    deployment = cluster.get_json("deployment", f"{MD}-r2", "-n", ns)
    assert deployment["spec"]["replicas"] == 1
    assert serves(runtime, 2)


def test_an_unknown_alias_deploys_nothing_and_says_why(
    cluster: KubeCluster, ns: str, versions: tuple[Registered, Registered]
) -> None:
    apply(cluster, manifest(ns, f"mlflow://{MODEL}/@nobody", versions[0].sha256, "x"))
    found = not_found(cluster, ns)
    assert found["phase"] == names.PHASE_FAILED
    assert "alias nobody not found" in found["message"]
    assert cluster.get_json("deployments", "-n", ns)["items"] == []


def test_artifacts_in_s3_are_fetched_with_the_specs_credentials(
    cluster: KubeCluster,
    ns: str,
    mlflow: MlflowServer,
    object_stores: Stores,
    runtime: PodRuntime,
    tmp_path: Path,
) -> None:
    """The registry names an s3:// location (no proxy): the operator cannot read the bucket,
    so it serves mlflow.sklearn's model.pkl from there, and the fetcher downloads it with
    spec.model.env, whose secret comes from a real Secret the model server never sees."""
    model = train_classifier(tmp_path, name="mlflow-s3")
    object_stores.put_s3("mlflow/fraud-s3/1/model.pkl", model.path.read_bytes())
    prefix = f"s3://{BUCKET}/mlflow/fraud-s3/1"
    version = mlflow.register_source("fraud-s3", prefix)
    s3 = object_stores.s3_env()
    cluster.kubectl(
        "create", "secret", "generic", "s3-reader", "-n", ns,
        f"--from-literal=secret-key={s3['AWS_SECRET_ACCESS_KEY']}",
    )  # fmt: skip
    body = manifest(ns, f"mlflow://fraud-s3/{version}", model.sha256, "s3-1")
    body["spec"]["model"]["env"] = [
        *({"name": k, "value": v} for k, v in s3.items() if k != "AWS_SECRET_ACCESS_KEY"),
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3-reader", "key": "secret-key"}},
        },
    ]
    apply(cluster, body)
    found = wait_status(cluster, ns, "r1 Stable", lambda s: s.get("phase") == names.PHASE_STABLE)
    assert found["status"]["stable"]["registryVersion"] == version
    history = cluster.get_json("controllerrevision", f"{MD}-r1", "-n", ns)
    assert history["data"]["resolved"] == {
        "registryVersion": version,
        "runId": "",
        "artifactUri": f"{prefix}/model.pkl",
        "format": "joblib",
    }
    (pod,) = cluster.get_json("pods", "-n", ns, "-l", f"{names.LABEL_NAME}={MD}")["items"]
    init = [c["name"] for c in pod["spec"]["initContainers"]]
    assert init == [names.CONTAINER_FETCHER, names.CONTAINER_MONITOR]
    server = next(c for c in pod["spec"]["containers"] if c["name"] == names.CONTAINER_SERVER)
    assert "secretKeyRef" not in json.dumps(server) and "AWS_" not in json.dumps(server)
    wait_until(lambda: serves(runtime, 1), 120, "r1's server answering", interval=0.5)
    assert runtime.errors() == []
