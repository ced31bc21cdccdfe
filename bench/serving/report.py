"""Medians, ratios, the issue's targets, and the markdown table for docs/serving.md."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import cpu_stalls

OURS, UNBATCHED = "modeldeploy", "modeldeploy-unbatched"
MLSERVERS = ("mlserver", "mlserver-defaults")
KSERVES = ("kserve", "kserve-quiet")
PEERS = MLSERVERS + KSERVES
FLOORS = ("bare-aiohttp", "bare-starlette")
METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
DOCS_BEGIN = "<!-- bench-serving:begin (written by bench/serving/run.py) -->"
DOCS_END = "<!-- bench-serving:end -->"

Summary = dict[str, dict[str, dict[str, Any]]]  # model -> server -> figures


def summarize(results: dict[str, Any]) -> Summary:
    """Median over rounds of every figure, per model, server and connection count."""
    summary: Summary = {}
    for run in results["runs"]:
        per_server = summary.setdefault(run["model"], {}).setdefault(run["server"], {})
        per_server.setdefault(f"c{run['connections']}", []).append(run)
    for model, per_model in summary.items():
        for server, figures in per_model.items():
            for key, runs in list(figures.items()):
                figures[key] = {m: round(statistics.median(r[m] for r in runs), 3) for m in METRICS}
                figures[key]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
            starts = [s for s in results["starts"] if (s["model"], s["server"]) == (model, server)]
            if starts:
                figures["cold_start_s"] = round(
                    statistics.median(s["cold_start_s"] for s in starts), 3
                )
                figures["rss_mb"] = round(statistics.median(s["rss_mb"] for s in starts), 1)
    return summary


def _best(per_model: dict[str, Any], names: tuple[str, ...], key: str) -> tuple[str, float] | None:
    """The best of a group at `key` connections: highest req/s."""
    present = [
        (name, per_model[name][key]["rps"]) for name in names if key in per_model.get(name, {})
    ]
    return max(present, key=lambda item: item[1]) if present else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    summary = results["summary"]
    checks: list[dict[str, Any]] = []

    def check(
        name: str,
        model: str,
        value: float,
        required: float,
        higher_is_better: bool,
        unit: str = "x",
    ) -> None:
        met = value >= required if higher_is_better else value <= required
        relation = ">=" if higher_is_better else "<="
        checks.append(
            {
                "target": name,
                "model": model,
                "measured": round(value, 4),
                "required": f"{relation} {required:g}",
                "unit": unit,
                "met": met,
            }
        )

    for model, per_model in summary.items():
        if "c8" not in per_model.get(OURS, {}):
            continue
        ours8 = per_model[OURS]["c8"]["rps"]
        if best := _best(per_model, MLSERVERS, "c8"):
            check(
                f"req/s at 8 connections vs MLServer ({best[0]})", model, ours8 / best[1], 1.6, True
            )
        if best := _best(per_model, FLOORS, "c8"):
            check(
                f"req/s at 8 connections vs bare async ({best[0]})",
                model,
                ours8 / best[1],
                0.8,
                True,
            )
        if "c64" in per_model[OURS]:
            p99s = [
                (n, per_model[n]["c64"]["p99_ms"])
                for n in MLSERVERS
                if "c64" in per_model.get(n, {})
            ]
            if p99s:
                name, p99 = min(p99s, key=lambda item: item[1])
                check(
                    f"p99 at 64 connections vs MLServer ({name})",
                    model,
                    per_model[OURS]["c64"]["p99_ms"] / p99,
                    0.7,
                    False,
                )
            if model == "rf" and "c64" in per_model.get(UNBATCHED, {}):
                ratio = per_model[OURS]["c64"]["rps"] / per_model[UNBATCHED]["c64"]["rps"]
                check("req/s at 64 connections, batching on vs off", model, ratio, 5.0, True)
    _issue_11(summary, results.get("predict_floor_us", {}), check)
    return checks


def _issue_11(summary: Summary, floor: dict[str, Any], check: Any) -> None:
    """Issue 11's targets: the forest at 1 and 8 connections (absolute and against the best
    peer, MLServer or KServe), its p99 at 64 connections and its in-process single-row predict
    as served; LogisticRegression at one connection against the bare async floor."""
    forest = summary.get("rf", {}).get(OURS, {})
    for key, required in (("c1", 2000.0), ("c8", 5000.0)):
        if key not in forest:
            continue
        rps, at = forest[key]["rps"], "1 connection" if key == "c1" else f"{key[1:]} connections"
        check(f"req/s at {at}", "rf", rps, required, True, " req/s")
        if best := _best(summary["rf"], PEERS, key):
            check(f"req/s at {at} vs the best peer ({best[0]})", "rf", rps / best[1], 10, True)
    if "c64" in forest:
        check("p99 at 64 connections", "rf", forest["c64"]["p99_ms"], 10.0, False, " ms")
    served = floor.get("rf", {}).get("served")
    if served:
        check("single-row predict as served, in process", "rf", served["1"], 20.0, False, " µs")
    linear = summary.get("lr", {})
    if "c1" in linear.get(OURS, {}) and (best := _best(linear, FLOORS, "c1")):
        ratio = linear[OURS]["c1"]["rps"] / best[1]
        check(f"req/s at 1 connection vs bare async ({best[0]})", "lr", ratio, 1.0, True)


def markdown(results: dict[str, Any]) -> str:
    summary, settings = results["summary"], results["settings"]
    connections = [f"c{c}" for c in settings["connections"]]
    lines = [
        f"Measured {results['date']} on {results['machine']['cpu']} ({results['mode']} run: "
        f"{settings['seconds']:g} s per run after {settings['warmup_seconds']:g} s warm-up, "
        f"median of {settings['rounds']} round(s), server on CPU {settings['server_cpu']}, "
        f"wrk on CPU {settings['load_cpu']}, single-row v2 requests of {settings['request_bytes']} "
        f"bytes{_build(settings)}).",
        "",
        *_steadiness(results["machine"].get("cpu_stalls")),
    ]
    for model, per_model in summary.items():
        floor = results["predict_floor_us"].get(model, {})
        served = floor.get("served")
        as_served = (
            f"; as served ({served['runtime']} runtime) {served['1']} µs and {served['64']} µs"
            if served
            else ""
        )
        lines += [
            f"**{results['models'][model]['label']}**: in-process scikit-learn `predict()` takes "
            f"{floor.get('1', '?')} µs for 1 row and {floor.get('64', '?')} µs for 64 rows"
            f"{as_served}.",
            "",
            "| server | "
            + " | ".join(f"{c[1:]} conn: req/s (p50 / p99 ms)" for c in connections)
            + " | CPU µs/req at 8 | RSS MB | cold start s |",
            "|---|" + "---|" * (len(connections) + 3),
        ]
        for server, figures in per_model.items():
            cells = [
                f"{f['rps']:.0f} ({f['p50_ms']:.2f} / {f['p99_ms']:.2f})"
                + (" ⚠ errors" if f["errors"] else "")
                for c in connections
                if (f := figures.get(c))
            ]
            cpu = figures.get("c8", {}).get("cpu_us_per_request", float("nan"))
            label = results["servers"][server]["label"]
            lines.append(
                f"| {label} | "
                + " | ".join(cells)
                + f" | {cpu:.0f} | {figures.get('rss_mb', '?')} | "
                f"{figures.get('cold_start_s', '?')} |"
            )
        lines += [*_ratio_rows(per_model, connections), ""]
    lines += ["| target | model | measured | required | met |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        unit = t.get("unit", "x")
        value = t["measured"]
        measured = (
            _ratio(value)
            if unit == "x"
            else f"{value:.0f}{unit}"
            if value >= 100
            else f"{value:.3g}{unit}"
        )
        lines.append(
            f"| {t['target']} | {t['model']} | {measured} | {t['required']}{unit} "
            f"| {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def _build(settings: dict[str, Any]) -> str:
    build = settings.get("ours_build")  # runs before 2026-12-02T04:08 ran ours interpreted
    return f"; modeldeploy {build}" if build else ""


def _steadiness(stalls: dict[str, Any] | None) -> list[str]:
    """The server CPU's slow windows (cpu_stalls.py), which bound every server's p99."""
    if not stalls:
        return []
    parts = [
        f"{when}: {100 * s['slow_window_share']:.1f}% of 1 ms windows below "
        f"{100 * cpu_stalls.SLOW_FRACTION:.0f}% of the median "
        f"speed, {s['slow_episodes_per_second']:g} episodes/s, longest "
        f"{s['longest_slow_episode_ms']} ms"
        for when, s in stalls.items()
    ]
    return ["Server CPU steadiness (bench/serving/cpu_stalls.py) " + "; ".join(parts) + ".", ""]


def _ratio_rows(per_model: dict[str, Any], connections: list[str]) -> list[str]:
    rows = []
    for ours in (OURS, UNBATCHED):
        groups = (
            ("best MLServer", MLSERVERS),
            ("best KServe", KSERVES),
            ("best bare async", FLOORS),
        )
        for group, names in groups:
            cells = []
            for c in connections:
                best = _best(per_model, names, c)
                mine = per_model.get(ours, {}).get(c)
                if best is None or mine is None:
                    cells.append("-")
                    continue
                p99_best = per_model[best[0]][c]["p99_ms"]
                cells.append(
                    f"{mine['rps'] / best[1]:.2f}x req/s, {_ratio(mine['p99_ms'] / p99_best)} p99"
                )
            if any(cell != "-" for cell in cells):
                rows.append(f"| *{ours} ÷ {group}* | " + " | ".join(cells) + " | | | |")
    return rows


def _ratio(value: float) -> str:
    """Two decimals, or two significant digits for small ratios (0.0021x, not 0.00x)."""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def update_docs(path: Path, table: str) -> None:
    """Replace the text between the benchmark markers in docs/serving.md, if they are there."""
    replace_between(path, DOCS_BEGIN, DOCS_END, table)


def replace_between(path: Path, begin: str, end: str, text: str) -> None:
    """Put `text` between two marker lines of a file (a results table in the docs); a file
    without both markers is left alone."""
    if not path.exists():
        return
    content = path.read_text()
    if begin not in content or end not in content:
        return
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = text if text.endswith("\n") else text + "\n"
    path.write_text(f"{head}{begin}\n{body}{end}{tail}")
