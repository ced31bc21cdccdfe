"""What an `Observation` says about a revision, for the rules of modeldeploy.rollout and the
phase and Decision of modeldeploy.rollout_decision: its health and any breach, its ready pods,
and the pods the canary needs before the next move.
"""

from __future__ import annotations

import math

from modeldeploy.analysis import Health, Verdict
from modeldeploy.rollout_types import Observation, Policy, Revision, RolloutState


def canary_replicas(stable: int, weight: int) -> int:
    """Canary pods so that canary / (canary + stable) reaches `weight` percent (at least 1)."""
    if weight >= 100:
        return stable
    return max(1, math.ceil(stable * weight / (100 - weight)))


def stable_replicas(state: RolloutState, obs: Observation, policy: Policy) -> int:
    """The stable revision's pod count now (the HPA's, or the fixed count); unchanged by steps."""
    if not policy.autoscaling:
        return policy.replicas
    number = state.stable.number if state.stable else -1
    return max(1, obs.replicas.get(number, 0))


def health(obs: Observation, rev: Revision) -> Health:
    verdict = obs.verdicts.get(rev.number)
    return verdict.health if verdict else Health.PENDING


def breached(obs: Observation, rev: Revision | None) -> Verdict | None:
    verdict = obs.verdicts.get(rev.number) if rev else None
    return verdict if verdict and verdict.health is Health.BREACHED else None


def healthy(rev: Revision, obs: Observation) -> bool:
    """A rollback target: shown healthy once, and not breaching now."""
    return rev.proven and health(obs, rev) is not Health.BREACHED


def ready_pods(obs: Observation, rev: Revision) -> int:
    return obs.ready.get(rev.number, 0)


def needed_pods(s: RolloutState, obs: Observation, p: Policy) -> int:
    """Ready canary pods needed before the next move (and the canary's desired replicas)."""
    if s.stable is None:
        return 1  # a first revision serves as soon as one pod is ready
    if s.restoring or s.step >= len(p.canary_steps):
        return stable_replicas(s, obs, p)
    return canary_replicas(stable_replicas(s, obs, p), p.canary_steps[s.step].weight)
