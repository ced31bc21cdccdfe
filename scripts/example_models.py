"""Example models for `make run` and the e2e tests, and a plain HTTP store that serves them to the
cluster's real node.

    python scripts/example_models.py train --dir .cluster/models
    python scripts/example_models.py serve --dir .cluster/models --host <node IP> [--port 8099]
    python scripts/example_models.py stop --dir .cluster/models

Three versions of an iris classifier, trained on scikit-learn's bundled iris data (no download):
  1  StandardScaler + LogisticRegression                 (good)
  2  RandomForest, 50 trees                              (good, a different model)
  3  arcsin "feature scaling" + LogisticRegression      (answers its zero-row warm-up, then
     fails on every real flower: sepal lengths above 1 cm have no arcsin; the export bug of a
     transform fitted in other units)
Each is saved with joblib at <dir>/iris/<version>/iris.joblib; <dir>/index.json maps versions to
their sha256. Models use only scikit-learn and numpy, so the serving image can load them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

MODEL = "iris"
DEFAULT_PORT = 8099
VERSIONS = ("1", "2", "3")
# One real flower per class, as the README's curl example sends them.
SAMPLE_ROWS: list[list[float]] = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]


def estimator(version: str) -> Any:
    data = load_iris()
    features, labels = data.data, data.target
    if version == "1":
        model: Any = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    elif version == "2":
        model = RandomForestClassifier(n_estimators=50, max_depth=4, random_state=0)
    elif version == "3":
        # Fitted on data already in the transform's range, so fit() succeeds; np.arcsin is
        # importable in the serving image (a function of numpy, not of this script).
        unit = features / features.max(axis=0)
        model = Pipeline(
            [("units", FunctionTransformer(np.arcsin)), ("classify", LogisticRegression())]
        )
        model.fit(unit, labels)
        return model
    else:
        raise ValueError(f"no example model version {version!r}")
    return model.fit(features, labels)


def model_path(directory: Path, version: str) -> Path:
    return directory / MODEL / version / f"{MODEL}.joblib"


def train(directory: Path) -> dict[str, str]:
    """Write every version (again only if missing) and return {version: sha256}."""
    digests: dict[str, str] = {}
    for version in VERSIONS:
        path = model_path(directory, version)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            joblib.dump(estimator(version), path)
        digests[version] = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / "index.json").write_text(json.dumps(digests, indent=2) + "\n")
    return digests


def digests(directory: Path) -> dict[str, str]:
    return dict(json.loads((directory / "index.json").read_text()))


def uri(host: str, version: str, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}/{MODEL}/{version}/{MODEL}.joblib"


def _pid_file(directory: Path) -> Path:
    return directory / "store.pid"


def serve(directory: Path, host: str, port: int = DEFAULT_PORT) -> int:
    """Start (or keep) a static HTTP server of `directory` on host:port; returns its pid."""
    pid_file = _pid_file(directory)
    probe = f"http://{host}:{port}/index.json"
    if pid_file.exists() and _answers(probe):
        return int(pid_file.read_text())
    stop(directory)
    log = (directory / "store.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", host, "--directory", "."],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + 10
    while not _answers(probe):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the model store did not start on {host}:{port}; see store.log")
        time.sleep(0.1)
    return process.pid


def stop(directory: Path) -> None:
    pid_file = _pid_file(directory)
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "serve", "stop"))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if args.command == "train":
        print(json.dumps(train(directory), indent=2))
    elif args.command == "serve":
        train(directory)
        pid = serve(directory, args.host, args.port)
        print(f"serving {directory} at http://{args.host}:{args.port}/ (pid {pid})")
    else:
        stop(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
