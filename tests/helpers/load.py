"""Steady inference load on a URL from a background thread, counting what a client sees.

    with Load(url, body, rate=50) as load:
        ...                      # roll out, roll back, kill containers
    print(load.summary())        # "3012 requests: 3012 x 200, 0 connection errors"
    assert load.connection_errors == 0

Requests go out at a fixed rate on a few keep-alive connections (a client of the Service as a
user's application would be), each with a 5 s timeout; every answer is counted by status code
and by the model version it names, every failure to get an answer by its exception type.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TIMEOUT_S = 5.0


@dataclass
class Sample:
    at: float  # time.monotonic() when sent
    status: int  # 0: no answer (see error)
    done: float = 0.0  # time.monotonic() when the answer (or the failure) arrived
    version: str | None = None
    error: str | None = None


@dataclass
class Load:
    url: str
    body: dict[str, Any]
    rate: float = 50.0  # requests per second
    connections: int = 4
    samples: list[Sample] = field(default_factory=list)
    first_refusal: str | None = None  # status, server and body of the first non-2xx answer
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S + 5)

    # --- what the client saw
    def since(self, start: float = 0.0) -> list[Sample]:
        return [s for s in list(self.samples) if s.at >= start]

    @property
    def connection_errors(self) -> int:
        return sum(1 for s in list(self.samples) if s.status == 0)

    def non_2xx(self, start: float = 0.0) -> list[Sample]:
        return [s for s in self.since(start) if not 200 <= s.status < 300]

    def versions(self, start: float = 0.0) -> Counter[str | None]:
        return Counter(s.version for s in self.since(start) if 200 <= s.status < 300)

    def summary(self, start: float = 0.0) -> str:
        samples = self.since(start)
        codes = Counter(s.status for s in samples)
        errors = Counter(s.error for s in samples if s.error)
        parts = [f"{n} x {code}" for code, n in sorted(codes.items()) if code]
        text = f"{len(samples)} requests: {', '.join(parts) or 'none answered'}"
        text += f"; {sum(errors.values())} connection errors"
        if errors:
            text += f" ({', '.join(f'{e}: {n}' for e, n in errors.most_common())})"
        text += f"; versions {dict(self.versions(start))}"
        return text + (f"; first refusal: {self.first_refusal}" if self.first_refusal else "")

    # --- the event loop side
    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            pending: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                task = asyncio.create_task(self._one(session))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if pending:
                await asyncio.wait(pending)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        sample = Sample(at=time.monotonic(), status=0)
        try:
            async with session.post(self.url, json=self.body) as response:
                sample.status = response.status
                if response.status == 200:
                    answer = await response.json()
                    sample.version = answer.get("model_version")
                else:
                    body = await response.read()
                    if self.first_refusal is None:  # who answered, when a run goes wrong
                        server = response.headers.get("Server", "?")
                        self.first_refusal = f"{response.status} from {server}: {body[:200]!r}"
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            sample.error = type(err).__name__
        sample.done = time.monotonic()
        self.samples.append(sample)
