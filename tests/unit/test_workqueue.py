"""The work queue: one reconcile per object at a time, and a crashing worker backs off quietly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from modeldeploy.workqueue import Key, WorkQueue


def test_a_crashing_worker_backs_off_and_logs_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def crash(key: Key) -> float | None:
        raise ValueError("decimal.Overflow in spec")

    async def scenario() -> list[float | None]:
        queue = WorkQueue(crash)
        return [await queue._safe(("ns", "md")) for _ in range(6)]

    with caplog.at_level(logging.WARNING, logger="modeldeploy.workqueue"):
        delays = asyncio.run(scenario())
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # then one line per retry, without the traceback
    assert all(d is not None for d in delays)
    assert delays[-1] is not None and delays[0] is not None and delays[-1] > 4 * delays[0]


def test_triggers_during_a_run_collapse_into_one_more_run() -> None:
    runs: list[Key] = []

    async def worker(key: Key) -> float | None:
        runs.append(key)
        await asyncio.sleep(0.01)
        return None

    async def scenario() -> None:
        queue = WorkQueue(worker)
        for _ in range(5):
            queue.trigger(("ns", "md"))
        await asyncio.sleep(0)
        for _ in range(5):
            queue.trigger(("ns", "md"))
        await queue.drain()
        await asyncio.sleep(0.05)
        await queue.drain()

    asyncio.run(scenario())
    assert runs == [("ns", "md"), ("ns", "md")]
