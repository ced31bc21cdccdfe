"""Pod settings and disruption budgets with the real operator on the real control plane (KWOK
pods): every setting admitted and rendered into the revision's pod template and pods, pod
labels on pods only, a pod-setting change rolled out as a new revision, and each running
revision's PodDisruptionBudget owned, restored after a deletion, updated in place, and gone
with its revision. Refusals naming the field: tests/integration/test_admission.py (the shared
table in tests/helpers/pod_setting_cases.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy import names
from tests.integration.test_operator_core import apply, get_md, manifest, wait_phase
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok


@pytest.fixture
def priority_class(cluster: KubeCluster) -> Iterator[str]:
    """PriorityClasses are cluster-scoped: a unique one per test, removed after."""
    name = f"models-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": 1000,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "priorityclass", name, "--wait=false", check=False)


def settings(priority: str) -> dict[str, Any]:
    """Every pod setting, chosen so the pods still schedule onto the KWOK nodes."""
    return {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {names.LABEL_NAME: "tuned"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {names.LABEL_NAME: "tuned"}},
                "matchLabelKeys": [names.LABEL_REVISION],
            }
        ],
        "priorityClassName": priority,
        "imagePullSecrets": [{"name": "registry-creds"}],
        "podLabels": {"team": "fraud"},
        "podAnnotations": {"example.com/scrape": "true"},
        "tuning": {"batching": {"enabled": False}, "bodyTimeout": "45s"},
    }


def pod_spec(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("deployment", name, "-n", ns)["spec"]["template"])


def test_every_pod_setting_is_admitted_and_rendered_into_the_pods(
    cluster: KubeCluster, op_namespace: str, priority_class: str
) -> None:
    ns = op_namespace
    wanted = settings(priority_class)
    apply(cluster, manifest("tuned", ns, serving=wanted))
    wait_phase(cluster, ns, "tuned", names.PHASE_STABLE)

    deployment = cluster.get_json("deployment", "tuned-r1", "-n", ns)
    template = deployment["spec"]["template"]
    for field in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ):
        assert template["spec"][field] == wanted[field], field
    assert template["metadata"]["labels"]["team"] == "fraud"
    assert template["metadata"]["annotations"] == {"example.com/scrape": "true"}
    (server,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert (env[names.ENV_MICRO_BATCHING], env[names.ENV_BODY_TIMEOUT]) == ("false", "45")
    # Pod labels are on the pods only: not on the Deployment, Service or HPA.
    for kind, child in (("deployment", "tuned-r1"), ("service", "tuned"), ("hpa", "tuned")):
        meta = cluster.get_json(kind, child, "-n", ns)["metadata"]
        assert "team" not in meta.get("labels", {}), kind
        assert "example.com/scrape" not in (meta.get("annotations") or {}), kind

    pods = cluster.get_json("pods", "-n", ns, "-l", f"{names.LABEL_NAME}=tuned")["items"]
    assert pods
    for pod in pods:
        assert pod["metadata"]["labels"]["team"] == "fraud"
        assert pod["metadata"]["labels"][names.LABEL_REVISION] == "1"
        assert pod["metadata"]["annotations"]["example.com/scrape"] == "true"
        assert pod["spec"]["priorityClassName"] == priority_class
        assert pod["spec"]["priority"] == 1000  # the API server resolved the class

    # Changing the pods (here a label) is a new revision, rolled out like any other.
    wanted["podLabels"] = {"team": "risk"}
    apply(cluster, manifest("tuned", ns, serving=wanted))
    wait_until(
        lambda: (
            cluster.kubectl("get", "deployment", "tuned-r2", "-n", ns, check=False).returncode == 0
        ),
        60,
        "revision 2 for the changed pod labels",
    )
    assert pod_spec(cluster, ns, "tuned-r2")["metadata"]["labels"]["team"] == "risk"


def budget(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "pdb", name, "-n", ns, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def test_each_running_revision_gets_an_owned_budget_that_comes_back_and_goes_with_it(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    body = manifest("guarded", ns, disruption={"maxUnavailable": 1})
    body["spec"]["rollout"] = {"steps": [], "bakeTime": "0s"}
    apply(cluster, body)
    md = wait_phase(cluster, ns, "guarded", names.PHASE_STABLE)

    first = wait_until(lambda: budget(cluster, ns, "guarded-r1"), 30, "the budget of r1")
    (owner,) = first["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        names.KIND,
        "guarded",
        md["metadata"]["uid"],
    )
    assert first["spec"]["selector"] == {
        "matchLabels": {names.LABEL_NAME: "guarded", names.LABEL_REVISION: "1"}
    }
    assert first["spec"]["maxUnavailable"] == 1
    # The API server counts the revision's pods through the selector.
    wait_until(
        lambda: (
            (budget(cluster, ns, "guarded-r1") or {}).get("status", {}).get("expectedPods") == 2
        ),
        30,
        "the budget to count the revision's two pods",
    )

    cluster.kubectl("delete", "pdb", "guarded-r1", "-n", ns)

    def recreated() -> dict[str, Any] | None:
        found = budget(cluster, ns, "guarded-r1")
        return found if found and found["metadata"]["uid"] != first["metadata"]["uid"] else None

    restored = wait_until(recreated, 30, "the deleted budget to be recreated")
    assert restored["spec"]["maxUnavailable"] == 1

    # A budget is not part of a revision: changing it updates it in place, no rollout.
    body["spec"]["disruption"] = {"maxUnavailable": "50%"}
    apply(cluster, body)
    wait_until(
        lambda: (
            (budget(cluster, ns, "guarded-r1") or {}).get("spec", {}).get("maxUnavailable") == "50%"
        ),
        30,
        "the budget to be updated in place",
    )
    assert get_md(cluster, ns, "guarded")["status"]["stable"]["revision"] == 1
    assert cluster.kubectl("get", "deployment", "guarded-r2", "-n", ns, check=False).returncode

    # A new model version: r2 gets its own budget; r1, scaled to zero as history, loses its own.
    body["spec"]["model"]["version"] = "2"
    apply(cluster, body)
    wait_until(
        lambda: get_md(cluster, ns, "guarded")["status"].get("stable", {}).get("revision") == 2,
        60,
        "revision 2 to be promoted",
    )
    wait_until(lambda: budget(cluster, ns, "guarded-r2"), 30, "the budget of r2")
    wait_until(lambda: budget(cluster, ns, "guarded-r1") is None, 30, "r1's budget to go")

    # Without spec.disruption, no budget at all.
    del body["spec"]["disruption"]
    apply(cluster, body)
    wait_until(lambda: budget(cluster, ns, "guarded-r2") is None, 30, "r2's budget to go")
    selector = f"{names.LABEL_NAME}=guarded"
    assert cluster.get_json("pdb", "-n", ns, "-l", selector)["items"] == []
