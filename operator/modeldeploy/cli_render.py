"""Pure rendering for `kubectl modeldeploy`: a ModelDeployment dict in, lines of text out.

No I/O and no clock: `now` and `color` are parameters, so every line is unit-tested. Colour
marks only what needs attention: red for what is broken, yellow for what waits on a person
(paused, a step its pods cannot honour, restarts); healthy and in-progress states stay plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from modeldeploy import names

Obj = Mapping[str, Any]

_RESET: Final = "\x1b[0m"
YELLOW: Final = "\x1b[33m"
RED: Final = "\x1b[31m"

PHASE_COLORS: Final = {
    names.PHASE_STABLE: "",
    names.PHASE_PENDING: "",
    names.PHASE_PROGRESSING: "",
    names.PHASE_DEGRADED: RED,
    names.PHASE_ROLLED_BACK: RED,
    names.PHASE_FAILED: RED,
}
OUTCOME_COLORS: Final = {
    names.OUTCOME_PROMOTED: "",
    names.OUTCOME_ROLLED_BACK: RED,
    names.OUTCOME_FAILED: RED,
    names.OUTCOME_SUPERSEDED: "",
}
REASON_WEIGHT_NOT_ACHIEVABLE: Final = "WeightNotAchievable"
SHA_SHOWN: Final = 12  # enough to tell artifacts apart in a terminal


def paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color and code else text


def age(timestamp: str | None, now: datetime) -> str:
    """'45s', '12m', '3h', '2d' since an RFC 3339 timestamp; '-' when unknown."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def until(timestamp: str | None, now: datetime) -> str:
    """'in 52s', 'in 4m' until an RFC 3339 instant; 'now' once it has passed; '' when unknown.
    Status holds instants, never countdowns, so an operator that waits writes nothing."""
    if not timestamp:
        return ""
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return ""
    if then <= now:
        return "now"
    return "in " + age(now.isoformat(), then)


def is_paused(obj: Obj) -> bool:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return bool(annotations.get(names.ANNOTATION_PAUSED) == "true")


def qualified_name(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def table(
    rows: Sequence[Sequence[str]], colors: Sequence[Sequence[str]] | None = None
) -> list[str]:
    """Left-aligned columns two spaces apart; colours are applied after padding."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            padded = cell if i == len(row) - 1 else cell.ljust(widths[i])
            code = colors[r][i] if colors else ""
            cells.append(f"{code}{padded}{_RESET}" if code else padded)
        lines.append("  ".join(cells).rstrip())
    return lines


# --- status -----------------------------------------------------------------------------------
def _revision_line(rev: Mapping[str, Any]) -> str:
    parts = [f"r{rev.get('revision', '?')}", f"version {rev.get('modelVersion', '?')}"]
    if rev.get("sha256"):
        parts.append(f"sha256 {str(rev['sha256'])[:SHA_SHOWN]}")
    if "readyReplicas" in rev:
        parts.append(f"ready {rev['readyReplicas']}")
    if rev.get("runtime"):
        parts.append(f"runtime {rev['runtime']}")
    return "  ".join(parts)


def traffic(status: Mapping[str, Any]) -> str:
    """'stable r3 67% (intended 90%), canary r4 33% (intended 10%)': the actual share of ready
    endpoints first, the step's weight beside it when they differ."""
    parts = []
    for role in ("stable", "canary"):
        rev = status.get(role)
        if not rev:
            continue
        intended = int(rev.get("weight", 100 if role == "stable" else 0))
        actual = int(rev.get("traffic", intended))
        text = f"{role} r{rev.get('revision')} {actual}%"
        parts.append(text + (f" (intended {intended}%)" if actual != intended else ""))
    return ", ".join(parts) or "-"


def _step(obj: Obj, canary: Mapping[str, Any]) -> str:
    steps = obj.get("spec", {}).get("rollout", {}).get("steps")
    step = canary.get("step")
    if step is None:
        return ""
    total = f" of {len(steps)}" if isinstance(steps, list) else ""
    return f"  step {int(step) + 1}{total}"


def breach_text(breach: Mapping[str, Any], now: datetime) -> str:
    """'MetricBreach: errorRate 0.2 > 0.01 over 30s (r4, pod iris-r4-x, 2m ago)'."""
    text = ": ".join(str(breach[k]) for k in ("reason", "message") if breach.get(k)) or "breach"
    where = [f"r{breach['revision']}"] if "revision" in breach else []
    where += [f"pod {breach['pod']}"] if breach.get("pod") else []
    where += [f"{age(breach['time'], now)} ago"] if breach.get("time") else []
    return f"{text} ({', '.join(where)})" if where else text


def _condition_color(ctype: str, value: str, reason: str = "") -> str:
    """Red for a condition that says something is broken, yellow for one that waits on a
    person; nothing for the rest (Ready=False during a healthy rollout is not news)."""
    bad = {names.COND_DEGRADED: "True", names.COND_AVAILABLE: "False", "InvalidSpec": "True"}
    if bad.get(ctype) == value:
        return RED
    if value == "Unknown" or (ctype == names.COND_PAUSED and value == "True"):
        return YELLOW
    return YELLOW if reason == REASON_WEIGHT_NOT_ACHIEVABLE else ""


def condition_lines(
    conditions: Sequence[Mapping[str, Any]], now: datetime, color: bool
) -> list[str]:
    rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    codes = [[""] * 5]
    for c in conditions:
        ctype, value = str(c.get("type", "")), str(c.get("status", ""))
        reason, when = str(c.get("reason", "")), age(c.get("lastTransitionTime"), now)
        code = _condition_color(ctype, value, reason)
        rows.append([ctype, value, reason, when, str(c.get("message", ""))])
        codes.append(["", code if color else "", "", "", ""])
    return ["  " + line for line in table(rows, codes)]


def status_lines(obj: Obj, now: datetime, color: bool = False) -> list[str]:
    """The `status` view: phase, traffic split, revisions, last breach and conditions."""
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    status = obj.get("status") or {}
    model = spec.get("model", {})
    phase = status.get("phase") or "-"
    fields: list[tuple[str, str]] = [
        ("Name", qualified_name(obj)),
        ("Model", f"{model.get('name', '?')}  version {model.get('version', '?')} (desired)"),
        ("Phase", paint(phase, PHASE_COLORS.get(phase, ""), color)),
    ]
    if not status:
        fields.append(("Message", "no status yet: the operator has not observed this object"))
    elif status.get("message"):
        fields.append(("Message", str(status["message"])))
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if status and generation is not None and (observed is None or observed < generation):
        fields.append(("Generation", f"{generation}, status is from {observed or 0} (catching up)"))
    if is_paused(obj):
        fields.append(("Paused", paint("yes", YELLOW, color) + f" ({names.ANNOTATION_PAUSED})"))
    if status:
        fields.append(("Traffic", traffic(status)))
    if stable := status.get("stable"):
        fields.append(("Stable", _revision_line(stable)))
    if canary := status.get("canary"):
        weight = int(canary.get("weight") or 0)
        fields.append(("Canary", f"{_revision_line(canary)}  weight {weight}%{_step(obj, canary)}"))
        if next_step := until(canary.get("nextStepAt"), now):
            fields.append(("Next step", f"{next_step} (once its pods are ready and healthy)"))
    if previous := status.get("previous"):
        fields.append(("Previous", f"{_revision_line(previous)}  warm, no traffic"))
    if bake := until(status.get("bakeUntil"), now):
        fields.append(("Bake ends", bake))
    if "readyPods" in status or "readyReplicas" in status:
        fields.append(("Ready pods", str(status.get("readyPods") or status["readyReplicas"])))
    unachievable = [
        c for c in status.get("conditions") or [] if c.get("reason") == REASON_WEIGHT_NOT_ACHIEVABLE
    ]
    if unachievable:
        fields.append(("Weight", paint(str(unachievable[0].get("message", "")), YELLOW, color)))
    if breach := status.get("lastBreach"):
        fields.append(("Last breach", paint(breach_text(breach, now), RED, color)))
    if line := image_line(status.get("image") or {}, color):
        fields.append(("Image", line))
    if quarantined := status.get("quarantinedSpecHashes"):
        count = len(quarantined)
        fields.append(("Quarantined", f"{count} spec{'s' if count != 1 else ''} (retry to re-run)"))
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    if conditions := status.get("conditions"):
        lines += ["", "Conditions:", *condition_lines(conditions, now, color)]
    return lines


def image_line(image: Mapping[str, Any], color: bool = False) -> str:
    """The serving image, and the upgrade policy's word when the default is not in use."""
    serving, state = str(image.get("serving") or "-"), str(image.get("state") or "")
    if not state or state in (names.IMAGE_UP_TO_DATE, names.IMAGE_PINNED):
        return serving if image.get("serving") else ""
    code = RED if state == names.IMAGE_UPGRADE_ROLLED_BACK else YELLOW
    return f"{serving}  {paint(state, code, color)}: {image.get('message', '')}"


# --- history ----------------------------------------------------------------------------------
def history_lines(obj: Obj, now: datetime, color: bool = False) -> list[str]:
    """The `history` view: finished rollouts, oldest first, the current stable marked."""
    status = obj.get("status") or {}
    history = status.get("history") or []
    stable_rev = (status.get("stable") or {}).get("revision")
    if not history:
        lines = [f"{qualified_name(obj)} has no finished rollouts yet"]
    else:
        # Models from an MLflow registry (mlflow:// URIs) add the registry's version and run.
        registered = any(entry.get("registryVersion") for entry in history)
        extra = ["REGISTRY"] if registered else []
        rows = [["", "REVISION", "VERSION", *extra, "SHA256", "OUTCOME", "STARTED", "FINISHED"]]
        rows[0].append("REASON")
        codes = [[""] * len(rows[0])]
        for entry in history:
            outcome = str(entry.get("outcome", ""))
            mark = "*" if entry.get("revision") == stable_rev else ""
            rows.append(
                [
                    mark,
                    str(entry.get("revision", "")),
                    str(entry.get("modelVersion", "")),
                    *([registry_cell(entry)] if registered else []),
                    str(entry.get("sha256", ""))[:SHA_SHOWN],
                    outcome,
                    age(entry.get("startedAt"), now),
                    age(entry.get("finishedAt"), now),
                    str(entry.get("message") or entry.get("reason") or ""),
                ]
            )
            painted = OUTCOME_COLORS.get(outcome, "") if color else ""
            codes.append([""] * (4 + len(extra)) + [painted] + [""] * 3)
        lines = table(rows, codes)
        if stable_rev is not None:
            lines.append(f"* stable revision r{stable_rev}")
    if canary := status.get("canary"):
        registry = f", registry {registry_cell(canary)}" if canary.get("registryVersion") else ""
        lines.append(
            f"rolling out: r{canary.get('revision')} "
            f"(version {canary.get('modelVersion', '?')}{registry})"
        )
    return lines


def registry_cell(entry: Obj) -> str:
    """'v3 run 1a2b3c4d' for a revision from an MLflow registry; '-' for other sources."""
    version = entry.get("registryVersion")
    if not version:
        return "-"
    run = str(entry.get("runId") or "")
    return f"v{version} run {run[:8]}" if run else f"v{version}"


# --- machine-readable documents (--output json|yaml) ------------------------------------------
def status_document(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "generation": meta.get("generation"),
        "paused": is_paused(obj),
        "status": dict(obj.get("status") or {}),
    }


def history_document(obj: Obj) -> dict[str, Any]:
    status = obj.get("status") or {}
    meta = obj.get("metadata", {})
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "stableRevision": (status.get("stable") or {}).get("revision"),
        "canaryRevision": (status.get("canary") or {}).get("revision"),
        "history": list(status.get("history") or []),
    }
