"""The NetworkPolicy of a ModelDeployment on the real control plane: the API server accepts
what the builder renders, it selects exactly the model pods, it comes back when deleted and goes
when turned off, and turning it off is no new revision.

Objects only: the local cluster's network plugin (the plain bridge plugin) does not enforce
NetworkPolicy, so whether a packet is dropped is the plugin's business (docs/security.md)."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from tests.integration.test_operator_core import apply, manifest, wait_phase
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

EGRESS = [{"cidr": "203.0.113.7/32", "ports": [443]}, {"cidr": "2001:db8::/48"}]


def policies(cluster: KubeCluster, ns: str) -> list[dict[str, Any]]:
    return list(cluster.get_json("networkpolicies", "-n", ns)["items"])


def test_policy_is_created_selects_the_model_pods_and_comes_back_when_deleted(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, manifest("fenced", ns, networkPolicy={"egress": EGRESS}))
    md = wait_phase(cluster, ns, "fenced", names.PHASE_STABLE)
    assert any("skops" in w for w in md["status"]["warnings"])  # a joblib model

    (policy,) = policies(cluster, ns)
    assert policy["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": names.PORT_NAME_HTTP}]}]
    cidrs = [block["ipBlock"]["cidr"] for rule in spec["egress"] for block in rule.get("to", [])]
    assert cidrs[-2:] == ["203.0.113.7/32", "2001:db8::/48"]
    # Its selector, asked of the API server, finds the model pods and nothing else.
    selector = ",".join(f"{k}={v}" for k, v in spec["podSelector"]["matchLabels"].items())
    selected = {
        p["metadata"]["name"] for p in cluster.get_json("pods", "-n", ns, "-l", selector)["items"]
    }
    revision = f"{names.LABEL_NAME}=fenced,{names.LABEL_REVISION}=1"
    model_pods = {
        p["metadata"]["name"] for p in cluster.get_json("pods", "-n", ns, "-l", revision)["items"]
    }
    assert selected == model_pods and len(selected) == 2

    cluster.kubectl("delete", "networkpolicy", "fenced", "-n", ns)
    wait_until(
        lambda: (
            [p["metadata"]["uid"] for p in policies(cluster, ns)]
            not in ([], [policy["metadata"]["uid"]])
        ),
        30,
        "the operator to recreate the NetworkPolicy",
    )


def test_turning_it_off_deletes_it_without_a_new_revision(
    cluster: KubeCluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, manifest("open", ns))
    wait_phase(cluster, ns, "open", names.PHASE_STABLE)
    assert len(policies(cluster, ns)) == 1
    apply(cluster, manifest("open", ns, networkPolicy={"enabled": False}))
    wait_until(lambda: policies(cluster, ns) == [], 30, "the NetworkPolicy to be deleted")
    md = wait_phase(cluster, ns, "open", names.PHASE_STABLE)
    assert md["status"]["stable"]["revision"] == 1
    history = [h["revision"] for h in md["status"].get("history", [])]
    assert history in ([], [1]), "a policy change is no rollout"
    assert not any("egress" in w for w in md["status"]["warnings"])
