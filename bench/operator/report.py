"""The README table for bench/results/operator.json: new vs old, medians, ratio, target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench-operator:begin (written by bench/operator/run.py) -->"
END = "<!-- bench-operator:end -->"

Getter = Callable[[dict[str, Any]], float | None]


def _get(path: str) -> Getter:
    def get(flavor: dict[str, Any]) -> float | None:
        value: Any = flavor
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return None if value is None else float(value)

    return get


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.1f}" if value != int(value) else f"{value:.0f}"


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or old is None:
        return "-"
    if old == 0:
        return "=" if new == 0 else "-"
    ratio = new / old
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _rw(section: dict[str, Any], reads: str, writes: str) -> dict[str, str]:
    """'reads + writes' cells for each flavor."""
    cells = {}
    for name, flavor in section.items():
        r, w = _get(reads)(flavor), _get(writes)(flavor)
        cells[name] = "-" if r is None or w is None else f"{_fmt(r, '')} + {_fmt(w, '')}"
    return cells


def table(result: dict[str, Any]) -> str:
    seq, can, wait, burst = (
        result.get(k, {}) for k in ("sequential", "canary", "waiting", "burst")
    )
    first: dict[str, Any] = next(iter(burst.values()), {})
    count = first.get("count", "?")
    rows: list[tuple[str, dict[str, Any], Getter, str, str]] = [
        (
            "apply → Deployment + Service + HPA, p50 (sequential)",
            seq,
            _get("apply_to_children_s.p50"),
            "s",
            "≤ 0.25 s",
        ),
        ("apply → `Stable` (KWOK pods Ready), p50", seq, _get("apply_to_stable_s.p50"), "s", ""),
        (
            "API requests apply → `Stable`, per ModelDeployment, p50",
            seq,
            _get("requests_per_md.p50"),
            "",
            "≤ 8",
        ),
        (
            "API requests per canary (change → rN Promoted), p50",
            can,
            _get("requests_per_canary.p50"),
            "",
            "≤ 30",
        ),
        (
            "canary: version change → Promoted (1 s pause, 5 s window, 1 s bake), p50",
            can,
            _get("change_to_promoted_s.p50"),
            "s",
            "",
        ),
        (
            "writes / min / ModelDeployment, `Stable` and idle",
            wait,
            _get("stable_idle.writes_per_min_per_md"),
            "",
            "0",
        ),
        (
            "writes / min / ModelDeployment, inside a step pause",
            wait,
            _get("step_pause.writes_per_min_per_md"),
            "",
            "0",
        ),
        (
            "writes / min / ModelDeployment, inside the bake",
            wait,
            _get("bake.writes_per_min_per_md"),
            "",
            "0",
        ),
        (f"{count} applied at once → half `Stable`", burst, _get("half_stable_s"), "s", ""),
        (f"{count} applied at once → all `Stable`", burst, _get("all_stable_s"), "s", "≤ 120 s"),
        ("operator RSS after the burst", burst, _get("operator_rss_mb"), "MB", "≤ 300 MB"),
        ("operator peak RSS (burst)", burst, _get("operator_peak_rss_mb"), "MB", "≤ 300 MB"),
        ("operator CPU for the burst", burst, _get("operator_cpu_s"), "s", ""),
        ("API requests per ModelDeployment (burst)", burst, _get("requests_per_md"), "", ""),
        (
            f"delete all {count} → every child gone",
            burst,
            _get("delete_to_children_gone_s"),
            "s",
            "",
        ),
        ("operator RSS after the deletion", burst, _get("operator_rss_after_delete_mb"), "MB", ""),
    ]
    lines = ["| measure | new | old | new / old | target |", "|---|---|---|---|---|"]
    for label, section, get, unit, target in rows:
        new, old = get(section.get("new", {})), get(section.get("old", {}))
        lines.append(
            f"| {label} | {_fmt(new, unit)} | {_fmt(old, unit)} | {_ratio(new, old)} | {target} |"
        )
    split = [
        ("… as reads + writes", _rw(seq, "reads_per_md.p50", "writes_per_md.p50")),
        (
            "… per canary as reads + writes",
            _rw(can, "reads_per_canary.p50", "writes_per_canary.p50"),
        ),
        (
            "reads / min / ModelDeployment: idle, pause, bake",
            {
                name: " / ".join(
                    _fmt(_get(f"{p}.reads_per_min_per_md")(f), "")
                    for p in ("stable_idle", "step_pause", "bake")
                )
                for name, f in wait.items()
            },
        ),
    ]
    for label, cells in split:
        lines.append(f"| {label} | {cells.get('new', '-')} | {cells.get('old', '-')} | | |")
    for name, flavor in burst.items():
        if flavor.get("all_stable_s") is None and "stable_reached" in flavor:
            lines.append(
                f"| {name}: `Stable` within {flavor['timeout_s']:.0f} s | "
                f"{flavor['stable_reached']} of {flavor['count']} | | | |"
            )
    return "\n".join(lines) + "\n"


def update_readme(path: Path, table_text: str) -> None:
    """Replace the text between the benchmark markers, if they are there."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table_text}{END}{tail}")
