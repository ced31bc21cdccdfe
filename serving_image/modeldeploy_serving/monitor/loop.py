"""Glue: scrape on a timer, judge the window, hand the verdict to a writer that never blocks it.

Two tasks share the latest verdict:
- the scrape loop reads /metrics every interval, updates the window and the verdict, and wakes
  the writer when a write is due (a changed verdict is written within the same interval);
- the report loop writes the condition (and the Event when it turns False), retrying with
  exponential backoff while the API server is unreachable.

Scrape failures are not a breach: the last verdict stands for the first
``SCRAPE_FAILURES_BEFORE_UNKNOWN - 1`` failures, then it becomes Unknown/ScrapeFailed.
Each loop logs one line when its state changes (failing, recovered), never once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from modeldeploy.names import POD_COND_METRICS_HEALTHY
from modeldeploy_serving.monitor import report
from modeldeploy_serving.monitor.backoff import Backoff
from modeldeploy_serving.monitor.config import Config
from modeldeploy_serving.monitor.health import MonitorMetrics
from modeldeploy_serving.monitor.parse import ParseError, parse_sample
from modeldeploy_serving.monitor.ready_loop import ReadinessReporter
from modeldeploy_serving.monitor.scrape import ScrapeError
from modeldeploy_serving.monitor.verdict import (
    FeedbackEvidence,
    Status,
    Verdict,
    evaluate,
    scrape_failed,
)
from modeldeploy_serving.monitor.window import Window, feedback_only

SCRAPE_FAILURES_BEFORE_UNKNOWN: Final = 3
MAX_SCRAPE_BACKOFF: Final = 10.0  # seconds; also at most 8 scrape intervals
API_BACKOFF: Final = (0.5, 10.0)  # first and longest wait between failed API writes
MAX_PENDING_EVENTS: Final = 10  # Events waiting for the API; older ones are dropped beyond it

log = logging.getLogger("modeldeploy.monitor")


class Source(Protocol):
    url: str

    async def fetch(self) -> str: ...


class Sink(Protocol):
    async def patch_pod_status(self, body: dict[str, Any]) -> None: ...

    async def create_event(self, body: dict[str, Any]) -> None: ...


class Monitor:
    def __init__(
        self,
        config: Config,
        source: Source,
        sink: Sink,
        metrics: MonitorMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        token: Callable[[], str] = lambda: secrets.token_hex(8),
        readiness: ReadinessReporter | None = None,
    ) -> None:
        self.config, self.source, self.sink, self.metrics = config, source, sink, metrics
        self.readiness = readiness  # writes ModelReady (why the server is not ready), if given
        self.clock, self.wall, self.token = clock, wall, token
        self.window = Window(config.window_seconds)
        # Labels arrive late, so feedback has its own (longer) window; its samples keep only
        # the feedback counters, so a long window costs a few floats per scrape.
        self.feedback_window = Window(config.feedback_window_seconds)
        self.verdict: Verdict | None = None
        self.written: report.Written | None = None
        self.pending_events: list[dict[str, Any]] = []  # oldest first
        self.last_tick = clock()
        interval = config.scrape_interval_seconds
        self.scrape_backoff = Backoff(
            interval, max(interval, min(MAX_SCRAPE_BACKOFF, 8 * interval))
        )
        self.api_backoff = Backoff(*API_BACKOFF)
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled. An unexpected error ends both loops (and the process)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.scrape_loop())
            group.create_task(self.report_loop())
            if self.readiness is not None:
                group.create_task(self.readiness.run())

    # --- scraping -------------------------------------------------------------------------
    async def scrape_loop(self) -> None:
        while True:
            started = self.clock()
            delay = await self.scrape_once()
            await asyncio.sleep(max(0.0, started + delay - self.clock()))

    async def scrape_once(self) -> float:
        """Scrape, judge, wake the writer if due; return the wait before the next scrape."""
        self.last_tick = now = self.clock()
        try:
            sample = parse_sample(await self.source.fetch(), now)
        except (ScrapeError, ParseError) as exc:
            self.metrics.scraped(ok=False)
            delay = self.scrape_backoff.failed()
            self._scrape_failed(str(exc), self.scrape_backoff.failures)
            return delay
        self.metrics.scraped(ok=True)
        if failures := self.scrape_backoff.succeeded():
            log.info("scraping %s again after %d failures", self.source.url, failures)
        self.window.add(sample)
        self.feedback_window.add(feedback_only(sample))
        stats = self.window.stats()
        c = self.config
        feedback = self._feedback_evidence()
        verdict = evaluate(
            stats, c.thresholds, c.min_requests, c.on_no_data, c.window_seconds, feedback
        )
        self.metrics.judged(stats, verdict, feedback)
        self._judge(verdict)
        return c.scrape_interval_seconds

    def _feedback_evidence(self) -> FeedbackEvidence | None:
        stats = self.feedback_window.stats()
        if stats is None:
            return None
        c = self.config
        return FeedbackEvidence(stats.feedback, c.feedback_window_seconds, c.min_feedback)

    def _scrape_failed(self, error: str, failures: int) -> None:
        if failures == 1:
            log.warning("cannot scrape %s: %s; retrying with backoff", self.source.url, error)
        if failures >= SCRAPE_FAILURES_BEFORE_UNKNOWN:
            verdict = scrape_failed(self.source.url, failures, error)
            self.metrics.judged(None, verdict)
            self._judge(verdict)
        elif self.verdict is not None:
            self._judge(self.verdict)  # keep it, but let a refresh fall due

    def _judge(self, verdict: Verdict) -> None:
        if self.verdict is None or verdict.key != self.verdict.key:
            level = logging.WARNING if verdict.status == Status.FALSE else logging.INFO
            log.log(level, "verdict %s/%s: %s", verdict.status, verdict.reason, verdict.message)
        self.verdict = verdict
        if report.due(self.written, verdict, self.clock(), self.config.refresh_seconds):
            self._wake.set()

    # --- reporting ------------------------------------------------------------------------
    async def report_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except report.ReportError as exc:
                if self.api_backoff.failures == 0:
                    log.warning(
                        "cannot write to the Kubernetes API: %s; retrying with backoff", exc
                    )
                await asyncio.sleep(self.api_backoff.failed())
                self._wake.set()
                continue
            if failures := self.api_backoff.succeeded():
                log.info("Kubernetes API writes work again after %d failures", failures)

    async def sync(self) -> None:
        """Write the condition if due, then any Event not yet created."""
        verdict = self.verdict
        if verdict is not None and report.due(
            self.written, verdict, self.clock(), self.config.refresh_seconds
        ):
            await self._write_condition(verdict)
        while self.pending_events:
            event = self.pending_events[0]
            try:
                await self.sink.create_event(event)
            except report.ReportError:
                self.metrics.reported("event", ok=False)
                raise
            self.metrics.reported("event", ok=True)
            log.info("event %s: %s", event["reason"], event["message"])
            self.pending_events.pop(0)

    async def _write_condition(self, verdict: Verdict) -> None:
        now, at = self.wall(), self.clock()
        transition = report.transition_time(self.written, verdict, now)
        try:
            await self.sink.patch_pod_status(report.condition_patch(verdict, transition, now))
        except report.ReportError:
            self.metrics.reported("condition", ok=False)
            raise
        self.metrics.reported("condition", ok=True)
        if report.needs_event(self.written, verdict):
            c = self.config
            if len(self.pending_events) >= MAX_PENDING_EVENTS:  # the API has been down a while
                del self.pending_events[0]
            self.pending_events.append(
                report.verdict_event(
                    deployment=c.deployment_name,
                    deployment_uid=c.deployment_uid,
                    namespace=c.pod_namespace,
                    pod=c.pod_name,
                    verdict=verdict,
                    now=now,
                    suffix=self.token(),
                )
            )
        if self.written is None or self.written.key != verdict.key:
            log.info("wrote %s=%s/%s", POD_COND_METRICS_HEALTHY, *verdict.key)
        self.written = report.Written(verdict.key, transition, at)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the scrape loop ticks; details for humans and tests."""
        stale_after = max(30.0, 10 * self.scrape_backoff.cap)
        alive = self.clock() - self.last_tick < stale_after
        verdict = self.verdict
        return alive, {
            "alive": alive,
            "verdict": None
            if verdict is None
            else {
                "status": verdict.status.value,
                "reason": verdict.reason,
                "message": verdict.message,
            },
            "written": None
            if self.written is None
            else {"status": self.written.key[0].value, "reason": self.written.key[1]},
            "scrapeFailures": self.scrape_backoff.failures,
            "apiFailures": self.api_backoff.failures,
        }
