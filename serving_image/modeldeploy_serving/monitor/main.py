"""``modeldeploy-monitor``: the sidecar's entry point. ``--help`` lists the flags."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from aiohttp import web

from modeldeploy_serving.monitor.config import Config, parse_config
from modeldeploy_serving.monitor.health import MonitorMetrics, make_app
from modeldeploy_serving.monitor.kube import ConfigError, KubeReporter
from modeldeploy_serving.monitor.loop import Monitor, log
from modeldeploy_serving.monitor.ready_loop import ReadinessReporter
from modeldeploy_serving.monitor.scrape import Scraper
from modeldeploy_serving.monitor.verdict import (
    ERROR_RATE,
    FEATURE_DRIFT,
    LATENCY_P99_MS,
    MAX_MAE,
    MIN_ACCURACY,
    PREDICTION_DRIFT,
)

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv, os.environ)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Our own line per state change says it; not three urllib3 retry lines per attempt.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        reporter = KubeReporter.connect(config.kubeconfig, config.pod_namespace, config.pod_name)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        asyncio.run(serve(config, reporter))
    finally:
        reporter.close()
    return 0


async def serve(config: Config, reporter: KubeReporter) -> None:
    """Run until SIGTERM or SIGINT."""
    metrics = MonitorMetrics()
    scraper = Scraper(config.metrics_url, timeout_seconds=scrape_timeout(config))
    readiness = ReadinessReporter(
        scraper, reporter, config.scrape_interval_seconds, wall=lambda: datetime.now(UTC)
    )
    monitor = Monitor(config, scraper, reporter, metrics, readiness=readiness)
    runner = web.AppRunner(make_app(metrics, monitor.health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    log.info(
        "monitoring %s for pod %s/%s (window %gs, minRequests %d, onNoData %s, thresholds: %s); "
        "serving /healthz and /metrics on %s",
        config.metrics_url,
        config.pod_namespace,
        config.pod_name,
        config.window_seconds,
        config.min_requests,
        config.on_no_data.value,
        describe(config),
        ", ".join(str(addr) for addr in runner.addresses),
    )
    task = asyncio.create_task(monitor.run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        await scraper.close()
        await runner.cleanup()


def describe(config: Config) -> str:
    t = config.thresholds
    limits = [
        f"{name} {op} {limit:g}"
        for name, op, limit in (
            (ERROR_RATE, "<=", t.max_error_rate),
            (LATENCY_P99_MS, "<=", t.max_latency_p99_ms),
            (PREDICTION_DRIFT, "<=", t.max_prediction_drift),
            (FEATURE_DRIFT, "<=", t.max_feature_drift),
            (MIN_ACCURACY, ">=", t.min_accuracy),
            (MAX_MAE, "<=", t.max_mae),
        )
        if limit is not None
    ]
    if t.min_accuracy is not None or t.max_mae is not None:
        limits.append(
            f"over a feedback window of {config.feedback_window_seconds:g}s "
            f"from minFeedback {config.min_feedback} rows"
        )
    return ", ".join(limits) or "none"


def scrape_timeout(config: Config) -> float:
    """Short, but never shorter than a second on a busy node."""
    return min(5.0, max(1.0, config.scrape_interval_seconds))


if __name__ == "__main__":
    sys.exit(main())
