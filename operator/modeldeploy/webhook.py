"""Post notices to the optional webhook (--notify-url): JSON, in order, retried with backoff.

Delivery is best effort and in memory: a post never delays a reconcile (a bounded queue feeds
one background task), and notices still queued when the operator stops are lost. The
ModelDeployment's Events and status stay the record; the webhook is a wake-up call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

import aiohttp

from modeldeploy.notices import Notice

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 256
ATTEMPTS: Final = 6  # about a minute of retries: 1 + 2 + 4 + 8 + 16 s, with jitter
FIRST_RETRY_S: Final = 1.0
TIMEOUT_S: Final = 10.0
# Answers that retrying can change; any other 4xx means the receiver refuses this post.
RETRYABLE_4XX: Final = frozenset({408, 409, 425, 429})


class WebhookSender:
    def __init__(self, url: str, *, first_retry_s: float = FIRST_RETRY_S) -> None:
        self.url = url
        self.first_retry_s = first_retry_s
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def offer(self, notice: Notice) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            log.warning(
                "webhook queue full: dropped %s for %s/%s",
                notice.event,
                notice.namespace,
                notice.name,
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                notice = await self._queue.get()
                await self._deliver(session, notice)

    async def _deliver(self, session: aiohttp.ClientSession, notice: Notice) -> None:
        what = f"{notice.event} of {notice.namespace}/{notice.name}"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with session.post(self.url, json=notice.payload()) as response:
                    if response.status < 300:
                        log.info("webhook: posted %s", what)
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in RETRYABLE_4XX:
                        log.warning("webhook: %s refused (%s); not retried", what, problem)
                        return
            except (aiohttp.ClientError, TimeoutError) as err:
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            if attempt == ATTEMPTS:
                log.warning("webhook: gave up on %s after %d attempts (%s)", what, attempt, problem)
                return
            delay = self.first_retry_s * 2 ** (attempt - 1)
            log.info("webhook: %s failed (%s); retry %d in %.1fs", what, problem, attempt, delay)
            await asyncio.sleep(random.uniform(delay / 2, delay))
