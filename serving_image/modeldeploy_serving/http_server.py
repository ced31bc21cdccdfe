"""The model server's HTTP/1.1 layer: httptools (llhttp, Node.js's parser) under one
asyncio.Protocol per connection, and little else per request: no framework router, middleware
chain, header multidict or response object graph. Against the aiohttp app it replaces, the same
minimal JSON handler cost 16-20 µs of server CPU per request instead of 51-72 µs (wrk, 64
connections, server on one core); for the forest that is most of what a request costs around
the model (README, "Serving benchmark").

A request is answered in one of two ways. If its body came in the same read as its head (as a
small inference request's does) and the app's `answer_now` takes it, it is answered without a
task: parsed at once and written from the predict batch's callback. Anything else (a body still
arriving, 100-continue, any other route) gets a task running the handler, which awaits the body
within its timeout. On the forest at 64 connections a request costs 17% fewer instructions this
way than with a task each (docs/serving.md, "No task per request").

A connection handles one request at a time, in order: a pipelined request waits (its headers
parsed, its body buffered up to the size limit) until the one before it is answered, and reading
pauses while a few wait or while the client does not read its answers.

Defences against slow and greedy clients, per listener:
- headers: complete within `header_timeout` of the connection opening, or of the first byte of
  a later request on a keep-alive connection; else a 408 (if anything was sent) and close.
- body: the route reads it within its own timeout (`Request.read`), counted as it arrives; past
  `max_body_bytes` the request fails with PayloadTooLarge. A response sent before the body was
  read closes the connection instead of reading the rest: a 1 GB claim costs nothing.
- idle keep-alive connections close after `keepalive_timeout`.
- at most `max_connections` open. One more evicts the oldest connection that is not busy with a
  request (idle, or headers still arriving: no work is lost, and a slowloris client is the
  likeliest victim); if every connection is busy (complete headers, no answer yet), the
  newcomer gets a 503 with Retry-After and is closed.
- a keep-alive connection older than `max_connection_age` seconds (0: no limit) is closed with
  its next answer (`Connection: close`), never while idle: a request sent as it closed would be
  lost. A Service balances connections, not requests; by age, every client's connection is
  balanced again within that time whatever its rate, and a fast client pays one new connection
  per that time, not one per so many requests (at 550 requests/s a connection, a budget of 100
  answers reconnected every 0.2 s; docs/serving.md). `max_requests_per_connection` answers (0:
  no limit) also close it.
Deadlines are checked by one sweep every 0.1 s rather than a timer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from http import HTTPStatus
from time import monotonic, perf_counter
from typing import Any, cast

import httptools
import orjson

from .errors import ClientGone
from .http_messages import JSON, AnswerNow, Handler, Limits, Request, Response, json_response

log = logging.getLogger(__name__)

_SWEEP_SECONDS = 0.1
_MAX_HEAD_BYTES = 65536  # a request line and headers longer than this get a 431
_MAX_WAITING = 8  # pipelined requests parsed ahead of their turn before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_OK_JSON_HEAD = (
    _STATUS_LINES[200] + b"Content-Type: %s\r\nContent-Length: %%d\r\n\r\n" % JSON.encode()
)
_HEADER, _KEEPALIVE = 1, 2  # what a connection's deadline is for


def _closing_answer(status: int, error: str, reason: str, extra: bytes = b"") -> bytes:
    """A whole JSON error answer that ends its connection, for the connection layer's own
    refusals (the routes' errors go through the handler)."""
    body = orjson.dumps({"error": error, "reason": reason})
    head = b"Content-Type: application/json\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
    return _STATUS_LINES[status] + head % (len(body), extra) + body


_TOO_MANY = _closing_answer(
    503, "too many open connections; retry shortly", "too_many_connections", b"Retry-After: 1\r\n"
)
_HEADER_TIMEOUT = _closing_answer(408, "request headers took too long", "request_timeout")


def _head(response: Response, close: bool) -> bytes:
    """The status line and headers of an answer (Content-Length: its body's, even for HEAD)."""
    if response.status == 200 and response.content_type == JSON and not (close or response.headers):
        return _OK_JSON_HEAD % len(response.body)  # nearly every answer: one format, no list
    head = [
        _STATUS_LINES.get(response.status) or b"HTTP/1.1 %d \r\n" % response.status,
        b"Content-Type: %s\r\nContent-Length: %d\r\n"
        % (response.content_type.encode("latin-1"), len(response.body)),
    ]
    for name, value in response.headers:
        head.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head)


def _internal_error() -> Response:
    response = json_response(500, {"error": "internal server error", "reason": "internal_error"})
    response.close = True
    return response


class HttpServer:
    """One listener, its open connections (oldest first), and the deadline sweep."""

    def __init__(
        self, handler: Handler, limits: Limits, answer_now: AnswerNow | None = None
    ) -> None:
        self.handler = handler  # answers every request; its exceptions are bugs (a 500)
        self.answer_now = answer_now  # tried first when a request's body is complete: no task
        self.limits = limits
        self._open: dict[_Connection, None] = {}  # insertion order: oldest first
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None  # closing: set once no connection is busy

    def protocol(self) -> asyncio.Protocol:
        """A new connection's protocol (call on the event loop)."""
        return _Connection(self)

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.protocol, host, port, backlog=backlog, reuse_address=True
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="http-deadlines")
        # uvloop's `sockets` is a list where asyncio's is a tuple: read it as any sequence.
        sockets: Any = cast(Any, self._server).sockets
        address = sockets[0].getsockname()
        return address[0], address[1]

    async def close(self, grace: float) -> None:
        """Stop accepting, close idle connections, give busy ones `grace` seconds to answer,
        then close whatever is left."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            if not connection.busy:
                connection.close()
        # Answered by a task or by a predict batch's callback: wait for the answers either way.
        self._drained = asyncio.Event()
        self.settled()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), grace)
        for connection in list(self._open):
            connection.close(cancel=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    def admit(self, connection: _Connection) -> bool:
        """Make room for a new connection; False if there is none."""
        if len(self._open) >= self.limits.max_connections:
            victim = next((c for c in self._open if not c.busy), None)
            if victim is None:
                return False
            victim.close()
        self._open[connection] = None
        return True

    def closed(self, connection: _Connection) -> None:
        self._open.pop(connection, None)
        self.settled()

    def settled(self) -> None:
        """A connection answered or closed: while closing, see whether any is still busy."""
        if self._drained is not None and not any(c.busy for c in self._open):
            self._drained.set()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = loop.time()
            if self.limits.max_connection_age:
                self._age()
            for connection in [c for c in self._open if c.deadline and c.deadline <= now]:
                connection.deadline_passed()

    def _age(self) -> None:
        """Mark the connections that have reached the age limit: each closes with its next
        answer. Ages are read from time.monotonic(), as `born` is."""
        born_before = monotonic() - self.limits.max_connection_age
        for connection in self._open:  # oldest first
            if connection.born > born_before:
                break
            connection.aged = True


class _Connection(asyncio.Protocol):
    """One client connection: parse, hand complete-header requests to the handler one at a
    time, write the answers in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._url = b""
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._parsing: Request | None = None  # headers complete, body still arriving
        self._active: Request | None = None  # handed to the handler, not yet answered
        self._deferred: Request | None = None  # active, started once the read is parsed
        self.task: asyncio.Task[None] | None = None
        self._waiting: deque[Request] = deque()  # pipelined behind the active one
        self._answered = 0
        # Not loop.time(): uvloop's is libuv's clock, cached per loop iteration in whole
        # milliseconds, so an age read from it could be reached up to a millisecond early.
        self.born = monotonic()
        self.aged = False  # older than the age limit: closed with its next answer
        self._partial = False  # bytes of a request whose headers are incomplete
        self._head_bytes = 0  # of them, counted when a read ends with the head unfinished
        self._began = False  # a request began in the read being parsed
        self._closing = False
        self._reading_paused = False
        self._writing_paused = False
        self._parse_error: bytes | None = None  # the 400 to send once earlier answers are out
        self.deadline = 0.0  # loop time; 0: none
        self._deadline_for = 0

    @property
    def busy(self) -> bool:
        """Complete headers and no answer yet: closing it would lose work."""
        return self._active is not None

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self._server.admit(self):
            self._closing = True
            self._transport.write(_TOO_MANY)
            self._transport.close()
            return
        self._set_deadline(_HEADER, self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.closed(self)
        for request in (self._parsing, *self._waiting):
            if request is not None:
                request.fail(ClientGone("the client closed the connection"))
        self._waiting.clear()  # the active request's handler finishes; its answer goes nowhere

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._began = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._parse_failed(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._parse_failed(400, f"malformed HTTP request: {exc}")
        else:
            if self._partial and not self._began:
                # httptools buffers an unfinished head itself: bound it here. Only reads that
                # hold nothing but head bytes count (a head begun in this read may share it
                # with the body before it), so the bound is this limit plus one read.
                self._head_bytes += len(data)
                if self._head_bytes > _MAX_HEAD_BYTES:
                    message = f"request line and headers are longer than {_MAX_HEAD_BYTES} bytes"
                    self._parse_failed(431, message)
        if self._deferred is not None:
            # Started only now, outside the parser's callbacks: its body may have come in the
            # same read (then it can be answered without a task), and an answer given at once
            # must not run while the parser is still feeding this read.
            request, self._deferred = self._deferred, None
            self._run(request)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._resume_reading()

    # --- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._partial, self._began, self._head_bytes = True, True, 0
        if self._deadline_for != _HEADER:  # a later request: its headers' clock starts now
            self._set_deadline(_HEADER, self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        request = Request(
            self,
            parser.get_method().decode("ascii"),
            self._url,
            self._raw_headers,
            parser.should_keep_alive(),
            perf_counter(),
        )
        self._url, self._raw_headers = b"", []
        self._partial, self.deadline, self._deadline_for = False, 0.0, 0
        self._head_bytes = 0
        self._parsing = request
        if self._active is None:
            self._active = self._deferred = request
        else:
            self._waiting.append(request)
            if len(self._waiting) >= _MAX_WAITING:
                self._pause_reading()

    def on_body(self, chunk: bytes) -> None:
        if self._parsing is not None:
            self._parsing.append_body(chunk, self._limits.max_body_bytes)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body_done(perf_counter())
            self._parsing = None

    # --- requests and answers ------------------------------------------------------------
    def send_continue(self, request: Request) -> None:
        """'100 Continue' to a client that waits for it before sending the body."""
        if request is self._active and self._transport is not None and not self._closing:
            expect = request.header("expect")
            if expect is not None and expect.lower() == "100-continue":
                self._transport.write(_CONTINUE)

    def _start(self, request: Request) -> None:
        self._active = request
        self._run(request)

    def _run(self, request: Request) -> None:
        """Answer the active request: at once if its body is here and the app takes it that
        way, else in a task."""
        if self._closing:
            return
        answer_now = self._server.answer_now
        if answer_now is not None and request.complete:
            try:
                if answer_now(request):
                    return
            except Exception:
                log.exception("unexpected error answering %s %s", request.method, request.path)
                self.answer(request, _internal_error())
                return
        self.task = self._loop.create_task(self._answer(request))

    async def _answer(self, request: Request) -> None:
        try:
            response = await self._server.handler(request)
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            response = _internal_error()
        self.answer(request, response)

    def answer(self, request: Request, response: Response) -> None:
        """Write the answer to the active request (once; later ones and other requests' are
        dropped), then start the next one."""
        transport = self._transport
        if transport is None or self._closing or request is not self._active:
            return
        self._answered += 1
        budget = self._limits.max_requests_per_connection
        close = (
            response.close
            or not request.keep_alive
            or not request.complete  # its body unread: close rather than read the rest
            or self.aged
            or (budget > 0 and self._answered >= budget)
        )
        body = b"" if request.method == "HEAD" else response.body
        transport.write(_head(response, close) + body)
        self._active = None
        self._server.settled()
        if close:
            self.close()
            return
        if self._waiting:
            self._start(self._waiting.popleft())
            self._resume_reading()
        elif self._parse_error is not None:
            self._send_and_close(self._parse_error)
        elif not self._partial:
            self._set_deadline(_KEEPALIVE, self._limits.keepalive_timeout)

    def _parse_failed(self, status: int, message: str) -> None:
        reason = "bad_request" if status == 400 else "request_header_fields_too_large"
        raw = _closing_answer(status, message, reason)
        if self._active is None:
            self._send_and_close(raw)
        else:  # answer what came before it first
            self._parse_error = raw
            self._pause_reading()

    def _send_and_close(self, raw: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(raw)
        self.close()

    def deadline_passed(self) -> None:
        if self._active is not None:
            # Headers of a pipelined request, late while the one before it is answered: their
            # 408 must not overtake that answer. The sweep comes back once it is written.
            return
        if self._deadline_for == _HEADER and self._partial:
            self._send_and_close(_HEADER_TIMEOUT)
        else:
            self.close()

    def close(self, *, cancel: bool = False) -> None:
        """Close after whatever is written has been sent; `cancel` also stops the handler."""
        self._closing = True
        self.deadline = 0.0
        self._server.closed(self)
        if cancel and self.task is not None and not self.task.done():
            self.task.cancel()
        if self._transport is not None:
            self._transport.close()

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self._deadline_for = kind
        self.deadline = self._loop.time() + seconds

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._closing:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._writing_paused
            and self._parse_error is None
            and len(self._waiting) < _MAX_WAITING
        ):
            self._reading_paused = False
            if self._transport is not None and not self._closing:
                self._transport.resume_reading()
