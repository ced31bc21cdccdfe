"""A signature file at a URI (--signature-uri, --signature-sha256), through real server processes:
the model and its signature both downloaded over http, verified, the example row used for the
warm-up, the columns in the v2 metadata; a wrong one fails the load with its cause.

The model (tests.serving.models.train_dated) has a date column read by a FunctionTransformer:
nothing fitted says that column holds strings, so without the signature the server warms it up
on a number and the load fails; the signature's kinds and example row are what make it load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess

SIGNATURE = models.DATED_SIGNATURE
# The estimator's order (the training frame's), not the file's.
COLUMNS = ["city", "age", "income", "signup"]
LOOPBACK = "--allow-loopback-downloads"  # the test's HTTP server is on 127.0.0.1


@pytest.fixture(scope="module")
def dated(http_root: tuple[Path, str]) -> tuple[SavedModel, str]:
    root, base = http_root
    return models.train_dated(root), base


def _publish(root: Path, name: str, document: Any) -> str:
    """Write a signature file into the HTTP root; its sha256."""
    raw = json.dumps(document).encode()
    (root / name).write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def _over_http(
    launch: Callable[..., ServerProcess], saved: SavedModel, base: str, *args: str, **options: Any
) -> ServerProcess:
    model = ["--model-uri", f"{base}/{saved.path.name}", "--sha256", saved.sha256]
    return launch(None, *model, "--format", saved.format, LOOPBACK, *args, **options)


def test_a_pipeline_and_its_signature_over_http_load_and_serve_by_column(
    dated: tuple[SavedModel, str],
    http_root: tuple[Path, str],
    launch: Callable[..., ServerProcess],
) -> None:
    saved, base = dated
    sha256 = _publish(http_root[0], "dated.signature.json", SIGNATURE)
    signed = _over_http(
        launch,
        saved,
        base,
        "--signature-uri",
        f"{base}/dated.signature.json",
        "--signature-sha256",
        sha256,
        name="signed",
    )
    unsigned = _over_http(launch, saved, base, name="unsigned")

    signed.wait_ready(timeout=120)
    metadata = signed.request("GET", "/v2/models/signed").json()
    inputs = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert inputs == {"city": "BYTES", "age": "FP64", "income": "FP64", "signup": "BYTES"}
    assert list(inputs) == COLUMNS
    rows = [
        {"city": "nice", "signup": "2016-02-11", "age": 63.0, "income": 4100.0},
        {"city": "paris", "signup": "2024-09-19", "age": 22.0, "income": 1800.0},
    ]
    reply = signed.request("POST", "/v1/models/signed:predict", {"instances": rows})
    assert reply.status == 200, reply.body
    import pandas as pd

    expected = saved.estimator.predict(pd.DataFrame(rows)[COLUMNS]).tolist()
    assert reply.json()["predictions"] == expected

    # The same model without its signature warms up on a number in the date column.
    unsigned.wait_for_log("model load failed")
    assert unsigned.request("GET", "/v2/health/ready").json()["cause"] == "WarmupFailed"


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("wrong-sha256", "Sha256Mismatch"),
        ("unknown-column", "InvalidArtifact"),
        ("not-json", "InvalidArtifact"),
        ("missing", "FetchFailed"),
    ],
)
def test_a_wrong_signature_fails_the_load_with_its_cause(
    case: str,
    cause: str,
    dated: tuple[SavedModel, str],
    http_root: tuple[Path, str],
    launch: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    saved, base = dated
    root = http_root[0]
    name = f"{case}.signature.json"
    if case == "not-json":
        (root / name).write_bytes(b"{not json")
        sha256 = hashlib.sha256(b"{not json").hexdigest()
    elif case == "unknown-column":
        sha256 = _publish(root, name, {"inputs": [{"name": "postcode", "type": "string"}]})
    else:
        sha256 = _publish(root, name, SIGNATURE)
        if case == "wrong-sha256":
            sha256 = "0" * 64
        else:
            (root / name).unlink()
    log = tmp_path / "termination-log"
    server = _over_http(
        launch,
        saved,
        base,
        "--signature-uri",
        f"{base}/{name}",
        "--signature-sha256",
        sha256,
        name=case,
        termination_log=log,
    )
    line = server.wait_for_log("model load failed")
    assert f"{cause}: " in line and "signature" in line, line
    assert server.request("GET", "/v2/health/ready").json()["cause"] == cause
    assert server.metrics()[f'modeldeploy_model_load_failure{{reason="{cause}"}}'] == 1
    assert server.terminate() == 0  # up, not ready, until stopped; the log is complete
    assert log.read_text().startswith(f"{cause}: ")
