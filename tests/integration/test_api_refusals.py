"""What the API refuses reaches the ModelDeployment's status and an Event, never only a log.

A ValidatingAdmissionPolicy (the in-process form of an admission webhook) denies the new
revision's Deployment: the spec passed the CRD, the operator's apply is refused. The user must
see it in `kubectl get md` / `describe` with the API's own words, the phase must not claim the
new version, and the old revision must keep serving.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from modeldeploy import names
from tests.integration.test_operator_core import apply, condition, get_md, manifest, wait_phase
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok


@pytest.fixture
def deny_revision_2(cluster: KubeCluster, op_namespace: str) -> Iterator[str]:
    """An admission policy in the test namespace that refuses any revision-2 Deployment."""
    name = f"deny-r2-{uuid.uuid4().hex[:6]}"
    message = "revision 2 is frozen by the platform team"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.metadata.labels) || "
                    f"object.metadata.labels[?'{names.LABEL_REVISION}'].orValue('') != '2'",
                    "message": message,
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": op_namespace}}
            },
        },
    }
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, binding]}),
    )
    try:
        yield message
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found")
        cluster.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found")


def test_a_refused_canary_reaches_status_and_an_event_and_the_stable_keeps_serving(
    cluster: KubeCluster, op_namespace: str, deny_revision_2: str
) -> None:
    ns, name = op_namespace, "refused"
    steps = {"steps": [{"weight": 50, "pause": "1s"}], "bakeTime": "2s"}
    apply(cluster, manifest(name, ns, rollout=steps))
    wait_phase(cluster, ns, name, names.PHASE_STABLE)
    # The policy takes a moment to reach the apiserver's admission chain: wait until it bites.
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": ns, "labels": {names.LABEL_REVISION: "2"}},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    wait_until(
        lambda: (
            cluster.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            ).returncode
            != 0
        ),
        timeout=30,
        what="the admission policy to refuse a revision-2 Deployment",
    )

    changed = manifest(name, ns, rollout=steps)
    changed["spec"]["model"]["version"] = "2"
    apply(cluster, changed)

    def refused() -> dict | None:
        md = get_md(cluster, ns, name)
        entries = [h for h in (md.get("status") or {}).get("history", []) if h["revision"] == 2]
        return md if entries else None

    # The API will never store r2's Deployment, so r2 fails at once (not at the progress
    # deadline) with the API's words, its spec is quarantined, and r1 serves on.
    md = wait_until(refused, timeout=30, what="r2 recorded in the history", interval=0.2)
    entry = next(h for h in md["status"]["history"] if h["revision"] == 2)
    assert (entry["outcome"], entry["reason"]) == (names.OUTCOME_FAILED, names.REASON_APPLY_FAILED)
    assert f"Deployment {name}-r2" in entry["message"]
    assert deny_revision_2 in entry["message"]  # the API's own words
    assert md["status"]["phase"] == names.PHASE_ROLLED_BACK
    assert md["status"]["stable"]["revision"] == 1 and not md["status"].get("canary")
    degraded = condition(md, names.COND_DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", names.REASON_APPLY_FAILED)
    assert deny_revision_2 in md["status"]["message"]

    events = cluster.get_json(
        "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    refusals = [e for e in events if e["reason"] == names.REASON_APPLY_FAILED]
    assert len(refusals) == 1 and refusals[0]["type"] == "Warning"
    assert deny_revision_2 in refusals[0]["message"]

    r1 = cluster.get_json("deployment", f"{name}-r1", "-n", ns)
    assert r1["spec"]["replicas"] >= 2  # the stable kept every pod
    assert cluster.kubectl("get", "deployment", f"{name}-r2", "-n", ns, check=False).returncode
