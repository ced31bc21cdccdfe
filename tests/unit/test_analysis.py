"""analysis.analyze: which pods count, how many must breach, what no data means."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.analysis import (
    Health,
    OnNoData,
    PodView,
    Verdict,
    analyze,
    analyze_revisions,
    pod_view,
)
from modeldeploy.names import (
    LABEL_REVISION,
    POD_COND_METRICS_HEALTHY,
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_NO_READY_REPLICAS,
    REASON_WARMING_UP,
    REASON_WITHIN_THRESHOLDS,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=30)
OLD = NOW - timedelta(minutes=5)  # Ready for longer than one window
YOUNG = NOW - timedelta(seconds=10)  # Ready for less than one window
BREACH_MSG = "errorRate 0.2 > 0.01 over 30s (50 requests)"


def pod(
    name: str,
    metrics: str | None = None,
    reason: str = "",
    message: str = "",
    *,
    revision: int | None = 2,
    ready: bool = True,
    since: datetime | None = OLD,
    terminating: bool = False,
) -> PodView:
    return PodView(name, revision, ready, since, terminating, metrics, reason, message)


def within(name: str, **kw: Any) -> PodView:
    return pod(name, "True", REASON_WITHIN_THRESHOLDS, "errorRate 0 <= 0.01 (40 requests)", **kw)


def breach(name: str, **kw: Any) -> PodView:
    return pod(name, "False", REASON_METRIC_BREACH, BREACH_MSG, **kw)


def few(name: str, status: str = "Unknown", **kw: Any) -> PodView:
    """The sidecar's no-data verdict (its status follows onNoData: Unknown, True or False)."""
    msg = "3 requests over 30s, fewer than minRequests 20; onNoData=hold"
    return pod(name, status, REASON_INSUFFICIENT_DATA, msg, **kw)


def judge(pods: list[PodView], on_no_data: OnNoData = OnNoData.HOLD, **kw: Any) -> Verdict:
    return analyze(pods, 2, now=NOW, window=WINDOW, on_no_data=on_no_data, **kw)


# (id, pods, onNoData, health, reason, the pod named in the verdict)
CASES = [
    ("no pods", [], OnNoData.HOLD, Health.PENDING, REASON_NO_READY_REPLICAS, None),
    ("only unready pods", [breach("a", ready=False)], OnNoData.HOLD, Health.PENDING,
     REASON_NO_READY_REPLICAS, None),
    ("a terminating breacher does not count", [breach("a", terminating=True), within("b")],
     OnNoData.HOLD, Health.HEALTHY, REASON_WITHIN_THRESHOLDS, None),
    ("another revision's breach does not count", [breach("a", revision=1), within("b")],
     OnNoData.HOLD, Health.HEALTHY, REASON_WITHIN_THRESHOLDS, None),
    ("pods without a revision label do not count", [breach("a", revision=None), within("b")],
     OnNoData.HOLD, Health.HEALTHY, REASON_WITHIN_THRESHOLDS, None),
    ("one breaching pod breaches the revision", [within("a"), breach("b"), within("c")],
     OnNoData.HOLD, Health.BREACHED, REASON_METRIC_BREACH, "b"),
    ("a young breaching pod still breaches", [breach("a", since=YOUNG)], OnNoData.HOLD,
     Health.BREACHED, REASON_METRIC_BREACH, "a"),
    ("all within thresholds", [within("a"), within("b")], OnNoData.HOLD, Health.HEALTHY,
     REASON_WITHIN_THRESHOLDS, None),
    ("a silent pod does not veto the evidence of another", [within("a"), few("b")],
     OnNoData.FAIL, Health.HEALTHY, REASON_WITHIN_THRESHOLDS, None),
    ("young pods without verdict: not yet", [pod("a", since=YOUNG), few("b", since=YOUNG)],
     OnNoData.FAIL, Health.PENDING, REASON_WARMING_UP, None),
    ("sidecar's onNoData=fail False on a young pod is not a breach",
     [few("a", "False", since=YOUNG)], OnNoData.FAIL, Health.PENDING, REASON_WARMING_UP, None),
    ("no data after a window, hold", [few("a"), pod("b", since=YOUNG)], OnNoData.HOLD,
     Health.NO_DATA, REASON_INSUFFICIENT_DATA, "a"),
    ("no data after a window, pass", [few("a", "True")], OnNoData.PASS, Health.HEALTHY,
     REASON_INSUFFICIENT_DATA, "a"),
    ("no data after a window, fail", [few("a", "False")], OnNoData.FAIL, Health.BREACHED,
     REASON_INSUFFICIENT_DATA, "a"),
    ("sidecar's pass True is not evidence under hold", [few("a", "True")], OnNoData.HOLD,
     Health.NO_DATA, REASON_INSUFFICIENT_DATA, "a"),
    ("no condition at all after a window", [pod("a")], OnNoData.HOLD, Health.NO_DATA,
     REASON_INSUFFICIENT_DATA, "a"),
    ("scrape failures are no data, not a breach", [pod("a", "Unknown", "ScrapeFailed", "x")],
     OnNoData.HOLD, Health.NO_DATA, REASON_INSUFFICIENT_DATA, "a"),
    ("unknown Ready time counts as a full window", [pod("a", since=None)], OnNoData.HOLD,
     Health.NO_DATA, REASON_INSUFFICIENT_DATA, "a"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pods", "on_no_data", "health", "reason", "named"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_verdict(
    pods: list[PodView], on_no_data: OnNoData, health: Health, reason: str, named: str | None
) -> None:
    verdict = judge(pods, on_no_data)
    assert (verdict.health, verdict.reason, verdict.pod) == (health, reason, named)


def test_a_breach_names_the_pod_the_condition_message_and_the_count() -> None:
    verdict = judge([within("a"), breach("b"), breach("c")])
    assert verdict.message == f"pod b: {BREACH_MSG} (2 of 3 Ready pods breach)"


def test_no_data_names_the_pod_and_what_its_sidecar_said() -> None:
    verdict = judge([few("quiet")])
    assert "pod quiet: InsufficientData: 3 requests over 30s" in verdict.message
    assert "onNoData=hold" in verdict.message


def test_min_breaching_can_require_more_than_one_pod() -> None:
    assert judge([breach("a"), within("b")], min_breaching=2).health is Health.HEALTHY
    assert judge([breach("a"), breach("b")], min_breaching=2).health is Health.BREACHED


def test_warming_up_says_when_to_look_again() -> None:
    verdict = judge([pod("a", since=YOUNG), pod("b", since=YOUNG - timedelta(seconds=5))])
    assert verdict.recheck_at == YOUNG - timedelta(seconds=5) + WINDOW
    assert judge([few("a")]).recheck_at is None


def test_analyze_revisions_judges_each_revision_apart() -> None:
    pods = [within("a", revision=1), breach("b", revision=2)]
    verdicts = analyze_revisions(pods, [1, 2, 3], now=NOW, window=WINDOW, on_no_data=OnNoData.HOLD)
    assert {n: v.health for n, v in verdicts.items()} == {
        1: Health.HEALTHY,
        2: Health.BREACHED,
        3: Health.PENDING,
    }


def raw_pod(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "iris-r2-abc", "labels": {LABEL_REVISION: "2"}},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T11:55:00Z"},
                {
                    "type": POD_COND_METRICS_HEALTHY,
                    "status": "False",
                    "reason": REASON_METRIC_BREACH,
                    "message": BREACH_MSG,
                    "lastTransitionTime": "2026-03-01T11:59:00Z",
                },
            ]
        },
    }
    body["metadata"].update(overrides)
    return body


def test_pod_view_reads_a_pod_from_the_api() -> None:
    assert pod_view(raw_pod()) == PodView(
        "iris-r2-abc", 2, True, OLD, False, "False", REASON_METRIC_BREACH, BREACH_MSG
    )


def test_pod_view_tolerates_a_bare_pod() -> None:
    view = pod_view({"metadata": {"name": "p", "deletionTimestamp": "2026-03-01T12:00:00Z"}})
    assert view == PodView("p", None, False, None, True, None, "", "")
    assert pod_view(raw_pod(labels={LABEL_REVISION: "two"})).revision is None


PODS = st.builds(
    pod,
    name=st.sampled_from(["a", "b", "c", "d"]),
    metrics=st.sampled_from([None, "True", "False", "Unknown"]),
    reason=st.sampled_from(
        ["", REASON_WITHIN_THRESHOLDS, REASON_METRIC_BREACH, REASON_INSUFFICIENT_DATA]
    ),
    since=st.sampled_from([OLD, YOUNG, None]),
)


@given(st.lists(PODS, max_size=5), st.lists(PODS, max_size=5), st.sampled_from(list(OnNoData)))
def test_pods_that_serve_no_traffic_of_the_revision_never_change_the_verdict(
    counted: list[PodView], others: list[PodView], on_no_data: OnNoData
) -> None:
    noise = [
        replace(p, ready=False) if i % 3 == 0 else replace(p, terminating=True) if i % 3 == 1
        else replace(p, revision=1)
        for i, p in enumerate(others)
    ]  # fmt: skip
    assert judge(counted + noise, on_no_data) == judge(counted, on_no_data)


@given(st.lists(PODS, max_size=6), st.sampled_from(list(OnNoData)))
def test_healthy_needs_evidence_and_any_breach_wins(
    pods: list[PodView], on_no_data: OnNoData
) -> None:
    verdict = judge(pods, on_no_data)
    real_breach = any(p.metrics == "False" and p.reason != REASON_INSUFFICIENT_DATA for p in pods)
    evidence = any(p.metrics == "True" and p.reason != REASON_INSUFFICIENT_DATA for p in pods)
    if real_breach:
        assert verdict.health is Health.BREACHED
    elif verdict.health is Health.HEALTHY:
        assert evidence or on_no_data is OnNoData.PASS
    if verdict.health is Health.BREACHED:
        assert real_breach or on_no_data is OnNoData.FAIL
