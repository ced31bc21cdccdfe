"""Real object stores on this machine for the storage tests: S3 (SeaweedFS), GCS
(fake-gcs-server) and Azure Blob (Azurite), built or installed by tools/build.sh into the cache.

    python scripts/object_stores.py run --dir DIR [--host 127.0.0.1]

starts the three, waits until each answers, writes DIR/stores.json (endpoints and credentials,
the file the tests read) and stays in the foreground until SIGTERM or SIGINT, then stops them.
Each store keeps its data under DIR. The S3 store checks signatures against one identity, and
Azurite against its well-known development key, so wrong credentials are refused as a cloud
would refuse them; fake-gcs-server accepts any credentials (it has no authentication).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ports import free_port  # scripts/ports.py

CACHE = Path(os.environ.get("MODELDEPLOY_CACHE") or Path.home() / ".cache" / "modeldeploy")
BIN = CACHE / "bin"
S3_ACCESS_KEY = "modeldeploy-test"
S3_SECRET_KEY = "modeldeploy-test-secret"
# Azurite's documented development account (public, the same in every Azurite).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
STARTUP_TIMEOUT_S = 90.0


@dataclass
class Store:
    name: str
    binary: str
    process: subprocess.Popen[bytes] | None = None


def binaries_missing() -> list[str]:
    """The store binaries tools/build.sh has not provided (empty when all are there)."""
    return [b for b in ("weed", "fake-gcs-server", "azurite-blob") if not (BIN / b).exists()]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: the server is up
    except OSError:
        return False


def _wait(what: str, check: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        if check():
            return
        time.sleep(0.2)
    stop([process])
    raise RuntimeError(f"{what} did not answer within {STARTUP_TIMEOUT_S:.0f} s")


def _start(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own group: stopped whole, never outliving us
        )


def start_s3(workdir: Path, host: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """SeaweedFS in one process (master, volume, filer, S3 gateway), one S3 identity."""
    data = workdir / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "tests",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = workdir / "s3-identities.json"
    config.write_text(json.dumps(identities))
    ports = {name: free_port(host) for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port(host) for name in ("master", "volume", "filer", "s3")}
    command = [
        str(BIN / "weed"),
        "server",
        f"-dir={data}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.config={config}",
        # The master grows 7 volumes per collection at a time, and about a minute after start
        # the filer's own log takes the default collection's: 4 left a bucket written later
        # than that with none ("No writable volumes"). Volumes are sparse files until written.
        "-volume.max=16",
        "-master.volumeSizeLimitMB=64",
    ]
    process = _start(command, workdir / "seaweedfs.log")
    endpoint = f"http://{host}:{ports['s3']}"
    _wait("SeaweedFS S3", lambda: _answers(endpoint), process)
    return process, {
        "endpoint": endpoint,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "region": "us-east-1",
    }


def start_gcs(workdir: Path, host: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    port = free_port(host)
    data = workdir / "fake-gcs"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "fake-gcs-server"),
        "-scheme=http",
        f"-host={host}",
        f"-port={port}",
        f"-public-host={host}:{port}",
        f"-external-url=http://{host}:{port}",
        "-backend=filesystem",
        f"-filesystem-root={data}",
        "-log-level=warn",
    ]
    process = _start(command, workdir / "fake-gcs-server.log")
    endpoint = f"http://{host}:{port}"
    _wait("fake-gcs-server", lambda: _answers(f"{endpoint}/storage/v1/b"), process)
    return process, {"endpoint": endpoint}


def start_azure(workdir: Path, host: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    port = free_port(host)
    data = workdir / "azurite"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "azurite-blob"),
        f"--blobHost={host}",
        f"--blobPort={port}",
        f"--location={data}",
        "--skipApiVersionCheck",
        "--disableProductStyleUrl",
        "--silent",
    ]
    # Only the well-known development account, whatever the caller's environment says.
    env = {k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"}
    process = _start(command, workdir / "azurite.log", env)
    endpoint = f"http://{host}:{port}/{AZURE_ACCOUNT}"
    _wait("Azurite", lambda: _answers(f"{endpoint}?comp=list"), process)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
        f"BlobEndpoint={endpoint};"
    )
    return process, {
        "endpoint": endpoint,
        "account": AZURE_ACCOUNT,
        "key": AZURE_KEY,
        "connection_string": connection,
    }


def stop(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every store's process group at once, SIGKILL what is left after `grace`."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def run(workdir: Path, host: str) -> int:
    missing = binaries_missing()
    if missing:
        print(f"missing in {BIN}: {', '.join(missing)}; run tools/build.sh", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "stores.json"
    state.unlink(missing_ok=True)
    running: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        found: dict[str, Any] = {}
        for name, starter in (("s3", start_s3), ("gcs", start_gcs), ("azure", start_azure)):
            process, found[name] = starter(workdir, host)
            running.append(process)
        temporary = state.with_suffix(".tmp")
        temporary.write_text(json.dumps(found, indent=2))
        temporary.replace(state)  # readers never see half a file
        print(f"object stores ready: {state}", flush=True)
        while not stopping and all(p.poll() is None for p in running):
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        stop(running)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("run", help="start the stores, write DIR/stores.json, wait")
    start.add_argument("--dir", type=Path, required=True)
    start.add_argument("--host", default="127.0.0.1")
    sub.add_parser("check", help="exit 1 and name what tools/build.sh has not built")
    args = parser.parse_args()
    if args.command == "check":
        missing = binaries_missing()
        print(", ".join(missing) or "all present")
        return 1 if missing else 0
    return run(args.dir, args.host)


if __name__ == "__main__":
    sys.exit(main())
