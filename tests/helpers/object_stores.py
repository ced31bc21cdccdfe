"""The `object_stores` fixture: S3, GCS and Azure Blob servers, real processes started by
scripts/object_stores.py, and helpers to put objects there and to give the fetcher its env.

Skips (saying why) when tools/build.sh has not built the stores (MODELDEPLOY_OBJECT_STORES=0).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "object_stores.py"
BUCKET = "models-bucket"
CONTAINER = "models"


@dataclass(frozen=True)
class Stores:
    """Endpoints and credentials of the running stores (scripts/object_stores.py's stores.json)."""

    info: dict[str, Any]
    host: str

    # --- the fetcher's environment: what spec.model.env would carry ---------------------------
    def s3_env(self, *, secret_key: str | None = None) -> dict[str, str]:
        s3 = self.info["s3"]
        return {
            "AWS_ENDPOINT_URL": s3["endpoint"],
            "AWS_ACCESS_KEY_ID": s3["access_key"],
            "AWS_SECRET_ACCESS_KEY": secret_key or s3["secret_key"],
            "AWS_REGION": s3["region"],
            # No shared config, no instance metadata: only what the test gives.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def gcs_env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.info["gcs"]["endpoint"]}

    def azure_env(self, *, key: str | None = None) -> dict[str, str]:
        azure = self.info["azure"]
        connection = azure["connection_string"]
        if key is not None:
            connection = connection.replace(azure["key"], key)
        return {"AZURE_STORAGE_CONNECTION_STRING": connection}

    # --- putting test objects -----------------------------------------------------------------
    def put_s3(self, key: str, data: bytes) -> str:
        import boto3

        s3 = self.info["s3"]
        client = boto3.client(
            "s3",
            endpoint_url=s3["endpoint"],
            aws_access_key_id=s3["access_key"],
            aws_secret_access_key=s3["secret_key"],
            region_name=s3["region"],
        )
        if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"s3://{BUCKET}/{key}"

    def put_gcs(self, name: str, data: bytes) -> str:
        from google.cloud import storage

        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.info["gcs"]["endpoint"]
        try:
            client = storage.Client.create_anonymous_client()
            client.project = "test"
            bucket = client.bucket(BUCKET)
            if not bucket.exists():
                client.create_bucket(BUCKET)
            bucket.blob(name).upload_from_string(data)
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous
        return f"gs://{BUCKET}/{name}"

    def put_azure(self, name: str, data: bytes) -> str:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        azure = self.info["azure"]
        service = BlobServiceClient.from_connection_string(azure["connection_string"])
        with contextlib.suppress(ResourceExistsError):
            service.create_container(CONTAINER)
        service.get_blob_client(CONTAINER, name).upload_blob(data, overwrite=True)
        return f"azure://{azure['account']}/{CONTAINER}/{name}"


def start_stores(workdir: Path, host: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], Stores]:
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "check"], capture_output=True, text=True, check=False
    )
    if check.returncode:
        pytest.skip(
            f"object stores not built ({check.stdout.strip()} missing): run tools/build.sh "
            "without MODELDEPLOY_OBJECT_STORES=0"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "object_stores.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "run", "--dir", str(workdir), "--host", host],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    state = workdir / "stores.json"
    deadline = time.monotonic() + 180
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stores(process)
            text = (workdir / "object_stores.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the object stores did not start:\n{text}")
        time.sleep(0.2)
    return process, Stores(json.loads(state.read_text()), host)


def stop_stores(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)  # the script gives its stores 10 s, then kills them
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    process, stores = start_stores(tmp_path_factory.mktemp("object-stores"))
    try:
        yield stores
    finally:
        stop_stores(process)
