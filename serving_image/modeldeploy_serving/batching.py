"""predict() calls, one at a time; concurrent requests can share a call (micro-batching).

Where predict() runs is chosen by how long it takes. A fast model (recent calls under
`inline_below_seconds`, e.g. a linear model at ~0.1 ms or a forest at a few ms) runs on the event
loop itself: handing it to a thread costs more than the call (GIL hand-over and thread wake-ups,
~0.2 ms per request measured), and blocking the loop for a few milliseconds delays nothing that
matters. A slow model runs on one worker thread, so the loop keeps answering health probes and
accepting requests meanwhile. One call at a time either way: scikit-learn estimators are not
promised to be thread-safe, and on a small CPU quota parallel predicts only contend.

Why batching pays: a tree ensemble walks the same trees for 1 row or 64, so 64 queued single-row
requests cost about one predict(). The batching is adaptive. An idle server never waits: a
request arriving alone is predicted at once. Under concurrent load (the last batch held more
than one request) the next batch is held open for a quarter of the recent predict() time, at
most `max_wait`, or until it is full: long enough for the clients just answered to send their
next requests and join, short enough to cost at most a fifth of the throughput it buys.

A lone request on an idle queue with a fast model (no concurrent load lately) skips the worker
task: its batch is predicted by a callback on the next loop turn, so requests that arrived with
it join it (`_lead`), saving the worker's two task wake-ups: ~7% of a single-row request's
instructions on a linear model, ~14% with batching off, where it is predicted at once
(bench/serving/request_profile.py).

A queued request is a `Queued`, told its outcome once by its `done` method, not a future
awaited by a task: the server's inference request is a Queued itself (app.py) and answers from
its batch's callback, so a request costs no task, no future, no coroutine resumption and no
object of the queue's own (`put`). `enqueue` queues rows with a plain callback; `submit` wraps
the same for callers that await.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import ModelError, Overloaded, Unavailable

_TIMER_TICK = 0.001
PredictFn = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, ...]]
OnPredicted = Callable[[np.ndarray, Sequence[str], Sequence[np.ndarray]], None]
# What a queued request is told, once: its results, or the error that ended it.
Done = Callable[[tuple[np.ndarray, ...] | None, BaseException | None], None]

log = logging.getLogger(__name__)


class Queued:
    """A request waiting for the model: its rows and the outputs asked for. The queue calls
    `done` exactly once, with the results or the error that ended it (ModelError,
    Unavailable); subclasses say what that does."""

    __slots__ = ("alone", "observed", "outputs", "rows", "settled")

    def __init__(
        self, rows: np.ndarray, outputs: tuple[str, ...], *, observed: bool = True
    ) -> None:
        self.rows = rows
        self.outputs = outputs
        self.observed = observed  # served traffic (drift counts it); False for feedback rows
        self.alone = False  # its batch failed: predicted alone, so only a bad request fails
        self.settled = False

    def live(self) -> bool:
        """Still wanted: not answered, and its caller has not gone away."""
        return not self.settled

    def done(self, results: tuple[np.ndarray, ...] | None, error: BaseException | None) -> None:
        raise NotImplementedError


class _Called(Queued):
    """Queued by `enqueue`: its outcome goes to a callback."""

    __slots__ = ("_callback",)

    def __init__(self, rows: np.ndarray, outputs: tuple[str, ...], callback: Done) -> None:
        super().__init__(rows, outputs)
        self._callback = callback

    def done(self, results: tuple[np.ndarray, ...] | None, error: BaseException | None) -> None:
        self._callback(results, error)


class _Awaited(Queued):
    """Queued by `submit`: its outcome resolves a future; cancelled, its caller is gone."""

    __slots__ = ("_future",)

    def __init__(
        self,
        rows: np.ndarray,
        outputs: tuple[str, ...],
        observed: bool,
        future: asyncio.Future[tuple[np.ndarray, ...]],
    ) -> None:
        super().__init__(rows, outputs, observed=observed)
        self._future = future

    def live(self) -> bool:
        return not self.settled and not self._future.done()

    def done(self, results: tuple[np.ndarray, ...] | None, error: BaseException | None) -> None:
        future = self._future
        if future.done():  # its caller went away
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results)


class PredictQueue:
    """Admission control, batching and the predict thread. Use from the event loop only."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_rows: int,
        max_wait_seconds: float,
        max_queued_rows: int,
        inline_below_seconds: float,
        initial_predict_seconds: float,
        on_batch: Callable[[int], None],
        on_predicted: OnPredicted | None = None,
    ) -> None:
        self._predict = predict
        self._inline_below = inline_below_seconds
        # Moving average of predict() time: decides inline or thread, and how long to batch.
        self._recent_seconds = initial_predict_seconds
        self._max_batch_rows = max_batch_rows
        self._inline_rows = max(max_batch_rows, 64)
        self._max_wait = max_wait_seconds
        self._max_queued_rows = max_queued_rows
        self._on_batch = on_batch
        self._on_predicted = on_predicted  # None (no drift profile): nothing more per batch
        self._pending: deque[Queued] = deque()
        self._queued_rows = 0
        self._last_batch_requests = 0
        self._batch_full: asyncio.Future[None] | None = None
        self._current: list[Queued] = []  # the batch being predicted
        self._leading = False  # a lone request's batch is due on the next loop turn (_lead)
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # start()'s

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker = self._loop.create_task(self._run(), name="predict-queue")

    async def close(self) -> None:
        """Fail whatever still waits (the HTTP server has drained by now) and stop the worker."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for item in [*self._current, *self._pending]:
            _settle(item, exception=Unavailable("server is shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(
        self, rows: np.ndarray, outputs: tuple[str, ...], *, observed: bool = True
    ) -> tuple[np.ndarray, ...]:
        """The requested outputs for these rows, in order. Raises ModelError or Overloaded.

        `observed=False` (feedback): predicted like any request, never batched with served
        traffic, and never shown to `on_predicted` (drift counts what clients are served).
        """
        future: asyncio.Future[tuple[np.ndarray, ...]] = asyncio.get_running_loop().create_future()
        self.put(_Awaited(rows, outputs, observed, future))
        return await future

    def enqueue(self, rows: np.ndarray, outputs: tuple[str, ...], done: Done) -> None:
        """Queue served rows; `done` is called once with the results or the error (ModelError,
        Unavailable), possibly before this returns when batching is off. Raises Overloaded:
        then `done` is never called."""
        self.put(_Called(rows, outputs, done))

    def put(self, item: Queued) -> None:
        """Queue a request; its `done` is called once, possibly before this returns when
        batching is off. Raises Overloaded: then `done` is never called. No task and no future
        per request (docs/serving.md, "No task per request")."""
        rows = item.rows
        # An empty queue admits any request, so one large request is never shed forever.
        if self._pending and self._queued_rows + len(rows) > self._max_queued_rows:
            raise Overloaded(
                f"{self._queued_rows} rows are waiting for the model "
                f"(limit {self._max_queued_rows}); retry shortly"
            )
        leads = self._can_lead(rows)
        self._pending.append(item)
        self._queued_rows += len(rows)
        if leads:
            self._leading = True
            if self._max_batch_rows > 1:  # requests that arrived with it join it next turn
                assert self._loop is not None, "start() is called first"
                self._loop.call_soon(self._lead)
            else:
                self._lead()
        elif not self._leading:  # a leader takes whatever joins it, then hands the rest on
            self._wakeup.set()
        if self._batch_full is not None and self._queued_rows >= self._max_batch_rows:
            _wake(self._batch_full)

    def _can_lead(self, rows: np.ndarray) -> bool:
        """An idle queue, a model predicted inline and no concurrent load lately: the batch
        this request starts is predicted on the next loop turn, without the worker task's two
        wake-ups."""
        return (
            not self._pending
            and not self._current
            and not self._leading
            and self._last_batch_requests <= 1
            and self._recent_seconds < self._inline_below
            and len(rows) <= self._inline_rows
        )

    def _lead(self) -> None:
        """Predict a lone request's batch, with whatever queued behind it since (inline: the
        model was fast and no predict ran meanwhile). The worker takes nothing until then."""
        try:
            if self._pending:  # close() may have failed and cleared it
                batch = self._take_batch()
                if batch:
                    self._current = batch
                    self._predict_inline(batch)
        finally:
            self._current = []
            self._leading = False
            if self._pending:  # asked for other outputs, arrived too late, or to be re-run
                self._wakeup.set()

    async def _run(self) -> None:
        while True:
            while not self._pending or self._leading:
                self._wakeup.clear()
                await self._wakeup.wait()
            if wait := self._batching_wait():
                await self._hold_open(wait)
            batch = self._take_batch()
            if batch:
                self._current = batch
                await self._execute(batch)
                self._current = []
                # After an inline predict nothing above awaited: yield, so the loop can send the
                # answers and read new requests (which then form the next batch).
                await asyncio.sleep(0)

    def _batching_wait(self) -> float:
        if (
            self._last_batch_requests <= 1
            or self._queued_rows >= self._max_batch_rows
            or self._pending[0].alone
        ):
            return 0.0
        wait = min(self._max_wait, 0.25 * self._recent_seconds)
        # Event-loop timers fire in whole milliseconds (epoll rounds up): a 25 µs hold would
        # idle a full millisecond, ten times a linear model's predict(). So holds are whole
        # milliseconds, and a model too fast for one is not held at all.
        return math.floor(wait / _TIMER_TICK) * _TIMER_TICK

    async def _hold_open(self, seconds: float) -> None:
        """Sleep up to `seconds`; put() ends it early once a full batch is queued."""
        loop = asyncio.get_running_loop()
        self._batch_full = loop.create_future()
        timer = loop.call_later(seconds, _wake, self._batch_full)
        try:
            await self._batch_full
        finally:
            timer.cancel()
            self._batch_full = None

    def _take_batch(self) -> list[Queued]:
        """The oldest request plus later ones asking for the same outputs, up to the row limit
        (alone: a request whose batch failed)."""
        first = self._pending.popleft()
        self._queued_rows -= len(first.rows)
        batch, rows = [first], len(first.rows)
        skipped: list[Queued] = []
        while self._pending and rows < self._max_batch_rows and not first.alone:
            item = self._pending.popleft()
            same = item.outputs == first.outputs and item.observed == first.observed
            if same and not item.alone and rows + len(item.rows) <= self._max_batch_rows:
                batch.append(item)
                rows += len(item.rows)
                self._queued_rows -= len(item.rows)
            else:
                skipped.append(item)
        self._pending.extendleft(reversed(skipped))
        live = [item for item in batch if item.live()]  # clients that went away
        self._last_batch_requests = len(live)
        return live

    def _inline(self, n_rows: int) -> bool:
        # Inline only for a fast model and a batch-sized call: one 10 000-row request from a
        # client must not stall the loop for everyone else.
        return self._recent_seconds < self._inline_below and n_rows <= self._inline_rows

    async def _execute(self, batch: list[Queued]) -> None:
        rows = _stack(batch)
        if self._inline(len(rows)):
            self._predict_inline(batch, rows)
            return
        self._on_batch(len(rows))
        timed = _Timed(self._predict)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, timed, rows, batch[0].outputs)
        except Exception as exc:
            self._end(batch, rows, timed, exc)
        else:
            self._end(batch, rows, timed, results)

    def _predict_inline(self, batch: list[Queued], rows: np.ndarray | None = None) -> None:
        rows = _stack(batch) if rows is None else rows
        self._on_batch(len(rows))
        timed = _Timed(self._predict)
        try:
            results = timed(rows, batch[0].outputs)
        except Exception as exc:
            self._end(batch, rows, timed, exc)
        else:
            self._end(batch, rows, timed, results)

    def _end(
        self,
        batch: list[Queued],
        rows: np.ndarray,
        timed: _Timed,
        outcome: tuple[np.ndarray, ...] | Exception,
    ) -> None:
        """Learn how long predict() took, then answer the batch (or queue it again: _failed)."""
        self._recent_seconds = 0.8 * self._recent_seconds + 0.2 * timed.seconds
        if isinstance(outcome, Exception):
            self._failed(batch, outcome)
        else:
            self._deliver(batch, rows, outcome)

    def _failed(self, batch: list[Queued], exc: Exception) -> None:
        if isinstance(exc, ModelError) and len(batch) > 1:
            # Re-run each request alone, first in line: one request the model chokes on must
            # not fail the others.
            for item in batch:
                item.alone = True
            self._pending.extendleft(reversed(batch))
            self._queued_rows += sum(len(item.rows) for item in batch)
            if not self._leading:
                self._wakeup.set()
            return
        # A model error, or not the model's doing (e.g. MemoryError stacking rows).
        for item in batch:
            _settle(item, exception=exc)

    def _deliver(
        self, batch: list[Queued], rows: np.ndarray, results: tuple[np.ndarray, ...]
    ) -> None:
        if self._on_predicted is not None and batch[0].observed:
            self._on_predicted(rows, batch[0].outputs, results)
        if len(batch) == 1:
            _settle(batch[0], result=results)
            return
        start = 0
        for item in batch:
            end = start + len(item.rows)
            _settle(item, result=tuple(result[start:end] for result in results))
            start = end


def _stack(batch: list[Queued]) -> np.ndarray:
    return batch[0].rows if len(batch) == 1 else np.concatenate([item.rows for item in batch])


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Timed:
    """predict() plus its duration, measured where it runs."""

    def __init__(self, predict: PredictFn) -> None:
        self._predict = predict
        self.seconds = 0.0

    def __call__(self, rows: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, ...]:
        started = time.perf_counter()
        try:
            return self._predict(rows, outputs)
        finally:
            self.seconds = time.perf_counter() - started


def _settle(
    item: Queued,
    *,
    result: tuple[np.ndarray, ...] | None = None,
    exception: BaseException | None = None,
) -> None:
    if item.settled:
        return
    item.settled = True
    try:
        item.done(result, exception)
    except Exception:  # a bug in one answer must not leave the rest of its batch unanswered
        log.exception("answering a predicted request failed")
