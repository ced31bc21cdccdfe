"""The server's own HTTP/1.1 layer (http_server.py) over raw sockets: what an HTTP client may
do that a well-behaved one seldom does. Pipelined requests are answered in order; a malformed
request or an oversized head gets a JSON 4xx and a closed connection; HEAD answers GET routes
without a body; idle keep-alive connections are closed; a client that hangs up mid-body costs
nothing but a client-error count (no 500, no traceback), and the server keeps serving.

Every socket read has a 10 s bound.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import pytest

from modeldeploy_serving.http_messages import Limits, Request, Response
from modeldeploy_serving.http_server import HttpServer
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess
from tests.serving.test_hostile_clients import BODY, PATH, connect, head, read_until_closed

pytestmark = pytest.mark.timeout(120)
ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5]


@pytest.fixture(scope="module")
def server(trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]) -> ServerProcess:
    return launch(trained["classifier-joblib"], "--keepalive-timeout", "1").wait_ready()


def read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes, bytes]]:
    """`count` answers from a kept-alive connection: (status line, head, body) each."""
    buffer, answers = b"", []
    while len(answers) < count:
        if b"\r\n\r\n" in buffer:
            head_part, _, rest = buffer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head_part.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) >= length:
                status = head_part.split(b"\r\n", 1)[0]
                answers.append((status, head_part, rest[:length]))
                buffer = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers"
        buffer += chunk
    return answers


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    """A v1 predict, a readiness probe, a v1 predict of another row, a metadata GET, sent in
    one write: four answers, in the order asked, on the same connection."""
    other = json.dumps({"instances": [[9.0, 9.0, 9.0, 9.0, 9.0, 9.0]]}).encode()
    expected = [
        json.loads(server.request("POST", PATH, BODY).body),
        {"ready": True, "runtime": server.request("GET", "/v2/health/ready").json()["runtime"]},
        json.loads(server.request("POST", PATH, other).body),
        json.loads(server.request("GET", "/v2/models/model").body),
    ]
    get = "GET {} HTTP/1.1\r\nHost: test\r\n\r\n"
    burst = (
        head(len(BODY)) + BODY
        + get.format("/v2/health/ready").encode()
        + head(len(other)) + other
        + get.format("/v2/models/model").encode()
    )  # fmt: skip
    with connect(server) as sock:
        sock.sendall(burst)
        answers = read_answers(sock, 4)
    assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 4
    assert [json.loads(body) for _, _, body in answers] == expected


def test_a_malformed_request_gets_a_json_400_and_close(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        reply = read_until_closed(sock)
    status, _, raw = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"Connection: close" in raw
    answer = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert answer["reason"] == "bad_request"
    assert "malformed HTTP request" in answer["error"]
    assert server.infer([ROW]).status == 200


def test_an_endless_head_gets_a_431_before_it_can_fill_memory(server: ServerProcess) -> None:
    """Headers that never end, sent fast (the header timeout would take seconds): cut off at
    64 KiB with a 431, the connection closed."""
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n")
        sent = 0
        try:
            while sent < 4 * 2**20:
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
                sent += 1012
        except OSError:  # the server closed while we were still sending
            pass
        reply = read_until_closed(sock)
    assert sent < 4 * 2**20, "the server read 4 MB of headers"
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["reason"] == (
        "request_header_fields_too_large"
    )
    assert server.infer([ROW]).status == 200


class _Capture(asyncio.Transport):
    """What the server writes, and whether it closed; reads are never paused for real."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.closed = b"", False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_large_body_then_the_start_of_the_next_request_is_not_taken_for_a_long_head() -> None:
    """One read holding 100 kB of body and the first bytes of a pipelined request, then the
    rest of that request: only head bytes count towards the 64 KiB bound, so both are answered
    (the reads are chosen here: over loopback the kernel decides where they end)."""

    async def handler(request: Request) -> Response:
        return Response(200, await request.read(5.0) if request.method == "POST" else b"{}")

    async def scenario() -> _Capture:
        limits = Limits(
            header_timeout=5, keepalive_timeout=5, max_body_bytes=2**20, max_connections=8
        )
        protocol = HttpServer(handler, limits).protocol()
        transport = _Capture()
        protocol.connection_made(transport)
        body = b"[" + b" " * 100_000 + b"]"
        second = b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n"
        protocol.data_received(head(len(body)) + body + second[:20])
        protocol.data_received(second[20:])
        for _ in range(100):
            if transport.written.count(b"HTTP/1.1 ") >= 2 or transport.closed:
                break
            await asyncio.sleep(0.01)
        return transport

    transport = asyncio.run(scenario())
    assert not transport.closed, transport.written[:200]
    assert transport.written.count(b"HTTP/1.1 200 OK") == 2


def test_head_answers_a_get_route_without_its_body(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.2)
        raw = sock.recv(65536)
    head_answer, _, get_answer = raw.partition(b"\r\n\r\n")
    live = b'{"live":true}'
    assert head_answer.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: %d" % len(live) in head_answer  # the GET's length, no body
    assert get_answer.startswith(b"HTTP/1.1 200 OK") and get_answer.endswith(live)


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    """--keepalive-timeout 1: answered, then closed about a second later with nothing sent."""
    with connect(server) as sock:
        sock.sendall(head(len(BODY)) + BODY)
        (answer,) = read_answers(sock, 1)
        assert answer[0] == b"HTTP/1.1 200 OK"
        started = time.monotonic()
        assert read_until_closed(sock) == b""
    assert 0.8 < time.monotonic() - started < 5


def test_a_client_that_hangs_up_mid_body_is_a_client_error_not_a_500(
    server: ServerProcess,
) -> None:
    before = server.metrics()
    with connect(server) as sock:
        sock.sendall(head(len(BODY)) + BODY[:10])
        time.sleep(0.2)  # the server has the headers and is waiting for the rest
    deadline = time.monotonic() + 10
    gone = 'modeldeploy_client_errors_total{reason="client_closed_request"}'
    while server.metrics().get(gone, 0) - before.get(gone, 0) < 1:
        assert time.monotonic() < deadline, "the hang-up was never counted"
        time.sleep(0.05)
    assert "Traceback" not in server.log_text
    assert "unexpected error" not in server.log_text
    assert server.infer([ROW]).status == 200
