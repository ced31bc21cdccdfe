"""evaluate(): thresholds, minimum requests, what no data means, and the message it writes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.names import (
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving.monitor.verdict import (
    REASON_SCRAPE_FAILED,
    OnNoData,
    Status,
    Thresholds,
    Verdict,
    evaluate,
    scrape_failed,
)
from modeldeploy_serving.monitor.window import Buckets, WindowStats

INF = math.inf
BOTH = Thresholds(max_error_rate=0.01, max_latency_p99_ms=250)


def window(requests: float, errors: float = 0, buckets: Buckets | None = None) -> WindowStats:
    """``requests`` requests, all fast (under 5 ms) unless ``buckets`` says otherwise."""
    if buckets is None:
        buckets = ((0.005, requests), (0.5, requests), (INF, requests))
    return WindowStats(
        window_seconds=30,
        span_seconds=30,
        requests=requests,
        model_errors=errors,
        client_errors=0,
        buckets=buckets,
        resets=0,
    )


SLOW = ((0.1, 50), (0.5, 100), (INF, 120))  # p99 in the +Inf bucket: 500 ms


@pytest.mark.parametrize(
    ("stats", "thresholds", "status", "reason", "message"),
    [
        pytest.param(
            window(120, 30),
            BOTH,
            Status.FALSE,
            REASON_METRIC_BREACH,
            "errorRate 0.25 > 0.01 over 30s (120 requests)",
            id="error rate breach",
        ),
        pytest.param(
            window(120, 0, SLOW),
            BOTH,
            Status.FALSE,
            REASON_METRIC_BREACH,
            "latencyP99Ms 500 > 250 over 30s (120 requests)",
            id="latency breach",
        ),
        pytest.param(
            window(120, 30, SLOW),
            BOTH,
            Status.FALSE,
            REASON_METRIC_BREACH,
            "errorRate 0.25 > 0.01; latencyP99Ms 500 > 250 over 30s (120 requests)",
            id="both breach",
        ),
        pytest.param(
            window(200, 2),
            BOTH,
            Status.TRUE,
            REASON_WITHIN_THRESHOLDS,
            "errorRate 0.01 <= 0.01, latencyP99Ms 4.95 <= 250 over 30s (200 requests)",
            id="at the threshold is within",
        ),
        pytest.param(
            window(120, 30),
            Thresholds(max_latency_p99_ms=250),
            Status.TRUE,
            REASON_WITHIN_THRESHOLDS,
            "latencyP99Ms 4.95 <= 250 over 30s (120 requests)",
            id="only the thresholds set are judged",
        ),
        pytest.param(
            window(120, 30),
            Thresholds(),
            Status.TRUE,
            REASON_WITHIN_THRESHOLDS,
            "no thresholds set over 30s (120 requests)",
            id="no thresholds",
        ),
        pytest.param(
            window(120, 0, ()),
            BOTH,
            Status.UNKNOWN,
            REASON_INSUFFICIENT_DATA,
            "no latencyP99Ms samples over 30s (120 requests); onNoData=hold",
            id="latency threshold but no histogram",
        ),
        pytest.param(
            window(120, 30, ()),
            BOTH,
            Status.FALSE,
            REASON_METRIC_BREACH,
            "errorRate 0.25 > 0.01 over 30s (120 requests)",
            id="a breach needs no latency samples",
        ),
        pytest.param(
            window(1, 0),
            BOTH,
            Status.UNKNOWN,
            REASON_INSUFFICIENT_DATA,
            "1 request over 30s, fewer than minRequests 20; onNoData=hold",
            id="one request",
        ),
    ],
)
def test_evaluate(
    stats: WindowStats, thresholds: Thresholds, status: Status, reason: str, message: str
) -> None:
    verdict = evaluate(stats, thresholds, 20, OnNoData.HOLD, 30)
    assert verdict == Verdict(status, reason, message)


@pytest.mark.parametrize(
    ("on_no_data", "status"),
    [(OnNoData.HOLD, Status.UNKNOWN), (OnNoData.PASS, Status.TRUE), (OnNoData.FAIL, Status.FALSE)],
)
@pytest.mark.parametrize("stats", [None, window(0), window(19, 19)], ids=["none", "zero", "19"])
def test_too_few_requests_is_no_data_never_a_silent_pass(
    on_no_data: OnNoData, status: Status, stats: WindowStats | None
) -> None:
    verdict = evaluate(stats, BOTH, 20, on_no_data, 30)
    assert (verdict.status, verdict.reason) == (status, REASON_INSUFFICIENT_DATA)
    assert "fewer than minRequests 20" in verdict.message
    assert verdict.message.endswith(f"onNoData={on_no_data.value}")


def test_min_requests_is_inclusive() -> None:
    assert evaluate(window(20), BOTH, 20, OnNoData.HOLD, 30).status == Status.TRUE


def test_min_requests_zero_still_needs_one_request() -> None:
    verdict = evaluate(window(0), BOTH, 0, OnNoData.HOLD, 30)
    assert (verdict.status, verdict.reason) == (Status.UNKNOWN, REASON_INSUFFICIENT_DATA)


def test_the_message_names_the_configured_window() -> None:
    verdict = evaluate(window(100, 50), BOTH, 20, OnNoData.HOLD, 90)
    assert verdict.message == "errorRate 0.5 > 0.01 over 90s (100 requests)"


def test_scrape_failed_is_unknown_and_says_why() -> None:
    verdict = scrape_failed("http://127.0.0.1:8080/metrics", 3, "cannot connect")
    assert verdict.key == (Status.UNKNOWN, REASON_SCRAPE_FAILED)
    assert verdict.message == (
        "cannot scrape http://127.0.0.1:8080/metrics: cannot connect (3 consecutive failures)"
    )


def test_key_ignores_the_numbers_in_the_message() -> None:
    a = evaluate(window(100, 50), BOTH, 20, OnNoData.HOLD, 30)
    b = evaluate(window(300, 60), BOTH, 20, OnNoData.HOLD, 30)
    assert a.message != b.message and a.key == b.key


@given(
    requests=st.floats(0, 1e9, allow_nan=False),
    error_share=st.floats(0, 1.2, allow_nan=False),
    max_error_rate=st.none() | st.floats(0, 1),
    max_p99=st.none() | st.floats(0.001, 1e5),
    min_requests=st.integers(0, 1000),
    on_no_data=st.sampled_from(OnNoData),
)
def test_verdicts_are_consistent(
    requests: float,
    error_share: float,
    max_error_rate: float | None,
    max_p99: float | None,
    min_requests: int,
    on_no_data: OnNoData,
) -> None:
    stats = window(requests, requests * error_share)
    thresholds = Thresholds(max_error_rate, max_p99)
    verdict = evaluate(stats, thresholds, min_requests, on_no_data, 30)
    rate, p99 = stats.error_rate, stats.latency_p99_seconds
    assert rate is None or 0.0 <= rate <= 1.0
    breach = (max_error_rate is not None and rate is not None and rate > max_error_rate) or (
        max_p99 is not None and p99 is not None and p99 * 1000 > max_p99
    )
    if requests < max(min_requests, 1):
        assert verdict.reason == REASON_INSUFFICIENT_DATA
    elif breach:
        assert verdict.key == (Status.FALSE, REASON_METRIC_BREACH)
    else:
        assert verdict.key == (Status.TRUE, REASON_WITHIN_THRESHOLDS)
    assert "over 30s" in verdict.message
