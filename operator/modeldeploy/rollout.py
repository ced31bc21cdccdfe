"""The rollout state machine: progressive rollout and automatic rollback, decided in pure code.

`step(state, observation, policy, now)` takes what the handler saw and returns the next state
(persisted in the ModelDeployment's status) and a `Decision` (replicas per revision Deployment,
HPA target, Service pin, conditions, events, when to look again). No I/O, no clock: `now` is a
parameter, so every transition has a test. The semantics are documented in docs/rollout.md.

Shape: `step` applies the first rule of `_RULES` that changes the state, again and again until
none does. Running to a fixed point makes `step` idempotent: run it twice on the same
observation (an operator restart, a repeated watch event) and the second run changes nothing.
The phase and its message are then derived from the settled state (as Argo Rollouts does), so
they can never disagree with it.

This module holds `step`, its rules and the state changes they share. The data types are in
modeldeploy.rollout_types, what an observation says about a revision in
modeldeploy.rollout_observed, and the phase, message and Decision in modeldeploy.rollout_decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final, TypeAlias

from modeldeploy import names
from modeldeploy.analysis import Health
from modeldeploy.rollout_decision import decide, derive_situation, next_step_at, serves
from modeldeploy.rollout_observed import (
    breached,
    health,
    healthy,
    needed_pods,
    ready_pods,
    stable_replicas,
)
from modeldeploy.rollout_types import (
    Breach,
    Decision,
    Event,
    HistoryEntry,
    Observation,
    Outcome,
    Phase,
    Policy,
    Revision,
    RolloutState,
)
from modeldeploy.serial import shown

QUARANTINE_LIMIT: Final = 20  # oldest quarantined spec hashes are forgotten beyond this


# --- the machine --------------------------------------------------------------------------

Moved: TypeAlias = tuple[RolloutState, Event | None]
Rule: TypeAlias = Callable[[RolloutState, Observation, Policy, datetime], Moved | None]


def step(
    state: RolloutState, obs: Observation, policy: Policy, now: datetime
) -> tuple[RolloutState, Decision]:
    """Advance the rollout as far as this observation allows; say what the world should be."""
    before = state.phase
    events: list[Event] = []
    for _ in range(len(policy.steps) + 32):
        moved = next((m for rule in _RULES if (m := rule(state, obs, policy, now))), None)
        if moved is None:
            break
        state, event = moved
        events += [event] if event else []
    else:  # every rule moves towards a state where none applies; getting here is a bug
        raise RuntimeError(f"rollout.step did not settle: {state}")
    situation = derive_situation(state, obs, policy, now)
    state = replace(state, phase=situation.phase)
    if situation.phase != before and not events:
        events.append(_event(situation.reason, situation.message, _is_bad(situation.phase)))
    return state, decide(state, obs, policy, now, situation, tuple(events))


# Rules, in priority order. Each returns None when it does not apply, else the changed state.


def _pause(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    if obs.paused == s.paused:
        return None
    if obs.paused:
        return replace(s, paused=True), _event(names.REASON_PAUSED, "rollout paused")
    return replace(s, paused=False), _event(names.REASON_RESUMED, "rollout resumed")


def _retry(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    if obs.retry is None or obs.retry == s.handled_retry:
        return None
    s = replace(s, handled_retry=obs.retry)  # consumed even if idle: it never acts later
    if obs.spec_hash not in s.quarantined:
        return s, None
    kept = tuple(h for h in s.quarantined if h != obs.spec_hash)
    msg = f"retrying model {obs.model_version} (quarantined) on request"
    return replace(s, quarantined=kept), _event(names.REASON_RETRY_REQUESTED, msg)


def _rollback(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    req = obs.rollback
    if req is None or req.token == s.handled_rollback:
        return None
    s = replace(s, handled_rollback=req.token)
    target, refusal = _rollback_target(s, req.revision)
    if target is not None and breached(obs, target):
        target, refusal = None, f"r{req.revision} breaches now"
    stable = s.stable
    if target is None or stable is None:
        msg = f"rollback to r{req.revision} refused: {refusal or 'nothing serves yet'}"
        return s, _event(names.REASON_ROLLBACK_REFUSED, msg, warning=True)
    if obs.spec_hash != target.spec_hash:  # else the desired spec would roll out again at once
        s = _quarantine(s, obs.spec_hash)
    msg = f"rollback to r{target.number} requested"
    if s.canary and not s.restoring:
        s = _record(s, s.canary, Outcome.ROLLED_BACK, names.REASON_MANUAL_ROLLBACK, msg, now, p)
    s = _drop_canary(s)
    if target.number == stable.number:
        return s, _event(names.REASON_ROLLED_BACK, f"{msg}; r{target.number} serves")
    if s.previous and target.number == s.previous.number:
        s = _back_to_previous(s, Outcome.ROLLED_BACK, names.REASON_MANUAL_ROLLBACK, msg, now, p)
        return s, _event(names.REASON_ROLLED_BACK, f"{msg}; warm r{target.number} serves again")
    if s.bake_until is not None:  # leaving a revision that never finished its bake
        s = _record(s, stable, Outcome.ROLLED_BACK, names.REASON_MANUAL_ROLLBACK, msg, now, p)
    s = replace(s, previous=None, bake_until=None, canary=target, restoring=True)
    s = replace(s, step=len(p.canary_steps), weight=100, step_started_at=now)
    return s, _event(names.REASON_ROLLED_BACK, f"{msg}; scaling r{target.number} up first")


def _promote(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    if obs.promote is None or obs.promote == s.handled_promote:
        return None
    s = replace(s, handled_promote=obs.promote)  # consumed even if idle: it never acts later
    c = s.canary
    if c and s.stable and not s.restoring and s.step < len(p.canary_steps):
        msg = f"promote requested: r{c.number} skips its remaining steps"
        return _to_cutover(s, p, now), _event(names.REASON_PROMOTE_REQUESTED, msg)
    if s.stable and s.bake_until is not None and c is None:
        stable = replace(s.stable, proven=True)  # vouched for by hand
        msg = f"r{stable.number} promoted by hand, ending its bake early"
        s = _record(s, stable, Outcome.PROMOTED, names.REASON_MANUAL_PROMOTION, msg, now, p)
        msg += _leaves(s, s.previous)
        s = replace(s, stable=stable, previous=None, bake_until=None)
        return s, _event(names.REASON_PROMOTE_REQUESTED, msg)
    return s, None


def _abort(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    """`kubectl modeldeploy abort`: the revision on its way leaves now, as if it breached, and
    its spec is quarantined. Consumed even when nothing is in flight."""
    if obs.abort is None or obs.abort == s.handled_abort:
        return None
    s = replace(s, handled_abort=obs.abort)
    c, stable, back = s.canary, s.stable, s.previous
    msg = "aborted by request"
    if c and stable and not s.restoring:
        s = _record(s, c, Outcome.ROLLED_BACK, names.REASON_ABORTED, msg, now, p)
        s = _drop_canary(_quarantine(s, c.spec_hash))
        done = f"r{c.number} (model {c.model_version}) {msg}; {serves(stable)} 100%"
        return s, _event(names.REASON_ABORTED, done, warning=True)
    if c is None and stable and back and s.bake_until is not None:
        if not _fallback(back, obs):
            refused = f"abort refused: r{back.number} breaches now; {what_serves(stable)} stays"
            return s, _event(names.REASON_ABORTED, refused, warning=True)
        s = _back_to_previous(s, Outcome.ROLLED_BACK, names.REASON_ABORTED, msg, now, p)
        done = f"r{stable.number} (model {stable.model_version}) {msg} in its bake"
        return _quarantine(s, stable.spec_hash), _event(
            names.REASON_ABORTED, f"{done}; {serves(back)} again", warning=True
        )
    return s, _event(names.REASON_ABORTED, "abort requested, but nothing is rolling out")


def _prove(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    def proven(rev: Revision | None) -> Revision | None:
        if rev and not rev.proven and health(obs, rev) is Health.HEALTHY:
            return replace(rev, proven=True)
        return rev

    moved = replace(
        s, stable=proven(s.stable), canary=proven(s.canary), previous=proven(s.previous)
    )
    return (moved, None) if moved != s else None


def _note_breach(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    for rev in (s.canary, s.stable, s.previous):
        v = breached(obs, rev)
        if rev and v:
            seen = s.last_breach
            if seen and (seen.revision, seen.pod, seen.message) == (rev.number, v.pod, v.message):
                return None
            return replace(s, last_breach=Breach(rev.number, v.pod, v.reason, v.message, now)), None
    return None


def _breach(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    c, stable, back = s.canary, s.stable, s.previous
    if not p.automatic_rollback or stable is None:
        return None  # without a stable there is nothing to go back to: the phase says Degraded
    if c and not s.restoring and (v := breached(obs, c)) and _fallback(stable, obs):
        s = _record(s, c, Outcome.ROLLED_BACK, v.reason, v.message, now, p)
        s = _drop_canary(_quarantine(s, c.spec_hash))
        msg = f"r{c.number} rolled back: {v.message}; {serves(stable)} 100%"
        return s, _event(names.REASON_ROLLED_BACK, msg, warning=True)
    if c is None and back and (v := breached(obs, stable)) and _fallback(back, obs):
        s = _back_to_previous(s, Outcome.ROLLED_BACK, v.reason, v.message, now, p)
        msg = f"r{stable.number} rolled back in its bake: {v.message}; {serves(back)} again"
        return _quarantine(s, stable.spec_hash), _event(names.REASON_ROLLED_BACK, msg, True)
    return None


def _fallback(rev: Revision, obs: Observation) -> bool:
    """An automatic rollback target: the revision that served before, unless it breaches now.
    Not yet shown healthy (no traffic, no verdict yet) is not broken."""
    return health(obs, rev) is not Health.BREACHED


def what_serves(rev: Revision) -> str:
    return f"r{rev.number} (model {rev.model_version})"


def _new_spec(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    if s.paused and s.stable is not None:  # a first deploy has nothing to hold back for
        return None
    incoming = s.canary if s.canary and not s.restoring else None
    current = incoming or s.stable
    if current and current.spec_hash == obs.spec_hash:
        return None
    if s.restoring and s.canary and s.canary.spec_hash == obs.spec_hash:
        return None  # the spec now follows the restore (a revert in Git): let it finish
    msg = f"superseded by a newer spec (model {obs.model_version})"
    back = s.previous
    if incoming is None and back and back.spec_hash == obs.spec_hash and healthy(back, obs):
        s = _back_to_previous(s, Outcome.SUPERSEDED, names.REASON_SUPERSEDED, msg, now, p)
        return s, _event(names.REASON_SUPERSEDED, f"spec reverted: warm r{back.number} serves")
    if incoming:
        s = _record(s, incoming, Outcome.SUPERSEDED, names.REASON_SUPERSEDED, msg, now, p)
        return _drop_canary(s), _event(names.REASON_SUPERSEDED, f"r{incoming.number} {msg}")
    if obs.spec_hash in s.quarantined:
        return None  # the situation says why; `retry` or any other spec moves on
    if s.canary:  # a restore in flight: the new spec wins, from the current stable
        return _drop_canary(s), _event(names.REASON_SUPERSEDED, f"restore {msg}")
    if s.stable and s.bake_until is not None:
        return _cut_bake_short(s, s.stable, obs, p, now)
    return _start(s, obs, p, now)


def _track_ready(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    short = s.canary is not None and ready_pods(obs, s.canary) < needed_pods(s, obs, p)
    if short and s.waiting_since is None:
        return replace(s, waiting_since=now), None
    if not short and s.waiting_since is not None:
        return replace(s, waiting_since=None), None
    return None


def _deadline(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    c, stable, since = s.canary, s.stable, s.waiting_since
    if c is None or stable is None or since is None or now - since < p.progress_deadline:
        return None  # a first revision keeps trying (nothing else could serve); phase: Failed
    waited = f"{ready_pods(obs, c)}/{needed_pods(s, obs, p)} ready pods for {_secs(now - since)}"
    msg = f"r{c.number} had {waited}; r{stable.number} serves 100%"
    return _fail_canary(s, c, names.REASON_PROGRESS_DEADLINE_EXCEEDED, msg, now, p)


def _doomed(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    """A canary whose pods can never become ready fails now, not at the progress deadline."""
    c, stable = s.canary, s.stable
    problem = obs.problems.get(c.number) if c else None
    if c is None or stable is None or s.waiting_since is None or not problem:
        return None  # a first revision has nothing to fall back to; the phase says Failed
    if not problem.terminal:
        return None
    msg = f"r{c.number} cannot become ready: {problem}; r{stable.number} serves 100%"
    return _fail_canary(s, c, problem.reason, msg, now, p)


def _fail_canary(
    s: RolloutState, c: Revision, reason: str, msg: str, now: datetime, p: Policy
) -> Moved:
    """The canary never became ready: history Failed, its spec quarantined (not a restore's)."""
    s = _record(s, c, Outcome.FAILED, reason, msg, now, p)
    s = s if s.restoring else _quarantine(s, c.spec_hash)
    return _drop_canary(s), _event(reason, msg, warning=True)


def _advance(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    c, steps = s.canary, p.canary_steps
    if c is None or s.stable is None or s.restoring or s.paused or s.step >= len(steps):
        return None
    if ready_pods(obs, c) < needed_pods(s, obs, p) or health(obs, c) is not Health.HEALTHY:
        return None  # positive evidence only: no data never advances a step
    if ready_pods(obs, s.stable) == 0:
        return None  # the stable is coming back: nothing to compare with or fall back on
    if now < (next_step_at(s, p) or now):
        return None
    done = f"r{c.number} healthy at {s.weight}%"
    if s.step + 1 == len(steps):
        msg = f"{done}: scaling it to {stable_replicas(s, obs, p)} pods for the cutover"
        return _to_cutover(s, p, now), _event(names.REASON_PROMOTING, msg)
    s = replace(s, step=s.step + 1, weight=steps[s.step + 1].weight, step_started_at=now)
    msg = f"{done}: now {s.weight}% (step {s.step + 1}/{len(steps)})"
    return s, _event(names.REASON_STEP_ADVANCED, msg)


def _cutover(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    c, old, restoring, started = s.canary, s.stable, s.restoring, s.step_started_at
    if c is None or ready_pods(obs, c) < needed_pods(s, obs, p):
        return None  # pre-scaled first: the old revision keeps all its pods until here
    if old and (s.paused or (not restoring and s.step < len(p.canary_steps))):
        return None
    if old and not restoring and (breached(obs, c) or ready_pods(obs, old) == 0):
        return None  # a breach is never promoted; a stable without pods is restored first
    s, until, what = _drop_canary(s), now + p.bake_time, f"r{c.number} (model {c.model_version})"
    if old is None:  # nothing to compare with or go back to: no bake, recorded at once
        msg = f"{what} is ready and serves 100%"
        s = _record(s, c, Outcome.PROMOTED, names.REASON_DEPLOYED, msg, now, p, started=started)
        return replace(s, stable=c), _event(names.REASON_DEPLOYED, msg)
    if restoring:
        msg = f"{what} restored by request; r{old.number} scaled to zero"
        s = _record(
            s, c, Outcome.PROMOTED, names.REASON_MANUAL_ROLLBACK, msg, now, p, started=started
        )
        return replace(s, stable=c), _event(names.REASON_ROLLED_BACK, msg)
    msg = f"{what} serves 100%; r{old.number} stays warm until {shown(until)}"
    return replace(s, stable=c, previous=old, bake_until=until), _event(names.REASON_PROMOTED, msg)


def _end_bake(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    stable, until, back = s.stable, s.bake_until, s.previous
    if stable is None or until is None or s.paused or now < until:
        return None
    if not stable.proven or health(obs, stable) is Health.BREACHED:
        return None  # no evidence is never a pass: the previous revision stays warm
    msg = f"r{stable.number} passed its bake and is recorded healthy"
    s = _record(s, stable, Outcome.PROMOTED, names.REASON_PROMOTED, msg, now, p)
    event = _event(names.REASON_BAKE_COMPLETED, msg + _leaves(s, back))
    return replace(s, previous=None, bake_until=None), event


def _leaves(s: RolloutState, back: Revision | None) -> str:
    """What happens to the warm previous revision once the bake ends: kept at zero while the
    history remembers it (`decide`), else its Deployment is deleted."""
    if back is None:
        return ""
    if any(h.revision == back.number for h in s.history):
        return f"; r{back.number} scaled to zero"
    return f"; r{back.number} deleted (beyond historyLimit)"


_RULES: Final[tuple[Rule, ...]] = (
    _pause,
    _retry,
    _rollback,
    _abort,
    _promote,
    _prove,
    _note_breach,
    _breach,
    _new_spec,
    _track_ready,
    _doomed,
    _deadline,
    _advance,
    _cutover,
    _end_bake,
)


# --- state changes shared by the rules --------------------------------------------------------


def _start(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved:
    rev = Revision(
        s.next_revision, obs.spec_hash, obs.model_version, obs.model_sha256, now,
        registry=obs.registry,
    )  # fmt: skip
    steps = p.canary_steps
    weight = steps[0].weight if steps and s.stable else 100
    s = replace(s, canary=rev, restoring=False, step=0, step_started_at=now, weight=weight)
    s = replace(s, waiting_since=None, next_revision=rev.number + 1)
    what = f"r{rev.number} (model {rev.model_version})"
    if s.stable is None:
        return s, _event(names.REASON_DEPLOYING, f"first revision {what}: straight to 100%")
    return s, _event(names.REASON_ROLLOUT_STARTED, f"{what} started at {weight}%")


def _cut_bake_short(
    s: RolloutState, stable: Revision, obs: Observation, p: Policy, now: datetime
) -> Moved:
    """A newer spec during the bake: keep the baking revision if proven, else go back."""
    back = s.previous
    msg = f"bake cut short by a newer spec (model {obs.model_version})"
    if stable.proven and health(obs, stable) is not Health.BREACHED:
        s = _record(s, stable, Outcome.PROMOTED, names.REASON_PROMOTED, msg, now, p)
        s = replace(s, previous=None, bake_until=None)
        return s, _event(names.REASON_BAKE_COMPLETED, f"r{stable.number}: {msg}")
    if back and healthy(back, obs):
        s = _back_to_previous(s, Outcome.SUPERSEDED, names.REASON_SUPERSEDED, msg, now, p)
        return s, _event(names.REASON_SUPERSEDED, f"unproven r{stable.number} {msg}")
    return replace(s, previous=None, bake_until=None), None


def _back_to_previous(
    s: RolloutState, outcome: Outcome, reason: str, msg: str, now: datetime, p: Policy
) -> RolloutState:
    """The warm previous revision serves again (the HPA and the Service follow `stable`)."""
    leaving, back = s.stable, s.previous
    assert leaving is not None and back is not None  # every caller checked both
    s = _record(s, leaving, outcome, reason, msg, now, p)
    return replace(s, stable=back, previous=None, bake_until=None)


def _to_cutover(s: RolloutState, p: Policy, now: datetime) -> RolloutState:
    return replace(s, step=len(p.canary_steps), weight=100, step_started_at=now)


def _drop_canary(s: RolloutState) -> RolloutState:
    return replace(
        s, canary=None, restoring=False, step=0, step_started_at=None, weight=0, waiting_since=None
    )


def _record(
    s: RolloutState,
    rev: Revision,
    outcome: Outcome,
    reason: str,
    message: str,
    now: datetime,
    p: Policy,
    *,
    started: datetime | None = None,
) -> RolloutState:
    entry = HistoryEntry(
        revision=rev.number,
        model_version=rev.model_version,
        sha256=rev.sha256,
        spec_hash=rev.spec_hash,
        outcome=outcome,
        reason=reason,
        message=message,
        started=started or rev.created_at,
        finished=now,
        registry=rev.registry,
    )
    return replace(s, history=(*s.history, entry)[-p.history_limit :])


def _quarantine(s: RolloutState, spec_hash: str) -> RolloutState:
    if spec_hash in s.quarantined:
        return s
    return replace(s, quarantined=(*s.quarantined, spec_hash)[-QUARANTINE_LIMIT:])


def _rollback_target(s: RolloutState, number: int) -> tuple[Revision | None, str]:
    """The serving or warm revision, or any revision kept in the history, unless it was rolled
    back for a breach or never became ready (`_rollback` also refuses one breaching now)."""
    if s.stable and s.stable.number == number:
        return s.stable, ""
    if s.previous and s.previous.number == number:
        return s.previous, ""
    if s.canary and s.canary.number == number:
        return None, f"r{number} is the revision in flight"
    entries = [e for e in s.history if e.revision == number]
    if not entries:
        return None, f"r{number} is not in the history (the last {len(s.history)} entries)"
    last = entries[-1]
    if last.outcome is Outcome.FAILED:
        return None, f"r{number} never became ready ({last.reason})"
    if last.outcome is Outcome.ROLLED_BACK and last.reason != names.REASON_MANUAL_ROLLBACK:
        return None, f"r{number} was rolled back ({last.reason})"
    proven = any(e.outcome is Outcome.PROMOTED for e in entries)
    return Revision(
        last.revision, last.spec_hash, last.model_version, last.sha256, last.started, proven,
        registry=last.registry,
    ), ""  # fmt: skip


# --- helpers of step and the rules ------------------------------------------------------------


def _event(reason: str, message: str, warning: bool = False) -> Event:
    return Event("Warning" if warning else "Normal", reason, message)


def _is_bad(phase: Phase) -> bool:
    return phase in (Phase.DEGRADED, Phase.ROLLED_BACK, Phase.FAILED)


def _secs(delta: timedelta) -> str:
    return f"{max(delta.total_seconds(), 0):g}s"
