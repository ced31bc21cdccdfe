"""The serving image built by `make image` (serving_image/Dockerfile, buildah): its config, what it
leaves out, and a real prediction from its model server, run from the unpacked root filesystem as
UID 65532 on a read-only root, without a container engine (unshare + chroot, as root).

Skipped, with the reason, when the image for this source tree has not been built.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serving.test_native import native_modules

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = [sys.executable, str(ROOT / "scripts" / "images.py")]
BUILD_HINT = "build it with `make image` (root; apt-get install debootstrap umoci buildah)"
# Mount the root read-only, give it /proc, a tmpfs /tmp and the test's directory at /mnt, then
# drop to the image's user: roughly what the kubelet does for the model container.
SANDBOX = """
set -e
root=$1; shared=$2; shift 2
mount --bind "$root" "$root"
mount --bind "$shared" "$root/mnt"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -o remount,bind,ro "$root"
exec chroot --userspec=65532:65532 "$root" "$@"
"""
TRAIN = """
import json, joblib, numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
X, y = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0,
                           n_classes=3, random_state=0)
model = LogisticRegression(max_iter=500).fit(X, y)
joblib.dump(model, "/mnt/model.joblib")
rows = X[:5].round(6)
json.dump({"rows": rows.tolist(), "predict": model.predict(rows).tolist()},
          open("/mnt/expected.json", "w"))
"""


@dataclass(frozen=True)
class Image:
    ref: str
    config: dict[str, Any]  # the OCI image config: what containerd runs
    index: dict[str, Any]
    rootfs: Path
    shared: Path  # mounted at /mnt inside

    def command(self, *argv: str, env: Sequence[str] = ()) -> list[str]:
        """argv run inside the image with exactly the image's environment (plus `env`)."""
        inside = ["/usr/bin/env", "-i", "-C", self.config["config"]["WorkingDir"]]
        inside += [*self.config["config"]["Env"], *env, *argv]
        sandbox = ["sh", "-c", SANDBOX, "sh", str(self.rootfs), str(self.shared)]
        return ["unshare", "--mount", "--pid", "--fork", "--kill-child", *sandbox, *inside]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv), capture_output=True, text=True, timeout=300)


def _built_archive() -> tuple[Path, str]:
    found = subprocess.run([*IMAGES, "print"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"no serving image built for this source tree: {BUILD_HINT}")
    ref = subprocess.run([*IMAGES, "print", "--ref"], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip()), ref.stdout.strip()


def _blob(layout: Path, digest: str) -> dict[str, Any]:
    algorithm, hexdigest = digest.split(":")
    return json.loads((layout / "blobs" / algorithm / hexdigest).read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    archive, ref = _built_archive()
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("umoci", "unshare", "chroot")):
        pytest.skip("running the image without an engine needs root, umoci, unshare and chroot")
    work = tmp_path_factory.mktemp("image")
    with tarfile.open(archive) as tar:
        tar.extractall(work / "layout", filter="tar")
    index = json.loads((work / "layout" / "index.json").read_text())
    subprocess.run(
        ["umoci", "unpack", "--image", f"{work / 'layout'}:{ref}", work / "bundle"], check=True
    )
    manifest = _blob(work / "layout", index["manifests"][0]["digest"])
    shared = work / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # the image's user writes the model here
    yield Image(ref, _blob(work / "layout", manifest["config"]["digest"]), index,
                work / "bundle" / "rootfs", shared)  # fmt: skip


def test_archive_carries_both_names_for_a_containerd_import(image: Image) -> None:
    """`ctr images import --base-name localhost/modeldeploy/serving` keeps names under the base."""
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"] for m in image.index["manifests"]
    }
    assert names == {image.ref, "localhost/modeldeploy/serving:dev"}
    assert len({m["digest"] for m in image.index["manifests"]}) == 1
    assert re.fullmatch(r"localhost/modeldeploy/serving:[0-9a-f]{12}", image.ref)


def test_config_is_the_dockerfiles(image: Image) -> None:
    config = image.config["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["modeldeploy-server"]
    assert config["WorkingDir"] == "/tmp"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "8080/tcp" in config["ExposedPorts"]


def test_nothing_of_the_host_or_the_build_stays_in_the_image(image: Image) -> None:
    for leftover in (
        "etc/ssl/modeldeploy-host-ca.pem",
        "root/modeldeploy-host-ca.pem",
        "root/.config",
        "etc/pip.conf",
        "root/.cache/pip",
        "src",
        "opt/wheels",
        "var/lib/apt/lists/lock",
    ):
        assert not (image.rootfs / leftover).exists(), leftover
    assert (image.rootfs / "etc/apt/sources.list").read_text() == ""


def test_entrypoints_run_as_65532_on_a_read_only_root(image: Image) -> None:
    for argv in (
        ["modeldeploy-server", "--help"],
        ["modeldeploy-monitor", "--help"],
        ["modeldeploy-operator", "--help"],
        ["python", "-c", "import sklearn, skops, modeldeploy_serving, modeldeploy"],
    ):
        result = image.run(*argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert image.run("id", "-u").stdout.strip() == "65532"
    denied = image.run("touch", "/opt/venv/x")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_the_request_path_is_native_and_the_compiler_is_gone(image: Image) -> None:
    names = native_modules()
    probe = "import importlib as i, sys\nfor m in sys.argv[1:]: print(i.import_module(m).__file__)"
    result = image.run("python", "-c", probe, *names)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert len(loaded) == len(names) and all(path.endswith(".so") for path in loaded), loaded
    for package in ("mypy", "mypyc", "librt"):
        absent = image.run("python", "-c", f"import {package}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, package


def test_the_model_server_answers_a_prediction_over_http(image: Image) -> None:
    # Trained inside the image, so the pickle matches the image's scikit-learn exactly.
    trained = image.run("python", "-c", TRAIN)
    assert trained.returncode == 0, trained.stderr
    model = image.shared / "model.joblib"
    expected = json.loads((image.shared / "expected.json").read_text())
    flags = ["--host", "127.0.0.1", "--port", "0", "--model-name", "iris", "--format", "joblib"]
    flags += ["--model-uri", "/mnt/model.joblib"]
    flags += ["--sha256", hashlib.sha256(model.read_bytes()).hexdigest()]
    server = subprocess.Popen(
        image.command(*image.config["config"]["Entrypoint"], *flags),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = _listening_port(server)
        _wait_ready(port, server)
        rows = expected["rows"]
        tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64"}
        body = {"inputs": [{**tensor, "data": [v for row in rows for v in row]}]}
        status, reply = _post(port, "/v2/models/iris/infer", body)
        assert status == 200, reply
        outputs = {output["name"]: output["data"] for output in reply["outputs"]}
        assert outputs["predict"] == expected["predict"]
    finally:
        # The whole group: chroot's change of user clears unshare's --kill-child signal, so
        # killing unshare alone left the server running after the test.
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _listening_port(server: subprocess.Popen[str]) -> int:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while (line := lines.get(timeout=120)) is not None:
        seen.append(line)
        if match := re.search(r"listening on http://[^:]+:(\d+)", line):
            return int(match[1])
    raise AssertionError("the server exited before listening:\n" + "".join(seen))


def _wait_ready(port: int, server: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        finally:
            connection.close()
        time.sleep(0.1)
    raise AssertionError(f"the model never became ready (server exit code {server.poll()})")


def _post(port: int, path: str, body: Any) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
