"""The phase, its message and the Decision, derived from the state modeldeploy.rollout.step
settled on (as Argo Rollouts does), so they can never disagree with it: replicas per revision,
the HPA's target, the Service's pin, and when to look again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from modeldeploy import names
from modeldeploy.analysis import Health
from modeldeploy.rollout_observed import breached, needed_pods, ready_pods
from modeldeploy.rollout_types import (
    Decision,
    Event,
    Observation,
    Outcome,
    Phase,
    Policy,
    Revision,
    RolloutState,
)
from modeldeploy.serial import shown


@dataclass(frozen=True)
class Situation:
    """The phase of the settled state, the reason behind it and its message."""

    phase: Phase
    reason: str
    message: str


def derive_situation(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Situation:
    c, stable = s.canary, s.stable
    if stable is None:
        if c is None:
            return Situation(Phase.PENDING, names.REASON_DEPLOYING, "nothing deployed yet")
        problem = obs.problems.get(c.number) if s.waiting_since else None
        if problem and problem.terminal:  # nothing is deleted: a new spec or retry moves on
            msg = f"r{c.number} (model {c.model_version}) cannot become ready: {problem}"
            return Situation(Phase.FAILED, problem.reason, msg)
        if s.waiting_since and now - s.waiting_since >= p.progress_deadline:
            msg = f"r{c.number} has had no ready pod since {shown(s.waiting_since)}"
            msg += f": {problem}" if problem else ""
            return Situation(Phase.FAILED, names.REASON_PROGRESS_DEADLINE_EXCEEDED, msg)
        msg = f"deploying r{c.number} (model {c.model_version}): waiting for a ready pod"
        if problem:
            return Situation(Phase.PENDING, problem.reason, f"{msg}: {problem}")
        return Situation(Phase.PENDING, names.REASON_DEPLOYING, msg)
    if c is not None:
        return _in_flight(s, obs, p, now, c, stable)
    if s.previous is not None:
        return _baking(s, obs, p, now, stable, s.previous)
    return _resting(s, obs, stable)


def _in_flight(
    s: RolloutState, obs: Observation, p: Policy, now: datetime, c: Revision, stable: Revision
) -> Situation:
    verdict, steps = obs.verdicts.get(c.number), p.canary_steps
    if not s.restoring and verdict and verdict.health is Health.BREACHED:
        why = _no_way_back(p, stable)
        msg = f"canary r{c.number} breaches: {verdict.message}; {why}"
        return Situation(Phase.DEGRADED, verdict.reason, msg)
    ready, need = ready_pods(obs, c), needed_pods(s, obs, p)
    problem = obs.problems.get(c.number) if ready < need else None
    why = f": {problem}" if problem else ""
    if s.restoring:
        msg = f"restoring r{c.number}: {ready}/{need} pods ready before r{stable.number} leaves"
        reason = problem.reason if problem else names.REASON_ROLLBACK_IN_PROGRESS
        return Situation(Phase.PROGRESSING, reason, msg + why)
    if s.step < len(steps):
        where = f"r{c.number} at {s.weight}% (step {s.step + 1}/{len(steps)})"
    else:
        where = f"r{c.number} scaling to {need} pods for the cutover"
    if s.paused:
        return Situation(Phase.PROGRESSING, names.REASON_PAUSED, f"paused: {where}")
    if ready < need or s.step >= len(steps):
        msg = f"{where}: {ready}/{need} pods ready{why}"
        reason = problem.reason if problem else names.REASON_WAITING_FOR_REPLICAS
        return Situation(Phase.PROGRESSING, reason, msg)
    if verdict is None or verdict.health is not Health.HEALTHY:
        said = verdict.message if verdict else "no verdict yet"
        reason = verdict.reason if verdict else names.REASON_WARMING_UP
        return Situation(Phase.PROGRESSING, reason, f"{where} waits for evidence: {said}")
    if ready_pods(obs, stable) == 0:
        msg = f"{where} holds: r{stable.number} has no ready pod"
        return Situation(Phase.PROGRESSING, names.REASON_WAITING_FOR_REPLICAS, msg)
    msg = f"{where} is healthy; next step at {shown(next_step_at(s, p) or now)}"
    return Situation(Phase.PROGRESSING, names.REASON_STEP_PAUSE, msg)


def _baking(
    s: RolloutState, obs: Observation, p: Policy, now: datetime, stable: Revision, back: Revision
) -> Situation:
    if breach := breached(obs, stable):
        msg = f"r{stable.number} breaches in its bake: {breach.message}; {_no_way_back(p, back)}"
        return Situation(Phase.DEGRADED, breach.reason, msg)
    warm = f"r{back.number} stays warm"
    if s.paused:
        msg = f"paused in the bake of r{stable.number}; {warm}"
        return Situation(Phase.PROGRESSING, names.REASON_PAUSED, msg)
    if s.bake_until and now < s.bake_until:
        msg = f"r{stable.number} serves 100%; {warm} until {shown(s.bake_until)}"
        return Situation(Phase.PROGRESSING, names.REASON_BAKING, msg)
    verdict = obs.verdicts.get(stable.number)
    said = verdict.message if verdict else "no verdict yet"
    reason = verdict.reason if verdict else names.REASON_WARMING_UP
    msg = f"bake over, but r{stable.number} has shown no evidence of health ({said}); {warm}"
    return Situation(Phase.PROGRESSING, reason, msg)


def _resting(s: RolloutState, obs: Observation, stable: Revision) -> Situation:
    if breach := breached(obs, stable):
        msg = f"r{stable.number} breaches: {breach.message}; no automatic rollback target"
        return Situation(Phase.DEGRADED, breach.reason, msg)
    if ready_pods(obs, stable) == 0:
        problem = obs.problems.get(stable.number)
        msg = f"r{stable.number} has no ready pod" + (f": {problem}" if problem else "")
        reason = problem.reason if problem else names.REASON_NO_READY_REPLICAS
        return Situation(Phase.DEGRADED, reason, msg)
    if obs.spec_hash != stable.spec_hash and obs.spec_hash in s.quarantined:
        last = next((h for h in reversed(s.history) if h.spec_hash == obs.spec_hash), None)
        what = f"r{last.revision} (model {last.model_version})" if last else "the desired spec"
        why = f"{last.reason}: {last.message}" if last and last.message else ""
        how = f"{_DONE.get(last.outcome, 'ended')} ({why or last.reason}) and " if last else ""
        msg = (
            f"{what} {how}is quarantined; {serves(stable)} 100%. Apply another spec, or "
            f"`retry` (annotation {names.ANNOTATION_RETRY}) to roll it out again"
        )
        return Situation(
            Phase.ROLLED_BACK, last.reason if last else names.REASON_MANUAL_ROLLBACK, msg
        )
    if obs.spec_hash != stable.spec_hash and s.paused:
        msg = f"paused: model {obs.model_version} waits; r{stable.number} serves 100%"
        return Situation(Phase.PROGRESSING, names.REASON_PAUSED, msg)
    msg = f"r{stable.number} (model {stable.model_version}) serves 100%"
    return Situation(Phase.STABLE, names.REASON_ROLLOUT_COMPLETE, msg)


_DONE: Final = {Outcome.ROLLED_BACK: "was rolled back", Outcome.FAILED: "failed"}


def serves(rev: Revision) -> str:
    return f"r{rev.number} serves" if rev.proven else f"r{rev.number} (unproven) serves"


def _no_way_back(p: Policy, target: Revision) -> str:
    if not p.automatic_rollback:
        return "automatic rollback is off: promote, `rollback --to N`, or apply another spec"
    return f"no rollback onto r{target.number}, which breaches too"


def decide(
    s: RolloutState,
    obs: Observation,
    p: Policy,
    now: datetime,
    situation: Situation,
    events: tuple[Event, ...],
) -> Decision:
    stable, c, back = s.stable, s.canary, s.previous
    hpa_owned = None if p.autoscaling else p.replicas
    replicas: dict[int, int | None] = {e.revision: 0 for e in s.history}  # kept, scaled to zero
    if back:  # warm at the count the HPA left it with
        replicas[back.number] = hpa_owned or obs.replicas.get(back.number) or 1
    if c:
        replicas[c.number] = hpa_owned if stable is None else needed_pods(s, obs, p)
    if stable:
        replicas[stable.number] = hpa_owned
    scaled = stable or c
    render = next((r.number for r in (c, stable) if r and r.spec_hash == obs.spec_hash), None)
    return Decision(
        phase=situation.phase,
        message=situation.message,
        replicas=replicas,
        hpa_revision=scaled.number if scaled and p.autoscaling else None,
        service_revision=_pin(s, obs) if stable and not c else None,
        render_revision=render,
        reason=situation.reason,
        events=events,
        requeue_after=_requeue_after(s, obs, p, now),
        next_step_at=next_step_at(s, p),
    )


def _pin(s: RolloutState, obs: Observation) -> int | None:
    """The revision the Service selects alone: the stable, unless it has no ready pod and the
    warm previous can serve meanwhile (never pin the Service to a revision without pods)."""
    stable, back = s.stable, s.previous
    assert stable is not None
    if (
        ready_pods(obs, stable) == 0
        and back
        and ready_pods(obs, back) > 0
        and not breached(obs, back)
    ):
        return back.number
    return stable.number


def next_step_at(s: RolloutState, p: Policy) -> datetime | None:
    """When the canary's current pause ends (the step still needs its pods and evidence)."""
    steps = p.canary_steps
    if s.canary and s.stable and not s.restoring and s.step < len(steps) and s.step_started_at:
        return s.step_started_at + steps[s.step].pause
    return None


def _requeue_after(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> float | None:
    """Seconds until something changes by time alone: a pause, the bake, a deadline, a window."""
    times = [s.bake_until, next_step_at(s, p)]
    if s.canary and s.waiting_since:
        times.append(s.waiting_since + p.progress_deadline)
    for rev in (s.stable, s.canary, s.previous):
        verdict = obs.verdicts.get(rev.number) if rev else None
        times.append(verdict.recheck_at if verdict else None)
    future = [t for t in times if t is not None and t > now]
    return (min(future) - now).total_seconds() if future else None
