"""conditions.derive: one question per condition, each with its own reason and message."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from modeldeploy import names
from modeldeploy.conditions import derive, share, smallest_stable, weight_not_achievable
from modeldeploy.diagnosis import Problem
from modeldeploy.rollout import step
from modeldeploy.rollout_types import Condition, Observation, Policy, RolloutState, Step
from tests.unit.test_rollout import (
    AT_10,
    BAKING,
    BOTH,
    BREACH,
    HEALTHY,
    POLICY,
    ROWS,
    STABLE,
    STABLE_PODS,
    T0,
    at,
    canary,
    see,
)


def conditions(
    state: RolloutState, obs: Observation, policy: Policy = POLICY, now: float = 0
) -> dict[str, Condition]:
    settled, decision = step(state, obs, policy, at(now))
    return {c.type: c for c in derive(settled, obs, policy, decision, at(now))}


def summary(found: dict[str, Condition]) -> list[tuple[str, str, str]]:
    return [(c.type, c.status, c.reason) for c in found.values()]


def test_stable() -> None:
    assert summary(conditions(STABLE, see("h1"))) == [
        ("Ready", "True", names.REASON_ROLLOUT_COMPLETE),
        ("Available", "True", "MinimumReplicasAvailable"),
        ("Progressing", "False", names.REASON_ROLLOUT_COMPLETE),
        ("Degraded", "False", names.REASON_AS_EXPECTED),
        ("Paused", "False", "NotPaused"),
        ("InvalidSpec", "False", "SpecAccepted"),
    ]


def test_a_healthy_canary_is_available_and_progressing_not_degraded() -> None:
    found = conditions(canary(0), see(replicas={1: 9, 2: 1}, verdicts={2: HEALTHY}))
    assert [(t, s) for t, s, _ in summary(found)][:4] == [
        ("Ready", "False"),
        ("Available", "True"),
        ("Progressing", "True"),
        ("Degraded", "False"),
    ]
    assert found["Ready"].reason == "RolloutInProgress"
    assert found["Progressing"].message.startswith("r2 (model v2) at 10% (step 1/2)")


def test_the_bake_is_available_and_progressing() -> None:
    found = conditions(BAKING, see(replicas=BOTH, verdicts={2: HEALTHY}), now=10)
    assert (found["Available"].status, found["Progressing"].reason) == ("True", "Baking")
    assert found["Available"].message == f"r2 (model v2) has {STABLE_PODS}/{STABLE_PODS} pods ready"
    assert found["Ready"].message == "r2 (model v2) is in its bake"


def test_a_breach_with_no_way_back_is_degraded_but_still_available() -> None:
    policy = replace(POLICY, automatic_rollback=False)
    found = conditions(canary(0), see(replicas=AT_10, verdicts={2: BREACH}), policy)
    assert (found["Degraded"].status, found["Degraded"].reason) == ("True", "MetricBreach")
    assert "errorRate 0.2 > 0.01" in found["Degraded"].message
    assert (found["Ready"].status, found["Progressing"].status) == ("False", "False")
    assert found["Available"].status == "True"


def test_a_stable_without_enough_ready_pods_is_not_available() -> None:
    found = conditions(STABLE, see("h1", replicas={1: 4}, ready={1: 2}))
    assert (found["Available"].status, found["Available"].reason) == (
        "False",
        "MinimumReplicasUnavailable",
    )
    assert found["Available"].message == "r1 (model v1) has 2/4 pods ready, fewer than 3"


def test_paused_is_its_own_condition_and_progressing_is_unknown() -> None:
    found = conditions(canary(0), see(replicas=AT_10, paused=True))
    assert (found["Paused"].status, found["Progressing"].status) == ("True", "Unknown")
    assert found["Progressing"].message == "paused; r2 (model v2) holds at 10%"


@pytest.mark.parametrize(
    ("weight", "fewest"), [(10, 6), (25, 3), (50, 1), (5, 9), (1, 16), (99, 1)]
)
def test_smallest_stable_count_that_honours_a_weight(weight: int, fewest: int) -> None:
    assert smallest_stable(weight) == fewest
    assert share(fewest, weight) - weight <= 5
    assert fewest == 1 or share(fewest - 1, weight) - weight > 5


def test_a_step_the_pods_cannot_honour_says_so_with_the_count_that_would() -> None:
    obs = see(replicas={1: 2, 2: 1}, verdicts={2: HEALTHY})
    found = conditions(canary(0), obs)
    assert found["Progressing"].reason == "WeightNotAchievable"
    assert found["Progressing"].message == (
        "step 1/2 asks 10%, but 1 canary pod beside 2 stable take 33% of ready endpoints "
        "(tolerance ±5 points); 6 or more stable pods would honour it"
    )
    enough = replace(POLICY, steps=(Step(50, timedelta(seconds=30)),))
    assert weight_not_achievable(canary(0), obs, enough) is None


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_every_condition_has_a_message_of_its_own_and_no_hash(row: object) -> None:
    state, obs, policy, now = row.state, row.obs, row.policy, row.now  # type: ignore[attr-defined]
    settled, decision = step(state, obs, policy, at(now))
    found = derive(settled, obs, policy, decision, at(now))
    messages = [c.message for c in found]
    assert len(set(messages)) == len(messages), messages
    hashes = {obs.spec_hash, *(h for h in settled.quarantined)}
    for text in [*messages, decision.message, *(e.message for e in decision.events)]:
        assert not any(h in text.split() or f"spec {h}" in text for h in hashes), text


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_conditions_do_not_change_while_waiting(row: object) -> None:
    state, obs, policy, now = row.state, row.obs, row.policy, row.now  # type: ignore[attr-defined]
    settled, decision = step(state, obs, policy, at(now))
    if decision.requeue_after is not None and decision.requeue_after <= 1:
        return
    later = at(now) + timedelta(seconds=1)
    again, repeat = step(settled, obs, policy, later)
    assert derive(again, obs, policy, repeat, later) == derive(
        settled, obs, policy, decision, at(now)
    )


def test_first_deploy_has_nothing_available() -> None:
    first = RolloutState()
    found = conditions(first, see("h1", replicas={}, ready={}))
    assert (found["Available"].status, found["Available"].reason) == ("False", "NothingServes")
    assert found["Ready"].reason == names.REASON_DEPLOYING
    assert T0  # the clock is a parameter


def test_a_pod_problem_comes_before_an_unachievable_weight() -> None:
    pull = Problem("ImagePullBackOff", 'Back-off pulling image "x"')
    found = conditions(canary(0), see(replicas={1: 2, 2: 1}, ready={1: 2}, problems={2: pull}))
    assert found["Progressing"].reason == "ImagePullBackOff"
    assert found["Ready"].reason == "RolloutInProgress"
