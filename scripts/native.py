"""The model server as the serving image runs it: the project installed with its native modules
(setup.py, MODELDEPLOY_NATIVE=1: mypyc) into a directory of its own, for PYTHONPATH.

    python scripts/native.py      # builds it if this checkout's sources have no build yet;
                                  # prints the directory

Built with this venv's mypy and setuptools (the dev extra pins them as the image's lock does),
and cached outside the repository under a hash of every file the build reads, so any edit to
the sources builds again (about a minute). Used by the serving benchmark (our server runs its
native modules, as in the image) and by `make test`, which runs tests/serving a second time on
them: compiled code enforces type annotations at run time, so it is tested as such.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from images import CACHE  # scripts/images.py: the one cache directory outside the repository

ROOT: Final = Path(__file__).resolve().parent.parent
BUILDS: Final = CACHE / "native"
SOURCES: Final = ("setup.py", "pyproject.toml", "README.md", "operator", "serving_image")
KEEP: Final = 3  # builds kept (the newest); each is about 30 MB


def source_files() -> Iterator[Path]:
    for name in SOURCES:
        path = ROOT / name
        if path.is_file():
            yield path
            continue
        for found in sorted(path.rglob("*")):
            if found.is_file() and "__pycache__" not in found.parts:
                yield found


def build_key() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in source_files():
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_built() -> Path:
    BUILDS.mkdir(parents=True, exist_ok=True)
    target = BUILDS / build_key()
    with open(BUILDS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller waits for it
        if not target.exists():
            _build(target)
            _prune(keep=target)
    return target


def _build(target: Path) -> None:
    print(f"native: building the native modules into {target} ...", file=sys.stderr, flush=True)
    partial = Path(tempfile.mkdtemp(dir=BUILDS, prefix=".partial-"))
    try:
        with tempfile.TemporaryDirectory(prefix="native-src-") as scratch:
            # A copy of the sources, so the build's own files (build/, *.egg-info, C sources)
            # stay out of the checkout.
            source = Path(scratch)
            for path in source_files():
                copy = source / path.relative_to(ROOT)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
            env = {**os.environ, "MODELDEPLOY_NATIVE": "1"}
            command = [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                "--no-build-isolation", "--no-index", "--target", str(partial), str(source),
            ]  # fmt: skip
            built = subprocess.run(command, env=env, capture_output=True, text=True)
            if built.returncode != 0:
                sys.stderr.write(built.stdout + built.stderr)
                raise SystemExit(f"native: the build failed ({' '.join(command)})")
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _prune(keep: Path) -> None:
    builds = [p for p in BUILDS.iterdir() if p.is_dir() and not p.name.startswith(".")]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in builds if p != keep][KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> int:
    print(ensure_built())
    return 0


if __name__ == "__main__":
    sys.exit(main())
