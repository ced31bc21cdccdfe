"""HTTP routes on the server's own HTTP layer (http_server.py). Thin: read the body, hand it to
the protocol and the service, answer.

Every error is a ServingError carrying its status; `_answer_inference` turns it into a JSON
error body and counts it by whose fault it was. A model error's text (the estimator's exception)
is logged under a request id and never sent: the client gets the reason and the id.

An inference request is one object from its parse to its answer (`_Inference`): its clocks,
its rows, how to encode them and where to answer; it is also the predict queue's item, so the
batch's callback answers it directly (docs/serving.md, "One object per request").

Two clocks per inference request: the upload (complete headers to the last body byte, cut off
after the body timeout) and the SLO latency (last body byte to the encoded response). A slow
client's upload is its own histogram and never reaches the p99 that can trigger a rollback.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import numpy as np

from . import feedback as scoring
from .batching import Queued
from .config import ServerConfig
from .errors import (
    ModelError,
    ModelNotFound,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from .http_messages import JSON, Request, Response, json_response
from .metrics import ServerMetrics
from .protocol import body, v1, v2
from .protocol import feedback as feedback_protocol
from .service import InferenceService
from .signature import PREDICT, ModelSignature

log = logging.getLogger(__name__)

PLATFORM = "scikit-learn"
SERVER_NAME = "modeldeploy-server"
REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed only if it is short and plain: it goes into the log line.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
Params = dict[str, str]
Route = Callable[[Request, Params], Awaitable[Response]]

# Path patterns ({name}: one path segment, never two patterns for one path) and the method each
# answers; tried in this order. A GET route also answers HEAD (the body left out).
_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("/v2/models/{name}/infer", "POST", "v2_infer"),
    ("/v2/models/{name}/versions/{version}/infer", "POST", "v2_infer"),
    ("/v1/models/{name}:predict", "POST", "v1_predict"),
    ("/v2/health/live", "GET", "live"),
    ("/v2/health/ready", "GET", "ready"),
    ("/v2", "GET", "server_metadata"),
    ("/v2/models/{name}", "GET", "model_metadata"),
    ("/v2/models/{name}/versions/{version}", "GET", "model_metadata"),
    ("/v2/models/{name}/ready", "GET", "model_ready"),
    ("/v2/models/{name}/versions/{version}/ready", "GET", "model_ready"),
    ("/v2/models/{name}/feedback", "POST", "v2_feedback"),
    ("/v2/models/{name}/versions/{version}/feedback", "POST", "v2_feedback"),
    ("/v1/models/{name}:feedback", "POST", "v1_feedback"),
    ("/metrics", "GET", "metrics"),
)
# The methods each route answers: a GET route also answers HEAD.
_ANSWERS = tuple(("GET", "HEAD") if method == "GET" else (method,) for _, method, _ in _ROUTES)
# The routes `App.answer_now` takes, by index, and their protocol.
_INFERENCE = {
    i: name[:2] for i, (_, _, name) in enumerate(_ROUTES) if name in ("v2_infer", "v1_predict")
}
_PATTERNS = tuple(
    re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^{}/]+)", re.escape(path)))
    for path, _, _ in _ROUTES
)


class _ParseFeedback(Protocol):
    def __call__(
        self, raw: bytes, signature: ModelSignature, want: scoring.Target, *, max_rows: int
    ) -> feedback_protocol.FeedbackRequest: ...


class App:
    """The server's routes behind its HTTP layer: `answer` for any request (a task each), and
    `answer_now` for inference requests whose body is already here (no task: the HTTP layer
    calls it first)."""

    def __init__(self, config: ServerConfig, service: InferenceService, metrics: ServerMetrics):
        self._service = service
        self._routes = _Routes(config, service, metrics)
        self._bound: tuple[Route, ...] = tuple(
            getattr(self._routes, name) for _, _, name in _ROUTES
        )

    async def answer(self, request: Request) -> Response:
        found = _route(request.path)
        if found is None:
            return _final(self._service, _no_route(request, 404, "Not Found"))
        index, params = found
        if request.method not in _ANSWERS[index]:
            return _final(
                self._service, _no_route(request, 405, "Method Not Allowed", _ANSWERS[index])
            )
        try:
            response = await self._bound[index](request, dict(params))
        except ServingError as exc:
            response = _error_response(exc)
        return _final(self._service, response)

    def answer_now(self, request: Request) -> bool:
        """Inference with its whole body here: parsed now, answered from the predict batch's
        callback. Anything else (or a body still arriving) goes to `answer`."""
        found = _route(request.path) if request.complete else None
        if found is None:
            return False
        index, params = found
        protocol = _INFERENCE.get(index)
        if protocol is None or request.method != "POST":
            return False
        self._routes.infer_now(protocol, request, dict(params))
        return True


def _final(service: InferenceService, response: Response) -> Response:
    if service.draining:
        # After SIGTERM every answer ends its keep-alive connection ("Connection: close"): a
        # client's next request opens a new connection, which the Service routes to a pod that
        # stays, instead of racing the close of an idle connection to this one.
        response.close = True
    return response


def create_app(config: ServerConfig, service: InferenceService, metrics: ServerMetrics) -> App:
    return App(config, service, metrics)


def _no_route(
    request: Request, status: int, phrase: str, allowed: tuple[str, ...] = ()
) -> Response:
    """An unknown path (404) or a method the path does not answer (405, with Allow)."""
    answer = {
        "error": f"{request.method} {request.path}: {phrase}",
        "reason": phrase.lower().replace(" ", "_"),
    }
    return json_response(status, answer, [("Allow", ",".join(allowed))] if allowed else [])


def _find_route(path: str) -> tuple[int, tuple[tuple[str, str], ...]] | None:
    """The route whose pattern the path matches (at most one does), and its parameters."""
    for index, pattern in enumerate(_PATTERNS):
        if (matched := pattern.fullmatch(path)) is not None:
            return index, tuple(matched.groupdict().items())
    return None


_find_remembered = functools.lru_cache(maxsize=1024)(_find_route)


def _route(path: str) -> tuple[int, tuple[tuple[str, str], ...]] | None:
    # Clients choose paths: only short ones are remembered.
    return _find_remembered(path) if len(path) <= 256 else _find_route(path)


class _Routes:
    def __init__(self, config: ServerConfig, service: InferenceService, metrics: ServerMetrics):
        self.service = service
        self._metrics = metrics
        self._max_bytes = config.max_request_bytes
        self._max_rows = config.max_request_rows
        self._body_timeout = config.body_timeout
        self._error_log = _RateLimitedLog(interval_seconds=1.0)

    # --- health and metadata -------------------------------------------------------------
    async def live(self, _: Request, __: Params) -> Response:
        # Never waits on the model or the predict queue: load must not fail liveness.
        return json_response(200, {"live": True})

    async def ready(self, _: Request, __: Params) -> Response:
        if self.service.ready:
            return json_response(200, {"ready": True, "runtime": self.service.runtime})
        service = self.service  # `cause` is CamelCase (e.g. Sha256Mismatch), `reason` prose
        body = {
            "ready": False,
            "reason": service.not_ready_reason,
            "cause": service.not_ready_cause,
        }
        return json_response(503, body)

    async def model_ready(self, _: Request, params: Params) -> Response:
        name, model_version = params["name"], params.get("version")
        if name != self.service.name or model_version not in (None, self.service.version):
            raise ModelNotFound(f"model {name!r} is not served here")
        if self.service.ready:
            return json_response(200, {"name": name, "ready": True})
        reason = self.service.not_ready_reason
        return json_response(503, {"name": name, "ready": False, "reason": reason})

    async def server_metadata(self, _: Request, __: Params) -> Response:
        return json_response(
            200, {"name": SERVER_NAME, "version": _package_version(), "extensions": []}
        )

    async def model_metadata(self, _: Request, params: Params) -> Response:
        signature = self.service.require_model(params["name"], params.get("version"))
        raw = v2.encode_metadata(
            model_name=self.service.name,
            model_version=self.service.version,
            platform=PLATFORM,
            signature=signature,
        )
        return Response(200, raw)

    async def metrics(self, _: Request, __: Params) -> Response:
        raw, content_type = self._metrics.exposition()
        return Response(200, raw, content_type=content_type)

    # --- inference ---------------------------------------------------------------------------
    # Both lanes run the same steps: check and read the body, plan (parse against the model's
    # signature), predict, encode; `concluded` answers and counts it. `infer_now` does it with
    # the body already here, the request queued as it is; `_infer` awaits each step.
    async def v2_infer(self, request: Request, params: Params) -> Response:
        return await self._infer("v2", request, params)

    async def v1_predict(self, request: Request, params: Params) -> Response:
        return await self._infer("v1", request, params)

    def _plan(self, inference: _Inference, params: Params, raw: bytes) -> None:
        service = self.service
        if inference.protocol == "v1":
            signature = service.require_model(params["name"])
            inference.rows = v1.parse_predict(raw, signature, max_rows=self._max_rows)
            inference.outputs = (signature.default_output,)
            return
        signature = service.require_model(params["name"], params.get("version"))
        parsed = v2.parse_infer(raw, signature, max_rows=self._max_rows)
        inference.rows, inference.outputs, inference.id = parsed.rows, parsed.outputs, parsed.id

    async def _infer(self, protocol: str, request: Request, params: Params) -> Response:
        inference = self._begin(protocol, request)
        try:
            self._plan(inference, params, await self._read_body(request, inference))
            predicted = await self.service.predict(inference.rows, inference.outputs)
            raw = inference.encode(predicted)
        except BaseException as exc:  # concluded re-raises a cancellation once counted
            return self.concluded(inference, None, exc)
        return self.concluded(inference, raw, None)

    def infer_now(self, protocol: str, request: Request, params: Params) -> None:
        inference = self._begin(protocol, request)
        try:
            self._plan(inference, params, self._body_now(request, inference))
            self.service.put(inference)
        except Exception as exc:
            inference.done(None, exc)

    def _begin(self, protocol: str, request: Request) -> _Inference:
        self._metrics.in_flight.inc()
        return _Inference(self, protocol, request)

    def concluded(
        self, inference: _Inference, raw: bytes | None, error: BaseException | None
    ) -> Response:
        """The answer to an inference request, counted once."""
        self._metrics.in_flight.dec()
        if raw is not None:
            self._metrics.observe_request(inference.protocol, inference.since_body())
            return Response(200, raw)
        assert error is not None
        if not isinstance(error, Exception):  # cancelled: the client or the server went away
            raise error
        counted, response = self._failure(inference.request, error, "request", "this request")
        self._metrics.observe_request(inference.protocol, inference.since_body(), counted)
        return response

    def _failure(
        self, request: Request, exc: Exception, kind: str, what: str
    ) -> tuple[ServingError, Response]:
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
    async def v2_feedback(self, request: Request, params: Params) -> Response:
        return await self._answer_feedback(request, params, feedback_protocol.parse_v2)

    async def v1_feedback(self, request: Request, params: Params) -> Response:
        return await self._answer_feedback(request, params, feedback_protocol.parse_v1)

    async def _answer_feedback(
        self, request: Request, params: Params, parse: _ParseFeedback
    ) -> Response:
        """Like inference, but counted only in the feedback series: a flood of bad feedback
        cannot move the error rate, the p99 or the drift counters."""
        try:
            score, request_id = await self._score_feedback(request, params, parse)
        except Exception as exc:
            counted, response = self._failure(request, exc, "feedback", "these feedback rows")
            self._metrics.observe_feedback(None, counted)
            return response
        self._metrics.observe_feedback(score)
        service = self.service
        answer: dict[str, object] = {"model_name": service.name}
        if service.version:
            answer["model_version"] = service.version
        if request_id is not None:
            answer["id"] = request_id
        return json_response(200, {**answer, **score.summary()})

    async def _score_feedback(
        self, request: Request, params: Params, parse: _ParseFeedback
    ) -> tuple[scoring.Score, str | None]:
        service = self.service
        signature = service.require_model(params["name"], params.get("version"))
        want = scoring.target(signature)
        raw = await self._read_body(request, None)
        parsed = parse(raw, signature, want, max_rows=self._max_rows)
        (predictions,) = await service.predict(parsed.rows, (PREDICT,), observed=False)
        return scoring.score(predictions, parsed.labels, want), parsed.id

    async def _read_body(self, request: Request, inference: _Inference | None) -> bytes:
        """`inference` None (feedback): the upload is not timed in the inference series."""
        _check_body_headers(request, self._max_bytes)
        try:
            return await request.read(self._body_timeout)
        finally:
            if inference is not None:
                self._uploaded(request, inference)

    def _body_now(self, request: Request, inference: _Inference) -> bytes:
        """The body of a request whose body is complete (answer_now)."""
        _check_body_headers(request, self._max_bytes)
        try:
            return request.body()
        finally:
            self._uploaded(request, inference)

    def _uploaded(self, request: Request, inference: _Inference) -> None:
        inference.body_complete = request.body_complete or time.perf_counter()
        self._metrics.observe_upload(inference.body_complete - request.headers_complete)


_NO_ROWS = np.empty((0, 0))  # an inference's rows until its body is parsed


class _Inference(Queued):
    """One inference request from its parse to its answer: when its handler started and when
    its body was complete, its parsed rows and id, and how to encode its results. Queued as it
    is (`infer_now`): its batch's callback (`done`) encodes, counts and answers it."""

    __slots__ = ("_routes", "body_complete", "id", "protocol", "request", "started")

    def __init__(self, routes: _Routes, protocol: str, request: Request) -> None:
        super().__init__(_NO_ROWS, ())
        self._routes = routes
        self.protocol = protocol  # "v1" or "v2": how it is parsed, encoded and counted
        self.request = request
        self.started = time.perf_counter()
        self.body_complete: float | None = None
        self.id: str | None = None  # v2's request id, echoed in the answer

    def since_body(self) -> float:
        """SLO latency: from the complete body (or the start, for errors before reading it)."""
        origin = self.started if self.body_complete is None else self.body_complete
        return time.perf_counter() - origin

    def encode(self, results: tuple[np.ndarray, ...]) -> bytes:
        if self.protocol == "v1":
            (predictions,) = results
            return v1.encode_predict(predictions)
        service = self._routes.service
        return v2.encode_infer(
            model_name=service.name,
            model_version=service.version,
            request_id=self.id,
            names=self.outputs,
            results=results,
        )

    def done(self, results: tuple[np.ndarray, ...] | None, error: BaseException | None) -> None:
        """Answered now (infer_now): encode, count, reply."""
        raw = None
        if results is not None:
            try:
                raw = self.encode(results)
            except Exception as exc:
                error = exc
        routes = self._routes
        self.request.reply(_final(routes.service, routes.concluded(self, raw, error)))


def _check_body_headers(request: Request, max_bytes: int) -> None:
    content_type = request.header("content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted; send {JSON}")
    encoding = (request.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        # Compressed bodies are refused outright: no decompression bomb can get in this way.
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send identity")
    length = request.content_length
    if length is not None and length > max_bytes:
        # Answered before a byte of the body is read; the connection then closes.
        raise PayloadTooLarge(f"body is {length} bytes, limit is {max_bytes}")


def _request_id(request: Request) -> str:
    caller = request.header(REQUEST_ID_HEADER.lower()) or ""
    return caller if _CALLER_ID.fullmatch(caller) else secrets.token_hex(8)


def _is_json(content_type: str) -> bool:
    if content_type == JSON:  # what nearly every client sends: no parsing
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or media.endswith("+json")


def _error_response(error: ServingError, request_id: str | None = None) -> Response:
    headers = list(error.headers.items())
    if request_id is not None:
        headers.append((REQUEST_ID_HEADER, request_id))
    # closes_connection: "Connection: close", and the unread body is never read
    return Response(
        error.status,
        body.encode_error(error, request_id),
        headers=headers,
        close=error.closes_connection,
    )


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
