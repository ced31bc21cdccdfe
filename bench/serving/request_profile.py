"""What a whole single-row v2 request costs on a serving benchmark model (workload.py's
LogisticRegression, or the forest with --model rf: 20 FP64 features, one tensor), our server
against the bare aiohttp floor (bare_server.py), driven the same way: request bytes into each
server's protocol over an in-memory transport, response bytes out, one event loop, no sockets and no
load generator. Not a test.

    python bench/serving/request_profile.py --callgrind    # instructions per request (valgrind)
    python bench/serving/request_profile.py --calls        # Python function calls per request
    python bench/serving/request_profile.py --top 25       # cProfile: the most called functions
    python bench/serving/request_profile.py                # CPU µs (noisy on a busy machine)
    python bench/serving/request_profile.py --callgrind --model rf --servers ours drift \
        --callgrind-calls 2048                             # drift counting's cost per request

Servers: `ours` (micro-batching on, the default), `unbatched` (--no-micro-batching), `drift`
(ours with the drift benchmark's reference profile: every column and the predictions counted;
rows are binned 1024 at a time, so count at least 1024 calls to include the binning), `bare`
(bare_server.py's aiohttp app: parse, numpy, predict, dump). Ours is driven through the same
HTTP layer as the real server (http_server.py, built by server.http_server). Stages, each
run alone many times: `predict` (the runtime's predict on the decoded row: ONNX Runtime for ours
unless --runtime sklearn, scikit-learn for bare), `request` (the whole request), and for ours
the parts: `parse` (JSON bytes → checked rows), `encode`, `metrics` (every series a request
updates), `queue` (the predict queue's hand-off alone, predict excluded). `other` is request
minus predict: what each server costs around the model. `request@64` is a request of a round
in which 64 connections each send one before any is answered (as at 64 connections under wrk:
one batch, each answer written from its callback), per request. The machinery (callgrind
markers, the in-memory transport) is decode_profile.py's; read its docstring for how counts are
taken.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import logging
import os
import pstats
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bare_server
import decode_profile
import joblib
import numpy as np
import workload

from modeldeploy_serving.drift import parse_profile

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "request_profile"
SERVERS = ("ours", "unbatched", "drift", "bare")
ROUND_CONNECTIONS = 64


def main() -> None:
    args = _arguments()
    if args.callgrind and os.environ.get("DECODE_PROFILE_MARKER") is None:
        workload.build_models(WORK)  # not under valgrind: training there takes minutes
        sys.exit(_rerun_under_callgrind(args))
    logging.disable(logging.WARNING)
    saved = _saved_model(args.model)
    body = workload.request_body()
    raw = (
        f"POST {saved.infer_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stages = {name: _stages(name, saved, body, raw, args.runtime) for name in args.servers}
    gc.freeze()  # as the server does once the model is loaded
    marker = decode_profile._Marker.from_environment()
    if args.top:
        for name in args.servers:
            _top(name, stages[name]["request"], args.top)
        return
    results = {
        name: {
            stage: decode_profile._count(call, args, marker, f"{name}-{stage}")
            for stage, call in calls.items()
        }
        for name, calls in stages.items()
    }
    _print_table(results, decode_profile._unit(args))


def _saved_model(key: str) -> workload.BenchModel:
    path = WORK / key / "model.joblib"
    if not path.exists():
        return workload.build_models(WORK)[key]
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return workload.BenchModel(key, key, path, digest)


def _stages(
    name: str, saved: workload.BenchModel, body: bytes, raw: bytes, runtime: str
) -> dict[str, Callable[[], object]]:
    if name == "bare":
        estimator = joblib.load(saved.path)
        rows = np.asarray([orjson_row(body)], dtype=np.float64)
        app = _Driven(_aiohttp_protocol(lambda: bare_server.aiohttp_app(estimator)))
        return {"predict": lambda: estimator.predict(rows), "request": lambda: app.answer(raw)}
    from modeldeploy_serving import model as model_module
    from modeldeploy_serving.protocol import v2

    extra = ["--no-micro-batching"] if name == "unbatched" else []
    loaded = model_module.load(saved.path.read_bytes(), "joblib", runtime=runtime)
    if name == "drift":  # the drift benchmark's profile: every column and the predictions
        profile = parse_profile(workload.reference_profile(saved))
        loaded = dataclasses.replace(loaded, profile=profile)
    ours = _Ours(saved, loaded, ["--runtime", runtime, *extra])
    parsed = v2.parse_infer(body, loaded.signature, max_rows=1000)
    results = loaded.run(parsed.rows, parsed.outputs)
    stages: dict[str, Callable[[], object]] = {
        "predict": lambda: loaded.run(parsed.rows, parsed.outputs),
        "request": lambda: ours.app.answer(raw),
    }
    if name != "unbatched":  # 64 requests in flight: nothing to batch with batching off
        stages["round64"] = ours.round_of(raw, ROUND_CONNECTIONS)
    if name == "ours":
        stages |= {
            "parse": lambda: v2.parse_infer(body, loaded.signature, max_rows=1000),
            "encode": lambda: v2.encode_infer(
                model_name=saved.key,
                model_version="",
                request_id=None,
                names=parsed.outputs,
                results=results,
            ),
            "metrics": ours.metrics_of_one_request,
            "queue": ours.queue_hand_off(parsed.rows, parsed.outputs),
        }
    return stages


def _aiohttp_protocol(make_app: Callable[[], Any]) -> Callable[[], Awaitable[asyncio.Protocol]]:
    """aiohttp's own connection protocol for an app, as web.run_app serves it."""

    async def protocol() -> asyncio.Protocol:
        from aiohttp import web

        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        assert runner.server is not None
        made: asyncio.Protocol = runner.server()
        return made

    return protocol


async def _ours_protocol(http: Any) -> asyncio.Protocol:
    made: asyncio.Protocol = http.protocol()
    return made


def orjson_row(body: bytes) -> list[float]:
    import orjson

    data: list[float] = orjson.loads(body)["inputs"][0]["data"]
    return data


class _Driven:
    """A server's connection protocol on decode_profile's in-memory transport: request bytes
    in, response out. `protocol` builds it on the loop, after `setup`."""

    def __init__(
        self,
        protocol: Callable[[], Awaitable[asyncio.Protocol]],
        setup: Callable[[], object] | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._transport = decode_profile._Transport()

        async def connect() -> asyncio.Protocol:
            if setup is not None:
                setup()
            made = await protocol()
            made.connection_made(self._transport)
            return made

        self._protocol = self.loop.run_until_complete(connect())

    def answer(self, raw: bytes) -> bytes:
        self._transport.reset(self.loop.create_future())
        self._protocol.data_received(raw)
        response: bytes = self.loop.run_until_complete(self._transport.done)
        if not response.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not answered with 200: {response[:300]!r}")
        return response


class _Ours:
    """Our app, configured as the benchmark starts it, behind the real connection handler."""

    def __init__(self, saved: workload.BenchModel, loaded: Any, extra: list[str]) -> None:
        from modeldeploy_serving.config import parse_config
        from modeldeploy_serving.metrics import ServerMetrics
        from modeldeploy_serving.server import http_server
        from modeldeploy_serving.service import InferenceService

        argv = ["--model-uri", str(saved.path), "--sha256", saved.sha256, "--model-name", saved.key]
        # One connection for every request: the transport cannot close (the real server ends a
        # connection after 100 requests; a new one per 100 is not in these counts).
        argv += ["--termination-log", "", "--max-requests-per-connection", "0"]
        self.config = config = parse_config([*argv, *extra], {})
        self.metrics = ServerMetrics()
        self.service = InferenceService(config, self.metrics)
        self.http = http = http_server(config, self.service, self.metrics)
        loads = lambda: self.service.model_loaded(loaded)  # noqa: E731
        self.app = _Driven(lambda: _ours_protocol(http), setup=loads)

    def round_of(self, raw: bytes, connections: int) -> Callable[[], object]:
        """One request on each of `connections` connections, all sent before any is answered
        (as wrk keeps 64 in flight), on the app's loop; returns once every answer is in."""
        loop = self.app.loop
        transports = [decode_profile._Transport() for _ in range(connections)]

        async def connect() -> list[asyncio.Protocol]:
            protocols = [self.http.protocol() for _ in transports]
            for protocol, transport in zip(protocols, transports, strict=True):
                protocol.connection_made(transport)
            return protocols

        protocols = loop.run_until_complete(connect())

        def one_round() -> None:
            for transport in transports:
                transport.reset(loop.create_future())
            for protocol in protocols:
                protocol.data_received(raw)
            answers = loop.run_until_complete(
                asyncio.gather(*(t.done for t in transports if t.done is not None))
            )
            if not all(answer.startswith(b"HTTP/1.1 200") for answer in answers):
                raise RuntimeError("a request of the round was not answered with 200")

        return one_round

    def metrics_of_one_request(self) -> None:
        metrics = self.metrics
        metrics.in_flight.inc()
        metrics.observe_upload(1e-5)
        metrics.observe_batch(1)
        metrics.in_flight.dec()
        metrics.observe_request("v2", 2e-4)

    def queue_hand_off(self, rows: np.ndarray, outputs: tuple[str, ...]) -> Callable[[], object]:
        """One request's round trip through a second queue, configured like the app's, whose
        predict does nothing (includes one run_until_complete, as `request` does)."""
        from modeldeploy_serving.batching import PredictQueue

        config, loop = self.config, self.app.loop
        result = (np.zeros(1, dtype=np.int64),)

        async def started() -> PredictQueue:
            queue = PredictQueue(
                lambda rows, outputs: result,
                max_batch_rows=config.batch_max_rows if config.micro_batching else 1,
                max_wait_seconds=config.batch_max_wait_ms / 1000,
                max_queued_rows=config.max_queued_rows,
                inline_below_seconds=config.inline_predict_below_ms / 1000,
                initial_predict_seconds=1e-5,
                on_batch=lambda rows: None,
            )
            queue.start()
            return queue

        queue = loop.run_until_complete(started())
        return lambda: loop.run_until_complete(queue.submit(rows, outputs))


def _rerun_under_callgrind(args: argparse.Namespace) -> int:
    """This script again under valgrind; the table from its dumps (as decode_profile.py)."""
    per_call = decode_profile.callgrind_totals(__file__, args.callgrind_calls)
    if isinstance(per_call, int):
        return per_call
    results: dict[str, dict[str, float]] = {}
    for name, value in per_call.items():
        server, stage = name.split("-", 1)
        results.setdefault(server, {})[stage] = value
    _print_table(results, "instructions")
    return 0


def _top(name: str, call: Callable[[], object], limit: int) -> None:
    for _ in range(20):
        call()
    profile = cProfile.Profile()
    profile.runcall(decode_profile._repeat, call, 100)
    stats = pstats.Stats(profile)
    print(f"\n== {name}: {stats.total_calls / 100:.0f} calls per request")  # type: ignore[attr-defined]
    stats.sort_stats("ncalls").print_stats(limit)


def _print_table(results: dict[str, dict[str, float]], unit: str) -> None:
    if not all(v == v for stages in results.values() for v in stages.values()):  # NaN: child
        return
    for stages in results.values():
        stages["other"] = stages["request"] - stages["predict"]
        if "round64" in stages:  # per request of the round
            stages["request@64"] = stages.pop("round64") / ROUND_CONNECTIONS
    rows = dict.fromkeys(stage for stages in results.values() for stage in stages)
    print(f"\nper request, {unit}:")
    print(f"  {'stage':<10}" + "".join(f"{name:>14}" for name in results))
    for stage in rows:
        cells = "".join(
            f"{results[name][stage]:>14,.1f}" if stage in results[name] else f"{'':>14}"
            for name in results
        )
        print(f"  {stage:<10}{cells}")


def _arguments() -> argparse.Namespace:
    parser = decode_profile.argument_parser(__doc__)
    parser.add_argument("--top", type=int, default=0, help="cProfile's N most called functions")
    parser.add_argument("--model", choices=("lr", "rf"), default="lr", help="workload.py's model")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    return parser.parse_args()


if __name__ == "__main__":
    main()
