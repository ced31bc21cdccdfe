"""The sidecar's own /healthz and /metrics (a registry of its own, never the global one)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from modeldeploy.names import PATH_METRICS, PATH_MONITOR_HEALTH
from modeldeploy_serving.metric_names import PREFIX
from modeldeploy_serving.monitor.verdict import FeedbackEvidence, Status, Verdict, drift_scores
from modeldeploy_serving.monitor.window import WindowStats

MONITOR_PREFIX: Final = f"{PREFIX}_monitor"
SCRAPES: Final = f"{MONITOR_PREFIX}_scrapes"  # counter, label result: ok | error
REPORTS: Final = f"{MONITOR_PREFIX}_reports"  # counter, labels kind: condition | event, result
VERDICT: Final = f"{MONITOR_PREFIX}_verdict"  # gauge, label status: 1 for the current one
WINDOW_REQUESTS: Final = f"{MONITOR_PREFIX}_window_requests"
WINDOW_ERROR_RATE: Final = f"{MONITOR_PREFIX}_window_error_rate"
WINDOW_P99: Final = f"{MONITOR_PREFIX}_window_latency_p99_seconds"
# Gauge, label feature (the prediction under drift.PREDICTION): PSI against the profile.
WINDOW_DRIFT: Final = f"{MONITOR_PREFIX}_window_drift_psi"
# Gauges over the feedback window: labelled rows scored, their accuracy and MAE (NaN: none).
FEEDBACK_ROWS: Final = f"{MONITOR_PREFIX}_feedback_window_rows"
FEEDBACK_ACCURACY: Final = f"{MONITOR_PREFIX}_feedback_window_accuracy"
FEEDBACK_MAE: Final = f"{MONITOR_PREFIX}_feedback_window_mae"


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scrapes = Counter(SCRAPES, "Scrapes of the model server", ["result"], registry=r)
        self.reports = Counter(
            REPORTS, "Writes to the Kubernetes API", ["kind", "result"], registry=r
        )
        self.verdict = Gauge(VERDICT, "Current verdict (1 = this status)", ["status"], registry=r)
        self.requests = Gauge(WINDOW_REQUESTS, "Requests in the last window", registry=r)
        self.error_rate = Gauge(
            WINDOW_ERROR_RATE, "Error rate, last window (NaN: none)", registry=r
        )
        self.p99 = Gauge(WINDOW_P99, "p99 latency, last window (NaN: none)", registry=r)
        self.drift = Gauge(
            WINDOW_DRIFT, "PSI against the reference profile, last window", ["feature"], registry=r
        )
        self.feedback_rows = Gauge(
            FEEDBACK_ROWS, "Labelled feedback rows, feedback window", registry=r
        )
        self.accuracy = Gauge(
            FEEDBACK_ACCURACY, "Accuracy of feedback rows, feedback window (NaN: none)", registry=r
        )
        self.mae = Gauge(
            FEEDBACK_MAE, "MAE of feedback rows, feedback window (NaN: none)", registry=r
        )
        for result in ("ok", "error"):
            self.scrapes.labels(result)
        for status in Status:
            self.verdict.labels(status.value).set(0)

    def scraped(self, ok: bool) -> None:
        self.scrapes.labels("ok" if ok else "error").inc()

    def reported(self, kind: str, ok: bool) -> None:
        self.reports.labels(kind, "ok" if ok else "error").inc()

    def judged(
        self,
        stats: WindowStats | None,
        verdict: Verdict,
        feedback: FeedbackEvidence | None = None,
    ) -> None:
        for status in Status:
            self.verdict.labels(status.value).set(1 if status == verdict.status else 0)
        if stats is not None:
            self.requests.set(stats.requests)
            self.error_rate.set(_or_nan(stats.error_rate))
            self.p99.set(_or_nan(stats.latency_p99_seconds))
            for name, (score, _) in drift_scores(stats).items():
                self.drift.labels(name).set(score)
        if feedback is not None:
            c = feedback.counts
            self.feedback_rows.set(c.classified + c.regressed)
            self.accuracy.set(c.correct / c.classified if c.classified else math.nan)
            self.mae.set(c.absolute_error / c.regressed if c.regressed else math.nan)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def make_app(
    metrics: MonitorMetrics, health: Callable[[], tuple[bool, dict[str, Any]]]
) -> web.Application:
    """``health`` returns (alive, details); /healthz answers 503 when not alive."""

    async def healthz(_: web.Request) -> web.Response:
        alive, details = health()
        return web.json_response(details, status=200 if alive else 503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get(PATH_MONITOR_HEALTH, healthz)
    app.router.add_get(PATH_METRICS, metrics_endpoint)
    return app


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
