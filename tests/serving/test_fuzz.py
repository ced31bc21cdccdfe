"""Property-based fuzzing of request bodies: no body ever gets a 5xx, and valid ones are right."""

from __future__ import annotations

import http.client
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
PATHS = ["/v2/models/iris/infer", "/v1/models/iris:predict"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as bare literals
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)
# Mostly plausible values with the odd wrong one, so examples get past the first checks.
odd_numbers = (
    st.integers(-(2**70), 2**70) | st.floats() | st.booleans() | st.none() | st.text(max_size=3)
)
plain_numbers = st.floats(-1e9, 1e9) | st.integers(-(2**31), 2**31)


def sometimes_wrong(
    draw: st.DrawFn, valid: Any, wrong: st.SearchStrategy[Any] = json_values
) -> Any:
    """`valid` about seven times in eight, otherwise something else. (The test is on a middle
    value because hypothesis draws the bounds of a range more often than the rest.)"""
    return draw(wrong) if draw(st.integers(0, 7)) == 3 else valid


@st.composite
def tensors(draw: st.DrawFn) -> Any:
    """A v2 input tensor whose parts are usually consistent (shape matches data) but not always."""
    rows, width = draw(st.integers(0, 4)), draw(st.sampled_from([6, 6, 6, 6, 5, 7, 0]))
    flat = draw(st.lists(plain_numbers, min_size=rows * width, max_size=rows * width))
    if flat:
        flat[draw(st.integers(0, len(flat) - 1))] = sometimes_wrong(draw, flat[0], odd_numbers)
    nested = [flat[i : i + width] for i in range(0, len(flat), width or 1)]
    tensor = {
        "name": sometimes_wrong(draw, "input-0"),
        "shape": sometimes_wrong(draw, [rows, width], st.lists(st.integers(-2, 8), max_size=3)),
        "datatype": sometimes_wrong(
            draw,
            draw(st.sampled_from(["FP32", "FP64", "INT32", "INT64"])),
            st.sampled_from(["BYTES", "fp64", "FP16", ""]) | json_values,
        ),
        "data": sometimes_wrong(draw, draw(st.sampled_from([flat, nested]))),
    }
    return sometimes_wrong(draw, tensor, st.just({k: v for k, v in tensor.items() if k != "data"}))


@st.composite
def v2_bodies(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {"inputs": sometimes_wrong(draw, [draw(tensors())])}
    if draw(st.booleans()):
        body["id"] = sometimes_wrong(draw, draw(st.text(max_size=5)))
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["predict", "predict_proba"]), max_size=2))
        body["outputs"] = sometimes_wrong(draw, [{"name": name} for name in names])
    if draw(st.booleans()):
        body["parameters"] = sometimes_wrong(draw, {"probabilities": draw(st.booleans())})
    return sometimes_wrong(draw, body)


@st.composite
def v1_bodies(draw: st.DrawFn) -> Any:
    width = draw(st.sampled_from([6, 6, 6, 5, 7]))
    rows = draw(st.lists(st.lists(plain_numbers, min_size=width, max_size=width), max_size=4))
    if rows and rows[0]:
        rows[0][0] = sometimes_wrong(draw, rows[0][0], odd_numbers)
    return sometimes_wrong(draw, {"instances": sometimes_wrong(draw, rows)})


class Poster:
    """Keep-alive POSTs to one server, reconnecting if the server closed the connection."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self._connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._connection.close()
                self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def assert_no_server_error(poster: Poster, path: str, body: bytes) -> None:
    status, raw = poster.post(path, body)
    assert status < 500, (path, body[:300], raw[:300])
    if status >= 400:
        assert json.loads(raw)["error"]


def test_fuzzed_v2_bodies_never_get_5xx(classifier_server: ServerProcess) -> None:
    poster = Poster(classifier_server.port)

    @FUZZ
    @given(v2_bodies())
    def check(body: dict[str, Any]) -> None:
        assert_no_server_error(poster, PATHS[0], json.dumps(body).encode())

    check()


def test_fuzzed_v1_bodies_never_get_5xx(classifier_server: ServerProcess) -> None:
    poster = Poster(classifier_server.port)

    @FUZZ
    @given(v1_bodies())
    def check(body: dict[str, Any]) -> None:
        assert_no_server_error(poster, PATHS[1], json.dumps(body).encode())

    check()


def test_arbitrary_json_and_bytes_never_get_5xx(classifier_server: ServerProcess) -> None:
    poster = Poster(classifier_server.port)

    @FUZZ
    @given(st.sampled_from(PATHS), json_values.map(lambda v: json.dumps(v).encode()) | st.binary())
    def check(path: str, body: bytes) -> None:
        assert_no_server_error(poster, path, body)

    check()


def test_valid_requests_match_in_process_predictions(
    classifier_server: ServerProcess, trained: dict[str, SavedModel]
) -> None:
    estimator = trained["classifier-joblib"].estimator
    poster = Poster(classifier_server.port)
    row = st.lists(st.floats(-1e6, 1e6), min_size=6, max_size=6)

    @settings(max_examples=60, deadline=None, database=None)
    @given(st.lists(row, min_size=1, max_size=20))
    def check(rows: list[list[float]]) -> None:
        status, raw = poster.post(PATHS[1], json.dumps({"instances": rows}).encode())
        assert status == 200, raw
        assert json.loads(raw)["predictions"] == estimator.predict(np.array(rows)).tolist()

    check()
