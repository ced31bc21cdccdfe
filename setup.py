"""Everything about the project lives in pyproject.toml; this file only adds the model server's
native modules when asked for them.

With MODELDEPLOY_NATIVE=1 the modules every inference request runs through are compiled to C
extensions by mypyc (from the same type-checked sources, under the project's mypy settings)
and installed beside their .py files, which Python then no longer imports. The serving image
is built this way (serving_image/Dockerfile); `scripts/native.py` builds the same modules for
the benchmark and the test run that covers them. Without it (an editable dev install) nothing
is compiled. Why: docs/serving.md, "Native modules".
"""

from __future__ import annotations

import os

from setuptools import setup

# The per-request path of the model server: HTTP, routing, parsing, batching, encoding, metrics.
NATIVE_MODULES = (
    "serving_image/modeldeploy_serving/http_server.py",
    "serving_image/modeldeploy_serving/http_messages.py",
    "serving_image/modeldeploy_serving/app.py",
    "serving_image/modeldeploy_serving/batching.py",
    "serving_image/modeldeploy_serving/service.py",
    "serving_image/modeldeploy_serving/metrics.py",
    "serving_image/modeldeploy_serving/loop_metrics.py",
    "serving_image/modeldeploy_serving/protocol/body.py",
    "serving_image/modeldeploy_serving/protocol/tensors.py",
    "serving_image/modeldeploy_serving/protocol/v2.py",
)


def _native_extensions() -> list[object]:
    if os.environ.get("MODELDEPLOY_NATIVE") != "1":
        return []
    from mypyc.build import mypycify  # a build requirement (pyproject.toml)

    return list(mypycify(list(NATIVE_MODULES), opt_level="3"))


if __name__ == "__main__":  # as setuptools runs it; tests read NATIVE_MODULES without building
    setup(ext_modules=_native_extensions())
