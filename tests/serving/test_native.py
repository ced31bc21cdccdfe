"""Which build of the model server these tests ran on. `make test` runs tests/serving twice:
on the sources, then with MODELDEPLOY_TEST_NATIVE=1 on the native modules the serving image
runs (scripts/native.py, PYTHONPATH). Each pass checks it ran on what it claims, so the second
can never quietly test the sources again."""

from __future__ import annotations

import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path

from tests.serving.process import server_env

ROOT = Path(__file__).resolve().parents[2]
NATIVE = os.environ.get("MODELDEPLOY_TEST_NATIVE") == "1"


def native_modules() -> list[str]:
    """setup.py's list, as module names."""
    paths = runpy.run_path(str(ROOT / "setup.py"), run_name="not_main")["NATIVE_MODULES"]
    return [
        Path(path).relative_to("serving_image").with_suffix("").as_posix().replace("/", ".")
        for path in paths
    ]


def test_the_request_path_is_native_exactly_when_this_pass_says_so() -> None:
    names = native_modules()
    assert "modeldeploy_serving.http_server" in names and "modeldeploy_serving.app" in names
    for name in names:
        loaded = importlib.import_module(name).__file__ or ""
        assert loaded.endswith(".so") is NATIVE, f"{name} came from {loaded}"


def test_a_server_process_loads_the_same_build_as_the_tests() -> None:
    probe = "import modeldeploy_serving.http_server as m; print(m.__file__)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=server_env(), capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == importlib.import_module("modeldeploy_serving.http_server").__file__
