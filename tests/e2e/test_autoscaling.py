"""The HPA scales a revision on real CPU (metrics-server reading the real node's kubelet), and the
operator never takes `spec.replicas` from it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from modeldeploy import names
from tests.e2e.conftest import E2E
from tests.e2e.test_real_node import INFER, Model
from tests.helpers.load import Load
from tests.kube import wait_until

pytestmark = pytest.mark.e2e

OPERATOR_MANAGERS = ("modeldeploy-operator", "modeldeploy-operator-scale")


def hpa(model: Model) -> dict[str, Any]:
    found = model.driver.hpa()
    assert found is not None, "no HPA"
    return found


def replica_owners(deployment: dict[str, Any]) -> list[str]:
    """The field managers that own spec.replicas of `deployment`."""
    owners = []
    for entry in deployment["metadata"].get("managedFields", []):
        fields = json.dumps(entry.get("fieldsV1", {}))
        if '"f:replicas"' in fields and entry.get("subresource") != "status":
            owners.append(entry["manager"])
    return owners


def test_the_hpa_scales_on_real_cpu_and_the_operator_leaves_replicas_alone(
    e2e: E2E,
) -> None:
    model = Model(e2e, e2e.namespaces[2], "busy")
    model.apply(
        "2",  # the forest: the heavier of the good models
        autoscaling={
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 20,
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                }
            },
        },
    )
    model.stable(1)
    deployment = model.driver.revision_name(1)

    def utilisation() -> int | None:
        for metric in hpa(model).get("status", {}).get("currentMetrics") or []:
            source = metric.get("containerResource") or metric.get("resource") or {}
            value = source.get("current", {}).get("averageUtilization")
            if value is not None:
                return int(value)
        return None

    wait_until(lambda: utilisation() is not None, 120, "the HPA to read CPU from metrics-server")
    with Load(model.url(), INFER, rate=150, connections=8) as load:
        scaled = wait_until(
            lambda: (
                (hpa(model)["status"].get("currentReplicas") or 0) >= 2 and hpa(model)["status"]
            ),
            240,
            "the HPA to scale up under load",
            interval=2,
        )
        print(f"under load: {scaled.get('currentReplicas')} replicas, cpu {utilisation()}%")
        # No tug of war: the Deployment keeps what the HPA asked for, and the HPA owns it.
        for _ in range(5):
            desired = hpa(model)["status"].get("desiredReplicas")
            assert model.driver.deployment_replicas(1) == desired
            time.sleep(2)
        found = e2e.cluster.get_json("deployment", deployment, "-n", model.namespace)
        owners = replica_owners(found)
        print(f"scaled up: spec.replicas of {deployment} is owned by {owners}")
        assert not set(owners) & set(OPERATOR_MANAGERS), owners
    print(f"the load: {load.summary()}")
    assert load.connection_errors == 0, load.summary()
    wait_until(
        lambda: hpa(model)["status"].get("currentReplicas") == 1,
        240,
        "the HPA to scale back down after the load",
        interval=2,
    )
    found = e2e.cluster.get_json("deployment", deployment, "-n", model.namespace)
    owners = replica_owners(found)
    print(f"spec.replicas of {deployment} is owned by {owners}")
    assert not set(owners) & set(OPERATOR_MANAGERS), owners
    status = model.driver.status()
    assert status.get("phase") == names.PHASE_STABLE
