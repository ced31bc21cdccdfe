"""Pure decisions behind the `kubectl modeldeploy` actions.

Every action is a JSON merge patch on `metadata.annotations` of the ModelDeployment, never on
spec: the operator reads the annotation and acts through status and the objects it owns, so
GitOps tools see no drift. Each function validates against the object as last read and either
returns the patch or raises `CliError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.cli_render import is_paused, qualified_name

Obj = Mapping[str, Any]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


@dataclass(frozen=True)
class Action:
    """What to patch, and what to tell the user. `value=None` removes the annotation."""

    annotation: str
    value: str | None
    message: str

    def patch(self) -> dict[str, Any]:
        return {"metadata": {"annotations": {self.annotation: self.value}}}


def unique_token(now: datetime, entropy: str) -> str:
    """A value that differs from every earlier one, so the operator sees a change."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{entropy}"


def _refusal(entry: Mapping[str, Any]) -> str | None:
    """Why the operator would refuse a revision whose newest history entry is `entry`."""
    outcome, reason = entry.get("outcome"), entry.get("reason", "")
    if outcome == names.OUTCOME_FAILED:
        return f"never became ready ({reason})"
    if outcome == names.OUTCOME_ROLLED_BACK and reason != names.REASON_MANUAL_ROLLBACK:
        return f"was rolled back ({reason})"
    return None


def rollback_targets(obj: Obj) -> list[int]:
    """Revisions a rollback may target: any kept in the history, unless its newest entry says
    it was rolled back for a breach or never became ready, and not the current stable (the
    operator's rule, docs/rollout.md; it also refuses a revision that breaches now)."""
    status = obj.get("status") or {}
    latest = {int(e["revision"]): e for e in status.get("history") or []}
    stable = (status.get("stable") or {}).get("revision")
    return sorted(r for r, e in latest.items() if _refusal(e) is None and r != stable)


def rollback(obj: Obj, revision: int, token: str) -> Action:
    """`N@<token>`: the operator reads N; the token makes a repeated request a new one."""
    status = obj.get("status") or {}
    who = qualified_name(obj)
    entries = [e for e in status.get("history") or [] if int(e["revision"]) == revision]
    if (status.get("stable") or {}).get("revision") == revision:
        raise CliError(f"revision {revision} is already the stable revision of {who}")
    if not entries:
        known = ", ".join(str(e["revision"]) for e in status.get("history") or []) or "none"
        raise CliError(f"revision {revision} is not in the history of {who} (history: {known})")
    if why := _refusal(entries[-1]):
        targets = ", ".join(map(str, rollback_targets(obj))) or "none"
        raise CliError(
            f"revision {revision} of {who} {why}; it cannot be a rollback target "
            f"(candidates: {targets})"
        )
    version = entries[-1].get("modelVersion", "?")
    return Action(
        names.ANNOTATION_ROLLBACK_TO,
        f"{revision}@{token}",
        f"rollback of {who} to revision {revision} (version {version}) requested",
    )


def promote(obj: Obj, token: str) -> Action:
    """A canary skips its remaining steps; during a bake, the bake ends now (recorded in the
    history as a manual promotion, reason ManualPromotion)."""
    status = obj.get("status") or {}
    who = qualified_name(obj)
    canary = status.get("canary") if status.get("stable") else None  # not a first deploy
    if canary:
        revision = canary.get("revision")
        return Action(
            names.ANNOTATION_PROMOTE, token, f"promotion of {who} revision {revision} requested"
        )
    if status.get("bakeUntil") and status.get("stable"):
        revision = status["stable"].get("revision")
        message = f"{who} revision {revision}: end of its bake requested (a manual promotion)"
        return Action(names.ANNOTATION_PROMOTE, token, message)
    phase = status.get("phase") or "no status yet"
    raise CliError(f"nothing to promote: {who} has no canary or bake in progress (phase: {phase})")


def abort(obj: Obj, token: str) -> Action:
    """The canary (or the revision in its bake) leaves now and its spec is quarantined."""
    status = obj.get("status") or {}
    who = qualified_name(obj)
    canary = status.get("canary") if status.get("stable") else None  # not a first deploy
    baking = status.get("bakeUntil") and status.get("previous") and status.get("stable")
    if canary:
        target = f"revision {canary.get('revision')} (version {canary.get('modelVersion', '?')})"
    elif baking:
        target = f"revision {status['stable'].get('revision')} in its bake"
    else:
        phase = status.get("phase") or "no status yet"
        raise CliError(f"nothing to abort: {who} has no rollout in progress (phase: {phase})")
    return Action(names.ANNOTATION_ABORT, token, f"abort of {who} {target} requested")


def pause(obj: Obj) -> Action | None:
    """None when already paused: nothing to patch."""
    if is_paused(obj):
        return None
    return Action(names.ANNOTATION_PAUSED, "true", f"{qualified_name(obj)} paused")


def resume(obj: Obj) -> Action | None:
    """None when not paused: nothing to patch."""
    if not is_paused(obj):
        return None
    return Action(names.ANNOTATION_PAUSED, None, f"{qualified_name(obj)} resumed")


def retry(obj: Obj, token: str) -> Action:
    quarantined = (obj.get("status") or {}).get("quarantinedSpecHashes") or []
    note = "" if quarantined else " (nothing is quarantined now, so there is nothing to re-run)"
    return Action(names.ANNOTATION_RETRY, token, f"retry of {qualified_name(obj)} requested{note}")
