"""What the server's HTTP layer (http_server.py) hands the routes and takes back: a Request
whose body may still be arriving, a complete Response, and a listener's Limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote

import orjson

from .errors import PayloadTooLarge, RequestTimeout

if TYPE_CHECKING:
    from .http_server import _Connection

JSON = "application/json"


class Response:
    """A complete answer: the body is bytes, already encoded."""

    __slots__ = ("body", "close", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = JSON,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = tuple(headers)
        self.close = close  # end the connection after this answer


def json_response(status: int, value: object, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, orjson.dumps(value), headers=headers)


Handler = Callable[["Request"], Awaitable[Response]]
# Answers a request whose body is complete without a task, if it can: True when it took the
# request (then it calls `request.reply` exactly once, now or later), False to leave it to a
# Handler.
AnswerNow = Callable[["Request"], bool]


class Request:
    """One request: its line and headers are complete; its body may still be arriving."""

    __slots__ = (
        "_chunks",
        "_connection",
        "_error",
        "_raw_headers",
        "_received",
        "_waiter",
        "body_complete",
        "complete",
        "headers_complete",
        "keep_alive",
        "method",
        "path",
    )

    def __init__(
        self,
        connection: _Connection,
        method: str,
        url: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        headers_complete: float,
    ) -> None:
        self._connection = connection
        self.method = method
        path = url.partition(b"?")[0].decode("utf-8", "surrogateescape")  # no route reads a query
        self.path = unquote(path) if "%" in path else path
        self._raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.headers_complete = headers_complete  # perf_counter
        self.body_complete: float | None = None
        self.complete = False  # the whole body is here
        self._chunks: list[bytes] = []
        self._received = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def reply(self, response: Response) -> None:
        """Answer it (an AnswerNow's way; a Handler returns its Response instead)."""
        self._connection.answer(self, response)

    def header(self, name: str) -> str | None:
        """A header's value by lower-case name (the last one if repeated). A scan of the few
        raw headers, not a dict of them all: a request asks for three or four, and decoding
        every name and value cost more than the scans (docs/serving.md, "Native modules")."""
        wanted = name.encode("latin-1")
        found: bytes | None = None
        for key, value in self._raw_headers:
            if len(key) == len(wanted) and key.lower() == wanted:
                found = value
        return None if found is None else found.decode("latin-1")

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def read(self, within: float) -> bytes:
        """The whole body. Raises RequestTimeout if it is not complete `within` seconds,
        PayloadTooLarge once it passes the connection's size limit."""
        if not self.complete and self._error is None:
            self._connection.send_continue(self)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(within):
                    await self._waiter
            except TimeoutError:
                raise RequestTimeout(f"request body not received within {within:g} s") from None
            finally:
                self._waiter = None
        return self.body()

    def body(self) -> bytes:
        """The body once complete (read() waits for it); raises what ended it early."""
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def append_body(self, chunk: bytes, limit: int) -> None:
        if self._error is not None:
            return
        self._received += len(chunk)
        if self._received > limit:
            self._chunks = []
            self.fail(PayloadTooLarge(f"body is larger than the limit of {limit} bytes"))
            return
        self._chunks.append(chunk)

    def body_done(self, now: float) -> None:
        self.complete, self.body_complete = True, now
        self._wake()

    def fail(self, error: Exception) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Limits:
    """What a listener allows its clients (module docstring)."""

    __slots__ = (
        "header_timeout",
        "keepalive_timeout",
        "max_body_bytes",
        "max_connection_age",
        "max_connections",
        "max_requests_per_connection",
    )

    def __init__(
        self,
        *,
        header_timeout: float,
        keepalive_timeout: float,
        max_body_bytes: int,
        max_connections: int,
        max_requests_per_connection: int = 0,
        max_connection_age: float = 0.0,
    ) -> None:
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.max_requests_per_connection = max_requests_per_connection
        self.max_connection_age = max_connection_age
