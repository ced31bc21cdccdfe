"""A model that fails is a counted 500, never a crash; one bad request never fails its neighbours;
micro-batching shares predict() calls; overload is a fast 503."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess, post_concurrently

ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5]


def v1(rows: list[list[float]]) -> dict[str, object]:
    return {"instances": rows}


def test_predict_exception_is_a_500_counted_as_model_error(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    server = launch(trained["failing"]).wait_ready()
    before = server.metrics()
    traced = server.request(
        "POST", "/v1/models/model:predict", v1([ROW]), headers={"X-Request-Id": "trace-42"}
    )
    replies = [traced, server.infer([ROW])]
    for reply in replies:
        assert reply.status == 500
        answer = reply.json()
        assert answer["reason"] == "predict_failed"
        # The estimator's exception text stays in the log; the client gets the id to find it.
        assert "injected model failure" not in reply.body.decode()
        assert f"request id {answer['request_id']}" in answer["error"]
        assert reply.headers["X-Request-Id"] == answer["request_id"]
    assert traced.json()["request_id"] == "trace-42"  # the caller's own id is kept
    failure = "predict\\(\\) raised RuntimeError: injected model failure"
    server.wait_for_log(f"model error for request trace-42 .*{failure}")
    statuses = asyncio.run(
        post_concurrently(server.port, "/v1/models/model:predict", [v1([ROW])] * 8)
    )
    assert [status for status, _ in statuses] == [500] * 8
    assert server.request("GET", "/v2/health/live").status == 200
    assert server.request("GET", "/v2/health/ready").status == 200
    after = server.metrics()
    assert after["modeldeploy_model_errors_total"] - before["modeldeploy_model_errors_total"] == 10
    assert after['modeldeploy_requests_total{protocol="v1",status_class="5xx"}'] == 9
    assert after['modeldeploy_requests_total{protocol="v2",status_class="5xx"}'] == 1
    assert not any(name.startswith("modeldeploy_client_errors_total") for name in after)
    assert server.process.poll() is None


def test_non_finite_output_is_a_model_error(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    regressor = LinearRegression().fit(models.sample_rows(20), np.arange(20.0))
    regressor.coef_ = np.full(models.N_FEATURES, 1e308)  # overflows to inf on real rows
    regressor.intercept_ = 0.0  # ...but the warm-up row of zeros is fine
    server = launch(models.save(regressor, tmp_path, "overflow")).wait_ready()
    reply = server.infer([[10.0] * 6])
    assert (reply.status, reply.json()["reason"]) == (500, "invalid_output")
    server.wait_for_log(f"model error for request {reply.json()['request_id']} .*NaN or infinity")
    assert server.metrics()["modeldeploy_model_errors_total"] == 1
    server.terminate()


def test_a_poisoned_request_fails_alone_when_batched_with_others(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    saved = models.train_failing(
        tmp_path, failure_rate=0.0, poison_value=666.0, delay_seconds=0.1, name="poison"
    )
    server = launch(saved).wait_ready()
    bodies = [v1([[666.0, *ROW[1:]]] if i == 3 else [ROW]) for i in range(6)]
    replies = asyncio.run(post_concurrently(server.port, "/v1/models/model:predict", bodies))
    assert [status for status, _ in replies] == [200, 200, 200, 500, 200, 200]
    assert "poisoned row" not in replies[3][1]["error"]
    server.wait_for_log(f"model error for request {replies[3][1]['request_id']} .*poisoned row")
    assert server.metrics()["modeldeploy_model_errors_total"] == 1
    server.terminate()


@pytest.fixture(scope="module")
def slow_server(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> ServerProcess:
    """predict() sleeps 0.4 s; at most 8 rows may wait for it."""
    return launch(trained["slow"], "--max-queued-rows", "8").wait_ready()


def test_concurrent_requests_share_predict_calls(
    slow_server: ServerProcess, trained: dict[str, SavedModel]
) -> None:
    rows = models.sample_rows(7, seed=5)
    before = slow_server.metrics()
    replies = asyncio.run(
        post_concurrently(
            slow_server.port, "/v1/models/model:predict", [v1([r]) for r in rows.tolist()]
        )
    )
    assert [status for status, _ in replies] == [200] * 7
    expected = trained["slow"].estimator.inner_.predict(rows)
    assert [answer["predictions"][0] for _, answer in replies] == expected.tolist()
    after = slow_server.metrics()
    calls = after["modeldeploy_batch_size_count"] - before["modeldeploy_batch_size_count"]
    batched_rows = after["modeldeploy_batch_size_sum"] - before["modeldeploy_batch_size_sum"]
    assert batched_rows == 7
    assert calls < 7  # while one predict() sleeps, the others queue and go in together


def test_overload_is_shed_with_503_and_retry_after(slow_server: ServerProcess) -> None:
    """20 requests at once, one predict() at a time, at most 8 rows waiting: some are shed."""

    async def burst() -> list[tuple[int, str | None]]:
        url = f"http://127.0.0.1:{slow_server.port}/v1/models/model:predict"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as session:

            async def post() -> tuple[int, str | None]:
                async with session.post(url, json=v1([ROW])) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")

            return await asyncio.gather(*(post() for _ in range(20)))

    before = slow_server.metrics()
    replies = asyncio.run(burst())
    shed = [retry_after for status, retry_after in replies if status == 503]
    assert {status for status, _ in replies} == {200, 503}
    assert shed and all(retry_after == "1" for retry_after in shed)
    assert slow_server.infer([ROW] * 9).status == 200  # alone in an empty queue: admitted
    after = slow_server.metrics()
    five_xx = 'modeldeploy_requests_total{protocol="v1",status_class="5xx"}'
    assert after[five_xx] - before[five_xx] == len(shed)
    assert after["modeldeploy_model_errors_total"] == before["modeldeploy_model_errors_total"]
