"""The serving image's dependencies, pinned with hashes: serving_image/requirements.lock.

    python scripts/lock.py             # re-resolve from pyproject.toml, keeping existing pins
    python scripts/lock.py --upgrade   # move every pin to the newest allowed version

pip-compile (pip-tools) resolves for the interpreter it runs on, so this runs only where that is
the image's platform: Linux x86_64, CPython 3.11. Each pin lists the hashes of every file of
that version on the index, so `pip install --require-hashes` in the Dockerfile accepts exactly
those bytes. The build-system requirements (setuptools, wheel) are pinned too: the project itself
is installed without build isolation, from the locked set alone.
tests/unit/test_lock.py proves the lock still covers pyproject.toml, offline.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
LOCK: Final = ROOT / "serving_image" / "requirements.lock"
TARGET: Final = ("linux", "x86_64", (3, 11))  # the serving image's platform (its Python base)
# Optional dependencies the image installs too: the fetcher's object-store clients.
IMAGE_EXTRAS: Final = ("storage",)
# Locked for the image's build stage (mypyc compiles the native modules: setup.py) and
# uninstalled before the runtime stage gets the virtualenv (serving_image/Dockerfile): not in the
# image, so not in its SBOM either (runtime_lock).
BUILD_ONLY: Final = ("mypy", "mypy-extensions", "librt", "ast-serialize", "pathspec")
_PIN: Final = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH: Final = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    name: str  # as written (pip-compile writes normalized names)
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str) -> dict[str, Pin]:
    """Pins by normalized name, from pip-compile's `name==version \\` lines, each continued by
    its `--hash=sha256:...` lines."""
    found: dict[str, tuple[str, str, list[str]]] = {}
    name = ""
    for line in text.splitlines():
        if match := _PIN.match(line):
            name = normalize(match[1])
            found[name] = (match[1], match[2], [])
        if name:
            found[name][2].extend(_HASH.findall(line))
        if not line.rstrip().endswith("\\"):
            name = ""  # the pin's continuation ended
    return {key: Pin(raw, version, tuple(hashes)) for key, (raw, version, hashes) in found.items()}


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_lock(text: str) -> str:
    """The lock without its BUILD_ONLY pins (each pin is its `name==version \\` line and the
    continuation lines after it): what the image's virtualenv holds."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        if match := _PIN.match(line):
            dropping = normalize(match[1]) in BUILD_ONLY
        elif not line.startswith((" ", "\t")):
            dropping = False  # a comment or blank line between pins
        if not dropping:
            kept.append(line)
    return "".join(kept)


def on_target() -> bool:
    system, machine, version = TARGET
    return (
        sys.platform == system
        and platform.machine() == machine
        and sys.implementation.name == "cpython"
        and sys.version_info[:2] == version
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    parser.add_argument(
        "--runtime-lock",
        metavar="FILE",
        type=Path,
        help="write the lock minus its build-only pins (the image's SBOM input) and exit",
    )
    args = parser.parse_args(argv)
    if args.runtime_lock is not None:
        args.runtime_lock.write_text(runtime_lock(LOCK.read_text()))
        return 0
    if not on_target():
        print(
            f"lock.py: the lock is resolved for Linux x86_64 CPython 3.11 (the image); this is "
            f"{sys.platform} {platform.machine()} {sys.implementation.name} "
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            file=sys.stderr,
        )
        return 2
    command = [
        str(Path(sys.executable).parent / "pip-compile"),
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",  # setuptools and wheel are pinned like everything else
        "--all-build-deps",
        "--strip-extras",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--no-emit-trusted-host",
        *(f"--extra={extra}" for extra in IMAGE_EXTRAS),
        f"--output-file={LOCK.relative_to(ROOT)}",
        *(["--upgrade"] if args.upgrade else []),
        "pyproject.toml",
    ]
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"}  # the lock's header says so
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
