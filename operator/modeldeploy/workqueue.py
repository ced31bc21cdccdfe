"""Per-object coalescing work queue.

Many events (the ModelDeployment, its pods, its Deployments) can ask for the same object to be
reconciled at once. At most one reconcile per object runs at a time; triggers that arrive while it
runs collapse into exactly one more run afterwards, so the last event is never lost and no object
is reconciled twice concurrently. Delayed triggers (pause and bake deadlines, retry backoff) use
the same path.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeAlias

Key: TypeAlias = tuple[str, str]  # (namespace, name)
Worker: TypeAlias = Callable[[Key], Awaitable[float | None]]

log = logging.getLogger(__name__)
CRASH_RETRY_MAX_S = 300.0


class WorkQueue:
    """`trigger(key)` runs `worker(key)` soon; the worker may return seconds to run again."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._crashes: dict[Key, tuple[int, str]] = {}  # consecutive crashes, last kind
        self._timer_fired: set[Key] = set()

    def trigger(self, key: Key) -> None:
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key))

    def trigger_after(self, key: Key, delay_s: float) -> None:
        """Run again after `delay_s`, unless an earlier timer for this key is already set."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + max(delay_s, 0.0)
        if existing is not None and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its timers (a running reconcile finishes on its own)."""
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        self._dirty.discard(key)
        self._crashes.pop(key, None)
        self._timer_fired.discard(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._timer_fired.add(key)
        self.trigger(key)

    def woken_by_timer(self, key: Key) -> bool:
        """Whether this run was asked for by a timer rather than an event (asks once).

        A timer may outlive the object's watch (kopf stops watching a namespace that is being
        deleted before its objects' DELETED events arrive), so its run should read afresh."""
        fired = key in self._timer_fired
        self._timer_fired.discard(key)
        return fired

    async def _run(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                requeue = await self._safe(key)
                if requeue is not None:
                    self.trigger_after(key, requeue)
                if key not in self._dirty:
                    return
        finally:
            del self._running[key]

    async def _safe(self, key: Key) -> float | None:
        try:
            delay = await self._worker(key)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # The worker reports expected failures itself; this is the last line of defence so
            # one object's bug never stops the queue. Back off rather than spin, and print the
            # traceback once per kind of failure, not once per retry.
            crashes = self._crashes.get(key, (0, ""))[0] + 1
            kind = f"{type(err).__name__}: {err}"
            delay = random.uniform(0.5, 1.0) * min(CRASH_RETRY_MAX_S, 2.0**crashes)
            if self._crashes.get(key, (0, ""))[1] != kind:
                log.exception("reconcile of %s/%s failed unexpectedly; retrying", *key)
            else:
                log.warning(
                    "reconcile of %s/%s failed again (%s); retry in %.0fs", *key, kind, delay
                )
            self._crashes[key] = (crashes, kind)
            return delay
        self._crashes.pop(key, None)
        return delay

    async def drain(self) -> None:
        """Wait for running reconciles (used on shutdown and in tests)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
