"""A real MLflow tracking server for the registry tests, and models registered with mlflow's own
client. Both run in the venv tools/mlflow/install.sh makes (installed on first use, cached by
pin): the server on a free loopback port with a sqlite backend and a local artifact root it
proxies (`--serve-artifacts`), the client as a subprocess (`register`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kube import ROOT, free_port, wait_until

INSTALL = ROOT / "tools" / "mlflow" / "install.sh"
START_TIMEOUT_S = 300  # a cold start creates the database (a minute on a busy 2-core machine)

# Runs in the mlflow venv: a small scikit-learn model trained on synthetic data (6 features,
# the tests' load shape), logged and registered, then an alias set. The digest is computed the
# way docs/sources.md tells users to: download the registered version, hash its model file.
_REGISTER = r"""
import hashlib, json, sys, tempfile, pathlib
import mlflow, numpy as np, yaml
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

tracking, name, alias, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mlflow.set_tracking_uri(tracking)
rng = np.random.default_rng(seed)
X = rng.normal(size=(200, 6))
y = (X[:, 0] + X[:, seed % 6] > 0).astype(int)
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model",
                                    registered_model_name=name)
version = str(info.registered_model_version)
if alias:
    MlflowClient().set_registered_model_alias(name, alias, version)
with tempfile.TemporaryDirectory() as out:
    where = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=out)
    local = pathlib.Path(where)
    file = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]["pickled_model"]
    digest = hashlib.sha256((local / file).read_bytes()).hexdigest()
uri = MlflowClient().get_model_version_download_uri(name, version)
print(json.dumps({"version": version, "run_id": run.info.run_id, "sha256": digest,
                  "file": file, "download_uri": uri}))
"""


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    sha256: str
    file: str  # the model file inside the MLflow model directory
    download_uri: str  # mlflow-artifacts:/...


def mlflow_bin() -> Path:
    """The mlflow venv's bin directory (installed now if missing: a few minutes, once)."""
    python = Path(sys.executable)
    done = subprocess.run(
        ["bash", str(INSTALL), str(python)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"tools/mlflow/install.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class MlflowServer:
    """`mlflow server` as a process group on 127.0.0.1 (a context manager)."""

    def __init__(self, workdir: Path) -> None:
        self.bin = mlflow_bin()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "mlflow-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.bin / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", str(self.workdir / "artifacts"),
            "--serve-artifacts",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers die with it
                env=self._env(),
            )
        wait_until(self._healthy, START_TIMEOUT_S, "mlflow server /health", interval=0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def register(self, name: str, *, alias: str = "", seed: int = 0) -> Registered:
        """Train, log and register a model version with mlflow's client; set `alias` on it."""
        done = subprocess.run(
            [str(self.bin / "python"), "-c", _REGISTER, self.url, name, alias, str(seed)],
            capture_output=True,
            text=True,
            env=self._env(),
            cwd=self.workdir,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"registering {name} failed:\n{done.stderr[-3000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        return Registered(**found)

    def register_source(self, name: str, source: str) -> str:
        """Register a model version whose artifacts live at `source` (e.g. an s3:// prefix, as
        a server with an object-store artifact root and no proxy records them); its version."""
        self._post("registered-models/create", {"name": name})
        created = self._post("model-versions/create", {"name": name, "source": source})
        return str(created["model_version"]["version"])

    def _post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        body = json.dumps({"name": name, "alias": alias, "version": version}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/registered-models/alias",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200
