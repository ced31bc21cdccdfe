"""The Monitor glue with a fake source, a fake API and a hand-moved clock: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from prometheus_client import generate_latest

from modeldeploy.names import REASON_INSUFFICIENT_DATA, REASON_METRIC_BREACH
from modeldeploy_serving.monitor.config import parse_config
from modeldeploy_serving.monitor.health import MonitorMetrics
from modeldeploy_serving.monitor.loop import SCRAPE_FAILURES_BEFORE_UNKNOWN, Monitor
from modeldeploy_serving.monitor.report import ReportError
from modeldeploy_serving.monitor.scrape import ScrapeError
from modeldeploy_serving.monitor.verdict import REASON_SCRAPE_FAILED
from tests.helpers.monitor_proc import FakeModelMetrics

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Source:
    url = "http://127.0.0.1:8080/metrics"

    def __init__(self, server: FakeModelMetrics) -> None:
        self.server, self.down = server, False

    async def fetch(self) -> str:
        if self.down:
            raise ScrapeError("cannot connect: refused")
        return generate_latest(self.server.registry).decode()


class Api:
    def __init__(self) -> None:
        self.conditions: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.down = False

    async def patch_pod_status(self, body: dict[str, Any]) -> None:
        if self.down:
            raise ReportError("patch pods/status: HTTP 503")
        self.conditions.append(body["status"]["conditions"][0])

    async def create_event(self, body: dict[str, Any]) -> None:
        if self.down:
            raise ReportError("create events: HTTP 503")
        self.events.append(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor(server: FakeModelMetrics, api: Api, clock: Clock, refresh: float = 60) -> Monitor:
    config = parse_config(
        [
            "--pod-name=p",
            "--pod-namespace=ns",
            "--deployment-name=iris",
            "--min-requests=5",
            "--max-error-rate=0.1",
            f"--refresh-seconds={refresh}",
        ],
        {},
    )
    return Monitor(
        config,
        Source(server),
        api,
        MonitorMetrics(),
        clock=clock,
        wall=lambda: datetime(2026, 5, 1, tzinfo=UTC),
        token=lambda: "abc",
    )


async def tick(m: Monitor, clock: Clock, seconds: float = 2) -> None:
    clock.now += seconds
    await m.scrape_once()
    await m.sync()


def test_a_breach_is_written_by_the_scrape_that_sees_it() -> None:
    server, api, clock = FakeModelMetrics(), Api(), Clock()
    m = monitor(server, api, clock)

    async def scenario() -> None:
        await tick(m, clock)
        assert api.conditions[-1]["reason"] == REASON_INSUFFICIENT_DATA
        server.record(ok=10, model_errors=10)
        await tick(m, clock)
        assert (api.conditions[-1]["status"], api.conditions[-1]["reason"]) == (
            "False",
            REASON_METRIC_BREACH,
        )
        assert [e["metadata"]["name"] for e in api.events] == ["iris.abc"]
        await tick(m, clock)  # same verdict: nothing new
        assert (len(api.conditions), len(api.events)) == (2, 1)

    run(scenario())


def test_an_unchanged_verdict_is_refreshed_without_a_new_event() -> None:
    server, api, clock = FakeModelMetrics(), Api(), Clock()
    m = monitor(server, api, clock, refresh=10)

    async def scenario() -> None:
        await tick(m, clock)
        server.record(ok=10, model_errors=10)
        await tick(m, clock)
        server.record(ok=10, model_errors=10)
        await tick(m, clock, seconds=11)
        assert [c["status"] for c in api.conditions] == ["Unknown", "False", "False"]
        assert len(api.events) == 1

    run(scenario())


def test_scrape_failures_keep_the_verdict_then_become_unknown() -> None:
    server, api, clock = FakeModelMetrics(), Api(), Clock()
    m = monitor(server, api, clock)

    async def scenario() -> None:
        server.record(ok=20)
        await tick(m, clock)
        server.record(ok=20)
        await tick(m, clock)
        assert api.conditions[-1]["status"] == "True"
        assert isinstance(m.source, Source)
        m.source.down = True
        for _ in range(SCRAPE_FAILURES_BEFORE_UNKNOWN - 1):
            await tick(m, clock)
            assert api.conditions[-1]["status"] == "True"
        await tick(m, clock)
        assert (api.conditions[-1]["status"], api.conditions[-1]["reason"]) == (
            "Unknown",
            REASON_SCRAPE_FAILED,
        )

    run(scenario())


def test_an_api_outage_loses_neither_the_verdict_nor_the_event() -> None:
    server, api, clock = FakeModelMetrics(), Api(), Clock()
    m = monitor(server, api, clock)

    async def scenario() -> None:
        await tick(m, clock)
        api.down = True
        server.record(ok=10, model_errors=10)
        clock.now += 2
        await m.scrape_once()
        with pytest.raises(ReportError):
            await m.sync()
        api.down = False
        await m.sync()
        assert api.conditions[-1]["reason"] == REASON_METRIC_BREACH
        assert len(api.events) == 1

    run(scenario())
