"""The operator against the real control plane: children, status, HPA ownership, drift,
garbage collection, restarts, and an idle operator that writes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from modeldeploy import names
from tests.helpers.operator_proc import OperatorProcess
from tests.integration.conftest import SESSION_PREFIX
from tests.kube import ROOT, KubeCluster, wait_until

pytestmark = pytest.mark.kwok

SHA = "ab" * 32


def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": name,
                "version": "1",
                "uri": f"https://models.example.com/{name}/1.joblib",
                "sha256": SHA,
            },
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
            "analysis": {"onNoData": "pass"},
        },
    }
    body["spec"].update(spec)
    return body


def apply(cluster: KubeCluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_md(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("md", name, "-n", namespace))


def wait_phase(
    cluster: KubeCluster, namespace: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        status = md.get("status") or {}
        current = status.get("observedGeneration") == md["metadata"]["generation"]
        return md if current and status.get("phase") == phase else None

    return dict(wait_until(reached, timeout, f"{namespace}/{name} phase {phase}", interval=0.2))


def condition(md: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in md["status"]["conditions"] if c["type"] == type_)


@pytest.fixture
def iris(cluster: KubeCluster, op_namespace: str) -> dict[str, Any]:
    """The README's example, applied as a user would, and Stable."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "iris-autoscaling.yaml").read_text()))
    body = next(d for d in docs if d and d.get("kind") == names.KIND)
    body["metadata"]["namespace"] = op_namespace
    body["spec"].setdefault("analysis", {})["onNoData"] = "pass"
    apply(cluster, body)
    return wait_phase(cluster, op_namespace, body["metadata"]["name"], names.PHASE_STABLE)


def test_example_gets_deployment_service_hpa_and_stable_status(
    cluster: KubeCluster, op_namespace: str, iris: dict[str, Any]
) -> None:
    name = iris["metadata"]["name"]
    ns = op_namespace
    deployment = cluster.get_json("deployment", f"{name}-r1", "-n", ns)
    labels = deployment["metadata"]["labels"]
    assert labels[names.LABEL_MANAGED_BY] == names.MANAGED_BY
    assert labels[names.LABEL_NAME] == name
    assert labels[names.LABEL_REVISION] == "1"
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        names.KIND,
        name,
        iris["metadata"]["uid"],
    )
    pod = deployment["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == names.CONTAINER_SERVER)
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[names.ENV_SHA256] == iris["spec"]["model"]["sha256"]
    assert env[names.ENV_MODEL_URI] == iris["spec"]["model"]["uri"]
    assert server["readinessProbe"]["httpGet"]["path"] == names.PATH_READY
    assert server["livenessProbe"]["httpGet"]["path"] == names.PATH_LIVE
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["automountServiceAccountToken"] is False

    service = cluster.get_json("service", name, "-n", ns)
    assert service["spec"]["selector"][names.LABEL_NAME] == name
    hpa = cluster.get_json("hpa", name, "-n", ns)
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-r1"
    assert hpa["spec"]["minReplicas"] == iris["spec"]["autoscaling"]["minReplicas"]

    pods = cluster.get_json("pods", "-n", ns, "-l", f"{names.LABEL_NAME}={name}")["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    status = iris["status"]
    assert condition(iris, names.COND_READY)["status"] == "True"
    assert status["stable"]["revision"] == 1
    assert status["stable"]["modelVersion"] == iris["spec"]["model"]["version"]
    wait_until(
        lambda: (
            get_md(cluster, ns, name)["status"]["readyReplicas"]
            >= iris["spec"]["autoscaling"]["minReplicas"]
        ),
        30,
        "status.readyReplicas to reach the HPA's minReplicas",
    )
    printed = cluster.kubectl("get", "md", name, "-n", ns).stdout
    assert "Stable" in printed and iris["spec"]["model"]["name"] in printed
    events = cluster.get_json(
        "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    assert {"Deploying", "Deployed"} <= {e["reason"] for e in events}


def test_children_never_carry_the_modeldeployments_own_labels(
    cluster: KubeCluster, op_namespace: str
) -> None:
    body = manifest("labelled", op_namespace)
    body["metadata"]["labels"] = {"app.kubernetes.io/instance": "argocd-app", "team": "ml"}
    apply(cluster, body)
    wait_phase(cluster, op_namespace, "labelled", names.PHASE_STABLE)
    for kind, child in (
        ("deployment", "labelled-r1"),
        ("service", "labelled"),
        ("hpa", "labelled"),
    ):
        labels = cluster.get_json(kind, child, "-n", op_namespace)["metadata"]["labels"]
        assert "app.kubernetes.io/instance" not in labels and "team" not in labels


def test_operator_never_writes_replicas_under_an_hpa(
    cluster: KubeCluster, op_namespace: str
) -> None:
    apply(cluster, manifest("scaled", op_namespace))
    wait_phase(cluster, op_namespace, "scaled", names.PHASE_STABLE)
    deployment = cluster.get_json(
        "deployment", "scaled-r1", "-n", op_namespace, "--show-managed-fields"
    )
    managers = {m["manager"]: m for m in deployment["metadata"]["managedFields"]}
    applied = json.dumps(managers[names.FIELD_MANAGER]["fieldsV1"])
    assert '"f:replicas"' not in applied.split('"f:template"')[0]

    # Scale as the HPA would (through the scale subresource), then change an unrelated field.
    cluster.kubectl("scale", "deployment/scaled-r1", "--replicas=5", "-n", op_namespace)
    body = manifest("scaled", op_namespace)
    body["spec"]["autoscaling"]["targetCPUUtilizationPercentage"] = 55
    apply(cluster, body)
    wait_until(
        lambda: (
            cluster.get_json("hpa", "scaled", "-n", op_namespace)["spec"]["metrics"][0][
                "containerResource"
            ]["target"]["averageUtilization"]
            == 55
        ),
        30,
        "the HPA to get the new target",
    )
    wait_phase(cluster, op_namespace, "scaled", names.PHASE_STABLE)
    time.sleep(1)  # give a wrongly written replica count the chance to land
    assert cluster.get_json("deployment", "scaled-r1", "-n", op_namespace)["spec"]["replicas"] == 5


def test_hand_edits_and_deletions_of_children_are_restored(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, manifest("drift", ns))
    wait_phase(cluster, ns, "drift", names.PHASE_STABLE)
    original = cluster.get_json("deployment", "drift-r1", "-n", ns)
    image = original["spec"]["template"]["spec"]["containers"][0]["image"]

    cluster.kubectl(
        "set", "image", "deployment/drift-r1", f"{names.CONTAINER_SERVER}=evil/image:1", "-n", ns
    )
    cluster.kubectl("annotate", "deployment/drift-r1", "team.example.com/owner=alice", "-n", ns)
    wait_until(
        lambda: (
            cluster.get_json("deployment", "drift-r1", "-n", ns)["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == image
        ),
        30,
        "the operator to restore the image",
    )
    annotations = cluster.get_json("deployment", "drift-r1", "-n", ns)["metadata"]["annotations"]
    assert annotations["team.example.com/owner"] == "alice"  # not the operator's field

    cluster.kubectl("delete", "service", "drift", "-n", ns)
    cluster.kubectl("delete", "hpa", "drift", "-n", ns)
    wait_until(
        lambda: (
            cluster.kubectl("get", "service", "drift", "-n", ns, check=False).returncode == 0
            and cluster.kubectl("get", "hpa", "drift", "-n", ns, check=False).returncode == 0
        ),
        30,
        "the Service and HPA to be recreated",
    )


def test_deleting_the_modeldeployment_garbage_collects_its_children(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, manifest("doomed", ns))
    wait_phase(cluster, ns, "doomed", names.PHASE_STABLE)
    md = get_md(cluster, ns, "doomed")
    assert not md["metadata"].get("finalizers")  # nothing can wedge the delete
    cluster.kubectl("delete", "md", "doomed", "-n", ns, "--wait=true", timeout=30)
    selector = f"{names.LABEL_NAME}=doomed"
    wait_until(
        lambda: (
            not cluster.get_json("deployments,services,hpa,pods", "-n", ns, "-l", selector)["items"]
        ),
        60,
        "garbage collection of the children",
    )


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    cluster: KubeCluster, op_namespace: str, operator: OperatorProcess
) -> None:
    ns = op_namespace
    names_ = [f"restart-{i}" for i in range(5)]
    for n in names_:
        apply(cluster, manifest(n, ns))
    operator.restart()  # SIGKILL while the five are being reconciled, then start again
    for n in names_:
        md = wait_phase(cluster, ns, n, names.PHASE_STABLE)
        assert md["status"]["stable"]["revision"] == 1
        assert [h["revision"] for h in md["status"].get("history", [])] in ([], [1])
    deployments = cluster.get_json("deployments", "-n", ns)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(f"{n}-r1" for n in names_)


def test_idle_operator_makes_zero_writes(
    cluster: KubeCluster, op_namespace: str, operator: OperatorProcess
) -> None:
    ns = op_namespace
    apply(cluster, manifest("idle", ns))
    wait_phase(cluster, ns, "idle", names.PHASE_STABLE)
    wait_until(  # pods ready, HPA settled: nothing left to react to
        lambda: get_md(cluster, ns, "idle")["status"]["readyReplicas"] >= 2, 30, "ready pods"
    )
    # Earlier tests' namespaces may still be terminating; their pods' deletions legitimately
    # make the operator write their (dying) ModelDeployments' status. Wait until they are gone.
    wait_until(
        lambda: not [
            n for n in cluster.get_json("namespaces")["items"]
            if n["metadata"]["name"].startswith(SESSION_PREFIX) and n["metadata"]["name"] != ns
        ],
        120,
        "other operator-test namespaces to be deleted",
        interval=0.5,
    )  # fmt: skip
    time.sleep(3)  # let the last watch echoes settle

    def versions() -> dict[str, Any]:
        """The ModelDeployment's resourceVersion and, on each child, what our manager owns.

        Children's resourceVersions also move when their controllers write status (the HPA
        reports it cannot read metrics), so the operator's own managedFields entries are what
        would change if the operator wrote to them."""
        items = cluster.get_json(
            "md,deployments,services,hpa,networkpolicies", "-n", ns, "--show-managed-fields"
        )["items"]
        result: dict[str, Any] = {}
        for i in items:
            key = f"{i['kind']}/{i['metadata']['name']}"
            if i["kind"] == names.KIND:
                result[key] = i["metadata"]["resourceVersion"]
            else:
                result[key] = [
                    m for m in i["metadata"]["managedFields"]
                    if m["manager"] in (names.FIELD_MANAGER, names.SCALE_FIELD_MANAGER)
                ]  # fmt: skip
        return result

    before_versions = versions()
    writes = {"kind": "write"}
    before_writes = operator.metric("modeldeploy_api_requests_total", writes)
    time.sleep(10)
    after_writes = operator.metric("modeldeploy_api_requests_total", writes)
    assert after_writes == before_writes, operator.log_tail()
    assert versions() == before_versions


def test_semantic_error_becomes_invalid_spec_condition_and_keeps_serving(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, manifest("semantic", ns))
    wait_phase(cluster, ns, "semantic", names.PHASE_STABLE)
    # Passes the CRD (CEL cannot compare quantities), but a request above its limit is invalid.
    bad = manifest("semantic", ns)
    bad["spec"]["model"]["version"] = "2"
    bad["spec"]["serving"] = {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
    apply(cluster, bad)

    def invalid() -> dict[str, Any] | None:
        md = get_md(cluster, ns, "semantic")
        ready = [c for c in md.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return md if ready and ready[0]["reason"] == "InvalidSpec" else None

    md = wait_until(invalid, 30, "Ready=False/InvalidSpec")
    assert "spec.serving.resources" in condition(md, names.COND_INVALID_SPEC)["message"]
    assert condition(md, names.COND_INVALID_SPEC)["status"] == "True"
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    # The last good revision keeps serving.
    assert cluster.get_json("deployment", "semantic-r1", "-n", ns)["status"]["readyReplicas"] >= 2
    events = cluster.get_json(
        "events", "-n", ns, "--field-selector", "involvedObject.name=semantic,reason=InvalidSpec"
    )["items"]
    assert len(events) == 1
