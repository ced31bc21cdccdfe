"""When the sidecar writes, and exactly what: the condition patch, the Event, the backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modeldeploy.names import (
    API_VERSION,
    KIND,
    POD_COND_METRICS_HEALTHY,
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving.monitor.backoff import Backoff
from modeldeploy_serving.monitor.report import (
    Written,
    condition_patch,
    due,
    needs_event,
    timestamp,
    transition_time,
    verdict_event,
)
from modeldeploy_serving.monitor.verdict import Status, Verdict

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
OK = Verdict(Status.TRUE, REASON_WITHIN_THRESHOLDS, "errorRate 0 <= 0.01 over 30s (50 requests)")
BREACH = Verdict(Status.FALSE, REASON_METRIC_BREACH, "errorRate 0.5 > 0.01 over 30s (50 requests)")
NO_DATA = Verdict(Status.UNKNOWN, REASON_INSUFFICIENT_DATA, "0 requests ...")
NO_DATA_FAIL = Verdict(Status.FALSE, REASON_INSUFFICIENT_DATA, "0 requests ...")


def written(verdict: Verdict, at: float = 100.0, since: datetime = T0) -> Written:
    return Written(verdict.key, since, at)


@pytest.mark.parametrize(
    ("last", "verdict", "now", "expected"),
    [
        pytest.param(None, NO_DATA, 0, True, id="first verdict"),
        pytest.param(written(OK), OK, 101, False, id="same verdict"),
        pytest.param(
            written(OK),
            Verdict(OK.status, OK.reason, "new numbers"),
            150,
            False,
            id="new numbers alone",
        ),
        pytest.param(written(OK), BREACH, 100.1, True, id="status changed"),
        pytest.param(written(NO_DATA_FAIL), BREACH, 101, True, id="reason changed"),
        pytest.param(written(OK), OK, 160, True, id="refresh due"),
    ],
)
def test_due(last: Written | None, verdict: Verdict, now: float, expected: bool) -> None:
    assert due(last, verdict, now, refresh_seconds=60) is expected


@pytest.mark.parametrize(
    ("last", "verdict", "expected"),
    [
        pytest.param(None, OK, T0 + timedelta(minutes=5), id="first write: now"),
        pytest.param(written(OK), OK, T0, id="same status: kept"),
        pytest.param(written(NO_DATA_FAIL), BREACH, T0, id="same status, new reason: kept"),
        pytest.param(written(OK), BREACH, T0 + timedelta(minutes=5), id="status changed: now"),
    ],
)
def test_transition_time_moves_only_with_the_status(
    last: Written | None, verdict: Verdict, expected: datetime
) -> None:
    assert transition_time(last, verdict, T0 + timedelta(minutes=5)) == expected


@pytest.mark.parametrize(
    ("last", "verdict", "expected"),
    [
        pytest.param(written(OK), BREACH, True, id="turned False"),
        pytest.param(None, BREACH, True, id="False from the start"),
        pytest.param(written(BREACH), BREACH, False, id="refresh of a breach"),
        pytest.param(written(NO_DATA_FAIL), BREACH, True, id="False for a new reason"),
        pytest.param(written(BREACH), OK, False, id="recovered"),
        pytest.param(written(OK), NO_DATA, False, id="unknown"),
    ],
)
def test_an_event_when_the_verdict_turns_false(
    last: Written | None, verdict: Verdict, expected: bool
) -> None:
    assert needs_event(last, verdict) is expected


def test_condition_patch_is_one_condition_merged_by_type() -> None:
    patch = condition_patch(BREACH, T0, T0 + timedelta(seconds=3))
    assert patch == {
        "status": {
            "conditions": [
                {
                    "type": POD_COND_METRICS_HEALTHY,
                    "status": "False",
                    "reason": REASON_METRIC_BREACH,
                    "message": BREACH.message,
                    "lastTransitionTime": "2026-05-01T12:00:00Z",
                    "lastProbeTime": "2026-05-01T12:00:03Z",
                }
            ]
        }
    }


def test_event_is_a_warning_on_the_model_deployment() -> None:
    event = verdict_event(
        deployment="iris",
        deployment_uid="uid-1",
        namespace="ml",
        pod="iris-r2-x",
        verdict=BREACH,
        now=T0,
        suffix="0a1b",
    )
    assert event["metadata"] == {"name": "iris.0a1b", "namespace": "ml"}
    assert event["involvedObject"] == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": "iris",
        "namespace": "ml",
        "uid": "uid-1",
    }
    assert (event["type"], event["reason"]) == ("Warning", REASON_METRIC_BREACH)
    assert event["message"] == f"pod iris-r2-x: {BREACH.message}"
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-05-01T12:00:00Z"


def test_event_name_fits_kubernetes_limits() -> None:
    event = verdict_event(
        deployment="m" * 253,
        deployment_uid="",
        namespace="ml",
        pod="p" * 200,
        verdict=BREACH,
        now=T0,
        suffix="abcd",
    )
    assert len(event["metadata"]["name"]) == 253
    assert len(event["reportingInstance"]) == 128


def test_timestamps_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert timestamp(datetime(2026, 5, 1, 14, 0, 0, 900_000, tzinfo=plus_two)) == (
        "2026-05-01T12:00:00Z"
    )
    with pytest.raises(ValueError, match="timezone"):
        timestamp(datetime(2026, 5, 1))


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial=0.5, cap=4)
    assert [backoff.failed() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert backoff.succeeded() == 6
    assert backoff.failed() == 0.5


def test_backoff_survives_a_very_long_outage() -> None:
    backoff = Backoff(initial=1, cap=10, failures=10_000)
    assert backoff.failed() == 10
