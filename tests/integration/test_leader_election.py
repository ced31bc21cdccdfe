"""Several operator processes, one Lease: only the holder acts, and a standby carries on.

Given two (or three) real operator processes watching one namespace and competing for one Lease,
when the leader is killed with SIGKILL in the middle of a canary step, then a standby holds the
Lease within the lease duration, finishes the rollout from the state recorded in status, and no
revision Deployment or Event is created twice; the standby writes nothing while it stands by.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.leader import parse_time
from tests.helpers.operator_proc import OperatorProcess
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

MD = "iris"
SHA = "ab" * 32
LEADER = "modeldeploy_leader"
WRITES = ("modeldeploy_api_requests_total", {"kind": "write"})
# A killed leader's Lease runs out LEASE_DURATION_S after its last renewal, which came at most a
# retry period before the kill; the slack covers the poll and a loaded two-core machine.
TAKEOVER_S = names.LEASE_DURATION_S + 2.0


def spec(version: str) -> dict[str, Any]:
    """One canary step that pauses far longer than the test: only a promote moves it on."""
    return {
        "model": {
            "name": MD,
            "version": version,
            "uri": f"https://models.example.com/{MD}/{version}.joblib",
            "sha256": SHA,
        },
        "replicas": 2,
        "rollout": {"steps": [{"weight": 50, "pause": "30m"}], "bakeTime": "1s"},
        "analysis": {"window": "5s", "onNoData": "pass"},
    }


def apply(cluster: KubeCluster, namespace: str, version: str) -> None:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": MD, "namespace": namespace},
        "spec": spec(version),
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_md(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    return dict(cluster.get_json("md", MD, "-n", namespace))


def wait_md(cluster: KubeCluster, namespace: str, what: str, check: Any) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        md = get_md(cluster, namespace)
        status = md.get("status") or {}
        current = status.get("observedGeneration") == md["metadata"]["generation"]
        return md if current and check(status) else None

    return dict(wait_until(reached, 90, f"{namespace}/{MD}: {what}", interval=0.2))


def stable_at(revision: int) -> Any:
    return lambda s: s.get("phase") == names.PHASE_STABLE and s["stable"]["revision"] == revision


def pausing_canary(status: dict[str, Any]) -> bool:
    """Revision 2 is the canary at its first step, its pods ready: the step's pause runs."""
    canary = status.get("canary") or {}
    return canary.get("revision") == 2 and canary.get("readyReplicas", 0) >= 1


def lease(cluster: KubeCluster, ops: list[OperatorProcess]) -> dict[str, Any]:
    op = ops[0]
    return dict(cluster.get_json("lease", op.lease_id, "-n", op.lease_namespace))


def leaders(ops: list[OperatorProcess]) -> list[OperatorProcess]:
    return [op for op in ops if op.proc is not None and op.metric(LEADER) == 1]


def the_leader(cluster: KubeCluster, ops: list[OperatorProcess], timeout: float) -> OperatorProcess:
    """Wait until exactly one live process leads and the Lease names a holder."""

    def one() -> OperatorProcess | None:
        found = leaders(ops)
        holder = lease(cluster, ops)["spec"].get("holderIdentity")
        return found[0] if len(found) == 1 and holder else None

    found: OperatorProcess = wait_until(one, timeout, "exactly one leader")
    return found


def events(cluster: KubeCluster, namespace: str) -> Counter[tuple[str, str]]:
    selector = f"involvedObject.kind={names.KIND},involvedObject.name={MD}"
    items = cluster.get_json("events", "-n", namespace, "--field-selector", selector)["items"]
    return Counter((e["reason"], e["message"]) for e in items)


def revision_deployments(cluster: KubeCluster, namespace: str) -> list[str]:
    selector = f"{names.LABEL_NAME}={MD}"
    items = cluster.get_json("deployments", "-n", namespace, "-l", selector)["items"]
    return sorted(d["metadata"]["name"] for d in items)


@contextlib.contextmanager
def operators(cluster: KubeCluster, namespace: str, count: int) -> Iterator[list[OperatorProcess]]:
    lease_id = f"le-{uuid.uuid4().hex[:8]}"  # one per test: tests never share a Lease
    ops = [
        OperatorProcess(
            cluster, [namespace], lease_id=lease_id, lease_namespace=namespace, name=f"{i}"
        )
        for i in range(count)
    ]
    try:
        for op in ops:
            op.start()
        yield ops
    finally:
        for op in ops:
            op.stop()


def kill_leader(
    cluster: KubeCluster, ops: list[OperatorProcess], leader: OperatorProcess
) -> OperatorProcess:
    """SIGKILL the leader; return the standby that took the Lease over."""
    before = lease(cluster, ops)["spec"]
    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    successor = the_leader(cluster, ops, timeout=TAKEOVER_S)
    took = time.monotonic() - killed
    after = lease(cluster, ops)["spec"]
    print(f"takeover {took:.1f}s after SIGKILL")
    assert successor is not leader
    assert after["holderIdentity"] != before["holderIdentity"]
    assert after["leaseTransitions"] == before["leaseTransitions"] + 1
    # Never before the killed leader's Lease ran out.
    last_renewal = parse_time(before["renewTime"])
    acquired = parse_time(after["acquireTime"])
    assert last_renewal is not None and acquired is not None
    assert (acquired - last_renewal).total_seconds() >= before["leaseDurationSeconds"]
    return successor


def assert_no_duplicates(cluster: KubeCluster, namespace: str) -> None:
    # r1 goes once r2's bake ends; a duplicate revision would show up as r3.
    assert set(revision_deployments(cluster, namespace)) <= {f"{MD}-r1", f"{MD}-r2"}
    repeated = {key: n for key, n in events(cluster, namespace).items() if n > 1}
    assert repeated == {}
    history = [h["revision"] for h in get_md(cluster, namespace)["status"].get("history", [])]
    assert len(history) == len(set(history)), history


def promote(cluster: KubeCluster, namespace: str) -> None:
    token = f"{names.ANNOTATION_PROMOTE}={uuid.uuid4().hex[:6]}"
    cluster.kubectl("annotate", "md", MD, "-n", namespace, token, "--overwrite")


def start_canary(cluster: KubeCluster, namespace: str) -> None:
    apply(cluster, namespace, "1")
    wait_md(cluster, namespace, "r1 Stable", stable_at(1))
    apply(cluster, namespace, "2")
    wait_md(cluster, namespace, "r2 pausing at its first step", pausing_canary)


def test_standby_takes_over_mid_step_without_duplicates_and_wrote_nothing(
    cluster: KubeCluster, namespace: str
) -> None:
    with operators(cluster, namespace, 2) as ops:
        leader = the_leader(cluster, ops, timeout=30)
        standby = next(op for op in ops if op is not leader)
        start_canary(cluster, namespace)
        before = events(cluster, namespace)
        mine(before, names.REASON_ROLLOUT_STARTED)
        # The standby saw every watch event of the rollout so far, and wrote nothing.
        assert standby.metric(*WRITES) == 0
        assert standby.metric("modeldeploy_reconciles_total") == 0
        assert leader.metric(*WRITES) > 0

        successor = kill_leader(cluster, ops, leader)
        assert successor is standby
        # Still mid-step: the new leader keeps the canary where it was, and adds nothing.
        md = wait_md(cluster, namespace, "r2 still pausing", pausing_canary)
        assert md["status"]["canary"]["step"] == 0
        promote(cluster, namespace)
        wait_md(cluster, namespace, "r2 promoted and Stable", stable_at(2))
        assert_no_duplicates(cluster, namespace)
        after = events(cluster, namespace)
        assert set(before) <= set(after)
        for reason in (names.REASON_ROLLOUT_STARTED, names.REASON_PROMOTE_REQUESTED):
            mine(after, reason)  # exactly once, across both leaders


def mine(counts: Counter[tuple[str, str]], reason: str) -> str:
    """The message of the one Event with this reason."""
    messages = [message for (r, message) in counts if r == reason]
    assert len(messages) == 1, (reason, list(counts))
    return messages[0]


def test_three_processes_survive_two_leader_kills(cluster: KubeCluster, namespace: str) -> None:
    with operators(cluster, namespace, 3) as ops:
        leader = the_leader(cluster, ops, timeout=30)
        start_canary(cluster, namespace)
        second = kill_leader(cluster, ops, leader)
        third = kill_leader(cluster, ops, second)
        assert len({id(leader), id(second), id(third)}) == 3
        promote(cluster, namespace)
        wait_md(cluster, namespace, "r2 promoted and Stable", stable_at(2))
        assert_no_duplicates(cluster, namespace)


def test_graceful_stop_hands_the_lease_over_at_once(cluster: KubeCluster, namespace: str) -> None:
    with operators(cluster, namespace, 2) as ops:
        leader = the_leader(cluster, ops, timeout=30)
        assert leader.proc is not None
        proc = leader.proc
        before = lease(cluster, ops)["spec"]
        leader.stop(signal.SIGTERM)
        assert proc.returncode == 0
        assert "released Lease" in leader.log_tail()
        successor = the_leader(cluster, ops, timeout=TAKEOVER_S)
        assert successor is not leader
        after = lease(cluster, ops)["spec"]
        assert after["leaseTransitions"] == before["leaseTransitions"] + 1
        assert after["leaseDurationSeconds"] == names.LEASE_DURATION_S
        # Handed over: the standby did not wait for the old Lease to run out.
        last_renewal, acquired = parse_time(before["renewTime"]), parse_time(after["acquireTime"])
        assert last_renewal is not None and acquired is not None
        assert (acquired - last_renewal).total_seconds() < before["leaseDurationSeconds"]


def test_leader_that_loses_its_lease_exits(cluster: KubeCluster, namespace: str) -> None:
    with operators(cluster, namespace, 2) as ops:
        leader = the_leader(cluster, ops, timeout=30)
        assert leader.proc is not None
        proc = leader.proc
        taken = lease(cluster, ops)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        taken["spec"].update(holderIdentity="intruder", renewTime=now, acquireTime=now)
        cluster.kubectl("replace", "-f", "-", input=json.dumps(taken))
        wait_until(lambda: proc.poll() is not None, 30, "the robbed leader to exit")
        assert proc.returncode == names.EXIT_LEADERSHIP_LOST
        assert "lost leadership" in leader.log_tail()
