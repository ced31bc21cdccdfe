"""The sidecar's reading of /v2/health/ready, and the names both sides must agree on."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from modeldeploy import names
from modeldeploy.analysis import model_runtime
from modeldeploy_serving import errors, service
from modeldeploy_serving.monitor.readiness import (
    REASON_NOT_READY,
    ModelReadiness,
    condition_patch,
    parse_ready,
)
from modeldeploy_serving.monitor.verdict import Status

FALSE = Status.FALSE
SHA = "model failed to load: Sha256Mismatch: expected 00..., got ab..."


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"ready": True}, (Status.TRUE, names.REASON_MODEL_LOADED)),
        ({"ready": False, "reason": SHA, "cause": "Sha256Mismatch"}, (FALSE, "Sha256Mismatch")),
        ({"ready": False, "reason": "model is loading", "cause": "Loading"}, (FALSE, "Loading")),
        ({"ready": False, "reason": "older server"}, (Status.FALSE, REASON_NOT_READY)),
        ({"ready": False, "cause": "not camel case!"}, (Status.FALSE, REASON_NOT_READY)),
        ({"ready": False, "reason": "shutting down", "cause": "Draining"}, None),
        ({"live": True}, None),
        ([1, 2], None),
    ],
    ids=["ready", "sha", "loading", "no-cause", "bad-cause", "draining", "other-json", "list"],
)
def test_parse_ready(body: object, expected: tuple[Status, str] | None) -> None:
    parsed = parse_ready(orjson.dumps(body))
    assert (parsed.key if parsed else None) == expected


LOADED = "model verified, loaded and warmed up"


@pytest.mark.parametrize(
    ("runtime", "message", "read_back"),
    [
        ("onnx", f"{LOADED}; runtime onnx", "onnx"),
        ("sklearn", f"{LOADED}; runtime sklearn", "sklearn"),
        ("evil; runtime onnx", LOADED, None),  # only known runtimes are written
        (None, LOADED, None),  # an older server
    ],
)
def test_model_ready_names_the_runtime_the_operator_reads(
    runtime: str | None, message: str, read_back: str | None
) -> None:
    body = {"ready": True} if runtime is None else {"ready": True, "runtime": runtime}
    parsed = parse_ready(orjson.dumps(body))
    assert parsed is not None and parsed.message == message
    assert model_runtime({"status": "True", "message": parsed.message}) == read_back
    assert model_runtime({"status": "False", "message": parsed.message}) is None


def test_not_json_writes_nothing() -> None:
    assert parse_ready(b"# HELP modeldeploy_requests_total ...") is None


def test_condition_patch_is_a_pod_status_merge() -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patch = condition_patch(ModelReadiness(Status.FALSE, "Sha256Mismatch", SHA), at, at)
    assert patch == {
        "status": {
            "conditions": [
                {
                    "type": names.POD_COND_MODEL_READY,
                    "status": "False",
                    "reason": "Sha256Mismatch",
                    "message": SHA,
                    "lastTransitionTime": "2026-03-01T12:00:00Z",
                    "lastProbeTime": "2026-03-01T12:00:00Z",
                }
            ]
        }
    }


def test_terminal_causes_are_the_servers_load_error_causes() -> None:
    causes = {cls.cause for cls in _subclasses(errors.LoadError)}
    assert set(names.TERMINAL_LOAD_CAUSES) <= causes
    assert {"FetchFailed", "LoadFailed"}.isdisjoint(names.TERMINAL_LOAD_CAUSES)  # may clear up
    assert service.CAUSE_LOADING == names.REASON_MODEL_LOADING


def _subclasses(cls: type) -> list[type[errors.LoadError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found
