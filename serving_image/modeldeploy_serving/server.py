"""modeldeploy-server: serve one verified model, or (with --fetch-to) fetch and verify it for an
init container.

Serving: the HTTP server starts first (liveness answers during a long load), the model loads on
a background thread, readiness turns true after the warm-up prediction. A load failure is one
log line plus the termination log, and the server stays up but never ready. SIGUSR1 (sent by the
preStop hook, prestop.py): start draining (readiness false, every answer closes its connection)
and keep serving. SIGTERM: the same at once, keep serving for --drain-seconds, stop accepting,
let in-flight requests finish (at most --shutdown-timeout), exit 0.

Init-container mode exits 0 on success, else the LoadError's exit code (see errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import loading
from .app import create_app
from .config import ConfigError, ServerConfig, parse_config
from .errors import EXIT_USAGE, LoadError
from .http_messages import Limits
from .http_server import HttpServer
from .metrics import ServerMetrics
from .prestop import DRAIN_SIGNAL
from .service import InferenceService

if TYPE_CHECKING:
    from .model import LoadedModel

log = logging.getLogger("modeldeploy_serving")
YOUNG_COLLECTION_ALLOCATIONS = 7000  # Python's default: 700


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"modeldeploy-server: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if config.fetch_to is not None:
        return fetch_for_init_container(config)
    if config.event_loop == "uvloop":  # 9-10% more req/s on the forest than asyncio's loop
        import uvloop

        return uvloop.run(serve(config))
    return asyncio.run(serve(config))


def fetch_for_init_container(config: ServerConfig) -> int:
    assert config.fetch_to is not None
    try:
        loading.fetch_to(config, config.fetch_to)
    except LoadError as exc:
        loading.record_failure(exc, config.termination_log)
        return exc.exit_code
    return 0


async def serve(config: ServerConfig) -> int:
    metrics = ServerMetrics()
    metrics.describe_model(
        name=config.model_name,
        version=config.model_version,
        sha256=config.sha256,
        fmt=config.format,
    )
    service = InferenceService(config, metrics)
    http = http_server(config, service, metrics)
    host, port = await http.start(config.host, config.port)
    log.info("listening on http://%s:%d (model %s is loading)", host, port, config.model_name)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(DRAIN_SIGNAL, _drain_early, service)
    loader = asyncio.create_task(_load(config, service))
    await stop.wait()

    service.begin_drain()
    log.info(
        "shutting down: readiness is false; serving %.1f s more, then in-flight requests get "
        "up to %.1f s",
        config.drain_seconds,
        config.shutdown_timeout,
    )
    if config.drain_seconds:
        await asyncio.sleep(config.drain_seconds)
    await http.close(config.shutdown_timeout)  # stop listening; in-flight requests finish
    await service.close()
    loader.cancel()
    log.info("stopped")
    return 0


def http_server(
    config: ServerConfig, service: InferenceService, metrics: ServerMetrics
) -> HttpServer:
    """The app behind the HTTP layer with the configured limits (the profiling scripts in
    bench/serving build the same)."""
    app = create_app(config, service, metrics)
    return HttpServer(app.answer, _http_limits(config), answer_now=app.answer_now)


def _http_limits(config: ServerConfig) -> Limits:
    return Limits(
        header_timeout=config.header_timeout,
        keepalive_timeout=config.keepalive_timeout,
        max_body_bytes=config.max_request_bytes,
        max_connections=config.max_connections,
        max_requests_per_connection=config.max_requests_per_connection,
        max_connection_age=config.max_connection_age,
    )


def _drain_early(service: InferenceService) -> None:
    if not service.draining:
        log.info("draining (preStop): readiness is false; every answer closes its connection")
    service.begin_drain()


async def _load(config: ServerConfig, service: InferenceService) -> None:
    try:
        model = await _in_daemon_thread(config)
    except LoadError as exc:
        service.load_failed(exc.cause, loading.record_failure(exc, config.termination_log))
        return
    gc.freeze()  # the model's objects never die: keep them out of every future collection
    # Requests make no cyclic garbage (counted: none after 320 forest requests), so the young
    # generation is collected ten times less often than Python's default of every 700
    # allocations: 3% of a forest request's instructions at 64 connections (docs/serving.md).
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS)
    service.model_loaded(model)


async def _in_daemon_thread(config: ServerConfig) -> LoadedModel:
    """Load off the event loop, in a daemon thread: a SIGTERM during a slow download must not
    wait for it (asyncio.to_thread's pool threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[LoadedModel] = loop.create_future()

    def settle(result: LoadedModel | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result, error = None, None
        try:
            result = loading.load_verified(config)
        except LoadError as exc:
            error = exc
        except Exception as exc:  # a bug or MemoryError: still one clear line, still not ready
            error = LoadError(f"unexpected {type(exc).__name__}: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is gone
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="model-loader", daemon=True).start()
    return await future
