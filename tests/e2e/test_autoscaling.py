"""The HPA scales a revision on real CPU (metrics-server reading the real node's kubelet), follows
the stable revision through a cutover, and the operator never takes `spec.replicas` from it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from modeldeploy import names
from tests.e2e.conftest import E2E
from tests.e2e.test_real_node import INFER, Model
from tests.helpers.load import Load
from tests.helpers.rollout_driver import ModelDeploymentDriver
from tests.kube import wait_until

pytestmark = pytest.mark.e2e

OPERATOR_MANAGERS = (names.FIELD_MANAGER, names.SCALE_FIELD_MANAGER)
FAST_SCALE_DOWN = {
    "scaleDown": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }
}
FAST_ROLLOUT = {
    "rollout": {"steps": [], "bakeTime": "10s"},  # straight to 100%: pre-scale, then cutover
    "analysis": {"window": "5s", "minRequests": 5},
}


def hpa(model: Model) -> dict[str, Any]:
    found = model.driver.hpa()
    assert found is not None, "no HPA"
    return found


def deployment(model: Model, name: str) -> dict[str, Any]:
    """The Deployment with its managedFields (`kubectl get -o json` leaves them out)."""
    found = model.driver.child("apps/v1", "deployments", name)
    assert found is not None, f"no Deployment {name}"
    return found


def replica_owners(obj: dict[str, Any]) -> list[str]:
    """The field managers that own spec.replicas of the Deployment `obj`."""
    return [entry["manager"] for entry in _replica_entries(obj)]


def _replica_entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for entry in obj["metadata"].get("managedFields", []):
        fields = json.dumps(entry.get("fieldsV1", {}).get("f:spec", {}))
        if '"f:replicas"' in fields.split('"f:template"')[0] and entry.get("subresource") != (
            "status"
        ):
            entries.append(entry)
    return entries


@dataclass
class ReplicaWatch:
    """Polls, in the background, the Deployment the HPA targets and who owns its spec.replicas.

    What it catches: an operator write of spec.replicas on the HPA's target after the HPA was
    pointed at it (the operator's entry for the field changes), or the operator owning the
    field again after the HPA has taken it. Every target it saw is kept in `targets`."""

    driver: ModelDeploymentDriver
    violations: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    hpa_took: set[str] = field(default_factory=set)
    history: list[str] = field(default_factory=list)  # each change of the target's owners
    _operator_entry: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ReplicaWatch:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(1)

    def poll(self) -> None:
        found = self.driver.hpa()
        if found is None:
            return
        target = str(found["spec"]["scaleTargetRef"]["name"])
        if not self.targets or self.targets[-1] != target:
            self.targets.append(target)
        deployment = self.driver.child("apps/v1", "deployments", target)
        if deployment is None:
            return
        entries = _replica_entries(deployment)
        line = f"{target} at {deployment['spec'].get('replicas')}: " + ", ".join(
            f"{e['manager']} ({e['operation']} {e.get('subresource', '')})" for e in entries
        )
        if not self.history or self.history[-1] != line:
            self.history.append(line)
        ours = [e for e in entries if e["manager"] in OPERATOR_MANAGERS]
        if any(e["manager"] not in OPERATOR_MANAGERS for e in entries):
            self.hpa_took.add(target)
        seen = json.dumps(ours, sort_keys=True)
        before = self._operator_entry.setdefault(target, seen)
        if ours and seen != before:
            self.violations.append(f"the operator wrote spec.replicas of {target}: {seen}")
        if ours and target in self.hpa_took:
            self.violations.append(f"the operator owns spec.replicas of {target} again: {seen}")
        self._operator_entry[target] = seen


def test_the_hpa_scales_on_real_cpu_and_follows_a_cutover_without_a_tug_of_war(
    e2e: E2E,
) -> None:
    model = Model(e2e, e2e.namespaces[2], "busy")
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetCPUUtilizationPercentage": 20,
        "behavior": FAST_SCALE_DOWN,
    }
    model.apply("2", autoscaling=scaling, **FAST_ROLLOUT)  # the forest: the heavier model
    model.stable(1)
    old, new = model.driver.revision_name(1), model.driver.revision_name(2)

    def utilisation() -> int | None:
        for metric in hpa(model).get("status", {}).get("currentMetrics") or []:
            source = metric.get("containerResource") or metric.get("resource") or {}
            value = source.get("current", {}).get("averageUtilization")
            if value is not None:
                return int(value)
        return None

    wait_until(lambda: utilisation() is not None, 120, "the HPA to read CPU from metrics-server")
    watch = ReplicaWatch(ModelDeploymentDriver(e2e.cluster, model.namespace, model.name))
    with watch, Load(model.url(), INFER, rate=150, connections=8) as load:
        scaled = wait_until(
            lambda: (
                (hpa(model)["status"].get("currentReplicas") or 0) >= 2 and hpa(model)["status"]
            ),
            240,
            "the HPA to scale up under load",
            interval=2,
        )
        count = scaled.get("currentReplicas")
        print(f"under load: {count} replicas of {old}, cpu {utilisation()}%")
        # No tug of war: the Deployment keeps what the HPA asked for, and the HPA owns it.
        for _ in range(3):
            desired = hpa(model)["status"].get("desiredReplicas")
            assert model.driver.deployment_replicas(1) == desired
            time.sleep(2)
        # Nobody owned the field before (the operator's apply leaves it out, and 1 is the
        # default): the API server then records no owner for the HPA's scale writes either.
        owners = replica_owners(deployment(model, old))
        print(f"scaled up: spec.replicas of {old} is owned by {owners}")
        assert not set(owners) & set(OPERATOR_MANAGERS), (owners, watch.history)

        # A new version, under the same load: pre-scaled to the HPA's count, then the cutover.
        before = model.driver.deployment_replicas(1)
        model.apply("1", autoscaling=scaling, **FAST_ROLLOUT)
        model.stable(2, timeout=240)
        cut_over = time.monotonic()
        assert model.driver.hpa_target() == new
        now = model.driver.deployment_replicas(2)
        print(f"after the cutover: {new} at {now} replicas (r1 had {before})")
        time.sleep(3)  # the new stable keeps serving, alone behind the pinned Service
    print(f"the load: {load.summary()}")
    print(f"after the cutover: {load.summary(cut_over)}")
    assert load.connection_errors == 0 and not load.non_2xx(), load.summary()
    assert set(load.versions(cut_over)) == {"1"}, load.summary(cut_over)

    # Without load the HPA scales the new stable down: it owns the field, the operator does not.
    with watch:
        wait_until(
            lambda: (
                hpa(model)["status"].get("currentReplicas") == 1
                and model.driver.deployment_replicas(2) == 1
            ),
            240,
            f"the HPA to scale {new} down after the load",
            interval=2,
        )
        watch.poll()
    owners = replica_owners(deployment(model, new))
    print(f"scaled down: spec.replicas of {new} is owned by {owners}; HPA targets {watch.targets}")
    print("owners of the HPA target's spec.replicas, as they changed:", *watch.history, sep="\n  ")
    # The operator pre-scaled the new revision (it owned the field then); the HPA's write took it.
    assert owners and not set(owners) & set(OPERATOR_MANAGERS), owners
    assert watch.targets[-2:] == [old, new], watch.targets
    assert new in watch.hpa_took, "the HPA never wrote the new stable's replicas"
    assert not watch.violations, watch.violations
    status = model.driver.status()
    assert status.get("phase") == names.PHASE_STABLE
