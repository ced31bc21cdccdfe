"""SIGTERM under concurrent load: readiness false at once, nothing dropped, exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from typing import NamedTuple

import aiohttp
import pytest

from tests.serving.models import SavedModel
from tests.serving.process import SERVER, ServerProcess

pytestmark = pytest.mark.timeout(120)

ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5]
BODY = {"instances": [ROW]}


def test_in_flight_requests_finish_after_sigterm(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """No drain time: the listener closes at once, yet every accepted request is answered.
    (predict() on the worker thread, so the loop keeps counting requests in flight meanwhile.)"""
    server = launch(
        trained["slow"], "--no-micro-batching", "--inline-predict-below-ms", "0"
    ).wait_ready()  # 0.4 s per predict()

    async def scenario() -> list[int]:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as session:

            async def predict() -> int:
                async with session.post("/v1/models/model:predict", json=BODY) as response:
                    await response.read()
                    return response.status

            requests = [asyncio.create_task(predict()) for _ in range(4)]
            # Polls another process's state: there is no event to wait on.
            deadline = time.monotonic() + 20
            while server.metrics()["modeldeploy_requests_in_flight"] < 4:
                assert time.monotonic() < deadline, "the 4 requests never were in flight at once"
                await asyncio.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)  # 1.6 s of predicts still to run
            return await asyncio.gather(*requests)

    assert asyncio.run(scenario()) == [200] * 4
    assert server.process.wait(timeout=30) == 0
    assert "stopped" in server.log[-1]


def test_rolling_restart_under_load_drops_nothing(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """What a pod sees in a rollout: SIGTERM while 16 keep-alive clients send requests; readiness
    turns false; the clients leave once they see it (as the Service would drop the endpoint)
    within the drain time; every request they sent was answered with 200; the process exits 0."""
    server = launch(trained["classifier-joblib"], "--drain-seconds", "2").wait_ready()
    base = f"http://127.0.0.1:{server.port}"

    async def scenario() -> tuple[list[int], int]:
        endpoint_removed, under_load = asyncio.Event(), asyncio.Event()
        statuses: list[int] = []
        async with aiohttp.ClientSession(base) as session:

            async def client() -> None:
                while not endpoint_removed.is_set():
                    async with session.post("/v1/models/model:predict", json=BODY) as response:
                        await response.read()
                        statuses.append(response.status)
                        if len(statuses) >= 200:
                            under_load.set()

            clients = [asyncio.create_task(client()) for _ in range(16)]
            await under_load.wait()
            server.process.send_signal(signal.SIGTERM)
            async with aiohttp.ClientSession(base) as probe:
                while True:  # the kubelet's readiness probe, only faster
                    async with probe.get("/v2/health/ready") as ready:
                        if ready.status == 503:
                            reason = (await ready.json())["reason"]
                            break
                    await asyncio.sleep(0.01)
            served_before_removal = len(statuses)
            endpoint_removed.set()
            await asyncio.gather(*clients)
        assert reason == "server is shutting down"
        return statuses, served_before_removal

    statuses, served = asyncio.run(scenario())
    assert served >= 200
    assert set(statuses) == {200}
    assert server.process.wait(timeout=30) == 0


def test_keep_alive_clients_are_told_to_reconnect_while_draining(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """A client on a kept-alive connection does not learn that the endpoint was removed (the
    node's conntrack keeps its packets going to this pod). After SIGTERM each answer closes its
    connection, so the client's next request opens a new one, which the Service sends to a pod
    that stays; no request is lost to the close of an idle connection at the end."""
    server = launch(trained["classifier-joblib"], "--drain-seconds", "3").wait_ready()
    base = f"http://127.0.0.1:{server.port}"

    async def scenario() -> list[tuple[bool, int, str]]:
        seen: list[tuple[bool, int, str]] = []  # (after SIGTERM, status, Connection header)
        terminated = asyncio.Event()
        async with aiohttp.ClientSession(base) as session:

            async def client() -> None:
                while True:
                    after = terminated.is_set()
                    async with session.post("/v1/models/model:predict", json=BODY) as response:
                        await response.read()
                        header = response.headers.get("Connection", "")
                        seen.append((after, response.status, header.lower()))
                    if after:
                        return  # told to reconnect: it would now reach another pod
                    await asyncio.sleep(0.01)

            clients = [asyncio.create_task(client()) for _ in range(8)]
            await asyncio.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)  # the signal lands; requests sent from now see the drain
            terminated.set()
            await asyncio.gather(*clients)
        return seen

    seen = asyncio.run(scenario())
    after = [(status, header) for late, status, header in seen if late]
    assert len(after) == 8, after
    assert all(status == 200 for status, _ in after), after
    assert all(header == "close" for _, header in after), after
    assert server.process.wait(timeout=30) == 0


def test_the_pre_stop_hook_starts_the_drain_before_sigterm(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """The kubelet runs `modeldeploy-prestop` when the pod is deleted and sends SIGTERM only after
    it returns. From the hook on, kept-alive clients are told to reconnect, so a rolled-back
    canary stops answering them at once, not after the pause; the server keeps serving until
    SIGTERM and readiness is false meanwhile."""
    server = launch(trained["classifier-joblib"]).wait_ready()
    base = f"http://127.0.0.1:{server.port}"
    hook = [str(SERVER.parent / "modeldeploy-prestop"), "1", str(server.process.pid)]

    async def scenario() -> tuple[list[tuple[int, str]], int]:
        async with aiohttp.ClientSession(base) as session:

            async def answer() -> tuple[int, str]:
                async with session.post("/v1/models/model:predict", json=BODY) as response:
                    await response.read()
                    return response.status, response.headers.get("Connection", "").lower()

            before = await asyncio.gather(*(answer() for _ in range(4)))
            assert all(header != "close" for _, header in before), before
            paused = await asyncio.create_subprocess_exec(*hook)
            # Polls another process's state: there is no event to wait on.
            deadline = time.monotonic() + 10
            while server.request("GET", "/v2/health/ready").status == 200:
                assert time.monotonic() < deadline, "the hook never started the drain"
                await asyncio.sleep(0.02)
            during = await asyncio.gather(*(answer() for _ in range(8)))
            return during, await paused.wait()

    during, hook_exit = asyncio.run(scenario())
    assert hook_exit == 0
    assert during == [(200, "close")] * 8
    assert server.process.poll() is None, "the hook must not stop the server"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_the_pre_stop_hook_never_signals_a_process_that_is_not_the_server() -> None:
    """SIGUSR1 would kill a shell that a custom image runs as PID 1: the hook only pauses."""
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        hook = [str(SERVER.parent / "modeldeploy-prestop"), "0", str(bystander.pid)]
        done = subprocess.run(hook, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0
        assert "is not modeldeploy-server" in done.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


async def _keep_alive_answers(base: str, *, seconds: float = 0.0, count: int = 0) -> list[_Answer]:
    """One connection at a time, reused, requests back to back for `seconds` or `count`
    answers: when each answer came (seconds since the first request) and whether it closed
    its connection."""
    answers: list[_Answer] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        started = time.monotonic()
        while (seconds and time.monotonic() - started < seconds) or len(answers) < count:
            async with session.post("/v1/models/model:predict", json=BODY) as response:
                await response.read()
                assert response.status == 200
                closed = response.headers.get("Connection", "").lower() == "close"
                answers.append(_Answer(time.monotonic() - started, closed))
    return answers


class _Answer(NamedTuple):
    at: float
    closed: bool


def test_a_long_lived_connection_is_balanced_again_once_it_is_old(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """A Service balances connections, not requests. The server closes a kept-alive
    connection with its first answer after it is `--max-connection-age` old, so a client that
    never reconnects reaches a canary's new pods within that time whatever its rate, and a
    fast client pays a new connection per that time, not one per 100 requests."""
    server = launch(trained["classifier-joblib"], "--max-connection-age", "0.5").wait_ready()
    answers = asyncio.run(_keep_alive_answers(f"http://127.0.0.1:{server.port}", seconds=2.2))

    closes = [answer.at for answer in answers if answer.closed]
    # Each connection lived its age (it opened at or after the previous close), then closed
    # with an answer within the server's 0.1 s sweep plus one request of it.
    lifetimes = [b - a for a, b in zip([0.0, *closes], closes, strict=False)]
    assert 3 <= len(closes) <= 4, (closes, len(answers))
    assert all(0.5 <= lifetime < 1.0 for lifetime in lifetimes), lifetimes
    # Nothing but age closed them: many answers each.
    assert len(answers) >= 4 * len(closes), (len(answers), closes)


def test_a_fast_client_keeps_its_connection_until_it_is_old(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """The defaults close by age, not by count: 250 answers in a row on one connection."""
    server = launch(trained["classifier-joblib"], "--max-connection-age", "60").wait_ready()
    answers = asyncio.run(_keep_alive_answers(f"http://127.0.0.1:{server.port}", count=250))
    assert not any(answer.closed for answer in answers)


def test_a_long_lived_connection_ends_after_its_request_budget(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    """A Service balances connections, not requests: a client that keeps one connection open
    would never reach a canary's new pods. The server ends each connection after its budget
    of answers (here 5), so the client's next connection is balanced again."""
    server = launch(
        trained["classifier-joblib"],
        "--max-requests-per-connection",
        "5",
        "--max-connection-age",
        "0",
    )
    server.wait_ready()
    answers = asyncio.run(_keep_alive_answers(f"http://127.0.0.1:{server.port}", count=12))
    assert [i for i, answer in enumerate(answers) if answer.closed] == [4, 9], answers
