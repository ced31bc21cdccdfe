"""status.render_status: traffic as it is, the compact rollout memory, the last breach shown
only while it matters; reconcile.rollbacks: manual ones counted as Manual, without a breach."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from modeldeploy import names
from modeldeploy.conditions import derive
from modeldeploy.reconcile import MANUAL, rollbacks
from modeldeploy.rollout import step
from modeldeploy.rollout_types import Breach, Observation, RollbackRequest, RolloutState
from modeldeploy.status import render_status, state_from_status, status_patch, traffic_shares
from tests.unit.test_rollout import (
    AT_10,
    BAKING,
    BOTH,
    BREACH,
    POLICY,
    ROWS,
    STABLE,
    T0,
    TWO_DONE,
    at,
    canary,
    see,
)


def render(state: RolloutState, obs: Observation, now: float = 0) -> dict[str, object]:
    settled, decision = step(state, obs, POLICY, at(now))
    return render_status(
        {},
        settled,
        decision,
        derive(settled, obs, POLICY, decision, at(now)),
        generation=1,
        ready=obs.ready,
        replicas=obs.replicas,
        now=at(now),
    )


@pytest.mark.parametrize(
    ("ready", "pinned", "shares"),
    [
        ({1: 2, 2: 1}, None, {1: 67, 2: 33}),
        ({1: 2, 2: 1}, 1, {1: 100}),
        ({1: 0, 2: 0}, None, {1: 0, 2: 0}),
        ({1: 4, 2: 4, 3: 0}, 2, {2: 100}),
    ],
)
def test_traffic_shares_follow_ready_endpoints(
    ready: dict[int, int], pinned: int | None, shares: dict[int, int]
) -> None:
    assert traffic_shares(ready, pinned) == shares


def test_a_canary_shows_intended_weight_and_actual_traffic() -> None:
    status = render(canary(0), see(replicas={1: 2, 2: 1}))
    assert (status["canaryWeight"], status["canaryTraffic"], status["readyPods"]) == (
        "10%",
        "33%",
        "3/3",
    )
    assert status["canary"]["weight"] == 10 and status["canary"]["traffic"] == 33  # type: ignore[index]
    assert status["stable"]["weight"] == 90 and status["stable"]["traffic"] == 67  # type: ignore[index]


def test_the_bake_shows_the_new_revision_at_100_and_the_previous_warm() -> None:
    status = render(BAKING, see(replicas=BOTH), now=10)
    assert (status["canaryWeight"], status["canaryTraffic"]) == ("-", "-")
    assert status["stable"]["traffic"] == 100  # type: ignore[index]
    assert status["previous"]["revision"] == 1 and status["previous"]["traffic"] == 0  # type: ignore[index]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_the_memory_round_trips_through_status(row: object) -> None:
    state, obs, now = row.state, row.obs, row.now  # type: ignore[attr-defined]
    settled, decision = step(state, obs, row.policy, at(now))  # type: ignore[attr-defined]
    status = render_status(
        {}, settled, decision, (), generation=1, ready=obs.ready, replicas=obs.replicas, now=T0
    )
    assert state_from_status(json.loads(json.dumps(status))) == settled
    memory = json.loads(str(status["rolloutState"]))
    assert "history" not in memory and "quarantined" not in memory  # not stored twice


def test_the_former_rollout_object_is_read_and_cleared() -> None:
    stored = {"rollout": STABLE.to_dict()}
    assert state_from_status(stored) == STABLE
    status = render(STABLE, see("h1"))
    patch = status_patch(stored, status)
    assert patch is not None and patch["rollout"] is None


def test_a_stale_breach_is_not_shown_during_a_later_rollout() -> None:
    old = Breach(7, "iris-r7-x", names.REASON_METRIC_BREACH, "errorRate 0.2 > 0.01", T0)
    assert render(canary(0, last_breach=old), see(replicas=AT_10))["lastBreach"] is None
    current = replace(old, revision=2)
    shown = render(canary(0, last_breach=current), see(replicas=AT_10))["lastBreach"]
    assert shown is not None and shown["revision"] == 2  # type: ignore[index]


def test_the_breach_that_caused_a_rollback_stays_shown_after_it() -> None:
    state = canary(0)
    status = render(state, see(replicas=AT_10, verdicts={2: BREACH}))
    assert status["phase"] == names.PHASE_ROLLED_BACK
    assert status["lastBreach"]["revision"] == 2  # type: ignore[index]


def test_a_manual_rollback_counts_as_manual_without_a_breach() -> None:
    old = Breach(2, "iris-r2-x", names.REASON_METRIC_BREACH, "old", T0)
    before = canary(0, last_breach=old)
    after, _ = step(before, see(replicas=AT_10, rollback=RollbackRequest(1, "t")), POLICY, T0)
    assert rollbacks(before, after) == ((MANUAL,), None)
    aborted, _ = step(before, see(replicas=AT_10, abort="a"), POLICY, T0)
    assert rollbacks(before, aborted) == ((MANUAL,), None)
    # Restoring a cold revision records no RolledBack entry, yet it is one manual rollback.
    cold = replace(TWO_DONE, last_breach=old)
    restoring, _ = step(cold, see(replicas={2: 5}, rollback=RollbackRequest(1, "t")), POLICY, T0)
    assert rollbacks(cold, restoring) == ((MANUAL,), None)
    refused = RollbackRequest(7, "u")
    same, _ = step(restoring, see(replicas={2: 5}, rollback=refused), POLICY, T0)
    assert rollbacks(restoring, same) == ((), None)


def test_a_breach_rollback_counts_with_its_breach() -> None:
    before = canary(0)
    after, _ = step(before, see(replicas=AT_10, verdicts={2: BREACH}), POLICY, T0)
    reasons, breach = rollbacks(before, after)
    assert reasons == (names.REASON_METRIC_BREACH,) and breach and breach.revision == 2


def test_the_bake_end_event_says_what_happens_to_the_previous_revision() -> None:
    healthy_obs = see(replicas=BOTH)
    kept, decision = step(BAKING, healthy_obs, POLICY, at(300))
    assert decision.events[-1].message.endswith("r1 scaled to zero")
    assert kept.previous is None and 1 in decision.replicas
    short = replace(POLICY, history_limit=1)
    _, decision = step(BAKING, healthy_obs, short, at(300))
    assert decision.events[-1].message.endswith("r1 deleted (beyond historyLimit)")
    assert 1 not in decision.replicas
