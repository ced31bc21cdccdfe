"""Connection-level defences against slow and greedy clients, below the routes.

aiohttp bounds neither the number of connections nor the time a request's headers may take
(its keep-alive timer closes a connection whose headers are still incomplete only as a side
effect, and only while it is shorter). Here, per listener:

- headers: a request's headers must be complete within `header_timeout` of the connection
  opening, or of the first byte of a later request on a keep-alive connection; otherwise the
  client gets a 408 (if it sent anything) and the connection is closed. A request whose headers
  are complete is the routes' business (the body timeout is in app.py).
- connections: at most `max_connections` open. One more evicts the oldest connection that is not
  busy with a request (idle keep-alive, or headers still arriving: no work is lost, and a
  slowloris client is the likeliest victim); if every connection is busy (complete headers, no
  response yet), the newcomer gets a 503 with Retry-After and is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server


def _raw_response(status: str, error: str, reason: str, extra: str = "") -> bytes:
    body = orjson.dumps({"error": error, "reason": reason})
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


_HEADER_TIMEOUT = _raw_response(
    "408 Request Timeout", "request headers took too long", "request_timeout"
)
_TOO_MANY = _raw_response(
    "503 Service Unavailable",
    "too many open connections; retry shortly",
    "too_many_connections",
    "Retry-After: 1\r\n",
)


class ConnectionGuard:
    """The limits of one listener and its open connections, oldest first."""

    def __init__(
        self,
        *,
        header_timeout: float,
        max_connections: int,
        handler_options: Mapping[str, Any],
        max_requests_per_connection: int = 0,
    ) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.max_requests_per_connection = max_requests_per_connection  # 0: no limit
        self.handler_options = dict(handler_options)
        self._open: dict[_GuardedHandler, None] = {}  # insertion order: oldest first

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, handler: _GuardedHandler) -> bool:
        """Make room for a new connection; False if there is none."""
        if len(self._open) >= self.max_connections:
            victim = next((h for h in self._open if not h.busy), None)
            if victim is None:
                return False
            self.closed(victim)
            victim.force_close()
        self._open[handler] = None
        return True

    def closed(self, handler: _GuardedHandler) -> None:
        self._open.pop(handler, None)


class _GuardedHandler(RequestHandler):
    def __init__(self, manager: Server, guard: ConnectionGuard) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), **guard.handler_options)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial_request = False  # bytes of a request whose headers are incomplete
        # From complete headers until the response is written: evicting it would lose work.
        self.busy = False

    @property
    def waiting_for_request(self) -> bool:
        """Between requests or reading headers: no handler runs (aiohttp's own idle test)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.admit(self):
            self._close_with(_TOO_MANY)
            return
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.closed(self)
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Pairs with aiohttp's parser: a message counted means complete headers.
        requests_before = self._request_count
        super().data_received(data)
        if self._request_count != requests_before:
            self.busy, self._partial_request = True, False
            self._cancel_header_timer()
        elif data and self.waiting_for_request:
            self._partial_request = True
            if self._header_timer is None:  # the first byte of a later request
                self._arm_header_timer()

    async def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> tuple[StreamResponse, bool]:
        limit = self._guard.max_requests_per_connection
        if limit and self._request_count >= limit:
            # A Service balances connections, not requests: ending a long-lived connection now
            # and then lets its client's next one reach pods that came up since (a canary).
            resp.force_close()
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self.busy = bool(self._messages)  # a pipelined request may already wait

    def _arm_header_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._guard.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.waiting_for_request:
            self._close_with(_HEADER_TIMEOUT if self._partial_request else b"")

    def _close_with(self, response: bytes) -> None:
        if response and self.transport is not None:
            self.transport.write(response)
        self.force_close()  # closes the transport after the buffered response is sent


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through the guard."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard, **kw: Any
    ) -> None:
        super().__init__(runner, host, port, **kw)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would listen unguarded
        server = self._runner.server
        assert server is not None
        guard = self._guard
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedHandler(server, guard),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
