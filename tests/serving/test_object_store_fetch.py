"""The fetcher init container's process against real S3, GCS and Azure Blob servers
(scripts/object_stores.py): it downloads with the store's own client, verifies the sha256,
writes the file the model server then loads, and fails with one clear line in the termination
log (which the kubelet copies into the pod's status, and the operator into the
ModelDeployment's) when the credentials, the digest, the object or the size is wrong."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from modeldeploy_serving import errors, stores
from tests.helpers.object_stores import Stores
from tests.serving.models import SavedModel
from tests.serving.process import SERVER, ServerProcess, server_env

WRONG_SHA = "0" * 64


@dataclass(frozen=True)
class Source:
    name: str
    put: Callable[[Stores, str, bytes], str]
    env: Callable[[Stores], dict[str, str]]
    wrong_credentials: Callable[[Stores], dict[str, str]] | None


SOURCES = [
    Source(
        "s3",
        Stores.put_s3,
        Stores.s3_env,
        lambda s: s.s3_env(secret_key="not-the-secret"),
    ),
    Source("gcs", Stores.put_gcs, Stores.gcs_env, None),  # fake-gcs-server checks no credentials
    Source(
        "azure",
        Stores.put_azure,
        Stores.azure_env,
        lambda s: s.azure_env(key="bm90LXRoZS1rZXk="),  # well-formed base64, not the key
    ),
]


@dataclass(frozen=True)
class Fetched:
    returncode: int
    output: str
    termination: str
    target: Path


def fetch(
    tmp_path: Path,
    uri: str,
    sha256: str,
    env: Mapping[str, str],
    *extra: str,
    loopback: bool = True,
) -> Fetched:
    """Run `modeldeploy-server --fetch-to` as the init container does (its flags included)."""
    target = tmp_path / "fetched" / "model.joblib"
    termination = tmp_path / "termination-log"
    command = [
        str(SERVER),
        "--model-uri",
        uri,
        "--model-name",
        "m",
        "--sha256",
        sha256,
        f"--fetch-to={target}",
        "--skip-load-check",
        "--allow-loopback-downloads" if loopback else "--no-allow-loopback-downloads",
        "--termination-log",
        str(termination),
        *extra,
    ]
    done = subprocess.run(
        command, env=server_env(env), capture_output=True, text=True, timeout=120, check=False
    )
    text = termination.read_text() if termination.exists() else ""
    return Fetched(done.returncode, done.stderr, text, target)


@pytest.fixture(scope="module")
def model(trained: dict[str, SavedModel]) -> SavedModel:
    return trained["classifier-joblib"]


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_fetched_model_is_verified_and_served(
    object_stores: Stores,
    model: SavedModel,
    source: Source,
    tmp_path: Path,
) -> None:
    uri = source.put(object_stores, f"ok/{source.name}/model.joblib", model.path.read_bytes())
    done = fetch(tmp_path, uri, model.sha256, source.env(object_stores))
    assert done.returncode == 0, done.output
    assert done.target.read_bytes() == model.path.read_bytes()
    assert "verified artifact written" in done.output
    # The model container: the local file, the sha256 checked again, served.
    server = ServerProcess(None, "--model-uri", done.target.as_uri(), "--sha256", model.sha256)
    try:
        server.wait_ready()
    finally:
        server.terminate()


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_wrong_digest_is_refused_and_nothing_is_written(
    object_stores: Stores,
    model: SavedModel,
    source: Source,
    tmp_path: Path,
) -> None:
    uri = source.put(object_stores, f"digest/{source.name}/m.joblib", model.path.read_bytes())
    done = fetch(tmp_path, uri, WRONG_SHA, source.env(object_stores))
    assert done.returncode == errors.Sha256Mismatch.exit_code, done.output
    assert done.termination.startswith(f"Sha256Mismatch: {uri}: sha256 is {model.sha256}")
    assert not done.target.exists()


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_missing_object_says_not_found(
    object_stores: Stores,
    model: SavedModel,
    source: Source,
    tmp_path: Path,
) -> None:
    uri = source.put(object_stores, f"present/{source.name}", b"x").replace("present", "absent")
    done = fetch(tmp_path, uri, model.sha256, source.env(object_stores))
    assert done.returncode == errors.FetchFailed.exit_code, done.output
    assert done.termination.startswith(f"FetchFailed: {uri}: not found"), done.termination
    assert len(done.termination.strip().splitlines()) == 1


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_wrong_credentials_say_access_denied(
    object_stores: Stores,
    model: SavedModel,
    source: Source,
    tmp_path: Path,
) -> None:
    if source.wrong_credentials is None:
        pytest.skip("fake-gcs-server has no authentication: any credentials are accepted")
    uri = source.put(object_stores, f"creds/{source.name}/m.joblib", model.path.read_bytes())
    done = fetch(tmp_path, uri, model.sha256, source.wrong_credentials(object_stores))
    assert done.returncode == errors.FetchFailed.exit_code, done.output
    assert done.termination.startswith(f"FetchFailed: {uri}: access denied"), done.termination
    assert "spec.model.env" in done.termination  # tells the person where credentials come from
    assert "Traceback" not in done.output


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_size_limit(
    object_stores: Stores,
    model: SavedModel,
    source: Source,
    tmp_path: Path,
) -> None:
    uri = source.put(object_stores, f"big/{source.name}/m.joblib", model.path.read_bytes())
    done = fetch(tmp_path, uri, model.sha256, source.env(object_stores), "--max-artifact-bytes=64")
    assert done.returncode == errors.ArtifactTooLarge.exit_code, done.output
    assert done.termination.startswith(f"ArtifactTooLarge: {uri}")


def test_a_loopback_endpoint_is_refused_in_a_pod(
    object_stores: Stores,
    model: SavedModel,
    tmp_path: Path,
) -> None:
    """The init container runs with --no-allow-loopback-downloads: an endpoint override may not
    reach the node's loopback any more than a model URI may."""
    uri = object_stores.put_s3("loopback/m.joblib", model.path.read_bytes())
    done = fetch(tmp_path, uri, model.sha256, object_stores.s3_env(), loopback=False)
    assert done.returncode == errors.FetchFailed.exit_code, done.output
    assert "S3 endpoint" in done.termination and "loopback" in done.termination


def test_unreachable_store_is_retried_with_backoff_then_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens on the endpoint: each attempt fails to connect, the waits double, and
    the last line says how often it tried."""
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # discard: nothing answers
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # boto3 reads its credentials from the process env
    waits: list[float] = []
    with pytest.raises(errors.FetchFailed) as caught:
        stores.fetch(
            "s3://models-bucket/m.joblib",
            max_bytes=1024,
            timeout=5,
            allow_loopback=True,
            environ=env,
            sleep=waits.append,
        )
    assert waits == [0.5, 1.0, 2.0]
    assert f"gave up after {stores.ATTEMPTS} attempts" in str(caught.value)
