"""`make cluster-up` timed as a user runs it, warm and cold, with the real node.

Warm: every cache is filled (Go binaries, the pause and hello images, the Python base, the serving
image of these sources) and `.cluster` is absent (after `make cluster-down`): the time to a fresh
cluster with its real node and the serving image imported into the node's containerd.

Cold: `.cluster` absent and an empty image cache: `make cluster-up` runs with MODELDEPLOY_CACHE
pointed at a new directory whose only content is a link to the shared `build/` directory, so the
Go binaries (and Go's own build cache) stay cached while everything else is made again: the pause
and hello images (gcc, go build, umoci), the Python base (debootstrap of Debian bookworm from the
apt mirror), buildah's store and the serving image (serving_image/Dockerfile, pip installing its
wheels from the package index). The shared cache is never touched, so other clones keep theirs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED_CACHE = Path(
    os.environ.get("MODELDEPLOY_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"
)
COLD_DEFINITION = (
    "`.cluster` absent; MODELDEPLOY_CACHE = a new directory holding only a link to the shared "
    "Go build outputs (`build/`): the pause and hello images, the Debian bookworm Python base "
    "(debootstrap), buildah's store and the serving image are all built during the run; Go "
    "binaries and Go's build cache stay cached; pip and apt download from their indexes"
)
WARM_DEFINITION = (
    "`.cluster` absent (after `make cluster-down`); Go binaries, the pause image, the Python "
    "base and the serving image of these sources cached: the run starts the control plane, the "
    "real node and imports the serving image into its containerd"
)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def make(target: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run `make <target>` in the repository; its output (stdout and stderr)."""
    proc = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"make {target} failed ({proc.returncode}):\n{output[-3000:]}")
    return output


def breakdown(output: str) -> dict[str, float]:
    """The phases `cluster.py up` and `images.py` report in their own output."""
    found: dict[str, float] = {}
    patterns = {
        "binaries_s": r"binaries ready after ([\d.]+)s",
        "after_binaries_s": r"cluster ready in ([\d.]+)s",
        "real_node_and_image_s": r"real node ([\d.]+)s\)",
        "python_base_build_s": r"images: base image \S+ \((\d+) s\)",
        "serving_image_build_s": r"images: serving image \S+ \((\d+) s\)",
        "image_import_s": r"into the real node in ([\d.]+)s",
    }
    for key, pattern in patterns.items():
        if (match := re.search(pattern, output)) is not None:
            found[key] = float(match.group(1))
    return found


def timed_up(env: dict[str, str] | None, log: Path) -> dict[str, Any]:
    """`make cluster-down`, then `make cluster-up` timed; the cluster is left up."""
    make("cluster-down")
    if (ROOT / ".cluster").exists():
        raise RuntimeError(".cluster still exists after `make cluster-down`")
    before = loadavg()
    started = time.monotonic()
    output = make("cluster-up", env, log)
    seconds = time.monotonic() - started
    if "real node 'real-node'" not in output:
        raise RuntimeError(f"cluster-up ran without the real node:\n{output[-2000:]}")
    return {
        "seconds": round(seconds, 1),
        "phases": breakdown(output),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }


def warm(reps: int, logs: Path) -> dict[str, Any]:
    make("image", log=logs / "image.log")  # fill the cache first (untimed): warm means cached
    runs = []
    for rep in range(reps):
        runs.append(timed_up(None, logs / f"warm-{rep}.log"))
        print(f"  warm cluster-up #{rep + 1}: {runs[-1]['seconds']} s", file=sys.stderr)
    return {"definition": WARM_DEFINITION, "runs": runs}


def cold(logs: Path) -> dict[str, Any]:
    """One cold `make cluster-up` in an empty image cache; the cluster is taken down after."""
    cache = Path(tempfile.mkdtemp(prefix="modeldeploy-cold-", dir=SHARED_CACHE.parent))
    try:
        (cache / "build").symlink_to(SHARED_CACHE / "build")
        run = timed_up({"MODELDEPLOY_CACHE": str(cache)}, logs / "cold.log")
        make("cluster-down")  # the node ran from the temporary cache: start again from ours
    finally:
        # buildah's store under the cache may hold overlay mounts: unmount before removing.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{cache}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], check=False)
        shutil.rmtree(cache, ignore_errors=True)
    print(f"  cold cluster-up: {run['seconds']} s", file=sys.stderr)
    return {"definition": COLD_DEFINITION, "measured_at": time.strftime("%Y-%m-%d"), **run}
