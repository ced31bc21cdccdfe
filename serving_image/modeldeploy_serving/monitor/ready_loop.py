"""Poll the model server's readiness body and write `modeldeploy.io/ModelReady` when it changes.

Runs beside the scrape and report loops. A failed read (the server not listening yet, or gone)
writes nothing: the kubelet's container status already says that. A failed write is retried on
the next poll, since the written key only moves once the API server accepted it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from modeldeploy.names import POD_COND_MODEL_READY
from modeldeploy_serving.monitor.readiness import ModelReadiness, condition_patch, parse_ready
from modeldeploy_serving.monitor.report import ReportError
from modeldeploy_serving.monitor.scrape import ScrapeError
from modeldeploy_serving.monitor.verdict import Status

log = logging.getLogger("modeldeploy.monitor")


class ReadySource(Protocol):
    ready_url: str

    async def fetch_ready(self) -> bytes: ...


class PodStatusSink(Protocol):
    async def patch_pod_status(self, body: dict[str, object]) -> None: ...


class ReadinessReporter:
    def __init__(
        self,
        source: ReadySource,
        sink: PodStatusSink,
        interval_seconds: float,
        wall: Callable[[], datetime],
    ) -> None:
        self.source, self.sink, self.interval, self.wall = source, sink, interval_seconds, wall
        self.written: tuple[Status, str] | None = None
        self.since: datetime | None = None  # when the written status last flipped
        self._failing = False

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        try:
            readiness = parse_ready(await self.source.fetch_ready())
        except ScrapeError:
            return
        if readiness is None or readiness.key == self.written:
            return
        await self._write(readiness)

    async def _write(self, readiness: ModelReadiness) -> None:
        now = self.wall()
        flipped = self.written is None or self.written[0] != readiness.status
        since = now if flipped or self.since is None else self.since
        try:
            await self.sink.patch_pod_status(condition_patch(readiness, since, now))
        except ReportError as exc:
            if not self._failing:
                log.warning("cannot write %s: %s; retrying", POD_COND_MODEL_READY, exc)
            self._failing = True
            return
        self._failing = False
        self.written, self.since = readiness.key, since
        level = logging.INFO if readiness.status is Status.TRUE else logging.WARNING
        log.log(
            level, "wrote %s=%s/%s: %s", POD_COND_MODEL_READY, *readiness.key, readiness.message
        )
