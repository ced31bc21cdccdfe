"""HTTP routes (aiohttp). Thin: read the body, hand it to the protocol and the service, answer.

Every error is a ServingError carrying its status; `_answer_inference` turns it into a JSON
error body and counts it by whose fault it was. A model error's text (the estimator's exception)
is logged under a request id and never sent: the client gets the reason and the id.

Two clocks per inference request: the upload (complete headers to the last body byte, cut off
after the body timeout) and the SLO latency (last body byte to the encoded response). A slow
client's upload is its own histogram and never reaches the p99 that can trigger a rollback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import orjson
from aiohttp import web

from . import feedback as scoring
from .config import ServerConfig
from .errors import (
    ClientError,
    ModelError,
    ModelNotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServingError,
    UnsupportedMediaType,
)
from .metrics import ServerMetrics
from .protocol import body, v1, v2
from .protocol import feedback as feedback_protocol
from .service import InferenceService
from .signature import PREDICT, ModelSignature

log = logging.getLogger(__name__)

JSON = "application/json"
PLATFORM = "scikit-learn"
SERVER_NAME = "modeldeploy-server"
REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed only if it is short and plain: it goes into the log line.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class _ParseFeedback(Protocol):
    def __call__(
        self, raw: bytes, signature: ModelSignature, want: scoring.Target, *, max_rows: int
    ) -> feedback_protocol.FeedbackRequest: ...


def create_app(
    config: ServerConfig, service: InferenceService, metrics: ServerMetrics
) -> web.Application:
    routes = _Routes(config, service, metrics)

    @web.middleware
    async def close_while_draining(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # After SIGTERM every answer ends its keep-alive connection ("Connection: close"): a
        # client's next request opens a new connection, which the Service routes to a pod that
        # stays, instead of racing the close of an idle connection to this one.
        response = await handler(request)
        if service.draining:
            response.force_close()
        return response

    app = web.Application(
        client_max_size=config.max_request_bytes,
        middlewares=[close_while_draining, _json_errors],
    )
    add = app.router
    # aiohttp tries the /v2/models/{name}... patterns in the order they are added: infer first,
    # so an inference request is not matched against every metadata pattern before its own.
    add.add_post("/v2/models/{name}/infer", routes.v2_infer)
    add.add_post("/v2/models/{name}/versions/{version}/infer", routes.v2_infer)
    add.add_post("/v1/models/{name}:predict", routes.v1_predict)
    add.add_get("/v2/health/live", routes.live)
    add.add_get("/v2/health/ready", routes.ready)
    add.add_get("/v2", routes.server_metadata)
    add.add_get("/v2/models/{name}", routes.model_metadata)
    add.add_get("/v2/models/{name}/versions/{version}", routes.model_metadata)
    add.add_get("/v2/models/{name}/ready", routes.model_ready)
    add.add_get("/v2/models/{name}/versions/{version}/ready", routes.model_ready)
    add.add_post("/v2/models/{name}/feedback", routes.v2_feedback)
    add.add_post("/v2/models/{name}/versions/{version}/feedback", routes.v2_feedback)
    add.add_post("/v1/models/{name}:feedback", routes.v1_feedback)
    add.add_get("/metrics", routes.metrics)
    return app


class _Routes:
    def __init__(self, config: ServerConfig, service: InferenceService, metrics: ServerMetrics):
        self._service = service
        self._metrics = metrics
        self._max_bytes = config.max_request_bytes
        self._max_rows = config.max_request_rows
        self._body_timeout = config.body_timeout
        self._error_log = _RateLimitedLog(interval_seconds=1.0)

    # --- health and metadata -------------------------------------------------------------
    async def live(self, _: web.Request) -> web.Response:
        # Never waits on the model or the predict queue: load must not fail liveness.
        return _json({"live": True})

    async def ready(self, _: web.Request) -> web.Response:
        if self._service.ready:
            return _json({"ready": True, "runtime": self._service.runtime})
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

    async def _v2_infer(self, request: web.Request, clock: _Clock) -> bytes:
        service = self._service
        signature = service.require_model(
            request.match_info["name"], request.match_info.get("version")
        )
        parsed = v2.parse_infer(
            await self._read_body(request, clock), signature, max_rows=self._max_rows
        )
        results = await service.predict(parsed.rows, parsed.outputs)
        return v2.encode_infer(
            model_name=service.name,
            model_version=service.version,
            request_id=parsed.id,
            outputs=list(zip(parsed.outputs, results, strict=True)),
        )

    async def _v1_predict(self, request: web.Request, clock: _Clock) -> bytes:
        signature = self._service.require_model(request.match_info["name"])
        rows = v1.parse_predict(
            await self._read_body(request, clock), signature, max_rows=self._max_rows
        )
        (predictions,) = await self._service.predict(rows, (signature.default_output,))
        return v1.encode_predict(predictions)

    async def _answer_inference(
        self,
        protocol: str,
        request: web.Request,
        answer: Callable[[web.Request, _Clock], Awaitable[bytes]],
    ) -> web.Response:
        clock = _Clock(time.perf_counter())
        self._metrics.in_flight.inc()
        try:
            raw = await answer(request, clock)
        except Exception as exc:
            counted, response = self._failure(request, exc, "request", "this request")
            self._metrics.observe_request(protocol, clock.since_body(), counted)
            return response
        finally:
            self._metrics.in_flight.dec()
        self._metrics.observe_request(protocol, clock.since_body())
        return web.Response(body=raw, content_type=JSON)

    def _failure(
        self, request: web.Request, exc: Exception, kind: str, what: str
    ) -> tuple[ServingError, web.Response]:
        """The answer to a request that failed, and the error to count for it. A model's own
        error text stays in the log under a request id, never in the answer; anything that is
        not a ServingError is a bug on our side: a 500, never counted as a model error."""
        if isinstance(exc, ModelError):
            request_id = _request_id(request)
            self._error_log.warning(
                "model error for %s %s (%s): %s", kind, request_id, exc.reason, exc.message
            )
            hidden = type(exc)(
                f"the model failed on {what} ({exc.reason}); "
                f"the server log has the details under request id {request_id}"
            )
            return exc, _error_response(hidden, request_id)
        if isinstance(exc, ServingError):
            return exc, _error_response(exc)
        request_id = _request_id(request)
        log.error(
            "unexpected error answering %s %s (request id %s)",
            request.method,
            request.path,
            request_id,
            exc_info=exc,
        )
        error = ServingError(f"internal server error; see the server log for {request_id}")
        return error, _error_response(error, request_id)

    # --- feedback: labelled rows, scored; never inference traffic -----------------------------
    async def v2_feedback(self, request: web.Request) -> web.Response:
        return await self._answer_feedback(request, feedback_protocol.parse_v2)

    async def v1_feedback(self, request: web.Request) -> web.Response:
        return await self._answer_feedback(request, feedback_protocol.parse_v1)

    async def _answer_feedback(self, request: web.Request, parse: _ParseFeedback) -> web.Response:
        """Like inference, but counted only in the feedback series: a flood of bad feedback
        cannot move the error rate, the p99 or the drift counters."""
        try:
            score, request_id = await self._score_feedback(request, parse)
        except Exception as exc:
            counted, response = self._failure(request, exc, "feedback", "these feedback rows")
            self._metrics.observe_feedback(None, counted)
            return response
        self._metrics.observe_feedback(score)
        service = self._service
        answer: dict[str, object] = {"model_name": service.name}
        if service.version:
            answer["model_version"] = service.version
        if request_id is not None:
            answer["id"] = request_id
        return _json({**answer, **score.summary()})

    async def _score_feedback(
        self, request: web.Request, parse: _ParseFeedback
    ) -> tuple[scoring.Score, str | None]:
        service = self._service
        signature = service.require_model(
            request.match_info["name"], request.match_info.get("version")
        )
        want = scoring.target(signature)
        raw = await self._read_body(request, None)
        parsed = parse(raw, signature, want, max_rows=self._max_rows)
        (predictions,) = await service.predict(parsed.rows, (PREDICT,), observed=False)
        return scoring.score(predictions, parsed.labels, want), parsed.id

    async def _read_body(self, request: web.Request, clock: _Clock | None) -> bytes:
        """`clock` None (feedback): the upload is not timed in the inference series."""
        _check_body_headers(request, self._max_bytes)
        started = time.perf_counter()
        try:
            if request.content.is_eof():  # the whole body is buffered: read() cannot wait
                return await request.read()
            async with asyncio.timeout(self._body_timeout):
                return await request.read()
        except TimeoutError:
            raise RequestTimeout(
                f"request body not received within {self._body_timeout:g} s"
            ) from None
        except web.HTTPRequestEntityTooLarge:  # chunked bodies: aiohttp counts as it reads
            raise PayloadTooLarge(
                f"body is larger than the limit of {self._max_bytes} bytes"
            ) from None
        finally:
            if clock is not None:
                clock.body_complete = time.perf_counter()
                self._metrics.observe_upload(clock.body_complete - started)


class _Clock:
    """When the request's handler started and when its body was complete."""

    __slots__ = ("body_complete", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.body_complete: float | None = None

    def since_body(self) -> float:
        """SLO latency: from the complete body (or the start, for errors before reading it)."""
        origin = self.started if self.body_complete is None else self.body_complete
        return time.perf_counter() - origin


def _check_body_headers(request: web.Request, max_bytes: int) -> None:
    content_type = request.headers.get("Content-Type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted; send {JSON}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        # Compressed bodies are refused outright: no decompression bomb can get in this way.
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send identity")
    if request.content_length is not None and request.content_length > max_bytes:
        # Answered before a byte of the body is read; the connection then closes.
        raise PayloadTooLarge(f"body is {request.content_length} bytes, limit is {max_bytes}")


def _request_id(request: web.Request) -> str:
    caller = request.headers.get(REQUEST_ID_HEADER, "")
    return caller if _CALLER_ID.fullmatch(caller) else secrets.token_hex(8)


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


def _error_response(error: ServingError, request_id: str | None = None) -> web.Response:
    headers = (
        error.headers if request_id is None else {**error.headers, REQUEST_ID_HEADER: request_id}
    )
    response = web.Response(
        status=error.status,
        body=body.encode_error(error, request_id),
        content_type=JSON,
        headers=headers,
    )
    if error.closes_connection:
        response.force_close()  # "Connection: close", and the unread body is never read
    return response


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type=JSON)


def _package_version() -> str:
    try:
        return version("modeldeploy")
    except PackageNotFoundError:
        return "unknown"


class _RateLimitedLog:
    """A failing model under load must not turn the log into the bottleneck."""

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more since the last such line)"
        log.warning(message, *args)
        self._next, self._suppressed = now + self._interval, 0
