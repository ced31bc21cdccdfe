"""Models are trained once per session; servers that tests only read from are shared."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess

# The shared classifier server runs with small limits so the limit tests send small bodies.
MAX_REQUEST_BYTES = 4096
MAX_REQUEST_ROWS = 50


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SavedModel]:
    directory = tmp_path_factory.mktemp("models")
    saved = {
        f"{kind}-{fmt}": train(directory, fmt, name=f"{kind}-{fmt}")
        for kind, train in [
            ("classifier", models.train_classifier),
            ("regressor", models.train_regressor),
            ("pipeline", models.train_pipeline),
        ]
        for fmt in ("joblib", "skops")
    }
    saved["forest"] = models.train_forest(directory)
    saved["failing"] = models.train_failing(directory, failure_rate=1.0)
    saved["slow"] = models.train_slow(directory, delay_seconds=0.4)
    return saved


@pytest.fixture(scope="session")
def launch() -> Iterator[Callable[..., ServerProcess]]:
    """Start a server process (not waiting for it); every one is stopped at session end."""
    started: list[ServerProcess] = []

    def start(saved: SavedModel | None, *args: str, **options: object) -> ServerProcess:
        server = ServerProcess(saved, *args, **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def classifier_server(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> ServerProcess:
    """LogisticRegression, 6 features, 3 classes; limits 4096 bytes and 50 rows per request."""
    return launch(
        trained["classifier-joblib"],
        "--model-version",
        "7",
        "--max-request-bytes",
        str(MAX_REQUEST_BYTES),
        "--max-request-rows",
        str(MAX_REQUEST_ROWS),
        name="iris",
    ).wait_ready()


@pytest.fixture(scope="session")
def conformance_servers(
    trained: dict[str, SavedModel],
    launch: Callable[..., ServerProcess],
    classifier_server: ServerProcess,
) -> dict[str, tuple[SavedModel, ServerProcess]]:
    """Classifier, regressor and pipeline, in joblib and skops, started side by side."""
    keys = [key for key in trained if key.endswith("-skops") or key.endswith("-joblib")]
    servers = {
        key: (trained[key], launch(trained[key], name=key))
        for key in keys
        if key != "classifier-joblib"
    }
    servers["classifier-joblib"] = (trained["classifier-joblib"], classifier_server)
    for _, server in servers.values():
        server.wait_ready()
    return servers


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A plain HTTP server on 127.0.0.1 serving a directory, for download tests."""
    root = tmp_path_factory.mktemp("http")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
