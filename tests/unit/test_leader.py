"""The Lease protocol as a pure function: who may take, renew, wait for, or give up the Lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.leader import (
    Action,
    Decision,
    decide,
    expiry,
    format_time,
    lease_namespace,
    next_wake_s,
    parse_time,
    released,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
ME, OTHER = "pod-a_1234abcd", "pod-b_9876fedc"


def lease(
    holder: str | None, renewed_ago_s: float | None, duration: int = 15, transitions: int = 3
) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": duration, "leaseTransitions": transitions}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renewed_ago_s is not None:
        renewed = format_time(NOW - timedelta(seconds=renewed_ago_s))
        spec["renewTime"] = renewed
        spec["acquireTime"] = format_time(NOW - timedelta(seconds=renewed_ago_s + 60))
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "md-op", "namespace": "ops", "resourceVersion": "42"},
        "spec": spec,
    }


def run(observed: dict[str, Any] | None, was_leading: bool = False) -> Decision:
    return decide(
        observed, identity=ME, name="md-op", namespace="ops", now=NOW, was_leading=was_leading
    )


@pytest.mark.parametrize(
    ("observed", "was_leading", "action"),
    [
        (None, False, Action.ACQUIRE),  # nobody ever held it
        (None, True, Action.RENEW),  # deleted under us: recreate it, nobody else holds it
        (lease(ME, 1.0), True, Action.RENEW),
        (lease(ME, 1.0), False, Action.RENEW),  # our earlier write landed but its answer did not
        (lease(ME, 30.0), True, Action.RENEW),  # expired but still ours: nobody took it
        (lease(OTHER, 1.0), False, Action.STANDBY),
        (lease(OTHER, 14.9), False, Action.STANDBY),  # live until the last microsecond
        (lease(OTHER, 15.0), False, Action.ACQUIRE),  # renewTime + duration reached
        (lease(OTHER, 3.0, duration=1), False, Action.ACQUIRE),  # a released lease's duration
        (lease("", 0.0, duration=1), False, Action.ACQUIRE),  # released: free at once
        (lease(None, None), False, Action.ACQUIRE),  # an empty spec
        (lease(OTHER, None), False, Action.ACQUIRE),  # a holder that never renewed
        (lease(OTHER, 1.0), True, Action.LOST),  # taken from us: never fight back
        (lease(OTHER, 30.0), True, Action.LOST),  # even if that holder is gone too
        (lease("", 0.0, duration=1), True, Action.LOST),  # released by someone else
    ],
)
def test_decision_table(observed: dict[str, Any] | None, was_leading: bool, action: Action) -> None:
    decision = run(observed, was_leading)
    assert decision.action is action
    writes = action in (Action.ACQUIRE, Action.RENEW)
    assert (decision.body is not None) == writes
    if decision.body is not None:
        spec = decision.body["spec"]
        assert spec["holderIdentity"] == ME
        assert spec["renewTime"] == format_time(NOW)
        assert spec["leaseDurationSeconds"] == names.LEASE_DURATION_S


def test_first_acquisition_creates_the_lease() -> None:
    body = run(None).body
    assert body == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "md-op", "namespace": "ops"},
        "spec": {
            "holderIdentity": ME,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-05-01T12:00:00.250000Z",
            "renewTime": "2026-05-01T12:00:00.250000Z",
            "leaseTransitions": 0,
        },
    }


def test_takeover_counts_a_transition_and_keeps_the_resource_version() -> None:
    old = lease(OTHER, 20.0, transitions=3)
    body = run(old).body
    assert body is not None
    assert body["metadata"]["resourceVersion"] == "42"  # the PUT fails if anyone wrote since
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["acquireTime"] == format_time(NOW)


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    old = lease(ME, 2.0, transitions=7)
    body = run(old, was_leading=True).body
    assert body is not None
    assert body["spec"]["acquireTime"] == old["spec"]["acquireTime"]
    assert body["spec"]["leaseTransitions"] == 7
    assert body["metadata"]["resourceVersion"] == "42"


def test_standby_knows_when_the_holders_lease_runs_out() -> None:
    decision = run(lease(OTHER, 4.0))
    assert decision.expires == NOW + timedelta(seconds=11)


@pytest.mark.parametrize(
    ("decision", "wake"),
    [
        (Decision(Action.RENEW), 2.0),
        (Decision(Action.ACQUIRE), 2.0),
        (Decision(Action.STANDBY, expires=NOW + timedelta(seconds=11)), 2.0),
        # Wake when the holder's Lease runs out, not up to a retry period later.
        (Decision(Action.STANDBY, expires=NOW + timedelta(seconds=0.5)), 0.51),
        (Decision(Action.STANDBY, expires=NOW - timedelta(seconds=3)), 0.0),
    ],
)
def test_next_wake(decision: Decision, wake: float) -> None:
    assert next_wake_s(decision, NOW, retry_period_s=2.0) == pytest.approx(wake)


def test_release_frees_our_lease_only() -> None:
    ours = lease(ME, 1.0, transitions=5)
    body = released(ours, ME, NOW)
    assert body is not None
    assert body["spec"]["holderIdentity"] == ""
    assert body["spec"]["leaseDurationSeconds"] == 1
    assert body["spec"]["leaseTransitions"] == 5
    assert body["metadata"]["resourceVersion"] == "42"
    assert released(lease(OTHER, 1.0), ME, NOW) is None
    # A standby seeing the released Lease takes it at once.
    assert expiry(body["spec"], 15.0) is None
    after = decide(body, identity=OTHER, name="md-op", namespace="ops", now=NOW)
    assert after.action is Action.ACQUIRE


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("2026-05-01T12:00:00.250000Z", NOW),
        ("2026-05-01T12:00:00.25Z", NOW),
        ("2026-05-01T14:00:00.250000+02:00", NOW),
        ("2026-05-01T12:00:00Z", NOW.replace(microsecond=0)),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_time(value: str | None, parsed: datetime | None) -> None:
    assert parse_time(value) == parsed


def test_format_time_is_rfc3339_micro_in_utc() -> None:
    local = NOW.astimezone(datetime.now().astimezone().tzinfo)
    assert format_time(local) == "2026-05-01T12:00:00.250000Z"


@pytest.mark.parametrize(
    ("flag", "env", "watched", "expected"),
    [
        ("ops", {"POD_NAMESPACE": "pod-ns"}, ["a"], "ops"),
        (None, {"POD_NAMESPACE": "pod-ns"}, ["a"], "pod-ns"),
        (None, {}, ["a", "b"], "a"),
        (None, {}, ["team-*", "b"], "b"),  # a glob names no namespace to put a Lease in
        (None, {}, ["team-*"], "default"),
        (None, {}, [], "default"),
    ],
)
def test_lease_namespace(
    flag: str | None, env: dict[str, str], watched: list[str], expected: str
) -> None:
    assert lease_namespace(flag, env, watched) == expected
