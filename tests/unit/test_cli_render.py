"""The text a user reads from `kubectl modeldeploy status|history`, rendered from fixtures."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modeldeploy import cli_render, names
from tests.helpers import crd
from tests.unit.cli_fixtures import NOW, progressing, stable

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def field(lines: list[str], label: str) -> str:
    """The value of a `Label:  value` line."""
    for line in lines:
        if line.startswith(f"{label}:"):
            return line[len(label) + 1 :].strip()
    raise AssertionError(f"no {label!r} line in:\n" + "\n".join(lines))


def test_status_shows_phase_split_revisions_and_breach() -> None:
    lines = cli_render.status_lines(progressing(), NOW)

    assert field(lines, "Name") == "ml/iris"
    assert field(lines, "Phase") == "Progressing"
    assert field(lines, "Message") == "canary r4 at 10%, analysing"
    assert field(lines, "Traffic") == "stable r3 67% (intended 90%), canary r4 33% (intended 10%)"
    assert field(lines, "Ready pods") == "3/3"
    assert field(lines, "Stable") == "r3  version 2  sha256 bbbbbbbbbbbb  ready 2"
    assert field(lines, "Canary").endswith("weight 10%  step 1 of 2")
    assert field(lines, "Next step") == "in 52s (once its pods are ready and healthy)"
    assert field(lines, "Last breach") == (
        "MetricBreach: errorRate 0.2 > 0.01 over 30s (120 requests) (r2, pod iris-r2-x, 2m ago)"
    )
    assert field(lines, "Quarantined") == "1 spec (retry to re-run)"


def test_status_lists_conditions_as_a_table() -> None:
    lines = cli_render.status_lines(progressing(), NOW)
    table = lines[lines.index("Conditions:") + 1 :]
    assert table[0].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert table[1].split() == ["Ready", "True", "StableServing", "1h", "r3", "serves"]
    assert table[2].split()[:4] == ["Degraded", "True", "MetricBreach", "30s"]


def test_stable_status_has_no_canary_or_breach_lines() -> None:
    lines = cli_render.status_lines(stable(), NOW)
    assert field(lines, "Traffic") == "stable r3 100%"
    text = "\n".join(lines)
    assert "Canary:" not in text
    assert "Last breach:" not in text
    assert "Quarantined:" not in text


def test_status_without_status_says_the_operator_has_not_seen_it() -> None:
    obj = progressing()
    del obj["status"]
    lines = cli_render.status_lines(obj, NOW)
    assert field(lines, "Phase") == "-"
    assert "not observed" in field(lines, "Message")


def test_status_flags_a_stale_generation_and_a_pause() -> None:
    obj = progressing()
    obj["metadata"]["generation"] = 5
    obj["metadata"]["annotations"][names.ANNOTATION_PAUSED] = "true"
    lines = cli_render.status_lines(obj, NOW)
    assert field(lines, "Generation") == "5, status is from 4 (catching up)"
    assert field(lines, "Paused") == f"yes ({names.ANNOTATION_PAUSED})"


def test_no_colour_unless_asked() -> None:
    plain = "\n".join(cli_render.status_lines(progressing(), NOW, color=False))
    assert not ANSI.search(plain)


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        (names.PHASE_STABLE, ""),  # healthy or in progress: nothing to look at
        (names.PHASE_PROGRESSING, ""),
        (names.PHASE_ROLLED_BACK, "31"),
        (names.PHASE_FAILED, "31"),
        (names.PHASE_DEGRADED, "31"),
    ],
)
def test_colour_marks_only_a_phase_that_needs_attention(phase: str, code: str) -> None:
    obj = progressing()
    obj["status"]["phase"] = phase
    line = next(x for x in cli_render.status_lines(obj, NOW, color=True) if x.startswith("Phase"))
    assert (f"\x1b[{code}m" in line) if code else not ANSI.search(line)
    assert ANSI.sub("", line).split() == ["Phase:", phase]


@pytest.mark.parametrize(
    ("ctype", "value", "code"),
    [
        (names.COND_READY, "True", ""),
        (names.COND_READY, "False", ""),  # a healthy rollout is not news
        (names.COND_DEGRADED, "True", "\x1b[31m"),  # the bad state
        (names.COND_DEGRADED, "False", ""),
        (names.COND_AVAILABLE, "False", "\x1b[31m"),
        (names.COND_AVAILABLE, "True", ""),
        (names.COND_INVALID_SPEC, "True", "\x1b[31m"),
        (names.COND_PAUSED, "True", "\x1b[33m"),  # waits on a person
        (names.COND_PROGRESSING, "True", ""),
        (names.COND_PROGRESSING, "False", ""),
        (names.COND_READY, "Unknown", "\x1b[33m"),
    ],
)
def test_condition_colours_mark_only_what_needs_attention(
    ctype: str, value: str, code: str
) -> None:
    obj = progressing()
    obj["status"]["conditions"] = [{"type": ctype, "status": value, "reason": "R", "message": "m"}]
    row = next(
        x for x in cli_render.status_lines(obj, NOW, color=True) if x.startswith(f"  {ctype}")
    )
    status_cell = row.split()[1]
    assert status_cell.startswith(code) if code else not ANSI.search(status_cell)


def test_history_lists_rollouts_and_marks_the_stable_revision() -> None:
    lines = cli_render.history_lines(progressing(), NOW)
    assert lines[0].split() == [
        "REVISION", "VERSION", "SHA256", "OUTCOME", "STARTED", "FINISHED", "REASON",
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:4]]
    assert rows[0] == ["1", "1", "bbbbbbbbbbbb", "Promoted", "1d", "23h"]
    assert rows[1] == ["2", "1.1", "RolledBack", "2h", "1h", "errorRate", "0.2", ">", "0.01"]
    assert rows[2][:2] == ["*", "3"]
    assert lines[4] == "* stable revision r3"
    assert lines[5] == "rolling out: r4 (version 3)"


def test_history_when_nothing_finished_yet() -> None:
    obj = progressing()
    obj["status"]["history"] = []
    assert cli_render.history_lines(obj, NOW)[0] == "ml/iris has no finished rollouts yet"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (None, "-"),
        ("not a time", "-"),
        ("2026-01-02T11:59:15Z", "45s"),
        ("2026-01-02T11:48:00Z", "12m"),
        ("2026-01-02T09:00:00Z", "3h"),
        ("2025-12-31T12:00:00Z", "2d"),
        ("2026-01-02T12:00:10Z", "0s"),  # clock skew: never negative
    ],
)
def test_age(timestamp: str | None, expected: str) -> None:
    assert cli_render.age(timestamp, NOW) == expected


def test_machine_documents_carry_the_raw_status() -> None:
    obj = progressing()
    doc = cli_render.status_document(obj)
    assert doc["name"] == "iris"
    assert doc["namespace"] == "ml"
    assert doc["paused"] is False
    assert doc["status"] == obj["status"]
    history = cli_render.history_document(obj)
    assert history["stableRevision"] == 3
    assert history["canaryRevision"] == 4
    assert [h["revision"] for h in history["history"]] == [1, 2, 3]


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Fields the API server would prune: the CLI must only read what the CRD keeps."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return [
            found
            for key, child in value.items()
            for found in (
                unknown_fields(child, props[key], f"{path}.{key}")
                if key in props
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(value, list):
        return [f for item in value for f in unknown_fields(item, schema.get("items", {}), path)]
    return []


@pytest.mark.parametrize("fixture", [progressing, stable])
def test_fixtures_only_use_status_fields_the_crd_keeps(fixture: Any) -> None:
    assert unknown_fields(fixture()["status"], crd.status_schema()) == []


def test_instants_render_as_time_left() -> None:
    assert cli_render.until("2026-01-02T12:04:00Z", NOW) == "in 4m"
    assert cli_render.until("2026-01-02T11:59:00Z", NOW) == "now"
    assert cli_render.until(None, NOW) == ""
    baking = progressing()
    del baking["status"]["canary"]
    baking["status"]["bakeUntil"] = "2026-01-02T12:00:30Z"
    assert field(cli_render.status_lines(baking, NOW), "Bake ends") == "in 30s"


def test_history_shows_the_registry_version_of_mlflow_models() -> None:
    obj = progressing()
    history = obj["status"]["history"]
    history[0] |= {"registryVersion": "3", "runId": "ecbfe6d1395f40e3a23a9af8282c9ec0"}
    obj["status"]["canary"] |= {"registryVersion": "4"}
    lines = cli_render.history_lines(obj, NOW)
    assert lines[0].split()[:4] == ["REVISION", "VERSION", "REGISTRY", "SHA256"]
    assert lines[1].split()[:5] == ["1", "1", "v3", "run", "ecbfe6d1"]
    assert lines[2].split()[:3] == ["2", "1.1", "-"]  # a revision from another source
    assert lines[-1] == "rolling out: r4 (version 3, registry v4)"


def test_status_says_when_an_image_upgrade_waits() -> None:
    obj = stable()
    obj["status"]["image"] = {
        "serving": "img:1",
        "default": "img:2",
        "state": names.IMAGE_UPGRADE_AVAILABLE,
        "message": "img:2 is available; keeps img:1",
    }
    lines = cli_render.status_lines(obj, NOW)
    assert field(lines, "Image") == "img:1  UpgradeAvailable: img:2 is available; keeps img:1"
    obj["status"]["image"].update(serving="img:2", state=names.IMAGE_UP_TO_DATE)
    assert field(cli_render.status_lines(obj, NOW), "Image") == "img:2"
