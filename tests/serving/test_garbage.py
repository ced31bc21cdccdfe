"""Serving makes no cyclic garbage: every object a request creates is freed by its reference
count. The server relies on it (server.py collects the young generation ten times less often
than Python's default), so a cycle added to the request path fails here, not as a slow leak.

In process: the real app, predict queue and model behind the HTTP layer, 64 connections over
in-memory transports, each sending a request before any is answered (as wrk at 64).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import orjson
import pytest

from modeldeploy_serving import model as model_module
from modeldeploy_serving.config import parse_config
from modeldeploy_serving.metrics import ServerMetrics
from modeldeploy_serving.server import http_server
from modeldeploy_serving.service import InferenceService
from tests.serving.models import sample_rows, train_forest
from tests.serving.test_http_layer import _Capture

pytestmark = pytest.mark.timeout(120)
CONNECTIONS = 64


def infer_request(name: str, n_features: int, index: int) -> bytes:
    row = sample_rows(1, n_features, seed=index)[0].tolist()
    tensor = {"name": "input-0", "shape": [1, n_features], "datatype": "FP64", "data": row}
    body = orjson.dumps({"id": str(index), "inputs": [tensor]})
    head = f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
    return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


class _Counted(_Capture):
    """A transport that tells `round_done` once every connection of the round has an answer."""

    answered = 0
    round_done: asyncio.Event | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        _Counted.answered += 1
        if _Counted.answered % CONNECTIONS == 0 and _Counted.round_done is not None:
            _Counted.round_done.set()


def test_answered_requests_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    saved = train_forest(tmp_path)
    flags = ["--model-uri", str(saved.path), "--sha256", saved.sha256, "--model-name", "forest"]
    config = parse_config([*flags, "--termination-log", ""], {})

    async def scenario() -> tuple[list[bytes], int]:
        metrics = ServerMetrics()
        service = InferenceService(config, metrics)
        server = http_server(config, service, metrics)
        service.model_loaded(model_module.load(saved.path.read_bytes(), "joblib"))
        connections = [(server.protocol(), _Counted()) for _ in range(CONNECTIONS)]
        for protocol, transport in connections:
            protocol.connection_made(transport)
        requests = [infer_request("forest", saved.n_features, i) for i in range(CONNECTIONS)]

        async def one_round() -> None:
            _Counted.round_done = asyncio.Event()
            for (protocol, _), raw in zip(connections, requests, strict=True):
                protocol.data_received(raw)
            await _Counted.round_done.wait()  # every connection has its answer

        await one_round()  # warm: caches and lazily built objects are not garbage
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept to count
        try:
            for _ in range(5):
                await one_round()
                await asyncio.sleep(0.01)
            gc.collect()
            found = len(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        await service.close()
        return [t.written for _, t in connections], found

    written, garbage = asyncio.run(scenario())
    for index, answer in enumerate(written):
        assert answer.count(b"HTTP/1.1 200 OK") == 6, answer[:300]
        assert f'"id":"{index}"'.encode() in answer
    assert garbage == 0
