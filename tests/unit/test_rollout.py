"""rollout.step: every transition as a table row, then properties over random walks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeploy import names
from modeldeploy.analysis import Health, Verdict
from modeldeploy.conditions import derive
from modeldeploy.rollout import step
from modeldeploy.rollout_observed import canary_replicas, stable_replicas
from modeldeploy.rollout_types import (
    Decision,
    HistoryEntry,
    Observation,
    Outcome,
    Phase,
    Policy,
    Revision,
    RollbackRequest,
    RolloutState,
    Step,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STABLE_PODS = 4  # the HPA's current count for the stable revision in most rows
POLICY = Policy(
    steps=(Step(10, timedelta(seconds=30)), Step(50, timedelta(seconds=60))),
    bake_time=timedelta(minutes=5),
)
HEALTHY = Verdict(Health.HEALTHY, names.REASON_WITHIN_THRESHOLDS, "errorRate 0 <= 0.01 (40 req)")
BREACH = Verdict(
    Health.BREACHED, names.REASON_METRIC_BREACH, "pod iris-r2-x: errorRate 0.2 > 0.01", "iris-r2-x"
)
NO_DATA = Verdict(Health.NO_DATA, names.REASON_INSUFFICIENT_DATA, "3 requests < minRequests 20")
WARMING = Verdict(Health.PENDING, names.REASON_WARMING_UP, "younger than one window")
FAIL_NO_DATA = replace(NO_DATA, health=Health.BREACHED)  # analysis with onNoData=fail


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rev(n: int, *, proven: bool = True, spec: str | None = None) -> Revision:
    return Revision(n, spec or f"h{n}", f"v{n}", f"sha{n}", T0, proven)


def entry(n: int, outcome: Outcome, reason: str = names.REASON_PROMOTED) -> HistoryEntry:
    return HistoryEntry(n, f"v{n}", f"sha{n}", f"h{n}", outcome, reason, "", T0, T0)


def see(spec: str = "h2", **kw: Any) -> Observation:
    """An observation of spec `h<n>` (model v<n>); every revision ready at its desired count."""
    kw.setdefault("replicas", {1: STABLE_PODS})
    kw.setdefault("ready", dict(kw["replicas"]))
    return Observation(spec, f"v{spec[1:]}", f"sha{spec[1:]}", **kw)


# --- states the rows start from ------------------------------------------------------------

EMPTY = RolloutState()
FIRST = RolloutState(canary=rev(1, proven=False), weight=100, step_started_at=T0, next_revision=2)
FIRST_BAKING = RolloutState(
    phase=Phase.STABLE, stable=rev(1, proven=False), bake_until=at(300), next_revision=2
)
STABLE = RolloutState(
    phase=Phase.STABLE, stable=rev(1), next_revision=2, history=(entry(1, Outcome.PROMOTED),)
)


def canary(step_index: int = 0, **kw: Any) -> RolloutState:
    weight = (10, 50, 100)[step_index]
    state = replace(STABLE, phase=Phase.PROGRESSING, canary=rev(2, proven=False), next_revision=3)
    return replace(state, step=step_index, weight=weight, step_started_at=T0, **kw)


BAKING = replace(
    STABLE, phase=Phase.PROGRESSING, stable=rev(2), previous=rev(1), bake_until=at(300),
    next_revision=3,
)  # fmt: skip
ROLLED_BACK = replace(
    STABLE,
    phase=Phase.ROLLED_BACK,
    next_revision=3,
    quarantined=("h2",),
    history=(entry(1, Outcome.PROMOTED), entry(2, Outcome.ROLLED_BACK, "MetricBreach")),
)
TWO_DONE = replace(  # r2 serves; r1 was healthy before it and is cold (scaled to zero)
    STABLE,
    stable=rev(2),
    next_revision=3,
    history=(entry(1, Outcome.PROMOTED), entry(2, Outcome.PROMOTED)),
)

# Observations of the world around those states (the canary r2 ready at its step's count).
AT_10 = {1: STABLE_PODS, 2: 1}
QUARTER = replace(POLICY, steps=(Step(10, timedelta(seconds=30)), Step(25, timedelta(seconds=60))))
AT_50 = {1: STABLE_PODS, 2: 4}
BOTH = {1: STABLE_PODS, 2: STABLE_PODS}


@dataclass(frozen=True)
class Row:
    id: str
    state: RolloutState
    obs: Observation
    now: float  # seconds after T0
    expect: dict[str, Any]
    policy: Policy = POLICY


def _outcomes(s: RolloutState, d: Decision) -> list[tuple[int, str, str]]:
    return [(e.revision, e.outcome.value, e.reason) for e in s.history]


CHECKS: dict[str, Callable[[RolloutState, Decision], Any]] = {
    "phase": lambda s, d: (s.phase, d.phase),
    "reason": lambda s, d: d.reason,
    "stable": lambda s, d: s.stable.number if s.stable else None,
    "canary": lambda s, d: s.canary.number if s.canary else None,
    "previous": lambda s, d: s.previous.number if s.previous else None,
    "step": lambda s, d: (s.step, s.weight),
    "replicas": lambda s, d: dict(d.replicas),
    "hpa": lambda s, d: d.hpa_revision,
    "service": lambda s, d: d.service_revision,
    "events": lambda s, d: [e.reason for e in d.events],
    "warning": lambda s, d: [e.type for e in d.events] == ["Warning"],
    "quarantined": lambda s, d: s.quarantined,
    "history": _outcomes,
    "breach": lambda s, d: (s.last_breach.revision, s.last_breach.pod) if s.last_breach else None,
    "bake_until": lambda s, d: s.bake_until,
    "requeue": lambda s, d: d.requeue_after,
    "proven": lambda s, d: [r.number for r in (s.stable, s.canary, s.previous) if r and r.proven],
    "render": lambda s, d: d.render_revision,
    "says": lambda s, d: " | ".join([e.message for e in d.events] + [d.message]),
}


def _expected(key: str, value: Any) -> Any:
    return (value, value) if key == "phase" else value


PROMOTED_1 = (1, "Promoted", "Promoted")

ROWS = [
    # --- first deploy: nothing to compare against, straight to 100% ------------------------
    Row("first spec: r1 at 100%, HPA on it", EMPTY, see("h1", replicas={}), 0,
        {"phase": Phase.PENDING, "canary": 1, "stable": None, "replicas": {1: None}, "hpa": 1,
         "service": None, "events": [names.REASON_DEPLOYING], "render": 1, "requeue": 600.0}),
    Row("first revision ready: Stable", FIRST, see("h1", ready={1: 1}), 5,
        {"phase": Phase.STABLE, "stable": 1, "canary": None, "replicas": {1: None},
         "service": 1, "events": [names.REASON_DEPLOYED], "bake_until": None,
         "history": [(1, "Promoted", names.REASON_DEPLOYED)]}),
    Row("first revision past the deadline: Failed, still trying",
        replace(FIRST, waiting_since=T0), see("h1", ready={}), 600,
        {"phase": Phase.FAILED, "canary": 1, "replicas": {1: None}, "history": [],
         "events": [names.REASON_PROGRESS_DEADLINE_EXCEEDED], "warning": True}),
    Row("first revision breaching: Degraded, nothing to roll back to", FIRST_BAKING,
        see("h1", verdicts={1: BREACH}), 10,
        {"phase": Phase.DEGRADED, "stable": 1, "reason": "MetricBreach", "breach": (1, "iris-r2-x"),
         "events": ["MetricBreach"], "warning": True, "quarantined": ()}),
    Row("first revision baked with evidence: recorded healthy", FIRST_BAKING,
        see("h1", verdicts={1: HEALTHY}), 300,
        {"phase": Phase.STABLE, "history": [PROMOTED_1], "events": [names.REASON_BAKE_COMPLETED],
         "bake_until": None, "proven": [1]}),
    Row("first revision baked without evidence: not recorded yet", FIRST_BAKING,
        see("h1", verdicts={1: NO_DATA}), 400,
        {"phase": Phase.STABLE, "history": [], "events": [], "bake_until": at(300)}),
    Row("fixed replicas when autoscaling is off", FIRST, see("h1", ready={1: 1}), 5,
        {"replicas": {1: 3}, "hpa": None}, replace(POLICY, autoscaling=False, replicas=3)),
    Row("stable revision has no ready pod: Degraded", STABLE, see("h1", ready={}), 0,
        {"phase": Phase.DEGRADED, "reason": names.REASON_NO_READY_REPLICAS}),
    Row("stable revision breaching: Degraded, no automatic rollback", STABLE,
        see("h1", verdicts={1: BREACH}), 0,
        {"phase": Phase.DEGRADED, "stable": 1, "events": ["MetricBreach"],
         "history": [PROMOTED_1]}),
    Row("stable revision recovers: Stable again", replace(STABLE, phase=Phase.DEGRADED),
        see("h1", verdicts={1: HEALTHY}), 0,
        {"phase": Phase.STABLE, "events": [names.REASON_ROLLOUT_COMPLETE]}),
    # --- a new spec starts a canary -----------------------------------------------------------
    Row("new spec: canary r2 at 10% of ready pods", STABLE, see("h2"), 0,
        {"phase": Phase.PROGRESSING, "stable": 1, "canary": 2, "step": (0, 10),
         "replicas": {1: None, 2: 1}, "hpa": 1, "service": None, "render": 2,
         "events": [names.REASON_ROLLOUT_STARTED], "requeue": 30.0}),
    Row("canary sized from the HPA's current count", STABLE, see("h2", replicas={1: 18}), 0,
        {"replicas": {1: None, 2: 2}}),
    Row("steps [] go straight to the cutover", STABLE, see("h2"), 0,
        {"step": (0, 100), "replicas": {1: None, 2: STABLE_PODS},
         "reason": names.REASON_WAITING_FOR_REPLICAS}, replace(POLICY, steps=())),
    Row("a final step at 100% is the cutover itself", STABLE, see("h2"), 0,
        {"step": (0, 10)}, replace(POLICY, steps=(Step(10, timedelta(0)),
                                                  Step(100, timedelta(0))))),
    Row("same spec again: nothing to do", STABLE, see("h1"), 0,
        {"phase": Phase.STABLE, "events": [], "canary": None, "service": 1}),
    Row("quarantined spec re-applied: no start", ROLLED_BACK, see("h2"), 0,
        {"phase": Phase.ROLLED_BACK, "canary": None, "events": [], "reason": "MetricBreach",
         "replicas": {1: None, 2: 0}}),
    Row("new spec while paused waits", replace(STABLE, paused=True), see("h2", paused=True), 0,
        {"phase": Phase.PROGRESSING, "reason": names.REASON_PAUSED, "canary": None}),
    # --- steps advance only on positive evidence after their pause ---------------------------
    Row("healthy, pause not over: hold", canary(0), see(replicas=AT_10, verdicts={2: HEALTHY}), 10,
        {"step": (0, 10), "reason": names.REASON_STEP_PAUSE, "events": [], "requeue": 20.0}),
    Row("healthy after the pause: next step", canary(0), see(replicas=AT_10, verdicts={2: HEALTHY}),
        30, {"step": (1, 50), "replicas": {1: None, 2: 4}, "events": [names.REASON_STEP_ADVANCED],
             "proven": [1, 2]}),
    Row("no data holds (onNoData=hold)", canary(0), see(replicas=AT_10, verdicts={2: NO_DATA}), 90,
        {"phase": Phase.PROGRESSING, "step": (0, 10), "reason": names.REASON_INSUFFICIENT_DATA}),
    Row("young pods hold, and say when to look again", canary(0),
        see(replicas=AT_10, verdicts={2: replace(WARMING, recheck_at=at(95))}), 90,
        {"step": (0, 10), "reason": names.REASON_WARMING_UP, "requeue": 5.0}),
    Row("canary pods not ready: hold", canary(0),
        see(replicas=AT_10, ready={1: 4}, verdicts={2: HEALTHY}), 90,
        {"step": (0, 10), "reason": names.REASON_WAITING_FOR_REPLICAS}),
    Row("paused: hold", canary(0, paused=True),
        see(replicas=AT_10, verdicts={2: HEALTHY}, paused=True), 90,
        {"step": (0, 10), "reason": names.REASON_PAUSED}),
    Row("last step done: pre-scale to the stable count", replace(canary(1), weight=25),
        see(replicas={1: 6, 2: 2}, verdicts={2: HEALTHY}), 60,
        {"step": (2, 100), "replicas": {1: None, 2: 6}, "hpa": 1, "service": None,
         "events": [names.REASON_PROMOTING], "reason": names.REASON_WAITING_FOR_REPLICAS},
        QUARTER),
    Row("pre-scale not ready: the old revision keeps all pods", canary(2, restoring=False),
        see(replicas=AT_50, ready=AT_10, verdicts={2: HEALTHY}), 0,
        {"step": (2, 100), "replicas": {1: None, 2: STABLE_PODS}, "hpa": 1,
         "reason": names.REASON_WAITING_FOR_REPLICAS}),
    Row("pre-scaled: cutover, HPA to r2, r1 warm", canary(2),
        see(replicas=BOTH, verdicts={2: HEALTHY}), 0,
        {"phase": Phase.PROGRESSING, "stable": 2, "previous": 1, "canary": None,
         "replicas": {1: STABLE_PODS, 2: None}, "hpa": 2, "service": 2,
         "events": [names.REASON_PROMOTED], "bake_until": at(300), "reason": names.REASON_BAKING}),
    Row("pre-scaled but paused: no cutover", canary(2, paused=True),
        see(replicas=BOTH, paused=True), 0, {"stable": 1, "canary": 2}),
    # --- breaches roll back at once -----------------------------------------------------------
    Row("canary breach: rolled back, spec quarantined", canary(1),
        see(replicas=AT_50, verdicts={2: BREACH}), 5,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "canary": None, "replicas": {1: None, 2: 0},
         "hpa": 1, "service": 1, "quarantined": ("h2",), "breach": (2, "iris-r2-x"),
         "history": [PROMOTED_1, (2, "RolledBack", "MetricBreach")],
         "events": [names.REASON_ROLLED_BACK], "warning": True, "reason": "MetricBreach"}),
    Row("canary with onNoData=fail and no data: rolled back", canary(0),
        see(replicas=AT_10, verdicts={2: FAIL_NO_DATA}), 90,
        {"phase": Phase.ROLLED_BACK, "history": [PROMOTED_1, (2, "RolledBack",
                                                              "InsufficientData")]}),
    Row("breach during the pre-scale: rolled back", canary(2),
        see(replicas=AT_50, verdicts={2: BREACH}), 0, {"phase": Phase.ROLLED_BACK, "stable": 1}),
    Row("breach with automatic rollback off: Degraded, held", canary(2),
        see(replicas=BOTH, verdicts={2: BREACH}), 0,
        {"phase": Phase.DEGRADED, "canary": 2, "stable": 1, "quarantined": (),
         "events": ["MetricBreach"]}, replace(POLICY, automatic_rollback=False)),
    Row("breach, stable never shown healthy: rolled back onto it all the same",
        canary(0, stable=rev(1, proven=False)), see(replicas=AT_10, verdicts={2: BREACH}), 0,
        {"phase": Phase.ROLLED_BACK, "canary": None, "stable": 1, "quarantined": ("h2",),
         "replicas": {1: None, 2: 0}, "service": 1, "warning": True,
         "events": [names.REASON_ROLLED_BACK]}),
    Row("breach while the stable breaches too: Degraded, held, never promoted",
        canary(0), see(replicas=AT_10, verdicts={1: BREACH, 2: BREACH}), 30,
        {"phase": Phase.DEGRADED, "canary": 2, "quarantined": (), "step": (0, 10)}),
    Row("the stable lost its pods: the canary holds its step", canary(0),
        see(replicas=AT_10, ready={1: 0, 2: 1}, verdicts={2: HEALTHY}), 30,
        {"phase": Phase.PROGRESSING, "step": (0, 10), "events": [],
         "reason": names.REASON_WAITING_FOR_REPLICAS}),
    Row("the stable lost its pods: no cutover", canary(2),
        see(replicas=BOTH, ready={1: 0, 2: STABLE_PODS}, verdicts={2: HEALTHY}), 90,
        {"phase": Phase.PROGRESSING, "canary": 2, "stable": 1}),
    Row("a healthy canary is not blocked by a breaching stable", canary(0),
        see(replicas=AT_10, verdicts={1: BREACH, 2: HEALTHY}), 30,
        {"phase": Phase.PROGRESSING, "step": (1, 50)}),
    Row("breach in the bake: warm r1 serves again, HPA back", BAKING,
        see(replicas={1: STABLE_PODS, 2: 6}, verdicts={2: BREACH}), 60,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "previous": None, "hpa": 1, "service": 1,
         "replicas": {1: None, 2: 0}, "quarantined": ("h2",), "bake_until": None,
         "history": [PROMOTED_1, (2, "RolledBack", "MetricBreach")], "warning": True}),
    Row("breach in the bake, previous never shown healthy: it serves again",
        replace(BAKING, previous=rev(1, proven=False)), see(verdicts={2: BREACH}), 60,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "previous": None, "quarantined": ("h2",)}),
    Row("breach in the bake, previous breaching too: Degraded",
        BAKING, see(verdicts={1: BREACH, 2: BREACH}), 60,
        {"phase": Phase.DEGRADED, "stable": 2, "previous": 1}),
    # --- the bake --------------------------------------------------------------------------
    Row("baking: previous warm at the HPA's last count", BAKING,
        see(replicas={1: 7, 2: 7}, verdicts={2: HEALTHY}), 60,
        {"phase": Phase.PROGRESSING, "reason": names.REASON_BAKING, "requeue": 240.0,
         "replicas": {1: 7, 2: None}, "service": 2}),
    Row("bake over with evidence: recorded healthy, previous to zero", BAKING,
        see(replicas=BOTH, verdicts={2: HEALTHY}), 300,
        {"phase": Phase.STABLE, "previous": None, "replicas": {1: 0, 2: None},
         "history": [PROMOTED_1, (2, "Promoted", "Promoted")],
         "events": [names.REASON_BAKE_COMPLETED]}),
    Row("bake over without evidence: previous stays warm",
        replace(BAKING, stable=rev(2, proven=False)), see(verdicts={2: NO_DATA}), 300,
        {"phase": Phase.PROGRESSING, "previous": 1, "reason": names.REASON_INSUFFICIENT_DATA}),
    Row("bake over but paused: previous stays warm", replace(BAKING, paused=True),
        see(verdicts={2: HEALTHY}, paused=True), 300, {"previous": 1}),
    # --- a newer spec supersedes what is in flight ----------------------------------------
    Row("new spec mid-canary: r2 superseded, r3 from step 0", canary(1),
        see("h3", replicas=AT_50), 10,
        {"stable": 1, "canary": 3, "step": (0, 10), "quarantined": (),
         "history": [PROMOTED_1, (2, "Superseded", "Superseded")],
         "events": [names.REASON_SUPERSEDED, names.REASON_ROLLOUT_STARTED],
         "replicas": {1: None, 2: 0, 3: 1}}),
    Row("spec reverted to the stable mid-canary", canary(1), see("h1", replicas=AT_50), 10,
        {"phase": Phase.STABLE, "canary": None, "events": [names.REASON_SUPERSEDED]}),
    Row("new spec mid-bake, r2 proven: bake cut short, r3 from r2", BAKING,
        see("h3", replicas={1: 4, 2: 4}, verdicts={2: HEALTHY}), 60,
        {"stable": 2, "previous": None, "canary": 3, "replicas": {1: 0, 2: None, 3: 1},
         "history": [PROMOTED_1, (2, "Promoted", "Promoted")], "hpa": 2}),
    Row("new spec mid-bake, r2 unproven: back to r1, r3 from r1",
        replace(BAKING, stable=rev(2, proven=False)), see("h3", verdicts={2: NO_DATA}), 60,
        {"stable": 1, "previous": None, "canary": 3, "hpa": 1, "quarantined": (),
         "history": [PROMOTED_1, (2, "Superseded", "Superseded")]}),
    Row("spec reverted to the warm previous mid-bake", BAKING, see("h1"), 60,
        {"phase": Phase.STABLE, "stable": 1, "previous": None, "hpa": 1, "service": 1,
         "history": [PROMOTED_1, (2, "Superseded", "Superseded")]}),
    Row("any other spec after a rollback starts at once", ROLLED_BACK, see("h3"), 0,
        {"canary": 3, "stable": 1, "quarantined": ("h2",)}),
    Row("quarantined spec re-applied mid-canary: canary dropped, no start",
        replace(canary(0), canary=rev(3, proven=False), next_revision=4,
                quarantined=("h2",)), see("h2", replicas={1: 4, 3: 1}), 0,
        {"phase": Phase.ROLLED_BACK, "canary": None, "next": 4}),
    # --- retry, deadline, promote, pause -----------------------------------------------------
    Row("retry: the quarantined spec rolls out again as r3", ROLLED_BACK, see("h2", retry="1"), 0,
        {"canary": 3, "quarantined": (), "step": (0, 10),
         "events": [names.REASON_RETRY_REQUESTED, names.REASON_ROLLOUT_STARTED]}),
    Row("retry token already handled: nothing", replace(ROLLED_BACK, handled_retry="1"),
        see("h2", retry="1"), 0, {"canary": None, "events": []}),
    Row("canary pods not ready by the deadline: rolled back", canary(0, waiting_since=at(10)),
        see(replicas=AT_10, ready={1: 4}), 610,
        {"phase": Phase.ROLLED_BACK, "canary": None, "quarantined": ("h2",),
         "history": [PROMOTED_1, (2, "Failed", names.REASON_PROGRESS_DEADLINE_EXCEEDED)],
         "events": [names.REASON_PROGRESS_DEADLINE_EXCEEDED], "warning": True}),
    Row("canary short of ready pods: the deadline clock starts", canary(0),
        see(replicas=AT_10, ready={1: 4}), 40, {"requeue": 600.0}),
    Row("promote: skip the remaining steps", canary(0), see(replicas=AT_10, promote="p"), 1,
        {"step": (2, 100), "replicas": {1: None, 2: STABLE_PODS},
         "events": [names.REASON_PROMOTE_REQUESTED]}),
    Row("promote in the bake: end it now, vouched for",
        replace(BAKING, stable=rev(2, proven=False)),
        see(replicas=BOTH, verdicts={2: NO_DATA}, promote="p"), 10,
        {"phase": Phase.STABLE, "previous": None, "proven": [2],
         "history": [PROMOTED_1, (2, "Promoted", names.REASON_MANUAL_PROMOTION)],
         "events": [names.REASON_PROMOTE_REQUESTED]}),
    Row("promote with nothing in flight: consumed quietly", STABLE, see("h1", promote="p"), 0,
        {"phase": Phase.STABLE, "events": []}),
    # --- abort: the revision on its way leaves now and is quarantined ------------------------
    Row("abort mid-canary: canary out, spec quarantined", canary(0),
        see(replicas=AT_10, abort="a"), 0,
        {"phase": Phase.ROLLED_BACK, "canary": None, "quarantined": ("h2",),
         "history": [PROMOTED_1, (2, "RolledBack", names.REASON_ABORTED)],
         "events": [names.REASON_ABORTED], "warning": True, "reason": names.REASON_ABORTED}),
    Row("abort in the bake: the warm previous serves again", BAKING,
        see(replicas=BOTH, abort="a"), 10,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "previous": None, "quarantined": ("h2",),
         "history": [PROMOTED_1, (2, "RolledBack", names.REASON_ABORTED)]}),
    Row("abort in the bake while the previous breaches: refused", BAKING,
        see(replicas=BOTH, abort="a", verdicts={1: BREACH}), 10,
        {"stable": 2, "previous": 1, "events": [names.REASON_ABORTED], "warning": True}),
    Row("abort with nothing in flight: consumed, said", STABLE, see("h1", abort="a"), 0,
        {"phase": Phase.STABLE, "events": [names.REASON_ABORTED]}),
    Row("abort token already handled: nothing", canary(0, handled_abort="a"),
        see(replicas=AT_10, abort="a"), 0, {"canary": 2, "events": []}),
    Row("pause", canary(0), see(replicas=AT_10, paused=True), 0,
        {"events": [names.REASON_PAUSED], "reason": names.REASON_PAUSED}),
    Row("resume", canary(0, paused=True), see(replicas=AT_10, verdicts={2: HEALTHY}), 30,
        {"events": [names.REASON_RESUMED, names.REASON_STEP_ADVANCED]}),
    # --- rollback --to N: only onto a revision recorded healthy ------------------------------
    Row("rollback to the stable mid-canary: canary out, spec quarantined", canary(0),
        see(replicas=AT_10, rollback=RollbackRequest(1, "t")), 0,
        {"phase": Phase.ROLLED_BACK, "canary": None, "quarantined": ("h2",),
         "history": [PROMOTED_1, (2, "RolledBack", names.REASON_MANUAL_ROLLBACK)],
         "reason": names.REASON_MANUAL_ROLLBACK}),
    Row("rollback to the warm previous in the bake", BAKING,
        see(rollback=RollbackRequest(1, "t")), 10,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "previous": None, "hpa": 1,
         "quarantined": ("h2",), "history": [PROMOTED_1, (2, "RolledBack", "ManualRollback")]}),
    Row("rollback to a cold healthy revision: scaled up first", TWO_DONE,
        see(replicas={2: 5}, rollback=RollbackRequest(1, "t")), 0,
        {"phase": Phase.PROGRESSING, "stable": 2, "canary": 1, "replicas": {1: 5, 2: None},
         "hpa": 2, "quarantined": ("h2",), "reason": names.REASON_ROLLBACK_IN_PROGRESS}),
    Row("restored revision ready: cutover, the other scaled to zero",
        replace(TWO_DONE, canary=rev(1), restoring=True, step=2, weight=100, step_started_at=T0,
                quarantined=("h2",), handled_rollback="t"),
        see(replicas={1: 5, 2: 5}, rollback=RollbackRequest(1, "t")), 20,
        {"phase": Phase.ROLLED_BACK, "stable": 1, "canary": None, "previous": None, "hpa": 1,
         "replicas": {1: None, 2: 0}, "events": [names.REASON_ROLLED_BACK],
         "history": [PROMOTED_1, (2, "Promoted", "Promoted"), (1, "Promoted", "ManualRollback")]}),
    Row("spec reverted to the restore target: the restore goes on",
        replace(TWO_DONE, canary=rev(1), restoring=True, step=2, weight=100, step_started_at=T0,
                quarantined=("h2",), handled_rollback="t"),
        see("h1", replicas={1: 1, 2: 5}, ready={1: 1, 2: 5}), 20,
        {"phase": Phase.PROGRESSING, "canary": 1, "stable": 2, "replicas": {1: 5, 2: None},
         "reason": names.REASON_ROLLBACK_IN_PROGRESS, "render": 1}),
    Row("rollback to a revision that breached: refused", ROLLED_BACK,
        see("h2", rollback=RollbackRequest(2, "t")), 0,
        {"phase": Phase.ROLLED_BACK, "events": [names.REASON_ROLLBACK_REFUSED], "warning": True,
         "says": "rollback to r2 refused: r2 was rolled back (MetricBreach)"
                 " | r2 (model v2) was rolled back (MetricBreach) and is quarantined; r1 serves "
                 "100%. Apply another spec, or `retry` (annotation modeldeploy.io/retry) to roll "
                 "it out again"}),
    Row("rollback to the first revision, recorded when it was deployed",
        replace(TWO_DONE, history=(entry(1, Outcome.PROMOTED, names.REASON_DEPLOYED),
                                   entry(2, Outcome.PROMOTED))),
        see(replicas={2: 5}, rollback=RollbackRequest(1, "t")), 0,
        {"phase": Phase.PROGRESSING, "canary": 1, "replicas": {1: 5, 2: None},
         "reason": names.REASON_ROLLBACK_IN_PROGRESS}),
    Row("rollback to a superseded revision: allowed",
        replace(TWO_DONE, history=(entry(1, Outcome.SUPERSEDED, names.REASON_SUPERSEDED),
                                   entry(2, Outcome.PROMOTED))),
        see(replicas={2: 5}, rollback=RollbackRequest(1, "t")), 0,
        {"phase": Phase.PROGRESSING, "canary": 1}),
    Row("rollback to a revision that never became ready: refused",
        replace(TWO_DONE, history=(entry(1, Outcome.FAILED, "ProgressDeadlineExceeded"),
                                   entry(2, Outcome.PROMOTED))),
        see("h2", replicas={2: 5}, rollback=RollbackRequest(1, "t")), 0,
        {"canary": None, "events": [names.REASON_ROLLBACK_REFUSED],
         "says": "rollback to r1 refused: r1 never became ready (ProgressDeadlineExceeded)"
                 " | r2 (model v2) serves 100%"}),
    Row("rollback to the warm previous while it breaches: refused", BAKING,
        see(verdicts={1: BREACH}, rollback=RollbackRequest(1, "t")), 10,
        {"stable": 2, "previous": 1, "events": [names.REASON_ROLLBACK_REFUSED]}),
    Row("rollback to an unknown revision: refused", STABLE,
        see("h1", rollback=RollbackRequest(9, "t")), 0,
        {"phase": Phase.STABLE, "events": [names.REASON_ROLLBACK_REFUSED]}),
    Row("rollback to the canary itself: refused", canary(0),
        see(replicas=AT_10, rollback=RollbackRequest(2, "t")), 0,
        {"canary": 2, "events": [names.REASON_ROLLBACK_REFUSED]}),
    Row("rollback token already handled: nothing", replace(canary(0), handled_rollback="t"),
        see(replicas=AT_10, rollback=RollbackRequest(1, "t")), 0, {"canary": 2, "events": []}),
]  # fmt: skip

CHECKS["next"] = lambda s, d: s.next_revision


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_transition(row: Row) -> None:
    state, decision = step(row.state, row.obs, row.policy, at(row.now))
    got = {key: CHECKS[key](state, decision) for key in row.expect}
    assert got == {key: _expected(key, value) for key, value in row.expect.items()}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_transition_is_idempotent_and_survives_a_restart(row: Row) -> None:
    state, decision = step(row.state, row.obs, row.policy, at(row.now))
    restored = RolloutState.from_dict(state.to_dict())
    again, repeat = step(restored, row.obs, row.policy, at(row.now))
    assert restored == state
    assert again == state
    assert repeat.events == ()
    assert replace(repeat, events=()) == replace(decision, events=())


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_waiting_changes_nothing_but_time(row: Row) -> None:
    """Quiet while waiting: a second later, with nothing new observed and no deadline crossed,
    the state, the message and the conditions are the same, so status is not written again."""
    state, decision = step(row.state, row.obs, row.policy, at(row.now))
    later = at(row.now) + timedelta(seconds=1)
    if decision.requeue_after is not None and decision.requeue_after <= 1:
        return  # a deadline falls within that second: something may rightly change
    again, repeat = step(state, row.obs, row.policy, later)
    assert (again, repeat.message, repeat.reason) == (state, decision.message, decision.reason)


def test_rows_cover_every_phase_and_outcome() -> None:
    phases = {step(r.state, r.obs, r.policy, at(r.now))[0].phase for r in ROWS}
    outcomes = {
        e.outcome for r in ROWS for e in step(r.state, r.obs, r.policy, at(r.now))[0].history
    }
    assert phases == set(Phase)
    assert outcomes == set(Outcome)


def test_a_full_rollout_end_to_end() -> None:
    """Stable r1 (6 pods) -> r2 at 10%, 25% -> pre-scale -> cutover -> bake -> r2 healthy."""
    healthy = {1: HEALTHY, 2: HEALTHY}
    walk = [
        (0, {1: 6}, [names.REASON_ROLLOUT_STARTED]),
        (30, {1: 6, 2: 1}, [names.REASON_STEP_ADVANCED]),
        (60, {1: 6, 2: 2}, []),
        (90, {1: 6, 2: 2}, [names.REASON_PROMOTING]),
        (95, {1: 6, 2: 5}, []),
        (100, {1: 6, 2: 6}, [names.REASON_PROMOTED]),
        (399, {1: 6, 2: 6}, []),
        (400, {1: 6, 2: 6}, [names.REASON_BAKE_COMPLETED]),
    ]
    state = STABLE
    for seconds, ready, events in walk:
        obs = see(replicas={1: 6, 2: 6}, ready=ready, verdicts=healthy)
        state, decision = step(state, obs, QUARTER, at(seconds))
        assert [e.reason for e in decision.events] == events, seconds
    assert (state.phase, state.stable, state.previous) == (Phase.STABLE, rev(2), None)
    assert [e.outcome for e in state.history] == [Outcome.PROMOTED, Outcome.PROMOTED]


def test_history_and_quarantine_are_bounded() -> None:
    policy = replace(POLICY, history_limit=3)
    state = STABLE
    for n in range(2, 30):  # 28 canaries in a row, each breaching at once
        state, _ = step(state, see(f"h{n}", replicas={1: 4, n: 1}), policy, at(n))
        breaching = see(f"h{n}", replicas={1: 4, n: 1}, verdicts={n: BREACH})
        state, _ = step(state, breaching, policy, at(n))
    assert [e.revision for e in state.history] == [27, 28, 29]
    assert len(state.quarantined) == 20 and state.quarantined[-1] == "h29"


def test_from_dict_of_an_empty_status_is_the_initial_state() -> None:
    assert RolloutState.from_dict({}) == RolloutState()


@pytest.mark.parametrize(
    ("stable", "weight", "expected"),
    [(1, 10, 1), (4, 10, 1), (9, 10, 1), (10, 10, 2), (18, 10, 2), (4, 50, 4), (3, 50, 3),
     (4, 75, 12), (2, 1, 1), (4, 100, 4)],
)  # fmt: skip
def test_canary_replicas(stable: int, weight: int, expected: int) -> None:
    assert canary_replicas(stable, weight) == expected


@given(st.integers(1, 500), st.integers(1, 99))
def test_canary_replicas_reach_the_weight_with_the_fewest_pods(stable: int, weight: int) -> None:
    n = canary_replicas(stable, weight)
    assert n >= 1
    assert n * 100 >= weight * (n + stable)  # the canary's share is at least the weight ...
    if n > 1:  # ... and one pod fewer would fall short
        assert (n - 1) * 100 < weight * (n - 1 + stable)


def test_stable_replicas_follow_the_hpa_or_the_fixed_count() -> None:
    assert stable_replicas(STABLE, see("h1", replicas={1: 7}), POLICY) == 7
    assert stable_replicas(STABLE, see("h1", replicas={}), POLICY) == 1
    fixed = replace(POLICY, autoscaling=False, replicas=3)
    assert stable_replicas(STABLE, see("h1", replicas={1: 7}), fixed) == 3


@pytest.mark.parametrize(
    "steps",
    [(Step(50, timedelta(0)), Step(10, timedelta(0))), (Step(0, timedelta(0)),),
     (Step(10, timedelta(0)), Step(10, timedelta(0)))],
)  # fmt: skip
def test_policy_rejects_steps_that_do_not_increase(steps: tuple[Step, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Policy(steps=steps)


# --- properties over random walks ----------------------------------------------------------
# A walk is a policy and a list of moves. Each move changes the world a little (time, the spec,
# readiness, verdicts, an intent) and the handler applies every Decision faithfully: Deployments
# get the replicas asked for (the HPA's count is drawn), pods become ready or not.

VERDICTS = st.sampled_from([HEALTHY, HEALTHY, HEALTHY, HEALTHY, BREACH, NO_DATA, WARMING, None])
ROLLBACKS = [RollbackRequest(n, token) for n in (1, 2, 3, 5) for token in ("a", "b")]


@dataclass(frozen=True)
class Move:
    seconds: int
    spec: str | None  # None: the spec stays as it was
    ready: str  # "all" | "none" | "one"
    hpa: int
    stable: Verdict | None
    canary: Verdict | None
    previous: Verdict | None
    retry: str | None
    promote: str | None
    rollback: RollbackRequest | None
    paused: bool
    abort: str | None


MOVES = st.builds(
    Move,
    seconds=st.sampled_from([0, 5, 30, 61, 301, 700]),
    spec=st.sampled_from([None] * 5 + ["h1", "h2", "h3"]),
    ready=st.sampled_from(["all", "all", "none", "one"]),
    hpa=st.integers(1, 12),
    stable=VERDICTS,
    canary=VERDICTS,
    previous=VERDICTS,
    retry=st.sampled_from([None] * 4 + ["r1", "r2"]),
    promote=st.sampled_from([None] * 6 + ["p1", "p2"]),
    rollback=st.sampled_from([None] * 16 + ROLLBACKS),
    paused=st.sampled_from([False, False, True]),
    abort=st.sampled_from([None] * 12 + ["a1", "a2"]),
)
POLICIES = st.builds(
    Policy,
    steps=st.sets(st.sampled_from([5, 10, 25, 50, 75, 100]), max_size=4).map(
        lambda ws: tuple(Step(w, timedelta(seconds=w)) for w in sorted(ws))
    ),
    bake_time=st.sampled_from([timedelta(0), timedelta(seconds=60), timedelta(minutes=5)]),
    automatic_rollback=st.booleans(),
    history_limit=st.integers(1, 4),
    autoscaling=st.booleans(),
    replicas=st.integers(1, 5),
)


def _observe(state: RolloutState, decision: Decision | None, move: Move, spec: str) -> Observation:
    asked = decision.replicas if decision else {}
    replicas = {n: move.hpa if r is None else r for n, r in asked.items()}
    ready = {
        "all": replicas,
        "none": {},
        "one": {n: min(r, 1) for n, r in replicas.items()},
    }[move.ready]
    roles = [(state.stable, move.stable), (state.canary, move.canary)]
    verdicts = {r.number: v for r, v in [*roles, (state.previous, move.previous)] if r and v}
    return Observation(
        spec, f"v{spec}", f"sha-{spec}", replicas, ready, verdicts,
        move.retry, move.promote, move.rollback, move.paused, abort=move.abort,
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(POLICIES, st.lists(MOVES, min_size=1, max_size=40))
def test_random_walks_keep_the_invariants(policy: Policy, moves: list[Move]) -> None:
    state, decision, now, spec = RolloutState(), None, T0, "h1"
    for move in moves:
        now, spec = now + timedelta(seconds=move.seconds), move.spec or spec
        obs = _observe(state, decision, move, spec)
        before = state
        state, decision = step(before, obs, policy, now)
        _check_invariants(before, state, decision, obs, policy)
        found = derive(state, obs, policy, decision, now)
        assert [c.type for c in found] == list(CONDITION_TYPES)
        assert (found[0].status == "True") == (state.phase is Phase.STABLE)
        again, repeat = step(state, obs, policy, now)
        assert again == state and repeat.events == (), "step() is not idempotent"
        assert RolloutState.from_dict(state.to_dict()) == state


CONDITION_TYPES = ("Ready", "Available", "Progressing", "Degraded", "Paused", "InvalidSpec")


def _check_invariants(
    before: RolloutState, s: RolloutState, d: Decision, obs: Observation, policy: Policy
) -> None:
    live = [r for r in (s.stable, s.canary, s.previous) if r]
    assert len({r.number for r in live}) == len(live)
    assert {r.number for r in live} <= set(d.replicas)
    assert len(s.history) <= policy.history_limit
    # Never rolls back onto a revision that breaches now: the stable only changes forward (the
    # in-flight revision, or one created now) or onto a revision that is not breaching.
    breaching = {n for n, v in obs.verdicts.items() if v.health is Health.BREACHED}
    if s.stable and (before.stable is None or s.stable.number != before.stable.number):
        forward = s.stable.number >= before.next_revision or (
            before.canary is not None and s.stable.number == before.canary.number
        )
        assert forward or s.stable.number not in breaching, "rolled back onto a breach"
    automatic = [
        e for e in d.events if e.reason == names.REASON_ROLLED_BACK and e.type == "Warning"
    ]
    if automatic:  # the target rule: the revision that served before, unless it breaches
        assert s.stable and s.stable.number not in breaching
    # A breaching canary leaves rotation unless there is nowhere better to go.
    if before.canary and before.canary.number in breaching and not before.restoring:
        fallback = before.stable and before.stable.number not in breaching
        if policy.automatic_rollback and fallback:
            assert s.canary is None or s.canary.number != before.canary.number
    # No step forward while the stable has no ready pod.
    stable_gone = before.stable and obs.ready.get(before.stable.number) == 0
    same = before.canary and s.canary and before.canary.number == s.canary.number
    if stable_gone and same and not s.restoring:
        assert (s.step, s.weight) == (before.step, before.weight) or obs.promote
    # The weight is monotone within one rollout.
    if before.canary and s.canary and before.canary.number == s.canary.number:
        assert s.weight >= before.weight
    # A quarantined spec never starts by itself.
    quarantined = obs.spec_hash in before.quarantined
    if quarantined and (obs.retry is None or obs.retry == before.handled_retry):
        assert s.next_revision == before.next_revision
    # The HPA scales the serving revision; the Service is pinned to it unless a canary splits.
    if s.stable:
        assert d.hpa_revision == (s.stable.number if policy.autoscaling else None)
        if s.canary:
            assert d.service_revision is None
        elif obs.ready.get(s.stable.number, 0) > 0 or s.previous is None:
            assert d.service_revision == s.stable.number
        else:  # never pinned to a revision without pods while the warm one could serve
            assert d.service_revision in (s.stable.number, s.previous.number)
    if s.canary and s.stable:
        wanted = d.replicas[s.canary.number]
        assert wanted is not None and wanted >= 1
    if s.phase is Phase.STABLE:
        assert s.canary is None and s.previous is None and s.stable
        assert s.stable.spec_hash == obs.spec_hash
