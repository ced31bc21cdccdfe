"""Lint of the serving Dockerfile. The image it builds (`make image`) is run by tests/image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from modeldeploy_serving.config import FLAGS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "serving_image" / "Dockerfile"
IGNORE = ROOT / "serving_image" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(text.split(" ", 1)[0].upper(), text.split(" ", 1)[1]) for text in logical]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def base_images() -> list[str]:
    defaults = dict(
        re.fullmatch(r"(\w+)=(\S+)", args).groups()  # type: ignore[union-attr]
        for name, args in instructions()
        if name == "ARG" and "=" in args
    )
    images = []
    for name, args in instructions():
        if name == "FROM":
            image = args.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image))
    return images


def test_base_images_are_python_pinned_by_full_version_and_the_runtime_is_slim() -> None:
    build, *_, runtime = base_images()
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", runtime), runtime
    # The build stage compiles (a C compiler, the headers): the same Python, not slimmed.
    assert build == runtime.replace("-slim", ""), (build, runtime)


def test_the_request_path_is_compiled_and_the_compiler_stays_in_the_build_stage() -> None:
    build = stages()[0]
    project = [args for name, args in build if name == "RUN" and "--no-index ." in args]
    assert len(project) == 1 and project[0].startswith("MODELDEPLOY_NATIVE=1 "), project
    assert "pip uninstall --quiet --yes mypy " in project[0]
    assert project[0].index("pip uninstall") < project[0].index("pip check")


def test_multi_stage_and_the_runtime_stage_installs_nothing_that_compiles() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    runtime = all_stages[-1]
    assert any(name == "COPY" and args.startswith("--from=") for name, args in runtime)
    for name, args in runtime:
        if name == "RUN":
            assert not re.search(r"apt-get|apk|gcc|g\+\+|build-essential|pip install", args), args


def test_runs_as_a_numeric_non_root_user() -> None:
    runtime = stages()[-1]
    users = [args for name, args in runtime if name == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]
    names = [name for name, _ in runtime]
    assert names.index("USER") < names.index("ENTRYPOINT")


def test_no_remote_add_and_no_latest_tags() -> None:
    for name, args in instructions():
        assert name != "ADD" or not re.search(r"https?://|git@", args), args
        assert ":latest" not in args


def test_read_only_root_filesystem_friendly() -> None:
    env = " ".join(args for name, args in stages()[-1] if name == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env


def test_entrypoints_and_port_match_the_project() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"modeldeploy-server", "modeldeploy-monitor"} <= set(scripts)
    entrypoint = [args for name, args in instructions() if name == "ENTRYPOINT"][-1]
    assert entrypoint == '["modeldeploy-server"]'
    default_port = next(flag.default for flag in FLAGS if flag.name == "port")
    assert ("EXPOSE", str(default_port)) in stages()[-1]


@pytest.mark.parametrize(
    "source", ["pyproject.toml", "setup.py", "README.md", "operator/", "serving_image/"]
)
def test_build_context_allow_list_covers_what_is_copied(source: str) -> None:
    allowed = IGNORE.read_text().splitlines()
    assert "*" in allowed
    assert f"!{source}" in allowed
    copied = " ".join(args for name, args in instructions() if name == "COPY")
    assert source.rstrip("/") in copied


def test_dependencies_install_only_from_the_hash_locked_set() -> None:
    build = stages()[0]
    installs = [args for name, args in build if name == "RUN" and "pip install" in args]
    assert installs, "the build stage installs the project"
    locked = [a for a in installs if "--require-hashes" in a]
    assert len(locked) == 1 and "--requirement serving_image/requirements.lock" in locked[0]
    assert "--only-binary=:all:" in locked[0]
    for args in installs:
        if args not in locked:  # the project itself: nothing more may be fetched
            assert all(f in args for f in ("--no-deps", "--no-build-isolation", "--no-index"))
    assert any("pip check" in args for name, args in build if name == "RUN")
