"""Judge one window against the thresholds. Pure: a verdict is a value, never an exception.

Status and reason (the condition the sidecar writes on its Pod):

- ``True / WithinThresholds``: enough requests, every configured threshold holds.
- ``False / MetricBreach``: enough requests and an error-rate or latency threshold is crossed.
- ``False / PredictionDrift`` or ``FeatureDrift``: enough requests, the errors and latency hold,
  and the PSI of the predictions (or of the worst input column) against the reference profile
  is above its threshold; the message names the feature, the score and the rows counted.
- Fewer than ``min_requests`` requests (checked first: a few unlucky requests prove nothing), or
  no latency samples while a latency threshold is set, is no data. ``on_no_data`` decides the
  status, and it is never a silent pass: the reason stays ``InsufficientData`` and the message
  says so: ``hold`` -> ``Unknown``, ``pass`` -> ``True``, ``fail`` -> ``False``.
- ``Unknown / ScrapeFailed``: the model server's /metrics could not be read several times in a
  row (decided by the loop, built by :func:`scrape_failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from modeldeploy.names import (
    REASON_FEATURE_DRIFT,
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_PREDICTION_DRIFT,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving.drift import PREDICTION
from modeldeploy_serving.monitor.psi import drift_score
from modeldeploy_serving.monitor.window import WindowStats

# Not a metric verdict: the sidecar cannot see the model server. Operators treat it like any
# Unknown (no evidence either way).
REASON_SCRAPE_FAILED: Final = "ScrapeFailed"

ERROR_RATE: Final = "errorRate"  # metric names as they appear in messages (the CRD's field names)
LATENCY_P99_MS: Final = "latencyP99Ms"
PREDICTION_DRIFT: Final = "predictionDrift"
FEATURE_DRIFT: Final = "featureDrift"


class Status(StrEnum):
    """A Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class OnNoData(StrEnum):
    """What too few requests mean."""

    HOLD = "hold"  # Unknown: wait for evidence (the default)
    PASS = "pass"  # True, reason InsufficientData: low traffic is acceptable
    FAIL = "fail"  # False, reason InsufficientData: a revision must prove itself with traffic


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_error_rate: float | None = None  # fraction in [0, 1]
    max_latency_p99_ms: float | None = None
    max_prediction_drift: float | None = None  # PSI of the predictions
    max_feature_drift: float | None = None  # PSI of the worst input column


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str
    message: str

    @property
    def key(self) -> tuple[Status, str]:
        """What counts as a change of verdict (the message carries fresh numbers every time)."""
        return self.status, self.reason


_NO_DATA_STATUS: Final = {
    OnNoData.HOLD: Status.UNKNOWN,
    OnNoData.PASS: Status.TRUE,
    OnNoData.FAIL: Status.FALSE,
}


def evaluate(
    stats: WindowStats | None,
    thresholds: Thresholds,
    min_requests: int,
    on_no_data: OnNoData,
    window_seconds: float,
) -> Verdict:
    """The verdict for one window (``None``: nothing scraped yet)."""
    requests = stats.requests if stats else 0.0
    span = f"over {_num(window_seconds)}s"
    over = f"{span} ({_count(requests)})"
    if stats is None or requests < max(min_requests, 1):
        few = f"{_count(requests)} {span}, fewer than minRequests {min_requests}"
        return _no_data(few, on_no_data)
    checks = _checks(stats, thresholds)
    breaches = [
        f"{name} {_num(value)} > {_num(limit)}" for name, value, limit in checks if value > limit
    ]
    if breaches:
        return Verdict(Status.FALSE, REASON_METRIC_BREACH, f"{'; '.join(breaches)} {over}")
    if drifted := drift_breach(stats, thresholds, span):
        return drifted
    missing = _missing(stats, thresholds)
    if missing:
        return _no_data(f"no {' or '.join(missing)} samples {over}", on_no_data)
    within = [f"{name} {_num(value)} <= {_num(limit)}" for name, value, limit in checks]
    summary = ", ".join(within) if within else "no thresholds set"
    return Verdict(Status.TRUE, REASON_WITHIN_THRESHOLDS, f"{summary} {over}")


def _checks(stats: WindowStats, thresholds: Thresholds) -> list[tuple[str, float, float]]:
    """(metric, value, threshold) for every threshold set whose metric has a value."""
    p99_s = stats.latency_p99_seconds
    candidates = [
        (ERROR_RATE, stats.error_rate, thresholds.max_error_rate),
        (LATENCY_P99_MS, None if p99_s is None else p99_s * 1000.0, thresholds.max_latency_p99_ms),
    ]
    return [(name, v, t) for name, v, t in candidates if v is not None and t is not None]


def drift_scores(stats: WindowStats) -> dict[str, tuple[float, float]]:
    """PSI and rows counted of every distribution with both window rows and a reference."""
    scores: dict[str, tuple[float, float]] = {}
    for name, counts in stats.drift.items():
        reference = stats.reference.get(name)
        rows = sum(counts)
        if reference is not None and len(reference) == len(counts) and rows > 0:
            scores[name] = (drift_score(counts, reference), rows)
    return scores


def drift_breach(stats: WindowStats, thresholds: Thresholds, span: str) -> Verdict | None:
    """Prediction drift first (what users see), then the worst feature."""
    scores = drift_scores(stats)
    limit = thresholds.max_prediction_drift
    if limit is not None and PREDICTION in scores and scores[PREDICTION][0] > limit:
        score, rows = scores[PREDICTION]
        message = f"{PREDICTION_DRIFT} PSI {_num(score)} > {_num(limit)} {span} ({_rows(rows)})"
        return Verdict(Status.FALSE, REASON_PREDICTION_DRIFT, message)
    limit = thresholds.max_feature_drift
    features = {name: value for name, value in scores.items() if name != PREDICTION}
    if limit is None or not features:
        return None
    worst = max(features, key=lambda name: features[name][0])
    score, rows = features[worst]
    if score <= limit:
        return None
    message = (
        f"{FEATURE_DRIFT} feature {worst!r} PSI {_num(score)} > {_num(limit)} {span} "
        f"({_rows(rows)})"
    )
    return Verdict(Status.FALSE, REASON_FEATURE_DRIFT, message)


def _rows(rows: float) -> str:
    n = round(rows)
    return f"{n} row" if n == 1 else f"{n} rows"


def _missing(stats: WindowStats, thresholds: Thresholds) -> list[str]:
    if thresholds.max_latency_p99_ms is not None and stats.latency_p99_seconds is None:
        return [LATENCY_P99_MS]
    return []


def _no_data(why: str, on_no_data: OnNoData) -> Verdict:
    return Verdict(
        _NO_DATA_STATUS[on_no_data], REASON_INSUFFICIENT_DATA, f"{why}; onNoData={on_no_data.value}"
    )


def scrape_failed(url: str, failures: int, error: str) -> Verdict:
    return Verdict(
        Status.UNKNOWN,
        REASON_SCRAPE_FAILED,
        f"cannot scrape {url}: {error} ({failures} consecutive failures)",
    )


def _num(value: float) -> str:
    """Four significant digits, no exponent for everyday values: 0.25, 412.5, 30."""
    return f"{value:.4g}"


def _count(requests: float) -> str:
    n = round(requests)
    return f"{n} request" if n == 1 else f"{n} requests"
