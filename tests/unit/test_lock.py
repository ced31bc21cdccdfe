"""serving_image/requirements.lock, which the Dockerfile installs with --require-hashes, still
covers pyproject.toml: every runtime and build requirement pinned, in range, with hashes. Offline:
a dependency added or tightened in pyproject.toml fails here until `make lock` is run."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The image's platform: the markers pip evaluates when it installs the lock there.
TARGET_ENV = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "extra": "",
}


def _load() -> ModuleType:
    # scripts/ is not a package; load the module the way `python scripts/lock.py` runs it.
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lock"] = module
    spec.loader.exec_module(module)
    return module


lock = _load()
PINS = lock.parse_lock(lock.LOCK.read_text())


def requirements(*groups: list[str]) -> list[Requirement]:
    found = [Requirement(text) for group in groups for text in group]
    return [r for r in found if r.marker is None or r.marker.evaluate(TARGET_ENV)]


@pytest.mark.parametrize(
    "requirement",
    requirements(
        PYPROJECT["project"]["dependencies"],
        PYPROJECT["build-system"]["requires"],
        *(PYPROJECT["project"]["optional-dependencies"][extra] for extra in lock.IMAGE_EXTRAS),
    ),
    ids=str,
)
def test_every_runtime_and_build_requirement_is_pinned_in_range(requirement: Requirement) -> None:
    pin = PINS.get(lock.normalize(requirement.name))
    assert pin is not None, f"{requirement} is not in the lock: run `make lock`"
    assert requirement.specifier.contains(pin.version, prereleases=True), (
        f"the lock pins {pin.name}=={pin.version}, outside {requirement}: run `make lock`"
    )


def test_the_image_carries_no_pyarrow() -> None:
    """Once pyarrow is installed, pandas 3 imports it with every `import pandas`: about 65 MB
    more in each model server, Parquet or not. Parquet is read with fastparquet instead; a new
    dependency that pulls pyarrow in must be a decision, not a side effect of `make lock`."""
    assert "pyarrow" not in PINS
    assert "fastparquet" in PINS


def test_every_pin_is_exact_and_hashed() -> None:
    assert len(PINS) > 20
    for pin in PINS.values():
        assert pin.hashes, f"{pin.name} has no --hash: pip --require-hashes would refuse it"
        assert all(len(h) == 64 for h in pin.hashes)


def test_the_lock_names_no_index_and_no_local_paths() -> None:
    # Index settings come from whoever builds (pip.conf), never from the repository.
    text = lock.LOCK.read_text()
    options = [line for line in text.splitlines() if line.startswith("-")]
    assert options == []
    assert "file://" not in text and " @ " not in text


def test_parse_lock_reads_pins_and_their_continued_hash_lines() -> None:
    text = (
        "# header\n"
        "Foo_Bar==1.2 \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via x\n"
        "baz==3 \\\n"
        "    --hash=sha256:" + "c" * 64 + "\n"
    )
    pins = lock.parse_lock(text)
    assert pins["foo-bar"] == lock.Pin("Foo_Bar", "1.2", ("a" * 64, "b" * 64))
    assert pins["baz"].hashes == ("c" * 64,)


def test_the_build_only_pins_are_locked_and_the_dockerfile_uninstalls_exactly_them() -> None:
    for name in lock.BUILD_ONLY:
        assert name in PINS, f"{name} is not in the lock: run `make lock`"
    dockerfile = (ROOT / "serving_image" / "Dockerfile").read_text()
    uninstall = re.search(r"pip uninstall --quiet --yes ([^\\\n]+)", dockerfile)
    assert uninstall is not None
    assert sorted(uninstall[1].split()) == sorted(lock.BUILD_ONLY)


def test_the_runtime_lock_is_the_lock_minus_the_build_only_pins() -> None:
    runtime = lock.parse_lock(lock.runtime_lock(lock.LOCK.read_text()))
    assert set(PINS) - set(runtime) == set(lock.BUILD_ONLY)
    assert all(runtime[name] == PINS[name] for name in runtime)
