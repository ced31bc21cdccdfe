"""Which reconciles owe a webhook notice, and what the per-object gauges show."""

from __future__ import annotations

from typing import Any

from modeldeploy import names
from modeldeploy.notices import notices, object_series

META = {"namespace": "ns", "name": "iris", "uid": "u-1"}
STABLE_2 = {"phase": names.PHASE_STABLE, "stable": {"revision": 2}, "canaryWeight": "-"}


def event(reason: str, message: str = "m") -> dict[str, str]:
    return {"type": "Normal", "reason": reason, "message": message}


def test_promoted_and_rolled_back_events_become_notices() -> None:
    events = [event(names.REASON_STEP_ADVANCED), event(names.REASON_PROMOTED, "r2 promoted")]
    found = notices(META, {"phase": names.PHASE_PROGRESSING}, STABLE_2, events, "t")
    assert [n.event for n in found] == ["Promoted"]
    payload = found[0].payload()
    assert payload["stableRevision"] == 2 and payload["canaryRevision"] is None
    assert (payload["namespace"], payload["name"], payload["uid"]) == ("ns", "iris", "u-1")
    assert payload["message"] == "r2 promoted" and payload["kind"] == names.KIND
    rolled = notices(META, {}, STABLE_2, [event(names.REASON_ROLLED_BACK)], "t")
    assert [n.event for n in rolled] == ["RolledBack"]


def test_failed_is_noticed_once_when_the_phase_turns_failed() -> None:
    failed: dict[str, Any] = {"phase": names.PHASE_FAILED, "message": "model failed to load"}
    found = notices(META, {"phase": names.PHASE_PROGRESSING}, failed, [], "t")
    assert [(n.event, n.message) for n in found] == [("Failed", "model failed to load")]
    assert notices(META, failed, failed, [], "t") == []  # still Failed: nothing new


def test_other_events_owe_nothing() -> None:
    quiet = [event(names.REASON_DEPLOYED), event(names.REASON_STEP_ADVANCED)]
    assert notices(META, {}, STABLE_2, quiet, "t") == []


def test_object_series_reads_the_status() -> None:
    canary = {
        "phase": names.PHASE_PROGRESSING,
        "stable": {"revision": 1},
        "canary": {"revision": 2},
        "canaryWeight": "25%",
        "canaryTraffic": "50%",
    }
    series = object_series(canary)
    assert series is not None
    assert (series.stable_revision, series.canary_revision) == ("1", "2")
    assert (series.canary_weight, series.canary_traffic) == (25.0, 50.0)
    stable = object_series(STABLE_2)
    assert stable is not None and (stable.canary_revision, stable.canary_weight) == ("", 0.0)
    assert object_series({}) is None  # nothing written yet


def test_times_in_messages_are_whole_seconds() -> None:
    from datetime import UTC, datetime

    from modeldeploy.serial import iso, shown

    t = datetime(2026, 12, 1, 0, 5, 2, 475918, tzinfo=UTC)
    assert shown(t) == "2026-12-01T00:05:02Z"
    assert iso(t) == "2026-12-01T00:05:02.475918Z"  # state keeps its precision
