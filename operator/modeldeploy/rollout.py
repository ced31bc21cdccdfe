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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeAlias

from modeldeploy import names
from modeldeploy.analysis import Health, Verdict
from modeldeploy.diagnosis import Problem
from modeldeploy.serial import dump, load, shown

QUARANTINE_LIMIT: Final = 20  # oldest quarantined spec hashes are forgotten beyond this


class Phase(StrEnum):
    PENDING = names.PHASE_PENDING  # the first revision is not serving yet
    PROGRESSING = names.PHASE_PROGRESSING  # a revision is on its way: steps, cutover, bake, restore
    STABLE = names.PHASE_STABLE  # the desired spec serves 100% and nothing is in flight
    DEGRADED = names.PHASE_DEGRADED  # serving, but breaching or without ready pods, no way back
    ROLLED_BACK = names.PHASE_ROLLED_BACK  # the desired spec was taken out and is quarantined
    FAILED = names.PHASE_FAILED  # the first revision never became ready: nothing serves


class Outcome(StrEnum):
    PROMOTED = names.OUTCOME_PROMOTED  # served 100% through the bake with evidence of health
    ROLLED_BACK = names.OUTCOME_ROLLED_BACK  # breached (or rolled back by hand) and taken out
    SUPERSEDED = names.OUTCOME_SUPERSEDED  # a newer spec replaced it before it finished
    FAILED = names.OUTCOME_FAILED  # its pods did not become ready within the progress deadline


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    weight: int  # percent of ready pods (so of traffic) on the canary, 1..100
    pause: timedelta  # least time at this weight before the next step


@dataclass(frozen=True)
class Policy:
    """The scheduling part of the spec, mapped by the handler layer (spec -> policy)."""

    steps: tuple[Step, ...] = ()  # strictly increasing weights; () = straight to 100%
    bake_time: timedelta = timedelta(minutes=5)
    automatic_rollback: bool = True
    history_limit: int = 10
    progress_deadline: timedelta = timedelta(minutes=10)  # for the new revision's pods to be ready
    autoscaling: bool = True  # an HPA owns the stable revision's replica count
    replicas: int = 1  # the stable revision's count when autoscaling is off

    def __post_init__(self) -> None:
        weights = [s.weight for s in self.steps]
        if any(not 1 <= w <= 100 for w in weights) or weights != sorted(set(weights)):
            raise ValueError(f"step weights must be strictly increasing in 1..100: {weights}")
        if self.history_limit < 1 or self.replicas < 1:
            raise ValueError("history_limit and replicas must be at least 1")

    @property
    def canary_steps(self) -> tuple[Step, ...]:
        """Steps below 100%: reaching 100% is the cutover itself, and the bake is its pause."""
        return tuple(s for s in self.steps if s.weight < 100)


@dataclass(frozen=True)
class RollbackRequest:
    revision: int  # `kubectl modeldeploy rollback --to N`
    token: str  # the annotation's value: a new value is a new request


@dataclass(frozen=True)
class Observation:
    """What the handler saw, gathered fresh for every call."""

    spec_hash: str  # of the desired spec
    model_version: str
    model_sha256: str
    replicas: Mapping[int, int] = field(default_factory=dict)  # Deployment spec.replicas per rev
    ready: Mapping[int, int] = field(default_factory=dict)  # Deployment readyReplicas per rev
    verdicts: Mapping[int, Verdict] = field(default_factory=dict)  # analysis.analyze per rev
    retry: str | None = None  # annotation modeldeploy.io/retry
    promote: str | None = None  # annotation modeldeploy.io/promote (a new value promotes once)
    rollback: RollbackRequest | None = None  # annotation modeldeploy.io/rollback-to
    paused: bool = False  # annotation modeldeploy.io/paused present
    problems: Mapping[int, Problem] = field(default_factory=dict)  # diagnosis, per revision
    abort: str | None = None  # annotation modeldeploy.io/abort (a new value aborts once)
    registry: Registered | None = None  # what an mlflow:// URI resolved to


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """The model registry's record behind a revision (an mlflow:// URI), for status and history."""

    version: str  # the registry's model version number
    run_id: str = ""  # the run that logged it ("" if none)


@dataclass(frozen=True)
class Revision:
    number: int  # the Deployment is <name>-r<number>
    spec_hash: str
    model_version: str
    sha256: str
    created_at: datetime
    proven: bool = False  # has shown a Healthy verdict (or was vouched for by a manual promote)
    registry: Registered | None = None


@dataclass(frozen=True)
class HistoryEntry:
    revision: int
    model_version: str
    sha256: str
    spec_hash: str
    outcome: Outcome
    reason: str
    message: str
    started: datetime
    finished: datetime
    registry: Registered | None = None


@dataclass(frozen=True)
class Breach:
    revision: int
    pod: str | None
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True)
class RolloutState:
    """Everything the machine remembers; lives in the CR status (`to_dict` / `from_dict`)."""

    phase: Phase = Phase.PENDING
    stable: Revision | None = None  # serves traffic (HPA target); None before the first cutover
    canary: Revision | None = None  # incoming: a new revision, or a revision being restored
    previous: Revision | None = None  # the old stable, kept warm (no traffic) during the bake
    restoring: bool = False  # the canary is a manual rollback target: no steps, no bake
    step: int = 0  # index into policy.canary_steps; == len(...) means cutover (pre-scale)
    step_started_at: datetime | None = None
    weight: int = 0  # nominal canary traffic percent (100 during the cutover)
    waiting_since: datetime | None = None  # the canary has had fewer ready pods than needed since
    bake_until: datetime | None = None  # the stable is watched until then (previous kept warm)
    paused: bool = False
    quarantined: tuple[str, ...] = ()  # spec hashes never rolled out again automatically
    history: tuple[HistoryEntry, ...] = ()  # newest last, at most policy.history_limit
    last_breach: Breach | None = None
    next_revision: int = 1
    handled_retry: str | None = None  # intent tokens already acted on (each acts once)
    handled_promote: str | None = None
    handled_rollback: str | None = None
    handled_abort: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dump(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        state: RolloutState = load(cls, data)
        return state


# --- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    phase: Phase
    message: str
    replicas: Mapping[int, int | None]  # every revision Deployment to keep; None = HPA's call
    hpa_revision: int | None  # the revision the HPA scales (None: autoscaling off)
    service_revision: int | None  # pin the Service to this revision; None = all (split by pods)
    render_revision: int | None  # the revision whose template is the current spec, if any
    reason: str  # the CamelCase reason behind the phase and message
    events: tuple[Event, ...]
    requeue_after: float | None  # seconds to the next deadline (pause, bake, progress)
    next_step_at: datetime | None = None  # when the canary's current pause ends


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


# --- the machine --------------------------------------------------------------------------

Moved: TypeAlias = tuple[RolloutState, Event | None]
Rule: TypeAlias = Callable[[RolloutState, Observation, Policy, datetime], Moved | None]
_MANUAL: Final = names.REASON_MANUAL_ROLLBACK


@dataclass(frozen=True)
class _Situation:
    phase: Phase
    reason: str
    message: str


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
    situation = _situation(state, obs, policy, now)
    state = replace(state, phase=situation.phase)
    if situation.phase != before and not events:
        events.append(_event(situation.reason, situation.message, _is_bad(situation.phase)))
    return state, _decide(state, obs, policy, now, situation, tuple(events))


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
    if target is not None and _breached(obs, target):
        target, refusal = None, f"r{req.revision} breaches now"
    stable = s.stable
    if target is None or stable is None:
        msg = f"rollback to r{req.revision} refused: {refusal or 'nothing serves yet'}"
        return s, _event(names.REASON_ROLLBACK_REFUSED, msg, warning=True)
    if obs.spec_hash != target.spec_hash:  # else the desired spec would roll out again at once
        s = _quarantine(s, obs.spec_hash)
    msg = f"rollback to r{target.number} requested"
    if s.canary and not s.restoring:
        s = _record(s, s.canary, Outcome.ROLLED_BACK, _MANUAL, msg, now, p)
    s = _drop_canary(s)
    if target.number == stable.number:
        return s, _event(names.REASON_ROLLED_BACK, f"{msg}; r{target.number} serves")
    if s.previous and target.number == s.previous.number:
        s = _back_to_previous(s, Outcome.ROLLED_BACK, _MANUAL, msg, now, p)
        return s, _event(names.REASON_ROLLED_BACK, f"{msg}; warm r{target.number} serves again")
    if s.bake_until is not None:  # leaving a revision that never finished its bake
        s = _record(s, stable, Outcome.ROLLED_BACK, _MANUAL, msg, now, p)
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
        done = f"r{c.number} (model {c.model_version}) {msg}; {_serves(stable)} 100%"
        return s, _event(names.REASON_ABORTED, done, warning=True)
    if c is None and stable and back and s.bake_until is not None:
        if not _fallback(back, obs):
            refused = f"abort refused: r{back.number} breaches now; {what_serves(stable)} stays"
            return s, _event(names.REASON_ABORTED, refused, warning=True)
        s = _back_to_previous(s, Outcome.ROLLED_BACK, names.REASON_ABORTED, msg, now, p)
        done = f"r{stable.number} (model {stable.model_version}) {msg} in its bake"
        return _quarantine(s, stable.spec_hash), _event(
            names.REASON_ABORTED, f"{done}; {_serves(back)} again", warning=True
        )
    return s, _event(names.REASON_ABORTED, "abort requested, but nothing is rolling out")


def _prove(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    def proven(rev: Revision | None) -> Revision | None:
        if rev and not rev.proven and _health(obs, rev) is Health.HEALTHY:
            return replace(rev, proven=True)
        return rev

    moved = replace(
        s, stable=proven(s.stable), canary=proven(s.canary), previous=proven(s.previous)
    )
    return (moved, None) if moved != s else None


def _note_breach(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    for rev in (s.canary, s.stable, s.previous):
        v = _breached(obs, rev)
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
    if c and not s.restoring and (v := _breached(obs, c)) and _fallback(stable, obs):
        s = _record(s, c, Outcome.ROLLED_BACK, v.reason, v.message, now, p)
        s = _drop_canary(_quarantine(s, c.spec_hash))
        msg = f"r{c.number} rolled back: {v.message}; {_serves(stable)} 100%"
        return s, _event(names.REASON_ROLLED_BACK, msg, warning=True)
    if c is None and back and (v := _breached(obs, stable)) and _fallback(back, obs):
        s = _back_to_previous(s, Outcome.ROLLED_BACK, v.reason, v.message, now, p)
        msg = f"r{stable.number} rolled back in its bake: {v.message}; {_serves(back)} again"
        return _quarantine(s, stable.spec_hash), _event(names.REASON_ROLLED_BACK, msg, True)
    return None


def _fallback(rev: Revision, obs: Observation) -> bool:
    """An automatic rollback target: the revision that served before, unless it breaches now.
    Not yet shown healthy (no traffic, no verdict yet) is not broken."""
    return _health(obs, rev) is not Health.BREACHED


def what_serves(rev: Revision) -> str:
    return f"r{rev.number} (model {rev.model_version})"


def _serves(rev: Revision) -> str:
    return f"r{rev.number} serves" if rev.proven else f"r{rev.number} (unproven) serves"


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
    if incoming is None and back and back.spec_hash == obs.spec_hash and _healthy(back, obs):
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
    short = s.canary is not None and _ready(obs, s.canary) < _needed(s, obs, p)
    if short and s.waiting_since is None:
        return replace(s, waiting_since=now), None
    if not short and s.waiting_since is not None:
        return replace(s, waiting_since=None), None
    return None


def _deadline(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    c, stable, since = s.canary, s.stable, s.waiting_since
    if c is None or stable is None or since is None or now - since < p.progress_deadline:
        return None  # a first revision keeps trying (nothing else could serve); phase: Failed
    waited = f"{_ready(obs, c)}/{_needed(s, obs, p)} ready pods for {_secs(now - since)}"
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
    if _ready(obs, c) < _needed(s, obs, p) or _health(obs, c) is not Health.HEALTHY:
        return None  # positive evidence only: no data never advances a step
    if _ready(obs, s.stable) == 0:
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
    if c is None or _ready(obs, c) < _needed(s, obs, p):
        return None  # pre-scaled first: the old revision keeps all its pods until here
    if old and (s.paused or (not restoring and s.step < len(p.canary_steps))):
        return None
    if old and not restoring and (_breached(obs, c) or _ready(obs, old) == 0):
        return None  # a breach is never promoted; a stable without pods is restored first
    s, until, what = _drop_canary(s), now + p.bake_time, f"r{c.number} (model {c.model_version})"
    if old is None:  # nothing to compare with or go back to: no bake, recorded at once
        msg = f"{what} is ready and serves 100%"
        s = _record(s, c, Outcome.PROMOTED, names.REASON_DEPLOYED, msg, now, p, started=started)
        return replace(s, stable=c), _event(names.REASON_DEPLOYED, msg)
    if restoring:
        msg = f"{what} restored by request; r{old.number} scaled to zero"
        s = _record(s, c, Outcome.PROMOTED, _MANUAL, msg, now, p, started=started)
        return replace(s, stable=c), _event(names.REASON_ROLLED_BACK, msg)
    msg = f"{what} serves 100%; r{old.number} stays warm until {shown(until)}"
    return replace(s, stable=c, previous=old, bake_until=until), _event(names.REASON_PROMOTED, msg)


def _end_bake(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> Moved | None:
    stable, until, back = s.stable, s.bake_until, s.previous
    if stable is None or until is None or s.paused or now < until:
        return None
    if not stable.proven or _health(obs, stable) is Health.BREACHED:
        return None  # no evidence is never a pass: the previous revision stays warm
    msg = f"r{stable.number} passed its bake and is recorded healthy"
    s = _record(s, stable, Outcome.PROMOTED, names.REASON_PROMOTED, msg, now, p)
    event = _event(names.REASON_BAKE_COMPLETED, msg + _leaves(s, back))
    return replace(s, previous=None, bake_until=None), event


def _leaves(s: RolloutState, back: Revision | None) -> str:
    """What happens to the warm previous revision once the bake ends: kept at zero while the
    history remembers it (`_decide`), else its Deployment is deleted."""
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
    if stable.proven and _health(obs, stable) is not Health.BREACHED:
        s = _record(s, stable, Outcome.PROMOTED, names.REASON_PROMOTED, msg, now, p)
        s = replace(s, previous=None, bake_until=None)
        return s, _event(names.REASON_BAKE_COMPLETED, f"r{stable.number}: {msg}")
    if back and _healthy(back, obs):
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
    if last.outcome is Outcome.ROLLED_BACK and last.reason != _MANUAL:
        return None, f"r{number} was rolled back ({last.reason})"
    proven = any(e.outcome is Outcome.PROMOTED for e in entries)
    return Revision(
        last.revision, last.spec_hash, last.model_version, last.sha256, last.started, proven,
        registry=last.registry,
    ), ""  # fmt: skip


# --- reading the observation ----------------------------------------------------------------


def _health(obs: Observation, rev: Revision) -> Health:
    verdict = obs.verdicts.get(rev.number)
    return verdict.health if verdict else Health.PENDING


def _breached(obs: Observation, rev: Revision | None) -> Verdict | None:
    verdict = obs.verdicts.get(rev.number) if rev else None
    return verdict if verdict and verdict.health is Health.BREACHED else None


def _healthy(rev: Revision, obs: Observation) -> bool:
    """A rollback target: shown healthy once, and not breaching now."""
    return rev.proven and _health(obs, rev) is not Health.BREACHED


def _ready(obs: Observation, rev: Revision) -> int:
    return obs.ready.get(rev.number, 0)


def _needed(s: RolloutState, obs: Observation, p: Policy) -> int:
    """Ready canary pods needed before the next move (and the canary's desired replicas)."""
    if s.stable is None:
        return 1  # a first revision serves as soon as one pod is ready
    if s.restoring or s.step >= len(p.canary_steps):
        return stable_replicas(s, obs, p)
    return canary_replicas(stable_replicas(s, obs, p), p.canary_steps[s.step].weight)


# --- phase, message and decision, derived from the settled state -----------------------------


def _situation(s: RolloutState, obs: Observation, p: Policy, now: datetime) -> _Situation:
    c, stable = s.canary, s.stable
    if stable is None:
        if c is None:
            return _Situation(Phase.PENDING, names.REASON_DEPLOYING, "nothing deployed yet")
        problem = obs.problems.get(c.number) if s.waiting_since else None
        if problem and problem.terminal:  # nothing is deleted: a new spec or retry moves on
            msg = f"r{c.number} (model {c.model_version}) cannot become ready: {problem}"
            return _Situation(Phase.FAILED, problem.reason, msg)
        if s.waiting_since and now - s.waiting_since >= p.progress_deadline:
            msg = f"r{c.number} has had no ready pod since {shown(s.waiting_since)}"
            msg += f": {problem}" if problem else ""
            return _Situation(Phase.FAILED, names.REASON_PROGRESS_DEADLINE_EXCEEDED, msg)
        msg = f"deploying r{c.number} (model {c.model_version}): waiting for a ready pod"
        if problem:
            return _Situation(Phase.PENDING, problem.reason, f"{msg}: {problem}")
        return _Situation(Phase.PENDING, names.REASON_DEPLOYING, msg)
    if c is not None:
        return _in_flight(s, obs, p, now, c, stable)
    if s.previous is not None:
        return _baking(s, obs, p, now, stable, s.previous)
    return _resting(s, obs, stable)


def _in_flight(
    s: RolloutState, obs: Observation, p: Policy, now: datetime, c: Revision, stable: Revision
) -> _Situation:
    verdict, steps = obs.verdicts.get(c.number), p.canary_steps
    if not s.restoring and verdict and verdict.health is Health.BREACHED:
        why = _no_way_back(p, stable)
        msg = f"canary r{c.number} breaches: {verdict.message}; {why}"
        return _Situation(Phase.DEGRADED, verdict.reason, msg)
    ready, need = _ready(obs, c), _needed(s, obs, p)
    problem = obs.problems.get(c.number) if ready < need else None
    why = f": {problem}" if problem else ""
    if s.restoring:
        msg = f"restoring r{c.number}: {ready}/{need} pods ready before r{stable.number} leaves"
        reason = problem.reason if problem else names.REASON_ROLLBACK_IN_PROGRESS
        return _Situation(Phase.PROGRESSING, reason, msg + why)
    if s.step < len(steps):
        where = f"r{c.number} at {s.weight}% (step {s.step + 1}/{len(steps)})"
    else:
        where = f"r{c.number} scaling to {need} pods for the cutover"
    if s.paused:
        return _Situation(Phase.PROGRESSING, names.REASON_PAUSED, f"paused: {where}")
    if ready < need or s.step >= len(steps):
        msg = f"{where}: {ready}/{need} pods ready{why}"
        reason = problem.reason if problem else names.REASON_WAITING_FOR_REPLICAS
        return _Situation(Phase.PROGRESSING, reason, msg)
    if verdict is None or verdict.health is not Health.HEALTHY:
        said = verdict.message if verdict else "no verdict yet"
        reason = verdict.reason if verdict else names.REASON_WARMING_UP
        return _Situation(Phase.PROGRESSING, reason, f"{where} waits for evidence: {said}")
    if _ready(obs, stable) == 0:
        msg = f"{where} holds: r{stable.number} has no ready pod"
        return _Situation(Phase.PROGRESSING, names.REASON_WAITING_FOR_REPLICAS, msg)
    msg = f"{where} is healthy; next step at {shown(next_step_at(s, p) or now)}"
    return _Situation(Phase.PROGRESSING, names.REASON_STEP_PAUSE, msg)


def _baking(
    s: RolloutState, obs: Observation, p: Policy, now: datetime, stable: Revision, back: Revision
) -> _Situation:
    if breach := _breached(obs, stable):
        msg = f"r{stable.number} breaches in its bake: {breach.message}; {_no_way_back(p, back)}"
        return _Situation(Phase.DEGRADED, breach.reason, msg)
    warm = f"r{back.number} stays warm"
    if s.paused:
        msg = f"paused in the bake of r{stable.number}; {warm}"
        return _Situation(Phase.PROGRESSING, names.REASON_PAUSED, msg)
    if s.bake_until and now < s.bake_until:
        msg = f"r{stable.number} serves 100%; {warm} until {shown(s.bake_until)}"
        return _Situation(Phase.PROGRESSING, names.REASON_BAKING, msg)
    verdict = obs.verdicts.get(stable.number)
    said = verdict.message if verdict else "no verdict yet"
    reason = verdict.reason if verdict else names.REASON_WARMING_UP
    msg = f"bake over, but r{stable.number} has shown no evidence of health ({said}); {warm}"
    return _Situation(Phase.PROGRESSING, reason, msg)


def _resting(s: RolloutState, obs: Observation, stable: Revision) -> _Situation:
    if breach := _breached(obs, stable):
        msg = f"r{stable.number} breaches: {breach.message}; no automatic rollback target"
        return _Situation(Phase.DEGRADED, breach.reason, msg)
    if _ready(obs, stable) == 0:
        problem = obs.problems.get(stable.number)
        msg = f"r{stable.number} has no ready pod" + (f": {problem}" if problem else "")
        reason = problem.reason if problem else names.REASON_NO_READY_REPLICAS
        return _Situation(Phase.DEGRADED, reason, msg)
    if obs.spec_hash != stable.spec_hash and obs.spec_hash in s.quarantined:
        last = next((h for h in reversed(s.history) if h.spec_hash == obs.spec_hash), None)
        what = f"r{last.revision} (model {last.model_version})" if last else "the desired spec"
        why = f"{last.reason}: {last.message}" if last and last.message else ""
        how = f"{_DONE.get(last.outcome, 'ended')} ({why or last.reason}) and " if last else ""
        msg = (
            f"{what} {how}is quarantined; {_serves(stable)} 100%. Apply another spec, or "
            f"`retry` (annotation {names.ANNOTATION_RETRY}) to roll it out again"
        )
        return _Situation(Phase.ROLLED_BACK, last.reason if last else _MANUAL, msg)
    if obs.spec_hash != stable.spec_hash and s.paused:
        msg = f"paused: model {obs.model_version} waits; r{stable.number} serves 100%"
        return _Situation(Phase.PROGRESSING, names.REASON_PAUSED, msg)
    msg = f"r{stable.number} (model {stable.model_version}) serves 100%"
    return _Situation(Phase.STABLE, names.REASON_ROLLOUT_COMPLETE, msg)


_DONE: Final = {Outcome.ROLLED_BACK: "was rolled back", Outcome.FAILED: "failed"}


def _no_way_back(p: Policy, target: Revision) -> str:
    if not p.automatic_rollback:
        return "automatic rollback is off: promote, `rollback --to N`, or apply another spec"
    return f"no rollback onto r{target.number}, which breaches too"


def _decide(
    s: RolloutState,
    obs: Observation,
    p: Policy,
    now: datetime,
    situation: _Situation,
    events: tuple[Event, ...],
) -> Decision:
    stable, c, back = s.stable, s.canary, s.previous
    hpa_owned = None if p.autoscaling else p.replicas
    replicas: dict[int, int | None] = {e.revision: 0 for e in s.history}  # kept, scaled to zero
    if back:  # warm at the count the HPA left it with
        replicas[back.number] = hpa_owned or obs.replicas.get(back.number) or 1
    if c:
        replicas[c.number] = hpa_owned if stable is None else _needed(s, obs, p)
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
    if _ready(obs, stable) == 0 and back and _ready(obs, back) > 0 and not _breached(obs, back):
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


def _event(reason: str, message: str, warning: bool = False) -> Event:
    return Event("Warning" if warning else "Normal", reason, message)


def _is_bad(phase: Phase) -> bool:
    return phase in (Phase.DEGRADED, Phase.ROLLED_BACK, Phase.FAILED)


def _secs(delta: timedelta) -> str:
    return f"{max(delta.total_seconds(), 0):g}s"
