"""Pure views for `kubectl modeldeploy`: the `list` table, the `get` tree, the `status --wait`
verdict and exit codes, and cutting lines to the terminal's width.

No I/O and no clock: objects and `now` come in, lines of text go out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from modeldeploy import names
from modeldeploy.cli_render import RED, YELLOW, age, paint, table
from modeldeploy.diagnosis import pod_problem

Obj = Mapping[str, Any]

# `status --wait` exit codes (docs/cli.md). 1 is any CLI error, 2 a usage error (argparse).
EXIT_STABLE: Final = 0
EXIT_ROLLED_BACK: Final = 3
EXIT_FAILED: Final = 4
EXIT_DEGRADED: Final = 5
EXIT_TIMEOUT: Final = 6
_FINAL: Final = {
    names.PHASE_STABLE: EXIT_STABLE,
    names.PHASE_ROLLED_BACK: EXIT_ROLLED_BACK,
    names.PHASE_FAILED: EXIT_FAILED,
    names.PHASE_DEGRADED: EXIT_DEGRADED,
}
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


def wait_verdict(obj: Obj) -> int | None:
    """The exit code once the status speaks of the desired spec (observedGeneration caught up)
    and its phase is final, else None: keep waiting."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if observed is None or (generation is not None and observed < generation):
        return None
    code: int | None = _FINAL.get(str(status.get("phase")))
    return code


def clip(line: str, width: int | None) -> str:
    """`line` cut to `width` visible characters (colour codes do not count), marked with '…'."""
    if width is None or len(_ANSI.sub("", line)) <= width:
        return line
    out, seen, i = [], 0, 0
    while i < len(line) and seen < width - 1:
        if match := _ANSI.match(line, i):
            out.append(match.group())
            i = match.end()
            continue
        out.append(line[i])
        seen, i = seen + 1, i + 1
    text = "".join(out) + "…"
    return text + "\x1b[0m" if "\x1b[" in text else text


def clip_all(lines: Sequence[str], width: int | None) -> list[str]:
    return [clip(line, width) for line in lines]


# --- list -------------------------------------------------------------------------------------
def list_lines(items: Sequence[Obj], now: datetime, all_namespaces: bool, color: bool) -> list[str]:
    if not items:
        return ["No ModelDeployments found."]
    head = ["NAME", "PHASE", "VERSION", "CANARY", "TRAFFIC", "READY", "AGE", "MESSAGE"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + head]
    codes = [[""] * len(rows[0])]
    for obj in items:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        phase = str(status.get("phase") or "-")
        row = [
            str(meta.get("name", "")),
            phase,
            str(((obj.get("spec") or {}).get("model") or {}).get("version", "")),
            str(status.get("canaryWeight") or "-"),
            str(status.get("canaryTraffic") or "-"),
            str(status.get("readyPods") or "-"),
            age(meta.get("creationTimestamp"), now),
            str(status.get("message") or ""),
        ]
        rows.append(([str(meta.get("namespace", ""))] if all_namespaces else []) + row)
        code = attention(phase) if color else ""
        codes.append([""] * (len(rows[-1]) - 7) + [code] + [""] * 6)
    return table(rows, codes)


def attention(phase: str) -> str:
    """Colour only what needs a person: red for a broken phase, nothing otherwise."""
    return (
        RED if phase in (names.PHASE_DEGRADED, names.PHASE_ROLLED_BACK, names.PHASE_FAILED) else ""
    )


# --- get: revision -> Deployment -> pods --------------------------------------------------------
def _conditions(obj: Obj) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def pod_verdict(pod: Obj) -> str:
    """What the pod's sidecar says: Healthy, Breaching (naming a quality rule), NoData, or '-'."""
    cond = _conditions(pod).get(names.POD_COND_METRICS_HEALTHY)
    if cond is None:
        return "-"
    if cond.get("status") == "True":
        return "Healthy"
    if cond.get("reason") == names.REASON_INSUFFICIENT_DATA:
        return "NoData"
    if cond.get("status") != "False":
        return "-"
    quality = cond.get("reason") in names.MODEL_QUALITY_REASONS
    return f"Breaching ({cond['reason']})" if quality else "Breaching"


def verdict_message(pod: Obj) -> str:
    """The sidecar's figures for its last window (error rate, p99, drift scores) or ''."""
    cond = _conditions(pod).get(names.POD_COND_METRICS_HEALTHY) or {}
    return str(cond.get("message") or "")


def health_lines(obj: Obj, pods: Sequence[Obj], color: bool = False) -> list[str]:
    """The `status` view's Health section: each serving pod's verdict with its figures."""
    status = obj.get("status") or {}
    roles = {
        int(rev["revision"]): role
        for role in ("canary", "stable", "previous")
        if (rev := status.get(role))
    }
    serving = [
        p
        for p in pods
        if _revision(p) in roles and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    serving.sort(key=lambda p: (-_revision(p), str((p.get("metadata") or {}).get("name"))))
    lines = []
    for pod in serving:
        verdict = pod_verdict(pod)
        shown = paint(verdict, RED, color) if verdict.startswith("Breaching") else verdict
        message = verdict_message(pod)
        name = (pod.get("metadata") or {}).get("name")
        head = f"  r{_revision(pod)} {roles[_revision(pod)]}  {name}  {shown}"
        lines.append(f"{head}: {message}" if message else head)
    return ["", "Health (each pod's sidecar, over its last window):", *lines] if lines else []


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def pod_line(pod: Obj, now: datetime, color: bool) -> str:
    meta = pod.get("metadata") or {}
    ready = (_conditions(pod).get("Ready") or {}).get("status") == "True"
    verdict = pod_verdict(pod)
    why = ""
    if not ready:
        problem = pod_problem(pod)
        model = _conditions(pod).get(names.POD_COND_MODEL_READY) or {}
        waiting = model.get("reason") or (_conditions(pod).get("Ready") or {}).get("reason")
        why = f" ({problem})" if problem else (f" ({waiting})" if waiting else "")
    state = "ready" if ready else paint(f"not ready{why}", YELLOW, color)
    if meta.get("deletionTimestamp"):
        state = "terminating"
    shown = paint(verdict, RED, color) if verdict.startswith("Breaching") else verdict
    restarts = _restarts(pod)
    count = paint(f"restarts {restarts}", YELLOW, color) if restarts else "restarts 0"
    since = age(meta.get("creationTimestamp"), now)
    return f"pod {meta.get('name')}  {shown}  {state}  {count}  {since}"


def tree_lines(
    obj: Obj,
    deployments: Sequence[Obj],
    pods: Sequence[Obj],
    now: datetime,
    color: bool = False,
) -> list[str]:
    """The `get` view: each revision in status, its Deployment, and its pods."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    model = (obj.get("spec") or {}).get("model") or {}
    phase = str(status.get("phase") or "-")
    lines = [
        f"{meta.get('namespace')}/{meta.get('name')}  {paint(phase, attention(phase), color)}  "
        f"model {model.get('name', '?')} {model.get('version', '?')} (desired)",
    ]
    if status.get("message"):
        lines.append(f"  {status['message']}")
    for warning in status.get("warnings") or []:  # risks served anyway (docs/security.md)
        lines.append(f"  warning: {warning}")
    by_rev = {_revision(d): d for d in deployments}
    roles = [(role, status.get(role)) for role in ("stable", "canary", "previous")]
    shown = {int(r["revision"]) for _, r in roles if r}
    roles += [
        ("scaled to zero", {"revision": n}) for n in sorted(set(by_rev) - shown, reverse=True)
    ]
    for role, rev in roles:
        if not rev:
            continue
        number = int(rev["revision"])
        head = f"r{number} {role}"
        if rev.get("modelVersion"):
            head += f"  model {rev['modelVersion']}"
        if "weight" in rev:
            head += f"  weight {rev['weight']}%  traffic {rev.get('traffic', 0)}%"
        lines.append(head)
        deployment = by_rev.get(number)
        if deployment is None:
            lines.append("└─ Deployment missing")
            continue
        dstatus = deployment.get("status") or {}
        want = (deployment.get("spec") or {}).get("replicas", 0)
        name = (deployment.get("metadata") or {}).get("name")
        lines.append(f"└─ Deployment {name}  {dstatus.get('readyReplicas') or 0}/{want} ready")
        mine = sorted(
            (p for p in pods if _revision(p) == number),
            key=lambda p: str((p.get("metadata") or {}).get("name")),
        )
        for i, pod in enumerate(mine):
            last = i == len(mine) - 1
            lines.append(f"   {'└─' if last else '├─'} {pod_line(pod, now, color)}")
            if message := verdict_message(pod):
                lines.append(f"   {'  ' if last else '│ '}   {message}")
    return lines


def _revision(obj: Obj) -> int:
    label = str(((obj.get("metadata") or {}).get("labels") or {}).get(names.LABEL_REVISION, ""))
    return int(label) if label.isdigit() else -1
