"""Hostile clients over raw sockets: slow headers and bodies are cut off, a huge Content-Length
is refused unread, too many connections cannot lock legitimate clients out, and slow uploads
never reach the SLO histogram the sidecar's p99 reads.

Timeouts are short (1 s) so each test takes a few seconds; every socket read has a 10 s bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from modeldeploy_serving import metric_names
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess

pytestmark = pytest.mark.timeout(120)

PATH = "/v1/models/model:predict"
BODY = json.dumps({"instances": [[0.5, -1.0, 2.0, 0.0, 1.5, -0.5]]}).encode()
SLO = metric_names.REQUEST_LATENCY
UPLOAD = metric_names.UPLOAD_DURATION


def head(content_length: int, *, expect_continue: bool = False) -> bytes:
    expect = "Expect: 100-continue\r\n" if expect_continue else ""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n{expect}\r\n"
    ).encode()


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a 10 s read fails the test)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):  # closed with our unread bytes: also closed
        while chunk := sock.recv(65536):
            received += chunk
    return received


class Trickle:
    """Sends bytes one at a time from a thread until done or the server hangs up."""

    def __init__(self, sock: socket.socket, data: bytes, interval: float) -> None:
        self.sent = 0
        self._stop = threading.Event()

        def run() -> None:
            for byte in data:
                if self._stop.wait(interval):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return
                self.sent += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def status_line(reply: bytes) -> bytes:
    return reply.split(b"\r\n", 1)[0]


def reply_json(reply: bytes) -> dict[str, object]:
    value = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module")
def guarded(trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]) -> ServerProcess:
    """1 s header and body timeouts; keep-alive much longer, so only the new timeouts act."""
    return launch(
        trained["classifier-joblib"],
        "--header-timeout", "1", "--body-timeout", "1", "--keepalive-timeout", "30",
        "--max-request-bytes", "4096",
    ).wait_ready()  # fmt: skip


def test_slowloris_headers_are_cut_off_with_408(guarded: ServerProcess) -> None:
    sock = connect(guarded)
    headers = b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 60
    trickle = Trickle(sock, headers + b"\r\n\r\n", interval=0.1)  # 6+ s for all of it
    try:
        reply = read_until_closed(sock)
    finally:
        trickle.stop()
        sock.close()
    assert status_line(reply) == b"HTTP/1.1 408 Request Timeout"
    assert reply_json(reply)["reason"] == "request_timeout"
    assert trickle.sent < len(headers)  # cut off long before the headers could finish
    assert guarded.infer([[0.0] * 6]).status == 200


def test_a_connection_that_sends_nothing_is_closed(guarded: ServerProcess) -> None:
    with connect(guarded) as sock:
        assert read_until_closed(sock) == b""  # closed, without a 408 nobody asked for


def test_slow_body_is_cut_off_with_408_and_close(guarded: ServerProcess) -> None:
    before = guarded.metrics()
    sock = connect(guarded)
    sock.sendall(head(len(BODY)))
    trickle = Trickle(sock, BODY, interval=0.1)  # 5+ s for the whole body
    try:
        reply = read_until_closed(sock)
    finally:
        trickle.stop()
        sock.close()
    assert status_line(reply) == b"HTTP/1.1 408 Request Timeout"
    assert b"Connection: close" in reply
    assert reply_json(reply)["reason"] == "request_timeout"
    assert trickle.sent < len(BODY)
    after = guarded.metrics()
    assert after[f"{UPLOAD}_count"] - before[f"{UPLOAD}_count"] == 1  # the cut-off upload
    assert after[f"{SLO}_count"] == before[f"{SLO}_count"]  # a client error: no SLO sample
    timeouts = 'modeldeploy_client_errors_total{reason="request_timeout"}'
    assert after[timeouts] - before.get(timeouts, 0) == 1


def test_a_1gb_content_length_gets_413_and_close_without_reading(guarded: ServerProcess) -> None:
    with connect(guarded) as sock:
        sock.sendall(head(10**9))  # and not one byte of the body
        reply = read_until_closed(sock)  # would hang until the socket timeout if it read on
    assert status_line(reply) == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"Connection: close" in reply
    assert "limit is 4096" in str(reply_json(reply)["error"])
    assert guarded.infer([[0.0] * 6]).status == 200


def test_slow_uploads_count_as_uploads_not_as_slo_latency(guarded: ServerProcess) -> None:
    """3 clients upload their bodies over ~0.8 s (within the 1 s body timeout), while another
    sends 20 requests: all 23 are answered and timed, but only the upload histogram has the
    3 slow ones above 0.5 s."""

    def slow_upload() -> bytes:
        with connect(guarded) as sock:
            sock.sendall(head(len(BODY)) + BODY[:10])
            time.sleep(0.8)
            sock.sendall(BODY[10:])
            return sock.recv(65536)

    async def scenario() -> list[bytes]:
        slow = [asyncio.create_task(asyncio.to_thread(slow_upload)) for _ in range(3)]
        for _ in range(20):
            assert (await asyncio.to_thread(guarded.infer, [[0.0] * 6])).status == 200
        return await asyncio.gather(*slow)

    before = guarded.metrics()
    replies = asyncio.run(scenario())
    after = guarded.metrics()
    assert [status_line(reply) for reply in replies] == [b"HTTP/1.1 200 OK"] * 3

    def delta(series: str) -> float:
        return after[series] - before[series]

    assert delta(f"{SLO}_count") == 23
    assert delta(f"{UPLOAD}_count") == 23
    assert delta(f"{UPLOAD}_count") - delta(f'{UPLOAD}_bucket{{le="0.5"}}') == 3
    assert delta(f"{SLO}_count") - delta(f'{SLO}_bucket{{le="0.5"}}') == 0


@pytest.fixture
def limited(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> Iterator[ServerProcess]:
    """At most 8 connections; long timeouts, so only the connection limit acts."""
    server = launch(
        trained["classifier-joblib"],
        "--max-connections", "8", "--header-timeout", "60", "--body-timeout", "60",
        "--keepalive-timeout", "60",
    ).wait_ready()  # fmt: skip
    yield server
    server.terminate()


def test_slowloris_connections_cannot_lock_out_a_legitimate_client(
    limited: ServerProcess,
) -> None:
    """12 connections sending headers forever, on a server that admits 8: the oldest waiting
    ones are closed to make room, and a legitimate client keeps getting answers."""
    hostile = [connect(limited) for _ in range(12)]
    try:
        for sock in hostile:
            sock.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nX-Slow: a")
        for _ in range(5):
            assert limited.infer([[0.0] * 6]).status == 200
        for sock in hostile[:4]:  # the 4 oldest were evicted for the newer hostile ones
            assert read_until_closed(sock) == b""
    finally:
        for sock in hostile:
            sock.close()


def test_busy_connections_at_the_limit_get_a_clean_503(limited: ServerProcess) -> None:
    """8 connections each in the middle of a request body: a 9th is answered 503 with
    Retry-After and closed at once; once they go, the server answers again."""
    hostile = [connect(limited) for _ in range(8)]
    try:
        for sock in hostile:
            # "100 Continue" comes back once the server handles the request: then it is busy.
            sock.sendall(head(len(BODY), expect_continue=True))
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(BODY[:5])
        with connect(limited) as extra:
            reply = read_until_closed(extra)
        assert status_line(reply) == b"HTTP/1.1 503 Service Unavailable"
        assert b"Retry-After: 1" in reply
        assert reply_json(reply)["reason"] == "too_many_connections"
    finally:
        for sock in hostile:
            sock.close()
    # Polls another process's state: the server notices the closed connections on its own time.
    deadline = time.monotonic() + 10
    while (status := _infer_status(limited)) != 200:
        assert time.monotonic() < deadline, f"still refused after the clients left: {status}"
        time.sleep(0.05)


def _infer_status(server: ServerProcess) -> int:
    try:
        return server.infer([[0.0] * 6]).status
    except (ConnectionError, OSError):
        return 0
