"""Inference answered without a task per request (http_server.py's `answer_now`, the predict
queue's callbacks, v2's plain-tensor parse): the same answers, in the same order, with the same
shutdown guarantees as the general path, which still takes whatever the fast one does not.

In process: the HTTP layer over an in-memory transport, and the v2 parser on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy_serving.errors import ServingError
from modeldeploy_serving.http_messages import Limits, Request, Response
from modeldeploy_serving.http_server import HttpServer
from modeldeploy_serving.protocol import v2
from modeldeploy_serving.signature import Column, ModelSignature, OutputSpec
from tests.serving.test_fuzz import FUZZ, plain_numbers, v2_bodies
from tests.serving.test_http_layer import _Capture

pytestmark = pytest.mark.timeout(60)
LIMITS = Limits(header_timeout=5, keepalive_timeout=5, max_body_bytes=2**20, max_connections=8)


def post(body: bytes) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class _Lanes:
    """A handler (a task per request) and an answer_now that takes every complete request and
    answers it `delay` seconds later, as a predict batch's callback would. Both echo the body
    and record which lane answered."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.lanes: list[str] = []

    async def handler(self, request: Request) -> Response:
        self.lanes.append("task")
        return Response(200, await request.read(5.0))

    def answer_now(self, request: Request) -> bool:
        if self.fail:
            raise RuntimeError("a bug in the fast lane")
        self.lanes.append("now")
        answer = Response(200, request.body())
        asyncio.get_running_loop().call_later(self.delay, request.reply, answer)
        return True


def bodies_of(written: bytes) -> list[bytes]:
    answers = []
    while written:
        head, _, rest = written.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answers.append(rest[:length])
        written = rest[length:]
    return answers


def serve(lanes: _Lanes, reads: list[bytes], settle: float = 0.3) -> _Capture:
    async def scenario() -> _Capture:
        server = HttpServer(lanes.handler, LIMITS, answer_now=lanes.answer_now)
        protocol, transport = server.protocol(), _Capture()
        protocol.connection_made(transport)
        for data in reads:
            protocol.data_received(data)
            await asyncio.sleep(0.01)
        await asyncio.sleep(settle)
        return transport

    return asyncio.run(scenario())


def test_a_body_in_the_same_read_is_answered_now_and_a_late_one_by_a_task() -> None:
    lanes = _Lanes()
    late = post(b'{"late": 1}')
    transport = serve(lanes, [post(b'{"a": 1}'), late[:-4], late[-4:]])
    assert bodies_of(transport.written) == [b'{"a": 1}', b'{"late": 1}']
    assert lanes.lanes == ["now", "task"]
    assert not transport.closed


def test_pipelined_requests_answered_later_keep_their_order() -> None:
    """Three requests in one read; each answer comes from a callback 50 ms on: the second is
    started only once the first is written, and the answers go out in order."""
    lanes = _Lanes(delay=0.05)
    transport = serve(lanes, [post(b"1") + post(b"22") + post(b"333")])
    assert bodies_of(transport.written) == [b"1", b"22", b"333"]
    assert lanes.lanes == ["now"] * 3


def test_a_bug_in_the_fast_lane_is_a_500_that_closes_the_connection() -> None:
    transport = serve(_Lanes(fail=True), [post(b"{}")])
    assert transport.written.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert b'"reason":"internal_error"' in transport.written
    assert transport.closed


def test_closing_waits_for_answers_still_coming_from_a_callback() -> None:
    """A graceful close gives requests answered by a predict callback their grace, as it does
    requests answered by a task: the answer is written, then the connection closes."""
    lanes = _Lanes(delay=0.3)

    async def scenario() -> tuple[_Capture, bytes]:
        server = HttpServer(lanes.handler, LIMITS, answer_now=lanes.answer_now)
        protocol, transport = server.protocol(), _Capture()
        protocol.connection_made(transport)
        protocol.data_received(post(b'{"slow": true}'))
        await server.close(grace=5.0)
        written_at_close = transport.written
        return transport, written_at_close

    transport, written_at_close = asyncio.run(scenario())
    assert bodies_of(written_at_close) == [b'{"slow": true}']
    assert transport.closed


# --- v2: the plain single-tensor parse against the general one -----------------------------
NUMERIC = ModelSignature(
    n_features=6, allow_nan=False, outputs=(OutputSpec("predict", np.dtype(np.int64), ()),)
)
NAMED = ModelSignature(
    n_features=6,
    allow_nan=False,
    outputs=(OutputSpec("predict", np.dtype(np.int64), ()),),
    columns=tuple(Column(f"f{i}", "number") for i in range(6)),
)


def general(request: Any, signature: ModelSignature) -> v2.InferRequest | ServingError:
    try:
        return v2.general_request(request, signature, max_rows=3)
    except ServingError as exc:
        return exc


@FUZZ
@given(body=v2_bodies(), named=st.booleans())
def test_the_plain_parse_answers_what_the_general_one_does(body: Any, named: bool) -> None:
    """Whenever the plain parse takes a body, the general parse accepts it with the same rows
    (values and dtype), outputs and id; a body it does not take is left to the general one."""
    signature = NAMED if named else NUMERIC
    if not isinstance(body, dict):
        return
    plain = v2.plain_request(body, signature, max_rows=3)
    if plain is None:
        return
    expected = general(body, signature)
    assert isinstance(expected, v2.InferRequest), expected
    assert plain.rows.dtype == expected.rows.dtype
    np.testing.assert_array_equal(plain.rows, expected.rows)
    assert (plain.id, plain.outputs) == (expected.id, expected.outputs)


@given(
    rows=st.lists(st.lists(plain_numbers, min_size=6, max_size=6), min_size=1, max_size=3),
    request_id=st.none() | st.text(max_size=5),
)
def test_a_typical_request_takes_the_plain_parse(
    rows: list[list[float]], request_id: str | None
) -> None:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), 6],
                "datatype": "FP64",
                "data": [value for row in rows for value in row],
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    plain = v2.plain_request(orjson.loads(orjson.dumps(body)), NUMERIC, max_rows=3)
    assert plain is not None
    np.testing.assert_array_equal(plain.rows, np.array(rows, dtype=np.float64))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(data=[True, 1, 2, 3, 4, 5]),  # a boolean is not a number here
        lambda t: t.update(data=[None, 1, 2, 3, 4, 5]),
        lambda t: t.update(data=["1", 1, 2, 3, 4, 5]),
        lambda t: t.update(datatype="FP32"),
        lambda t: t.update(shape=[1, 5]),
        lambda t: t.update(shape=[2, 6]),
        lambda t: t.update(name="f0"),  # a column's name: the general parse decides
    ],
)
def test_anything_unusual_is_left_to_the_general_parse(change: Callable[[Any], None]) -> None:
    tensor: dict[str, Any] = {"name": "x", "shape": [1, 6], "datatype": "FP64", "data": [0.0] * 6}
    change(tensor)
    assert v2.plain_request({"inputs": [tensor]}, NAMED, max_rows=3) is None
