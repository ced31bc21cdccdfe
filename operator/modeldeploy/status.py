"""The ModelDeployment's status: rendered from the rollout state, written only when it changes.

The user-facing fields (phase, message, conditions, per-revision weight and traffic, history,
last breach) are a projection of the rollout state. The state machine's own memory, what it
needs beyond those fields (step, deadlines, handled intents, proven flags), is kept compact in
`status.rolloutState`: one JSON string, internal, read back together with `history` and
`quarantinedSpecHashes` (not stored twice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.rollout_types import (
    Breach,
    Condition,
    Decision,
    Registered,
    Revision,
    RolloutState,
)
from modeldeploy.spec import SpecError

# Fields of .status this module owns; anything else found there is cleared by the next patch.
OWNED = (
    "phase",
    "observedGeneration",
    "message",
    "canaryWeight",
    "canaryTraffic",
    "readyPods",
    "readyReplicas",
    "conditions",
    "stable",
    "canary",
    "previous",
    "quarantinedSpecHashes",
    "history",
    "lastBreach",
    "bakeUntil",
    "rolloutState",
    "image",  # the serving image policy's view (revision_images.image_status)
    "rollout",  # the memory's former home (an object); cleared on the first write
    "weight",  # formerly the canary's weight (an integer); now canaryWeight
)
# Kept in their user-facing fields, so not repeated in `rolloutState`.
_SHARED = ("history", "quarantined")


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _conditions(
    stored: Mapping[str, Any],
    wanted: Sequence[Condition],
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Kubernetes condition semantics: lastTransitionTime moves only when status flips."""
    before = {c.get("type"): c for c in stored.get("conditions") or []}
    result = []
    for cond in wanted:
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == cond.status else None
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:32768],
            "lastTransitionTime": since or _time(now),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    return result


def traffic_shares(ready: Mapping[int, int], pinned: int | None) -> dict[int, int]:
    """Percent of ready endpoints per revision: what the Service really sends each one. The
    Service selects every revision's pods unless the operator pins it to one."""
    serving = {r: n for r, n in ready.items() if pinned is None or r == pinned}
    total = sum(serving.values())
    return {r: round(100 * n / total) if total else 0 for r, n in serving.items()}


def state_from_status(stored: Mapping[str, Any]) -> RolloutState:
    """The rollout memory: `rolloutState` plus the history and quarantine shown beside it
    (or the `rollout` object an earlier version wrote)."""
    text = stored.get("rolloutState")
    if not isinstance(text, str):
        return RolloutState.from_dict(stored.get("rollout") or {})
    data = dict(json.loads(text))
    data["quarantined"] = list(stored.get("quarantinedSpecHashes") or [])
    data["history"] = [
        {**{k: v for k, v in h.items() if k not in ("startedAt", "finishedAt")},
         "started": h.get("startedAt"), "finished": h.get("finishedAt"),
         "registry": _registered_from(h)}
        for h in stored.get("history") or []
    ]  # fmt: skip
    return RolloutState.from_dict(data)


def _registered(registry: Registered | None) -> dict[str, str | None]:
    """`registryVersion` and `runId` of a revision from an mlflow:// URI; None (left out) else."""
    if registry is None:
        return {"registryVersion": None, "runId": None}
    return {"registryVersion": registry.version, "runId": registry.run_id or None}


def _registered_from(entry: Mapping[str, Any]) -> dict[str, str] | None:
    version = entry.get("registryVersion")
    return None if version is None else {"version": version, "runId": entry.get("runId") or ""}


def _memory(state: RolloutState) -> str:
    data = {k: v for k, v in state.to_dict().items() if k not in _SHARED}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _revision(
    rev: Revision | None,
    weight: int,
    ready: Mapping[int, int],
    shares: Mapping[int, int],
    runtimes: Mapping[int, str],
    step: int | None = None,
    next_step_at: datetime | None = None,
) -> dict[str, Any] | None:
    if rev is None:
        return None
    out: dict[str, Any] = {
        "revision": rev.number,
        "modelVersion": rev.model_version,
        "sha256": rev.sha256,
        "specHash": rev.spec_hash,
        "weight": weight,
        "traffic": shares.get(rev.number, 0),
        "readyReplicas": ready.get(rev.number, 0),
        **_registered(rev.registry),
    }
    if rev.number in runtimes:
        out["runtime"] = runtimes[rev.number]
    if step is not None:
        out["step"] = step
    if next_step_at is not None:
        out["nextStepAt"] = _time(next_step_at)
    return out


def _shown_breach(state: RolloutState) -> Breach | None:
    """The last breach, while it concerns a revision that serves, rolls out or stays warm, or
    the one that just ended (nothing newer in flight); an older one is history."""
    breach = state.last_breach
    if breach is None:
        return None
    live = {r.number for r in (state.stable, state.canary, state.previous) if r}
    if state.canary is None and state.history:
        live.add(state.history[-1].revision)
    return breach if breach.revision in live else None


def render_status(
    stored: Mapping[str, Any],
    state: RolloutState,
    decision: Decision,
    conditions: Sequence[Condition],
    *,
    generation: int | None,
    ready: Mapping[int, int],
    replicas: Mapping[int, int],
    now: datetime,
    runtimes: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """`ready` and `replicas` are the observed ready and desired pods per revision; `runtimes`
    what predicts in each revision's ready pods."""
    runtimes = runtimes or {}
    canary_weight = state.weight if state.canary else 0
    shares = traffic_shares(ready, decision.service_revision)
    kept = {r: n if n is not None else replicas.get(r, 0) for r, n in decision.replicas.items()}
    breach = _shown_breach(state)
    status: dict[str, Any] = {
        "phase": str(decision.phase),
        "message": decision.message,
        "canaryWeight": f"{canary_weight}%" if state.canary else "-",
        "canaryTraffic": f"{shares.get(state.canary.number, 0)}%" if state.canary else "-",
        "readyPods": f"{sum(ready.get(r, 0) for r in kept)}/{sum(kept.values())}",
        "readyReplicas": sum(ready.values()),
        "conditions": _conditions(stored, conditions, generation, now),
        "stable": _revision(state.stable, 100 - canary_weight, ready, shares, runtimes),
        "canary": _revision(
            state.canary, canary_weight, ready, shares, runtimes, state.step, decision.next_step_at
        ),
        "previous": _revision(state.previous, 0, ready, shares, runtimes),
        "bakeUntil": _time(state.bake_until),
        "quarantinedSpecHashes": list(state.quarantined),
        "history": [
            {
                "revision": h.revision,
                "modelVersion": h.model_version,
                "sha256": h.sha256,
                "specHash": h.spec_hash,
                "outcome": str(h.outcome),
                "reason": h.reason,
                "message": h.message,
                "startedAt": _time(h.started),
                "finishedAt": _time(h.finished),
                **_registered(h.registry),
            }
            for h in state.history
        ],
        "lastBreach": (
            {
                "revision": breach.revision,
                "pod": breach.pod,
                "reason": breach.reason,
                "message": breach.message,
                "time": _time(breach.at),
            }
            if breach
            else None
        ),
        "rolloutState": _memory(state),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def with_refusals(
    desired: dict[str, Any],
    refused: Sequence[Mapping[str, Any]],
    stored: Mapping[str, Any],
    generation: int | None,
    now: datetime,
) -> tuple[dict[str, Any], str | None]:
    """Fold what the API refused to store (a child's apply answered 400, 403 or 422) into the
    status: Degraded and not Ready, with the object and the API's own words. Returns the new
    status and the message when it is news (for one Warning Event), else None."""
    if not refused:
        return desired, None
    words = "; ".join(f"{r['kind']} {r['name']}: {r['message']}" for r in refused)
    message = f"the API refused {words}"
    wanted = {
        c.type: c
        for c in (
            Condition(names.COND_READY, "False", names.REASON_APPLY_FAILED, _REFUSED_SHORT),
            Condition(names.COND_DEGRADED, "True", names.REASON_APPLY_FAILED, message),
        )
    }
    kept = tuple(
        wanted.pop(c["type"])
        if c["type"] in wanted
        else Condition(c["type"], c["status"], c["reason"], c["message"])
        for c in desired.get("conditions") or []
    )
    desired = {
        **desired,
        "message": f"{message}; {desired.get('message', '')}"[:4096],
        "conditions": _conditions(stored, (*kept, *wanted.values()), generation, now),
    }
    before = {c.get("type"): c.get("message") for c in stored.get("conditions") or []}
    return desired, (None if before.get(names.COND_DEGRADED) == message else message)


_REFUSED_SHORT = "the API refused an object the operator applies (see Degraded)"


def invalid_spec_status(
    stored: Mapping[str, Any], err: SpecError, generation: int | None, now: datetime
) -> dict[str, Any]:
    """InvalidSpec=True; what serves keeps serving, so the rollout memory is kept, and so are
    Available and Paused as they were."""
    return _blocked_status(stored, names.COND_INVALID_SPEC, f"invalid spec: {err}", generation, now)


def unresolved_status(
    stored: Mapping[str, Any], reason: str, message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """An mlflow:// URI that did not resolve (`reason` from registry.Problem): like an invalid
    spec, nothing new rolls out and what serves keeps serving."""
    return _blocked_status(stored, reason, message, generation, now)


def _blocked_status(
    stored: Mapping[str, Any], reason: str, message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    serving = state_from_status(stored).stable
    status = {k: stored.get(k) for k in OWNED if k in stored}
    status["phase"] = names.PHASE_DEGRADED if serving else names.PHASE_FAILED
    status["message"] = message
    if generation is not None:
        status["observedGeneration"] = generation
    keeps = f"r{serving.number} (model {serving.model_version}) keeps serving" if serving else ""
    invalid = reason == names.COND_INVALID_SPEC
    what = "the spec is invalid" if invalid else "the model registry reference did not resolve"
    conditions = [
        Condition(
            names.COND_READY, "False", reason, "the spec was refused" if invalid else message
        ),
        *(
            Condition(c["type"], c["status"], c["reason"], c["message"])
            for c in stored.get("conditions") or []
            if c.get("type") in (names.COND_AVAILABLE, names.COND_PAUSED)
        ),
        Condition(names.COND_PROGRESSING, "False", reason, "nothing rolls out"),
        Condition(names.COND_DEGRADED, "True", reason, f"{what}; {keeps or 'nothing serves'}"),
    ]
    if invalid:
        conditions.append(Condition(names.COND_INVALID_SPEC, "True", reason, message))
    status["conditions"] = _conditions(stored, conditions, generation, now)
    return status


def status_patch(stored: Mapping[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch (RFC 7386) turning `stored` into `desired`, or None if they agree.

    In a merge patch null deletes a key, so the API server never stores one: a key that is
    None in `desired` equals a missing key in `stored`. Nested objects are patched key by key,
    so a key that `desired` lacks is deleted explicitly (else the merge would keep it and the
    next reconcile would write again). Arrays are replaced whole."""
    patch = _merge_diff(stored, desired)
    return patch if isinstance(patch, dict) and patch else None


_SAME: Any = object()


def _merge_diff(stored: Any, desired: Any) -> Any:
    if isinstance(stored, Mapping) and isinstance(desired, Mapping):
        patch: dict[str, Any] = {}
        for key in set(stored) | set(desired):
            old, new = stored.get(key), desired.get(key)
            if new is None:
                if old is not None:
                    patch[key] = None
            elif old is None:
                patch[key] = _without_nulls(new)
            elif (sub := _merge_diff(old, new)) is not _SAME:
                patch[key] = sub
        return patch or _SAME
    if _without_nulls(stored) == _without_nulls(desired):
        return _SAME
    return _without_nulls(desired)


def _without_nulls(value: Any) -> Any:
    """What the API server stores of a value sent in a merge patch."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_nulls(v) for v in value]
    return value


def merged(target: Any, patch: Any) -> Any:
    """`target` after the API server applies the merge patch `patch` (RFC 7386): what the
    stored status is after a write, without reading it back."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result
