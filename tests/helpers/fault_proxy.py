"""A fault-injecting reverse proxy in front of the real kube-apiserver (crash-safety tests).

The operator under test gets a kubeconfig pointing at this proxy (plain HTTP, no auth); the proxy
forwards every request to the real API server over HTTPS with the test cluster's own credentials
(read by the operator's own loader, `modeldeploy.k8s.Credentials`). Tests talk to the API server
directly, so the proxy sees, records and disturbs only the operator's traffic.

Rules decide what happens to a request, first match wins: a `Reply` (an HTTP error with a proper
`Status` body, as the API server would send it), a `Delay` (optionally ending in a dropped
connection: a client timeout without waiting for the client's timeout), or `DropWatches`
(disconnect every open watch, then forward). A rule can let its first `skip` matches through and
act on the next `times` ones, and run `after(record)` once the matching request's response has
been forwarded, or `before_reply(record)` once the API server has answered but before the client
sees the answer. To SIGKILL the operator between two API calls, use `before_reply`: the call has
taken effect and the operator cannot have started the next one (after forwarding, a fast client
can race the signal and send its next request first).

Non-streaming answers are forwarded whole; streaming ones (watches, chunked lists) chunk by chunk.
The server runs in a background thread with its own asyncio loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

import aiohttp
import yaml
from aiohttp import web

from modeldeploy.k8s import Credentials

MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REASONS: Final = {
    400: "BadRequest",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# Forwarded request headers. Bodies pass through byte for byte, compressed or not: the client's
# Accept-Encoding goes up (or "identity", never the proxy's own default) and the API server's
# Content-Encoding comes back down with the body (the API server gzips large lists).
_REQUEST_HEADERS: Final = frozenset({"accept", "accept-encoding", "content-type", "user-agent"})
# Hop-by-hop or recomputed response headers.
_DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive"}
)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer with this HTTP status and a `Status` body instead of forwarding."""

    status: int
    message: str = "injected by the fault proxy"
    retry_after: int | None = None  # seconds, for 429/503: header and details.retryAfterSeconds
    delay: float = 0.0  # seconds to wait first (an overloaded server answers late, then fails)

    def body(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": REASONS.get(self.status, ""),
            "details": details,
            "code": self.status,
        }

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True)
class Delay:
    """Wait, then forward; with `reset`, drop the connection instead of answering."""

    seconds: float
    reset: bool = False


@dataclass(frozen=True)
class DropWatches:
    """Disconnect every open watch at once, then forward this request."""


Action: TypeAlias = Reply | Delay | DropWatches | None  # None: forward unchanged


# --- requests and rules (pure) ---------------------------------------------------------------


@dataclass
class Record:
    """One request the proxy received, in arrival order; `status` is filled in when answered
    (0: the connection was dropped without an answer)."""

    seq: int
    method: str
    path: str
    query: str = ""
    body: Any = None  # the parsed JSON body of a mutating request, else None
    status: int | None = None
    injected: bool = False  # answered (or dropped) by a rule, never reached the API server
    at: float = field(default_factory=time.monotonic)

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    @property
    def watch(self) -> bool:
        return is_watch(self.path, self.query)

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.method} {self.path}{query} -> {self.status}"


@dataclass
class Rule:
    """Which requests to disturb (method and path are regexes, `re.fullmatch` on the method and
    `re.search` on the path; `query` and `body` narrow it down) and how."""

    path: str
    method: str | None = None
    action: Action = None
    times: int | None = 1  # act on this many matches (None: forever)
    skip: int = 0  # let this many matches through untouched first
    query: str | None = None
    body: Callable[[Any], bool] | None = None
    after: Callable[[Record], None] | None = None
    before_reply: Callable[[Record], None] | None = None
    seen: int = 0  # matches so far, skipped ones included
    fired: int = 0  # matches acted on
    last: Record | None = None  # the last request acted on

    def matches(self, record: Record) -> bool:
        if self.method is not None and not re.fullmatch(self.method, record.method, re.I):
            return False
        if not re.search(self.path, record.path):
            return False
        if self.query is not None and not re.search(self.query, record.query):
            return False
        if self.body is not None:
            try:
                return bool(self.body(record.body))
            except Exception:  # a predicate that cannot read this body does not match it
                return False
        return True

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


def pick(rules: Sequence[Rule], record: Record) -> Rule | None:
    """The first rule that acts on `record`, counting the match on every rule it passes."""
    for rule in rules:
        if rule.exhausted or not rule.matches(record):
            continue
        rule.seen += 1
        if rule.seen <= rule.skip:
            continue
        rule.fired += 1
        rule.last = record
        return rule
    return None


def is_watch(path: str, query: str) -> bool:
    return "/watch/" in path or bool(re.search(r"(^|&)watch=(1|true)(&|$)", query))


def parse_body(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError:
            return None


def write_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig for `url` with no credentials (the proxy adds the real ones)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fault-proxy", "cluster": {"server": url}}],
        "users": [{"name": "fault-proxy", "user": {}}],
        "contexts": [
            {"name": "fault-proxy", "context": {"cluster": "fault-proxy", "user": "fault-proxy"}}
        ],
        "current-context": "fault-proxy",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- the proxy (I/O) -------------------------------------------------------------------------


class FaultProxy:
    """`with FaultProxy(kubeconfig, workdir) as proxy:` serves at `proxy.url`, and the operator
    uses `proxy.kubeconfig`. Rules and records may be used from any thread."""

    def __init__(self, upstream_kubeconfig: Path, workdir: Path) -> None:
        self._creds = Credentials.load(str(upstream_kubeconfig))
        self._workdir = workdir
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._records: list[Record] = []
        self._watches: dict[int, tuple[web.Request, aiohttp.ClientResponse]] = {}  # by Record.seq
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.kubeconfig = workdir / "fault-proxy.kubeconfig"

    # -- lifecycle
    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        port = self._run(self._start())
        self.url = f"http://127.0.0.1:{port}"
        self._workdir.mkdir(parents=True, exist_ok=True)
        write_kubeconfig(self.kubeconfig, self.url)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- rules and records
    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @contextmanager
    def rule(self, rule: Rule) -> Iterator[Rule]:
        """The rule holds inside the `with` block only."""
        self.add(rule)
        try:
            yield rule
        finally:
            self.remove(rule)

    def mark(self) -> int:
        """A position in the record; pass it as `since` to see only later requests."""
        with self._lock:
            return len(self._records)

    def records(self, since: int = 0) -> list[Record]:
        with self._lock:
            return list(self._records[since:])

    def writes(self, since: int = 0, path: str = "") -> list[Record]:
        """Mutating requests since `since` whose path matches the regex `path`."""
        return [r for r in self.records(since) if r.mutating and re.search(path, r.path)]

    def wait_quiet(self, path: str = "", seconds: float = 0.5, timeout: float = 10) -> bool:
        """Wait until no write matching `path` came for `seconds` (False: still busy after
        `timeout`; callers use this to start counting at a calm moment, not as a check)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            writes = self.writes(max(0, self.mark() - 200), path)
            if not writes or time.monotonic() - writes[-1].at >= seconds:
                return True
            time.sleep(0.05)
        return False

    def drop_watches(self) -> int:
        """Disconnect every open watch now; returns how many there were."""
        dropped: int = self._run(self._drop_watches())
        return dropped

    # -- the event loop side
    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _start(self) -> int:
        connector = aiohttp.TCPConnector(ssl=self._creds.ssl, limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handler cancellation ends the upstream watch of a client that went away (a killed
        # operator) at once, instead of when the API server's watch timeout ends it.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        await self._drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _drop_watches(self) -> int:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for request, upstream in watches:
            upstream.close()
            if request.transport is not None:
                request.transport.close()
        return len(watches)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        with self._lock:
            record = Record(
                seq=len(self._records),
                method=request.method,
                path=request.path,
                query=request.query_string,
                body=parse_body(data) if request.method in MUTATING else None,
            )
            self._records.append(record)
            rule = pick(self._rules, record)
        action = rule.action if rule else None
        if isinstance(action, DropWatches):
            await self._drop_watches()
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
            if action.reset:
                record.status, record.injected = 0, True
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # nothing more to send on this connection

        def before_reply() -> None:
            if rule is not None and rule.before_reply is not None:
                rule.before_reply(record)

        if isinstance(action, Reply):
            await asyncio.sleep(action.delay)
            record.status, record.injected = action.status, True
            response: web.StreamResponse = web.json_response(
                action.body(), status=action.status, headers=action.headers()
            )
            before_reply()
            await response.prepare(request)
            await response.write_eof()
        else:
            response = await self._forward(request, data, record, before_reply)
        if rule is not None and rule.after is not None:
            rule.after(record)
        return response

    async def _forward(
        self,
        request: web.Request,
        data: bytes,
        record: Record,
        before_reply: Callable[[], None],
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}
        headers.setdefault("Accept-Encoding", "identity")
        if (token := self._creds.token()) is not None:
            headers["Authorization"] = token
        url = f"{self._creds.host}{request.rel_url}"
        async with self._session.request(
            request.method, url, data=data or None, headers=headers, allow_redirects=False
        ) as upstream:
            record.status = upstream.status
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in _DROPPED_RESPONSE_HEADERS
            }
            if upstream.content_length is not None and not record.watch:
                body = await upstream.read()
                response = web.Response(body=body, status=upstream.status, headers=out_headers)
                before_reply()
                await response.prepare(request)
                await response.write_eof()
                return response
            before_reply()
            return await self._stream(request, upstream, out_headers, record)

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        record: Record,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        if record.watch:
            with self._lock:
                self._watches[record.seq] = (request, upstream)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            # Dropped on purpose (drop_watches), or the client went away: end this stream.
            if request.transport is not None:
                request.transport.close()
        finally:
            with self._lock:
                self._watches.pop(record.seq, None)
        return response
