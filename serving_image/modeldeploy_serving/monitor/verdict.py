"""Judge one window against the thresholds. Pure: a verdict is a value, never an exception.

Status and reason (the condition the sidecar writes on its Pod):

- ``True / WithinThresholds``: enough requests, every configured threshold holds.
- ``False / MetricBreach``: enough requests and an error-rate or latency threshold is crossed.
- ``False / PredictionDrift`` or ``FeatureDrift``: enough requests, the errors and latency hold,
  and the PSI of the predictions (or of the worst input column) against the reference profile
  is above its threshold; the message names the feature, the score and the rows counted.
- ``False / AccuracyBelowThreshold`` or ``MAEAboveThreshold``: over the feedback window (its own,
  longer: labels arrive late), at least ``min_feedback`` labelled rows were scored and their
  accuracy (correct / rows) is below ``min_accuracy``, or their mean absolute error above
  ``max_mae``. Checked after error rate and latency and before drift, and also when there are
  fewer than ``min_requests`` requests: labelled rows are evidence of their own. Fewer than
  ``min_feedback`` rows: this rule says nothing (no breach, and no reason to withhold True).
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
    REASON_ACCURACY_BELOW_THRESHOLD,
    REASON_FEATURE_DRIFT,
    REASON_INSUFFICIENT_DATA,
    REASON_MAE_ABOVE_THRESHOLD,
    REASON_METRIC_BREACH,
    REASON_PREDICTION_DRIFT,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving.drift import PREDICTION
from modeldeploy_serving.monitor.psi import drift_score
from modeldeploy_serving.monitor.window import Feedback, WindowStats

# Not a metric verdict: the sidecar cannot see the model server. Operators treat it like any
# Unknown (no evidence either way).
REASON_SCRAPE_FAILED: Final = "ScrapeFailed"

ERROR_RATE: Final = "errorRate"  # metric names as they appear in messages (the CRD's field names)
LATENCY_P99_MS: Final = "latencyP99Ms"
PREDICTION_DRIFT: Final = "predictionDrift"
FEATURE_DRIFT: Final = "featureDrift"
MIN_ACCURACY: Final = "minAccuracy"
MAX_MAE: Final = "maxMAE"


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
    min_accuracy: float | None = None  # correct / rows of labelled feedback, in [0, 1]
    max_mae: float | None = None  # mean absolute error of labelled feedback


@dataclass(frozen=True, slots=True)
class FeedbackEvidence:
    """Labelled feedback scored over the feedback window, and the rows it takes to judge."""

    counts: Feedback  # increases over the feedback window
    window_seconds: float
    min_rows: int


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
    feedback: FeedbackEvidence | None = None,
) -> Verdict:
    """The verdict for one window (``None``: nothing scraped yet)."""
    requests = stats.requests if stats else 0.0
    span = f"over {_num(window_seconds)}s"
    over = f"{span} ({_count(requests)})"
    quality = None if feedback is None else feedback_breach(feedback, thresholds)
    if stats is None or requests < max(min_requests, 1):
        few = f"{_count(requests)} {span}, fewer than minRequests {min_requests}"
        return quality or _no_data(few, on_no_data)
    checks = _checks(stats, thresholds)
    breaches = [
        f"{name} {_num(value)} > {_num(limit)}" for name, value, limit in checks if value > limit
    ]
    if breaches:
        return Verdict(Status.FALSE, REASON_METRIC_BREACH, f"{'; '.join(breaches)} {over}")
    if quality:
        return quality
    drift = Drift.of(stats)  # scored once, for the rule and for the message
    if drifted := drift_breach(drift, thresholds, span):
        return drifted
    missing = _missing(stats, thresholds)
    if missing:
        return _no_data(f"no {' or '.join(missing)} samples {over}", on_no_data)
    within = [f"{name} {_num(value)} <= {_num(limit)}" for name, value, limit in checks]
    within += drift_within(drift, thresholds)
    summary = ", ".join(within) if within else "no thresholds set"
    labelled = "" if feedback is None else feedback_summary(feedback, thresholds)
    return Verdict(Status.TRUE, REASON_WITHIN_THRESHOLDS, f"{summary} {over}{labelled}")


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


@dataclass(frozen=True, slots=True)
class Drift:
    """A window's drift, as the rules and the messages read it: the predictions' PSI and the
    worst input column's, each with the rows counted (None: no reference or no rows)."""

    prediction: tuple[float, float] | None
    worst: tuple[str, float, float] | None  # column, PSI, rows

    @classmethod
    def of(cls, stats: WindowStats) -> Drift:
        scores = drift_scores(stats)
        features = {name: value for name, value in scores.items() if name != PREDICTION}
        worst = max(features, key=lambda name: features[name][0]) if features else None
        return cls(scores.get(PREDICTION), None if worst is None else (worst, *features[worst]))


def drift_within(drift: Drift, thresholds: Thresholds) -> list[str]:
    """The drift scores of a healthy window, for the message people read (`kubectl modeldeploy
    status`): the predictions' PSI and the worst column's, against their thresholds if set."""
    shown: list[str] = []
    if drift.prediction is not None:
        score = drift.prediction[0]
        shown.append(_score(PREDICTION_DRIFT, score, thresholds.max_prediction_drift))
    if drift.worst is not None:
        name, score, _ = drift.worst
        shown.append(_score(f"{FEATURE_DRIFT} {name!r}", score, thresholds.max_feature_drift))
    return shown


def _score(label: str, score: float, limit: float | None) -> str:
    return f"{label} PSI {_num(score)}" + ("" if limit is None else f" <= {_num(limit)}")


def drift_breach(drift: Drift, thresholds: Thresholds, span: str) -> Verdict | None:
    """Prediction drift first (what users see), then the worst feature."""
    limit = thresholds.max_prediction_drift
    if limit is not None and drift.prediction is not None and drift.prediction[0] > limit:
        score, rows = drift.prediction
        message = f"{PREDICTION_DRIFT} PSI {_num(score)} > {_num(limit)} {span} ({_rows(rows)})"
        return Verdict(Status.FALSE, REASON_PREDICTION_DRIFT, message)
    limit = thresholds.max_feature_drift
    if limit is None or drift.worst is None or drift.worst[1] <= limit:
        return None
    name, score, rows = drift.worst
    message = (
        f"{FEATURE_DRIFT} feature {name!r} PSI {_num(score)} > {_num(limit)} {span} ({_rows(rows)})"
    )
    return Verdict(Status.FALSE, REASON_FEATURE_DRIFT, message)


def feedback_rules(
    evidence: FeedbackEvidence, thresholds: Thresholds
) -> list[tuple[str, float | None, float]]:
    """(threshold name, value or None below min_rows, threshold) for each feedback rule set."""
    counts, enough = evidence.counts, max(evidence.min_rows, 1)
    rules: list[tuple[str, float | None, float]] = []
    if thresholds.min_accuracy is not None:
        accuracy = None
        if counts.classified >= enough:  # clamped: a scrape may race the two counters
            accuracy = min(1.0, max(0.0, counts.correct / counts.classified))
        rules.append((MIN_ACCURACY, accuracy, thresholds.min_accuracy))
    if thresholds.max_mae is not None:
        mae = None if counts.regressed < enough else counts.absolute_error / counts.regressed
        rules.append((MAX_MAE, mae, thresholds.max_mae))
    return rules


def feedback_breach(evidence: FeedbackEvidence, thresholds: Thresholds) -> Verdict | None:
    """Accuracy below minAccuracy, or MAE above maxMAE, once min_rows labelled rows are in."""
    span = f"over {_num(evidence.window_seconds)}s"
    for name, value, limit in feedback_rules(evidence, thresholds):
        if value is None:
            continue
        if name == MIN_ACCURACY and value < limit:
            rows = _rows(evidence.counts.classified)
            message = f"{name}: accuracy {_num(value)} < {_num(limit)} {span} ({rows} of feedback)"
            return Verdict(Status.FALSE, REASON_ACCURACY_BELOW_THRESHOLD, message)
        if name == MAX_MAE and value > limit:
            rows = _rows(evidence.counts.regressed)
            message = f"{name}: MAE {_num(value)} > {_num(limit)} {span} ({rows} of feedback)"
            return Verdict(Status.FALSE, REASON_MAE_ABOVE_THRESHOLD, message)
    return None


def feedback_summary(evidence: FeedbackEvidence, thresholds: Thresholds) -> str:
    """ "; accuracy 0.93 >= 0.8 over 300s (120 rows of feedback)", or why the rule is silent."""
    span = f"over {_num(evidence.window_seconds)}s"
    parts = []
    for name, value, limit in feedback_rules(evidence, thresholds):
        accuracy = name == MIN_ACCURACY
        c = evidence.counts
        rows = _rows(c.classified if accuracy else c.regressed)
        if value is None:
            parts.append(
                f"{name}: {rows} of feedback {span}, fewer than minFeedback {evidence.min_rows}"
            )
        else:
            shown = f"accuracy {_num(value)} >= " if accuracy else f"MAE {_num(value)} <= "
            parts.append(f"{shown}{_num(limit)} {span} ({rows} of feedback)")
    return "".join(f"; {part}" for part in parts)


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
