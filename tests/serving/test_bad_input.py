"""Bad input gets a 4xx that names the field and what was expected; the server keeps serving.

The shared server's model takes 6 features, has no missing-value support, and its limits are
4096 bytes and 50 rows per request.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import pytest

from tests.serving.conftest import MAX_REQUEST_BYTES, MAX_REQUEST_ROWS
from tests.serving.process import Reply, ServerProcess

V2 = "/v2/models/iris/infer"
V1 = "/v1/models/iris:predict"
ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5]


def tensor(**fields: Any) -> dict[str, Any]:
    base = {"name": "input-0", "shape": [1, 6], "datatype": "FP64", "data": ROW}
    return {"inputs": [{**base, **fields}]}


def case(name: str, path: str, body: Any, status: int, words: str) -> Any:
    """One bad request: the status it must get and words its error message must contain."""
    return pytest.param(path, body, status, words, id=name)


CASES = [
    case("truncated json", V2, b'{"inputs": [', 400, "not valid JSON"),
    case("not utf-8", V2, b'{"inputs": "\xff\xfe"}', 400, "not valid JSON"),
    case("empty body", V2, b"", 400, "body is empty"),
    case("array body", V2, b"[1, 2]", 400, "expected a JSON object, got an array"),
    case("NaN literal", V1, b'{"instances": [[NaN, 1, 2, 3, 4, 5]]}', 400, "not valid JSON"),
    case(
        "Infinity literal", V1, b'{"instances": [[Infinity, 1, 2, 3, 4, 5]]}', 400, "not valid JSON"
    ),
    case("overflowing number", V1, b'{"instances": [[1e999, 1, 2, 3, 4, 5]]}', 400, "infinity"),
    case("deep nesting", V2, b"[" * 2000 + b"]" * 2000, 400, "not valid JSON"),
    case("v1 missing instances", V1, {"rows": [ROW]}, 400, "instances: required"),
    case("v1 flat instances", V1, {"instances": ROW}, 400, "expected rows of 6 numbers"),
    case(
        "v1 too few features",
        V1,
        {"instances": [ROW[:5]]},
        400,
        "expected 6 features per row, got 5",
    ),
    case(
        "v1 too many features",
        V1,
        {"instances": [[*ROW, 1]]},
        400,
        "expected 6 features per row, got 7",
    ),
    case("v1 ragged rows", V1, {"instances": [ROW, ROW[:4]]}, 400, "ragged"),
    case("v1 strings", V1, {"instances": [["1", 2, 3, 4, 5, 6]]}, 400, "found strings"),
    case("v1 booleans", V1, {"instances": [[True, 2, 3, 4, 5, 6]]}, 400, "found true/false"),
    case("v1 objects", V1, {"instances": [[{}, 2, 3, 4, 5, 6]]}, 400, "found objects"),
    case("v1 null", V1, {"instances": [[None, 2, 3, 4, 5, 6]]}, 400, "null is not a number"),
    case("v1 empty batch", V1, {"instances": []}, 400, "empty batch"),
    case("v1 three levels", V1, {"instances": [[[1, 2]]]}, 400, "nested more than 2 levels"),
    case("v1 mixed levels", V1, {"instances": [ROW, 1]}, 400, "mixes numbers and arrays"),
    case("v2 missing inputs", V2, {"outputs": []}, 400, "inputs: expected an array with 1 tensor"),
    case("v2 two inputs", V2, {"inputs": tensor()["inputs"] * 2}, 400, "expected exactly 1 tensor"),
    case("v2 input not object", V2, {"inputs": [ROW]}, 400, "inputs[0]: expected an object"),
    case(
        "v2 unknown datatype",
        V2,
        tensor(datatype="FP16"),
        400,
        "inputs[0].datatype: expected one of FP32, FP64, INT32, INT64",
    ),
    case(
        "v2 missing data",
        V2,
        {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64"}]},
        400,
        "inputs[0].data: required",
    ),
    case(
        "v2 shape not a list",
        V2,
        tensor(shape="1x6"),
        400,
        "inputs[0].shape: expected an array of non-negative integers",
    ),
    case("v2 negative shape", V2, tensor(shape=[-1, 6]), 400, "inputs[0].shape"),
    case("v2 one-dimensional", V2, tensor(shape=[6]), 400, "expected rows of 6 numbers"),
    case(
        "v2 shape vs data",
        V2,
        tensor(shape=[2, 6]),
        400,
        "shape [2, 6] needs 12 values, data has 6",
    ),
    case("v2 wrong features", V2, tensor(shape=[2, 3]), 400, "expected 6 features per row, got 3"),
    case("v2 empty batch", V2, tensor(shape=[0, 6], data=[]), 400, "empty batch"),
    case(
        "v2 floats as INT64",
        V2,
        tensor(datatype="INT64"),
        400,
        "INT64 expects integers, found non-integer",
    ),
    case(
        "v2 INT32 overflow",
        V2,
        tensor(datatype="INT32", data=[2**40, 0, 0, 0, 0, 0]),
        400,
        "out of range for INT32",
    ),
    case(
        "v2 FP32 overflow",
        V2,
        tensor(datatype="FP32", data=[1e39, 0, 0, 0, 0, 0]),
        400,
        "out of range for FP32",
    ),
    case(
        "v2 data not list",
        V2,
        tensor(data="0,0,0"),
        400,
        "inputs[0].data: expected an array of numbers, got a string",
    ),
    case(
        "v2 unknown output",
        V2,
        {**tensor(), "outputs": [{"name": "decision"}]},
        400,
        "outputs[0].name: expected one of predict, predict_proba",
    ),
    case(
        "v2 bad probabilities",
        V2,
        {**tensor(), "parameters": {"probabilities": "yes"}},
        400,
        "parameters.probabilities: expected true or false",
    ),
    case(
        "v2 bad parameters",
        V2,
        {**tensor(), "parameters": [1]},
        400,
        "parameters: expected an object",
    ),
    case("v2 numeric id", V2, {**tensor(), "id": 5}, 400, "id: expected a string"),
    case(
        "too many rows",
        V1,
        {"instances": [[0] * 6] * (MAX_REQUEST_ROWS + 1)},
        413,
        f"{MAX_REQUEST_ROWS + 1} rows, limit is {MAX_REQUEST_ROWS}",
    ),
    case(
        "unknown model v2",
        "/v2/models/nope/infer",
        tensor(),
        404,
        "model 'nope' is not served here",
    ),
    case(
        "unknown model v1",
        "/v1/models/nope:predict",
        {"instances": [ROW]},
        404,
        "model 'nope' is not served here",
    ),
    case(
        "unknown version",
        "/v2/models/iris/versions/8/infer",
        tensor(),
        404,
        "version '8' is not served",
    ),
]


def post(server: ServerProcess, path: str, body: Any, **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", path, raw, headers=headers)


def assert_still_serving(server: ServerProcess) -> None:
    assert server.infer([ROW]).status == 200
    assert server.request("GET", "/v2/health/ready").status == 200


@pytest.mark.parametrize(("path", "body", "status", "words"), CASES)
def test_bad_request_gets_a_clear_4xx(
    classifier_server: ServerProcess, path: str, body: Any, status: int, words: str
) -> None:
    reply = post(classifier_server, path, body)
    assert reply.status == status, reply.body
    error = reply.json()
    assert words in error["error"]
    assert error["reason"]
    assert "Traceback" not in reply.body.decode("utf-8", "replace")
    assert_still_serving(classifier_server)


def test_wrong_content_type_and_encoding_get_415(classifier_server: ServerProcess) -> None:
    text = post(classifier_server, V1, {"instances": [ROW]}, **{"Content-Type": "text/plain"})
    assert text.status == 415
    assert "application/json" in text.json()["error"]
    gzip = post(classifier_server, V1, {"instances": [ROW]}, **{"Content-Encoding": "gzip"})
    assert gzip.status == 415
    assert "Content-Encoding 'gzip'" in gzip.json()["error"]
    assert_still_serving(classifier_server)


def test_body_just_under_the_limit_passes_and_just_over_gets_413(
    classifier_server: ServerProcess,
) -> None:
    valid = json.dumps({"instances": [ROW]}).encode()
    under = valid + b" " * (MAX_REQUEST_BYTES - len(valid))
    over = under + b" "
    assert post(classifier_server, V1, under).status == 200
    reply = post(classifier_server, V1, over)
    assert reply.status == 413
    assert f"limit is {MAX_REQUEST_BYTES}" in reply.json()["error"]
    assert_still_serving(classifier_server)


def test_chunked_body_over_the_limit_gets_413_and_close(classifier_server: ServerProcess) -> None:
    """Counted while reading: the 413 comes once the limit is passed, and the connection closes
    without reading the rest (a client must read its answer while sending, as this one does)."""
    chunk = b"[0, 0, 0, 0, 0, 0]," * 400
    request = (
        f"POST {V1} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"%x\r\n%s\r\n" % (len(chunk), chunk)  # and never the final 0-chunk
    with socket.create_connection(("127.0.0.1", classifier_server.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):  # closed with our bytes unread
            while data := sock.recv(65536):
                received += data
    head, _, raw = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in head
    assert "limit" in json.loads(raw)["error"]
    assert_still_serving(classifier_server)


def test_unknown_routes_and_methods_answer_json(classifier_server: ServerProcess) -> None:
    missing = classifier_server.request("GET", "/v3/anything")
    assert (missing.status, missing.json()["reason"]) == (404, "not_found")
    wrong_method = classifier_server.request("GET", V2)
    assert wrong_method.status == 405
    assert "POST" in wrong_method.headers["Allow"]
    assert wrong_method.json()["reason"] == "method_not_allowed"
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/iris/versions/8"):
        assert classifier_server.request("GET", path).status == 404, path
