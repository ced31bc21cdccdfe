"""The ModelDeployment's status: rendered from the rollout state, written only when it changes.

`status.rollout` is the state machine's own memory (the source of truth across restarts); the
other fields are the user-facing projection of it (phase, conditions, revisions, history, last
breach) that kubectl, the CLI and Argo CD read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modeldeploy import names, rollout
from modeldeploy.spec import SpecError

# Fields of .status this module owns; anything else found there is cleared by the next patch.
OWNED = (
    "phase",
    "observedGeneration",
    "message",
    "weight",
    "readyReplicas",
    "conditions",
    "stable",
    "canary",
    "quarantinedSpecHashes",
    "history",
    "lastBreach",
    "bakeUntil",
    "rollout",
)


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _conditions(
    stored: Mapping[str, Any],
    wanted: tuple[rollout.Condition, ...],
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


def _revision(
    rev: rollout.Revision | None,
    weight: int,
    ready: Mapping[int, int],
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
        "readyReplicas": ready.get(rev.number, 0),
    }
    if step is not None:
        out["step"] = step
    if next_step_at is not None:
        out["nextStepAt"] = _time(next_step_at)
    return out


def render_status(
    stored: Mapping[str, Any],
    state: rollout.RolloutState,
    decision: rollout.Decision,
    *,
    generation: int | None,
    ready: Mapping[int, int],
    now: datetime,
) -> dict[str, Any]:
    canary_weight = state.weight if state.canary else 0
    status: dict[str, Any] = {
        "phase": str(decision.phase),
        "message": decision.message,
        "weight": canary_weight,
        "readyReplicas": sum(ready.values()),
        "conditions": _conditions(stored, decision.conditions, generation, now),
        "stable": _revision(state.stable, 100 - canary_weight, ready),
        "canary": _revision(state.canary, canary_weight, ready, state.step, decision.next_step_at),
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
            }
            for h in state.history
        ],
        "lastBreach": (
            {
                "revision": state.last_breach.revision,
                "pod": state.last_breach.pod,
                "reason": state.last_breach.reason,
                "message": state.last_breach.message,
                "time": _time(state.last_breach.at),
            }
            if state.last_breach
            else None
        ),
        "rollout": state.to_dict(),
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
            rollout.Condition(names.COND_READY, "False", names.REASON_APPLY_FAILED, message),
            rollout.Condition(names.COND_DEGRADED, "True", names.REASON_APPLY_FAILED, message),
        )
    }
    kept = tuple(
        wanted.pop(c["type"])
        if c["type"] in wanted
        else rollout.Condition(c["type"], c["status"], c["reason"], c["message"])
        for c in desired.get("conditions") or []
    )
    desired = {
        **desired,
        "message": f"{message}; {desired.get('message', '')}"[:4096],
        "conditions": _conditions(stored, (*kept, *wanted.values()), generation, now),
    }
    before = {c.get("type"): c.get("message") for c in stored.get("conditions") or []}
    return desired, (None if before.get(names.COND_DEGRADED) == message else message)


def invalid_spec_status(
    stored: Mapping[str, Any], err: SpecError, generation: int | None, now: datetime
) -> dict[str, Any]:
    """Ready=False/InvalidSpec; what serves keeps serving, so the rollout memory is kept."""
    serving = bool((stored.get("rollout") or {}).get("stable"))
    message = f"invalid spec: {err}"
    status = {k: stored.get(k) for k in OWNED if k in stored}
    status["phase"] = names.PHASE_DEGRADED if serving else names.PHASE_FAILED
    status["message"] = message
    if generation is not None:
        status["observedGeneration"] = generation
    conditions = (
        rollout.Condition(names.COND_READY, "False", "InvalidSpec", message),
        rollout.Condition(names.COND_PROGRESSING, "False", "InvalidSpec", message),
        rollout.Condition(names.COND_DEGRADED, "True", "InvalidSpec", message),
    )
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
