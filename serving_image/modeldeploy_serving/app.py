"""HTTP routes (aiohttp). Thin: read the body, hand it to the protocol and the service, answer.

Every error is a ServingError carrying its status; `_answer_inference` turns it into a JSON
error body and counts it by whose fault it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

import orjson
from aiohttp import web

from .config import ServerConfig
from .errors import (
    ClientError,
    ModelNotFound,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from .metrics import ServerMetrics
from .protocol import body, v1, v2
from .service import InferenceService

log = logging.getLogger(__name__)

JSON = "application/json"
PLATFORM = "scikit-learn"
SERVER_NAME = "modeldeploy-server"


def create_app(
    config: ServerConfig, service: InferenceService, metrics: ServerMetrics
) -> web.Application:
    routes = _Routes(config, service, metrics)
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[_json_errors])
    add = app.router
    add.add_get("/v2/health/live", routes.live)
    add.add_get("/v2/health/ready", routes.ready)
    add.add_get("/v2", routes.server_metadata)
    add.add_get("/v2/models/{name}", routes.model_metadata)
    add.add_get("/v2/models/{name}/versions/{version}", routes.model_metadata)
    add.add_get("/v2/models/{name}/ready", routes.model_ready)
    add.add_get("/v2/models/{name}/versions/{version}/ready", routes.model_ready)
    add.add_post("/v2/models/{name}/infer", routes.v2_infer)
    add.add_post("/v2/models/{name}/versions/{version}/infer", routes.v2_infer)
    add.add_post("/v1/models/{name}:predict", routes.v1_predict)
    add.add_get("/metrics", routes.metrics)
    return app


class _Routes:
    def __init__(self, config: ServerConfig, service: InferenceService, metrics: ServerMetrics):
        self._service = service
        self._metrics = metrics
        self._max_bytes = config.max_request_bytes
        self._max_rows = config.max_request_rows

    # --- health and metadata -------------------------------------------------------------
    async def live(self, _: web.Request) -> web.Response:
        # Never waits on the model or the predict queue: load must not fail liveness.
        return _json({"live": True})

    async def ready(self, _: web.Request) -> web.Response:
        if self._service.ready:
            return _json({"ready": True})
        service = self._service  # `cause` is CamelCase (e.g. Sha256Mismatch), `reason` prose
        body = {
            "ready": False,
            "reason": service.not_ready_reason,
            "cause": service.not_ready_cause,
        }
        return _json(body, status=503)

    async def model_ready(self, request: web.Request) -> web.Response:
        name, model_version = request.match_info["name"], request.match_info.get("version")
        if name != self._service.name or model_version not in (None, self._service.version):
            raise ModelNotFound(f"model {name!r} is not served here")
        if self._service.ready:
            return _json({"name": name, "ready": True})
        reason = self._service.not_ready_reason
        return _json({"name": name, "ready": False, "reason": reason}, status=503)

    async def server_metadata(self, _: web.Request) -> web.Response:
        return _json({"name": SERVER_NAME, "version": _package_version(), "extensions": []})

    async def model_metadata(self, request: web.Request) -> web.Response:
        signature = self._service.require_model(
            request.match_info["name"], request.match_info.get("version")
        )
        raw = v2.encode_metadata(
            model_name=self._service.name,
            model_version=self._service.version,
            platform=PLATFORM,
            signature=signature,
        )
        return web.Response(body=raw, content_type=JSON)

    async def metrics(self, _: web.Request) -> web.Response:
        raw, content_type = self._metrics.exposition()
        return web.Response(body=raw, headers={"Content-Type": content_type})

    # --- inference ---------------------------------------------------------------------------
    async def v2_infer(self, request: web.Request) -> web.Response:
        return await self._answer_inference("v2", request, self._v2_infer)

    async def v1_predict(self, request: web.Request) -> web.Response:
        return await self._answer_inference("v1", request, self._v1_predict)

    async def _v2_infer(self, request: web.Request) -> bytes:
        service = self._service
        signature = service.require_model(
            request.match_info["name"], request.match_info.get("version")
        )
        parsed = v2.parse_infer(
            await _read_body(request, self._max_bytes), signature, max_rows=self._max_rows
        )
        results = await service.predict(parsed.rows, parsed.outputs)
        return v2.encode_infer(
            model_name=service.name,
            model_version=service.version,
            request_id=parsed.id,
            outputs=list(zip(parsed.outputs, results, strict=True)),
        )

    async def _v1_predict(self, request: web.Request) -> bytes:
        signature = self._service.require_model(request.match_info["name"])
        rows = v1.parse_predict(
            await _read_body(request, self._max_bytes), signature, max_rows=self._max_rows
        )
        (predictions,) = await self._service.predict(rows, (signature.default_output,))
        return v1.encode_predict(predictions)

    async def _answer_inference(
        self, protocol: str, request: web.Request, answer: Callable[[web.Request], Awaitable[bytes]]
    ) -> web.Response:
        started = time.perf_counter()
        self._metrics.in_flight.inc()
        try:
            raw = await answer(request)
        except ServingError as exc:
            self._metrics.observe_request(protocol, time.perf_counter() - started, exc)
            return _error_response(exc)
        except Exception:  # a bug on our side, not the model's: 500, but never a model error
            log.exception("unexpected error answering %s %s", request.method, request.path)
            error = ServingError("internal server error; see the server log")
            self._metrics.observe_request(protocol, time.perf_counter() - started, error)
            return _error_response(error)
        finally:
            self._metrics.in_flight.dec()
        self._metrics.observe_request(protocol, time.perf_counter() - started)
        return web.Response(body=raw, content_type=JSON)


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("Content-Type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted; send {JSON}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        # Compressed bodies are refused outright: no decompression bomb can get in this way.
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send identity")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, limit is {max_bytes}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked bodies: aiohttp counts as it reads
        raise PayloadTooLarge(f"body is larger than the limit of {max_bytes} bytes") from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or media.endswith("+json")


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors outside inference (unknown route, wrong method, 404 model) as JSON bodies."""
    try:
        return await handler(request)
    except ServingError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason.lower().replace(" ", "_")
        error = ClientError(f"{request.method} {request.path}: {exc.reason}")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        raw = orjson.dumps({"error": error.message, "reason": reason})
        return web.Response(status=exc.status, body=raw, content_type=JSON, headers=headers)


def _error_response(error: ServingError) -> web.Response:
    return web.Response(
        status=error.status, body=body.encode_error(error), content_type=JSON, headers=error.headers
    )


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type=JSON)


def _package_version() -> str:
    try:
        return version("modeldeploy")
    except PackageNotFoundError:
        return "unknown"
