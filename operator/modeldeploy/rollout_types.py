"""The rollout state machine's data: what goes in, what it remembers, what comes out.

Inputs: `Policy` (the scheduling part of the spec) and `Observation` (what the handler saw).
State: `RolloutState`, persisted in the ModelDeployment's status, with the `Revision`s it names,
its history and the last breach. Outputs: the `Decision` of modeldeploy.rollout.step, with its
`Event`s, and the `Condition`s of modeldeploy.conditions. Enums and frozen dataclasses, no logic
beyond checking a policy and (de)serialising the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from modeldeploy import names
from modeldeploy.analysis import Verdict
from modeldeploy.diagnosis import Problem
from modeldeploy.serial import dump, load


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
