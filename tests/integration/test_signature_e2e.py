"""spec.model.signature end to end: real control plane, KWOK pods running the real server and
sidecar (tests/helpers/pod_runtime.py), the model and its signature file served over plain HTTP,
then from S3 beside the model with its profile.

One story, without traffic: r1, a ColumnTransformer pipeline with a date column only its
signature file describes (tests.serving.models.train_dated: without the file it fails its
warm-up), is Stable and its v2 metadata lists the signature's columns; r2, the same model pinned
to the wrong signature sha256, never becomes ready and is Failed with Sha256Mismatch naming the
signature, while r1 serves on.

The spec may never name a loopback host, so the files are served on this machine's global IPv4.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest

from modeldeploy import names
from modeldeploy_serving import metric_names
from modeldeploy_serving.profile import build_profile
from tests.helpers.object_stores import Stores
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import Endpoint, PodRuntime
from tests.integration.test_drift_e2e import stable_runtime
from tests.integration.test_rollback_e2e import (
    MD,
    apply,
    condition,
    history,
    recorded,
    runtime,
    spec_for,
    wait_md,
    wait_phase,
)
from tests.kube import ROOT, KubeCluster, wait_until
from tests.serving.models import DATED_SIGNATURE, SavedModel, dated_frame, train_dated

sys.path.insert(0, str(ROOT / "scripts"))
from node import node_ip  # the machine's global IPv4, a host a spec may name

pytestmark = pytest.mark.kwok
__all__ = ["runtime"]  # the fixture, shared with the rollback tests


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on the machine's global IPv4 (a host a spec may name)."""
    address = node_ip()
    if address is None:
        pytest.skip("no global IPv4 address to serve the model files on")
    root = tmp_path / "http"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield root, f"http://{address}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def signed(
    saved: SavedModel, base: str, version: str, signature_sha256: str, **rollout: Any
) -> dict[str, Any]:
    spec = spec_for(saved, version, **rollout)
    spec["model"]["uri"] = f"{base}/{saved.path.name}"
    spec["model"]["signature"] = {"uri": f"{base}/dated.signature.json", "sha256": signature_sha256}
    return spec


def metadata(endpoint: Endpoint) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        connection.request("GET", f"/v2/models/{endpoint.model}")
        response = connection.getresponse()
        assert response.status == 200
        return dict(json.loads(response.read()))
    finally:
        connection.close()


def test_a_model_and_its_signature_over_http_become_stable_a_wrong_signature_fails(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    files: tuple[Path, str],
) -> None:
    ns = op_namespace
    root, base = files
    saved = train_dated(root)
    raw = json.dumps(DATED_SIGNATURE).encode()
    (root / "dated.signature.json").write_bytes(raw)

    good = hashlib.sha256(raw).hexdigest()
    apply(cluster, ns, signed(saved, base, "1", good, steps=[], on_no_data="pass"))
    wait_phase(cluster, ns, names.PHASE_STABLE)
    # The real server loaded it (its sidecar's ModelReady gives status the runtime): the date
    # column's FunctionTransformer does not convert, so scikit-learn serves.
    wait_md(cluster, ns, "r1 loaded", lambda md: stable_runtime(md) == "sklearn", 120)
    (endpoint,) = wait_until(lambda: runtime.endpoints(1), 60, "r1's server ready")
    inputs = {tensor["name"]: tensor["datatype"] for tensor in metadata(endpoint)["inputs"]}
    assert inputs == {"city": "BYTES", "age": "FP64", "income": "FP64", "signup": "BYTES"}

    # A canary step that waits for its sidecar's verdict (no traffic: hold): only the load
    # failure can end it.
    apply(cluster, ns, signed(saved, base, "2", "0" * 64))
    md = wait_md(cluster, ns, "r2 failed", recorded(2), 120)
    assert history(md, 2) == [(names.OUTCOME_FAILED, "Sha256Mismatch")]
    (entry,) = [h for h in md["status"]["history"] if h["revision"] == 2]
    assert "signature" in entry["message"] and "dated.signature.json" in entry["message"]
    assert condition(md, names.COND_DEGRADED)["reason"] == "Sha256Mismatch"
    assert md["status"]["stable"]["revision"] == 1
    assert runtime.endpoints(2) == []
    assert [e.revision for e in runtime.endpoints()] == [1]
    assert runtime.errors() == []


def test_a_model_its_signature_and_profile_in_s3_are_fetched_and_used(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    object_stores: Stores,
    tmp_path: Path,
) -> None:
    """The files beside an object-store model may live in the same store: each one gets a
    fetcher of its own, with the model's credentials, and the server reads the verified copies
    (the dated model warms up only with its signature; drift counting needs the profile)."""
    ns = op_namespace
    saved = train_dated(tmp_path)
    signature = json.dumps(DATED_SIGNATURE).encode()
    frame = dated_frame().drop(columns=["review"]).fillna({"income": 3000.0})
    profile = orjson.dumps(build_profile(frame, joblib.load(saved.path)))
    spec = spec_for(saved, "1", steps=[], on_no_data="pass")
    spec["model"]["uri"] = object_stores.put_s3(
        "beside/dated/model.joblib", saved.path.read_bytes()
    )
    spec["model"]["env"] = [{"name": k, "value": v} for k, v in object_stores.s3_env().items()]
    for field, raw in (("signature", signature), ("profile", profile)):
        uri = object_stores.put_s3(f"beside/dated/{field}.json", raw)
        spec["model"][field] = {"uri": uri, "sha256": hashlib.sha256(raw).hexdigest()}
    apply(cluster, ns, spec)
    wait_phase(cluster, ns, names.PHASE_STABLE)

    (pod,) = cluster.get_json("pods", "-n", ns, "-l", f"{names.LABEL_NAME}={MD}")["items"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [
        names.CONTAINER_FETCHER,
        names.CONTAINER_PROFILE_FETCHER,
        names.CONTAINER_SIGNATURE_FETCHER,
        names.CONTAINER_MONITOR,
    ]
    (endpoint,) = wait_until(lambda: runtime.endpoints(1), 60, "r1's server ready")
    inputs = {tensor["name"]: tensor["datatype"] for tensor in metadata(endpoint)["inputs"]}
    assert inputs == {"city": "BYTES", "age": "FP64", "income": "FP64", "signup": "BYTES"}
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        connection.request("GET", names.PATH_METRICS)
        exported = connection.getresponse().read().decode()
    finally:
        connection.close()
    # The profile's reference shares are exported once it is loaded: one per bin.
    assert f"{metric_names.DRIFT_REFERENCE}{{" in exported
    assert f'{metric_names.LABEL_FEATURE}="city"' in exported
    assert runtime.errors() == []
