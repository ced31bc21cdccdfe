"""The ModelDeployment's conditions, derived in pure code from the settled rollout state.

Each condition answers one question, with its own reason and a short message of its own
(Kubernetes API conventions; Argo Rollouts' set is the model). docs/status.md says which one
to wait on for what.

- Ready: is the desired spec rolled out and healthy (phase Stable)? `kubectl wait
  --for=condition=Ready` waits for a rollout to finish.
- Available: does the revision that serves have enough ready pods? True through a healthy
  canary and bake; False only when serving is short.
- Progressing: is a revision on its way? True while it moves, Unknown while paused, False once
  it finished, was rolled back or failed (the reason says which).
- Degraded: does something need a person? (a breach with no way back, no ready pods, a rolled
  back or failed rollout, a child the API refused, an invalid spec)
- Paused: is the rollout held by the `modeldeploy.io/paused` annotation?
- InvalidSpec: did the operator refuse the spec (status.invalid_spec_status sets it True)?

Messages name revisions and model versions, never spec hashes (those stay in status fields).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from modeldeploy import names
from modeldeploy.rollout_observed import canary_replicas, stable_replicas
from modeldeploy.rollout_types import (
    Condition,
    Decision,
    Observation,
    Phase,
    Policy,
    Revision,
    RolloutState,
)
from modeldeploy.serial import shown

WEIGHT_TOLERANCE: Final = 5  # percentage points a step's real share may exceed its weight
MAX_STABLE_SEARCHED: Final = 1000

REASON_MIN_AVAILABLE: Final = "MinimumReplicasAvailable"  # as a Deployment's Available
REASON_MIN_UNAVAILABLE: Final = "MinimumReplicasUnavailable"
REASON_NOTHING_SERVES: Final = "NothingServes"
REASON_IN_PROGRESS: Final = "RolloutInProgress"
REASON_NOT_PAUSED: Final = "NotPaused"
REASON_SPEC_ACCEPTED: Final = "SpecAccepted"
REASON_WEIGHT_NOT_ACHIEVABLE: Final = "WeightNotAchievable"


def derive(
    s: RolloutState, obs: Observation, p: Policy, d: Decision, now: datetime
) -> tuple[Condition, ...]:
    return (
        _ready(s, obs, d),
        _available(s, obs, p, d),
        _progressing(s, obs, p, d),
        _degraded(d),
        _paused(s),
        Condition(names.COND_INVALID_SPEC, "False", REASON_SPEC_ACCEPTED, "the spec is valid"),
    )


def what(rev: Revision) -> str:
    return f"r{rev.number} (model {rev.model_version})"


def _ready(s: RolloutState, obs: Observation, d: Decision) -> Condition:
    phase, stable, c = d.phase, s.stable, s.canary
    wanted = f"model {obs.model_version}"
    serves = f"{what(stable)} serves" if stable else "nothing serves"
    if phase is Phase.STABLE:
        msg = f"{serves} 100%"
    elif phase is Phase.PENDING:
        msg = f"nothing serves yet: {what(c)} is deploying" if c else "nothing deployed yet"
    elif phase is Phase.PROGRESSING:
        msg = f"{wanted} is rolling out; {serves} meanwhile"
        if c is None and s.previous and stable:
            msg = f"{what(stable)} is in its bake"
    elif phase is Phase.ROLLED_BACK:
        msg = f"{wanted} was rolled back; {serves}"
    elif phase is Phase.FAILED:
        msg = f"{wanted} never became ready; {serves}"
    else:
        msg = f"{serves}, but needs attention (see Degraded)"
    if phase is Phase.STABLE:
        return Condition(names.COND_READY, "True", names.REASON_ROLLOUT_COMPLETE, msg)
    # A healthy rollout says so; anything else carries the cause (FailedCreate, MetricBreach).
    reason = REASON_IN_PROGRESS if phase is Phase.PROGRESSING else d.reason
    return Condition(names.COND_READY, "False", reason, msg)


def _available(s: RolloutState, obs: Observation, p: Policy, d: Decision) -> Condition:
    serving = d.service_revision or (s.stable.number if s.stable else None)
    rev = next((r for r in (s.stable, s.previous) if r and r.number == serving), None)
    if rev is None:
        c = s.canary
        ready = obs.ready.get(c.number, 0) if c else 0
        msg = f"nothing serves yet; {what(c)} has {ready} ready pods" if c else "nothing deployed"
        return Condition(names.COND_AVAILABLE, "False", REASON_NOTHING_SERVES, msg)
    wanted = d.replicas.get(rev.number)
    desired = wanted if wanted is not None else obs.replicas.get(rev.number, 0)
    desired = max(desired, 1)
    need = max(1, desired - desired // 4)  # a Deployment's default maxUnavailable: 25%
    ready = obs.ready.get(rev.number, 0)
    msg = f"{what(rev)} has {ready}/{desired} pods ready"
    if ready >= need:
        return Condition(names.COND_AVAILABLE, "True", REASON_MIN_AVAILABLE, msg)
    return Condition(
        names.COND_AVAILABLE, "False", REASON_MIN_UNAVAILABLE, f"{msg}, fewer than {need}"
    )


def _progressing(s: RolloutState, obs: Observation, p: Policy, d: Decision) -> Condition:
    phase, c, stable = d.phase, s.canary, s.stable
    if phase in (Phase.PENDING, Phase.PROGRESSING):
        if s.paused:
            held = f"; {what(c)} holds at {s.weight}%" if c and stable else ""
            msg = f"paused{held}"
            return Condition(names.COND_PROGRESSING, "Unknown", names.REASON_PAUSED, msg)
        problem = obs.problems.get(c.number) if c else None  # the pods' trouble comes first
        if not problem and (unachievable := weight_not_achievable(s, obs, p)):
            return Condition(
                names.COND_PROGRESSING, "True", REASON_WEIGHT_NOT_ACHIEVABLE, unachievable
            )
        return Condition(names.COND_PROGRESSING, "True", d.reason, _where(s, obs, p, d))
    wanted = f"model {obs.model_version}"
    if phase is Phase.STABLE:
        msg = f"{what(stable)} rolled out" if stable else "nothing to roll out"
        return Condition(names.COND_PROGRESSING, "False", names.REASON_ROLLOUT_COMPLETE, msg)
    if phase is Phase.ROLLED_BACK:
        msg = f"the rollout of {wanted} ended: rolled back"
    elif phase is Phase.FAILED:
        msg = f"the rollout of {wanted} ended: it never became ready"
    elif c is not None:
        msg = f"{what(c)} is stuck: it breaches and is not rolled back automatically"
    else:
        msg = "nothing is rolling out"
    return Condition(names.COND_PROGRESSING, "False", d.reason, msg)


def _where(s: RolloutState, obs: Observation, p: Policy, d: Decision) -> str:
    """Where the revision on its way stands, in a few words."""
    c, stable, steps = s.canary, s.stable, p.canary_steps
    if c is not None:
        ready, need = obs.ready.get(c.number, 0), d.replicas.get(c.number)
        pods = f"{ready}/{need} pods ready" if need is not None else f"{ready} pods ready"
        if stable is None:
            return f"deploying {what(c)}: {pods}"
        if s.restoring:
            return f"restoring {what(c)}: {pods}"
        if s.step >= len(steps):
            return f"{what(c)} scaling up for the cutover: {pods}"
        step = f"{what(c)} at {s.weight}% (step {s.step + 1}/{len(steps)}): {pods}"
        return f"{step}; next step at {shown(d.next_step_at)}" if d.next_step_at else step
    if stable and s.bake_until:
        warm = f"; r{s.previous.number} stays warm" if s.previous else ""
        return f"{what(stable)} bakes until {shown(s.bake_until)}{warm}"
    return "waiting"


def _degraded(d: Decision) -> Condition:
    if d.phase in (Phase.DEGRADED, Phase.ROLLED_BACK, Phase.FAILED):
        return Condition(names.COND_DEGRADED, "True", d.reason, d.message)
    return Condition(names.COND_DEGRADED, "False", names.REASON_AS_EXPECTED, "nothing needs you")


def _paused(s: RolloutState) -> Condition:
    if s.paused:
        msg = f"held by annotation {names.ANNOTATION_PAUSED}; `resume` continues"
        return Condition(names.COND_PAUSED, "True", names.REASON_PAUSED, msg)
    return Condition(names.COND_PAUSED, "False", REASON_NOT_PAUSED, "no pause requested")


# --- weights the replica counts can honour -----------------------------------------------------


def share(stable: int, weight: int) -> float:
    """The canary's share of ready endpoints at a step of `weight`, `stable` stable pods."""
    canary = canary_replicas(stable, weight)
    return 100 * canary / (canary + stable) if weight < 100 else 100.0


def smallest_stable(weight: int, tolerance: int = WEIGHT_TOLERANCE) -> int | None:
    """The fewest stable pods with which a step of `weight` lands within `tolerance` points."""
    for stable in range(1, MAX_STABLE_SEARCHED + 1):
        if share(stable, weight) - weight <= tolerance:
            return stable
    return None


def weight_not_achievable(s: RolloutState, obs: Observation, p: Policy) -> str | None:
    """Why the current canary step cannot serve its weight, or None when it can."""
    c, stable, steps = s.canary, s.stable, p.canary_steps
    if c is None or stable is None or s.restoring or s.step >= len(steps):
        return None
    weight, pods = steps[s.step].weight, stable_replicas(s, obs, p)
    real = share(pods, weight)
    if real - weight <= WEIGHT_TOLERANCE:
        return None
    canary = canary_replicas(pods, weight)
    need = smallest_stable(weight)
    fix = f"; {need} or more stable pods would honour it" if need else ""
    return (
        f"step {s.step + 1}/{len(steps)} asks {weight}%, but {canary} canary "
        f"pod{'s' if canary != 1 else ''} beside {pods} stable take {real:.0f}% of ready "
        f"endpoints (tolerance ±{WEIGHT_TOLERANCE} points){fix}"
    )
