"""rollout.step with `Observation.problems`: the status names why pods are not ready, and a
problem that cannot fix itself fails the rollout at once instead of at the progress deadline."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy import names
from modeldeploy.diagnosis import Problem
from modeldeploy.rollout import step
from modeldeploy.rollout_types import (
    HistoryEntry,
    Observation,
    Outcome,
    Phase,
    Policy,
    Revision,
    RolloutState,
    Step,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(steps=(Step(10, timedelta(seconds=30)), Step(50, timedelta(seconds=60))))
PULL = Problem("ImagePullBackOff", 'Back-off pulling image "x"', terminal=False)
SHA = Problem("Sha256Mismatch", "expected 9f86..., got 2c26...", terminal=True)
REFUSED = Problem("FailedCreate", 'pods "iris-r2-x" is forbidden: violates PodSecurity', True)


def rev(n: int, proven: bool = True) -> Revision:
    return Revision(n, f"h{n}", f"v{n}", f"sha{n}", T0, proven)


STABLE = RolloutState(
    phase=Phase.STABLE,
    stable=rev(1),
    next_revision=2,
    history=(HistoryEntry(1, "v1", "sha1", "h1", Outcome.PROMOTED, "Promoted", "", T0, T0),),
)
CANARY = replace(
    STABLE, phase=Phase.PROGRESSING, canary=rev(2, False), next_revision=3, weight=10,
    step_started_at=T0, waiting_since=T0,
)  # fmt: skip
FIRST = RolloutState(canary=rev(1, False), weight=100, step_started_at=T0, next_revision=2)


def see(spec: str, problems: dict[int, Problem], ready: dict[int, int]) -> Observation:
    return Observation(
        spec, f"v{spec[1:]}", f"sha{spec[1:]}", {1: 4, 2: 1}, ready, problems=problems
    )


def test_a_transient_problem_is_named_while_waiting() -> None:
    state, decision = step(CANARY, see("h2", {2: PULL}, {1: 4}), POLICY, T0 + timedelta(seconds=5))
    assert state.canary and state.canary.number == 2
    assert decision.phase is Phase.PROGRESSING
    assert decision.message == (
        'r2 at 10% (step 1/2): 0/1 pods ready: ImagePullBackOff: Back-off pulling image "x"'
    )
    assert decision.reason == "ImagePullBackOff"


def test_a_transient_problem_still_fails_only_at_the_deadline() -> None:
    late = T0 + POLICY.progress_deadline
    state, decision = step(CANARY, see("h2", {2: PULL}, {1: 4}), POLICY, late)
    assert state.canary is None and state.quarantined == ("h2",)
    assert state.history[-1].reason == names.REASON_PROGRESS_DEADLINE_EXCEEDED
    assert [e.reason for e in decision.events] == [names.REASON_PROGRESS_DEADLINE_EXCEEDED]


@pytest.mark.parametrize("problem", [SHA, REFUSED], ids=lambda p: p.reason)
def test_a_terminal_problem_fails_the_canary_at_once(problem: Problem) -> None:
    fresh = replace(CANARY, waiting_since=None)  # the first look at the new canary
    state, decision = step(fresh, see("h2", {2: problem}, {1: 4}), POLICY, T0)
    assert state.canary is None and state.stable and state.stable.number == 1
    assert state.quarantined == ("h2",)
    last = state.history[-1]
    assert (last.revision, last.outcome, last.reason) == (2, Outcome.FAILED, problem.reason)
    assert problem.message in last.message
    assert decision.phase is Phase.ROLLED_BACK
    assert decision.replicas[2] == 0  # kept, scaled to zero, like the deadline path
    assert decision.service_revision == 1
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", problem.reason)]
    assert decision.reason == problem.reason


def test_a_terminal_problem_of_a_ready_canary_is_ignored() -> None:
    """Only while waiting for pods: a ready canary is judged by its metrics."""
    state, _ = step(CANARY, see("h2", {2: SHA}, {1: 4, 2: 1}), POLICY, T0)
    assert state.canary and state.canary.number == 2


def test_a_terminal_problem_on_a_restore_does_not_quarantine() -> None:
    restoring = replace(CANARY, restoring=True, step=2, weight=100)
    state, _ = step(restoring, see("h1", {2: SHA}, {1: 4}), POLICY, T0)
    assert state.canary is None and state.quarantined == ()
    assert state.history[-1].outcome is Outcome.FAILED


def test_first_revision_with_a_terminal_problem_is_failed_and_kept() -> None:
    state, decision = step(FIRST, see("h1", {1: SHA}, {}), POLICY, T0)
    assert decision.phase is Phase.FAILED
    assert state.canary and state.canary.number == 1  # nothing else serves; nothing deleted
    assert decision.replicas == {1: None}
    assert decision.message == (
        "r1 (model v1) cannot become ready: Sha256Mismatch: expected 9f86..., got 2c26..."
    )
    assert decision.reason == "Sha256Mismatch"
    assert state.history == ()


def test_first_revision_with_a_transient_problem_is_pending_with_the_reason() -> None:
    _, decision = step(FIRST, see("h1", {1: PULL}, {}), POLICY, T0)
    assert decision.phase is Phase.PENDING
    assert decision.message.endswith(f": {PULL}")
    assert decision.reason == "ImagePullBackOff"


def test_a_new_spec_replaces_a_failed_first_revision() -> None:
    failed, _ = step(FIRST, see("h1", {1: SHA}, {}), POLICY, T0)
    state, _ = step(failed, see("h2", {1: SHA}, {}), POLICY, T0 + timedelta(seconds=1))
    assert state.canary and state.canary.number == 2
    assert state.history[-1].outcome is Outcome.SUPERSEDED


def test_a_stable_without_ready_pods_says_why() -> None:
    _, decision = step(STABLE, see("h1", {1: PULL}, {}), POLICY, T0)
    assert decision.phase is Phase.DEGRADED
    assert decision.message == f"r1 has no ready pod: {PULL}"


def test_the_policy_deadline_is_used() -> None:
    short = replace(POLICY, progress_deadline=timedelta(seconds=30))
    state, _ = step(CANARY, see("h2", {2: PULL}, {1: 4}), short, T0 + timedelta(seconds=30))
    assert state.canary is None
