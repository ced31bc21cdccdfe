"""The predict queue in-process: batches never mix up answers; failures stay with their request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from modeldeploy_serving.batching import PredictQueue
from modeldeploy_serving.errors import Overloaded, PredictFailed, Unavailable


class Recorder:
    """A stand-in model: 'double' doubles column 0, 'negate' negates it; records each call."""

    def __init__(self, poison: float | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, tuple[str, ...], int]] = []  # (rows, outputs, thread)
        self.poison = poison
        self.delay = delay

    def __call__(self, rows: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, ...]:
        self.calls.append((len(rows), tuple(outputs), threading.get_ident()))
        if self.delay:
            threading.Event().wait(self.delay)
        if self.poison is not None and (rows[:, 0] == self.poison).any():
            raise PredictFailed("poisoned")
        table = {"double": rows[:, 0] * 2, "negate": -rows[:, 0]}
        return tuple(table[name] for name in outputs)


def make_queue(model: Recorder, *, inline_ms: float = 20.0, **options: float) -> PredictQueue:
    settings = {"max_batch_rows": 64, "max_wait_seconds": 0.002, "max_queued_rows": 1000}
    settings.update(options)
    return PredictQueue(
        model,
        max_batch_rows=int(settings["max_batch_rows"]),
        max_wait_seconds=settings["max_wait_seconds"],
        max_queued_rows=int(settings["max_queued_rows"]),
        inline_below_seconds=inline_ms / 1000,
        initial_predict_seconds=0.0,
        on_batch=lambda rows: None,
    )


def rows(*values: float) -> np.ndarray:
    return np.array([[value, 0.0] for value in values])


async def submit_all(
    queue: PredictQueue, requests: list[tuple[np.ndarray, tuple[str, ...]]]
) -> list[object]:
    queue.start()
    try:
        tasks = [asyncio.create_task(queue.submit(r, outputs)) for r, outputs in requests]
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await queue.close()


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    model = Recorder(delay=0.01)
    requests = [(rows(i, i + 0.5), ("double",)) for i in range(20)]
    answers = asyncio.run(submit_all(make_queue(model), requests))
    for i, answer in enumerate(answers):
        assert isinstance(answer, tuple)
        np.testing.assert_array_equal(answer[0], [2 * i, 2 * i + 1])
    assert sum(n for n, _, _ in model.calls) == 40
    assert len(model.calls) < 20


def test_requests_for_different_outputs_are_never_mixed() -> None:
    model = Recorder(delay=0.01)
    requests = [(rows(i), ("double",) if i % 2 else ("negate",)) for i in range(10)]
    answers = asyncio.run(submit_all(make_queue(model), requests))
    for i, answer in enumerate(answers):
        assert isinstance(answer, tuple)
        assert answer[0].tolist() == ([2.0 * i] if i % 2 else [-float(i)])
    assert all(len(set(outputs)) == 1 for _, outputs, _ in model.calls)


def test_a_failing_batch_is_rerun_so_only_the_poisoned_request_fails() -> None:
    model = Recorder(poison=3.0, delay=0.005)
    answers = asyncio.run(submit_all(make_queue(model), [(rows(i), ("double",)) for i in range(6)]))
    assert isinstance(answers[3], PredictFailed)
    assert [a[0].tolist() for i, a in enumerate(answers) if i != 3] == [  # type: ignore[index]
        [0.0],
        [2.0],
        [4.0],
        [8.0],
        [10.0],
    ]


def test_batches_respect_the_row_limit() -> None:
    model = Recorder(delay=0.01)
    asyncio.run(submit_all(make_queue(model, max_batch_rows=4), [(rows(1, 2), ("double",))] * 9))
    assert max(n for n, _, _ in model.calls) <= 4


def test_fast_models_run_on_the_loop_and_slow_ones_on_the_thread() -> None:
    loop_thread = threading.get_ident()
    fast, slow = Recorder(), Recorder()
    asyncio.run(submit_all(make_queue(fast, inline_ms=20), [(rows(1), ("double",))]))
    asyncio.run(submit_all(make_queue(slow, inline_ms=0), [(rows(1), ("double",))]))
    assert fast.calls[0][2] == loop_thread
    assert slow.calls[0][2] != loop_thread


def test_a_full_queue_sheds_load_and_close_fails_what_waits() -> None:
    model = Recorder(delay=0.2)

    async def scenario() -> list[object]:
        queue = make_queue(model, inline_ms=0, max_queued_rows=3)
        queue.start()
        tasks = [asyncio.create_task(queue.submit(rows(i), ("double",))) for i in range(8)]
        await asyncio.sleep(0.05)  # three rows were admitted and are being predicted
        await queue.close()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(refused) == 5
    assert "3 rows are waiting for the model (limit 3)" in refused[0].message
    cut_short = [o for o in outcomes if type(o) is Unavailable]
    assert len(cut_short) == 3


@pytest.mark.parametrize("max_wait", [0.0, 0.002])
def test_an_idle_queue_answers_a_lone_request_at_once(max_wait: float) -> None:
    model = Recorder()
    answers = asyncio.run(
        submit_all(make_queue(model, max_wait_seconds=max_wait), [(rows(7), ("double",))])
    )
    assert answers[0][0].tolist() == [14.0]  # type: ignore[index]
    assert len(model.calls) == 1


async def turns_until_answered(queue: PredictQueue, request: np.ndarray) -> int:
    """Event-loop turns until a lone request on an idle queue is told its answer (counted by a
    task that yields), queued as the server's inference requests are: told by a callback, no
    future."""
    turns = 0
    answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def count() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    turns = 0
    queue.enqueue(request, ("double",), lambda results, error: answered.set_result(turns))
    after = await answered
    counter.cancel()
    return after


@pytest.mark.parametrize(("max_batch_rows", "turns"), [(64, 1), (1, 0)])
def test_a_lone_request_on_an_idle_fast_queue_skips_the_worker(
    max_batch_rows: int, turns: int
) -> None:
    """Predicted on the next loop turn, with whatever arrived with it (at once when batching
    is off, before enqueue returns), not after the worker task's two wake-ups."""

    async def scenario() -> int:
        queue = make_queue(Recorder(), max_batch_rows=max_batch_rows)
        queue.start()
        await asyncio.sleep(0)
        try:
            return await turns_until_answered(queue, rows(1))
        finally:
            await queue.close()

    assert asyncio.run(scenario()) == turns


def test_requests_arriving_with_a_lone_one_join_its_batch_and_later_ones_batch_too() -> None:
    model = Recorder()

    async def scenario() -> list[object]:
        queue = make_queue(model)
        queue.start()
        try:
            answers: list[object] = [await queue.submit(rows(0), ("double",))]
            for burst in range(2):  # the first burst joins a lone leader; the second, the worker
                tasks = [
                    asyncio.create_task(queue.submit(rows(10 * burst + i), ("double",)))
                    for i in range(10)
                ]
                answers += await asyncio.gather(*tasks)
            return answers
        finally:
            await queue.close()

    answers = asyncio.run(scenario())
    assert [a[0].tolist() for a in answers] == [  # type: ignore[index]
        [0.0],
        *([2.0 * i] for i in range(20)),
    ]
    assert [n for n, _, _ in model.calls] == [1, 10, 10]


def test_a_leader_cancelled_while_others_join_it_leaves_them_answered() -> None:
    model = Recorder()

    async def scenario() -> list[object]:
        queue = make_queue(model)
        queue.start()
        try:
            leader = asyncio.create_task(queue.submit(rows(1), ("double",)))
            await asyncio.sleep(0)  # the leader is yielding for others to join
            others = [asyncio.create_task(queue.submit(rows(i), ("double",))) for i in (2, 3)]
            leader.cancel()
            return await asyncio.wait_for(asyncio.gather(*others), timeout=5)
        finally:
            await queue.close()

    answers = asyncio.run(scenario())
    assert [a[0].tolist() for a in answers] == [[4.0], [6.0]]  # type: ignore[index]
