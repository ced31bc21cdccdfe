"""Container images built on this machine, without Docker and without a container registry.

    python scripts/images.py base      # Python base: debootstrap of Debian bookworm, packed as OCI
    python scripts/images.py serving   # serving_image/Dockerfile built by buildah on that base
    python scripts/images.py print [--ref|--sbom]   # cached archive (name, SBOM); exit 1 if none

Both images are OCI archives under <cache>/images/, named by a hash of their inputs, so a second
run is a cache hit in well under a second. The serving archive has its CycloneDX SBOM beside it
(serving-<hash>.cdx.json), made from serving_image/requirements.lock (minus the build-only pins the
Dockerfile uninstalls), which the Dockerfile installs with --require-hashes. The serving image is
built from the Dockerfile itself (its PYTHON_IMAGE argument points at the local base, BUILD_IMAGE
at a second one that adds a C compiler and Python's headers for the native modules): there is no
second recipe. pip inside the build gets this host's index settings and CA bundle from a directory
bind-mounted over /root (pip reads ~/.config/pip/pip.conf). /root exists in every base, so the
mount creates no mountpoint and nothing of the host lands in any layer (a --volume onto a new path
such as /etc/pip.conf leaves an empty file behind in every stage that has a RUN step).

Needs root (debootstrap, buildah's chroot isolation) and Debian's debootstrap, umoci and buildah:
    apt-get install -y --no-install-recommends debootstrap umoci buildah
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from image_inputs import (
    debian_mirror,
    ignore_rules,
    inputs_hash,
    is_ignored,
    local_find_links,
    parse_pip_config,
    render_pip_conf,
)

ROOT: Final = Path(__file__).resolve().parent.parent
DOCKERFILE: Final = ROOT / "serving_image" / "Dockerfile"
IGNOREFILE: Final = ROOT / "serving_image" / "Dockerfile.dockerignore"
CACHE: Final = Path(
    os.environ.get("MODELDEPLOY_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"
)
IMAGES: Final = CACHE / "images"

# Bump when the way an image is made changes, so cached images are rebuilt.
BASE_RECIPE_VERSION: Final = "1"
SERVING_RECIPE_VERSION: Final = "3"
SUITE: Final = "bookworm"
# The Dockerfile runs `python -m venv` (python-is-python3, python3-venv) and groupadd/useradd
# (passwd).
BASE_PACKAGES: Final = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "passwd")
BASE_NAME: Final = "localhost/modeldeploy/python"


@dataclass(frozen=True)
class Base:
    """A debootstrapped Python base: the runtime stage's, or the build stage's."""

    tag: str
    packages: tuple[str, ...]


RUNTIME_BASE: Final = Base("3.11-bookworm", BASE_PACKAGES)
# The build stage also compiles the native modules (setup.py, mypyc): a C compiler, the headers.
BUILD_BASE: Final = Base("3.11-bookworm-build", (*BASE_PACKAGES, "gcc", "libc6-dev", "python3-dev"))
BASE_ENV: Final = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)
# Removed from the base after debootstrap: package indexes and caches, docs, man pages, locales.
SLIM_PATHS: Final = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/doc",
)
SERVING_NAME: Final = "localhost/modeldeploy/serving"
BUILD_HOME: Final = "/root"  # HOME of RUN steps (user root); present in every Debian base
HOST_CA_PATH: Final = f"{BUILD_HOME}/modeldeploy-host-ca.pem"


class ImageError(RuntimeError):
    """A clear, user-facing reason an image could not be built."""


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str | Path], logfile: Path) -> None:
    """Run a step, output appended to `logfile`; on failure, name the step and show the tail."""
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        result = subprocess.run(list(map(str, command)), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-25:])
        raise ImageError(f"{command[0]} failed (exit {result.returncode}); log: {logfile}\n{tail}")


def capture(command: Sequence[str | Path]) -> str:
    return subprocess.run(list(map(str, command)), capture_output=True, text=True).stdout


def require_tools() -> None:
    if os.geteuid() != 0:
        raise ImageError("building images needs root (debootstrap, buildah --isolation chroot)")
    missing = [tool for tool in ("debootstrap", "umoci", "buildah") if not shutil.which(tool)]
    if missing:
        raise ImageError(
            f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends "
            + " ".join(missing)
        )


@contextmanager
def locked() -> Iterator[None]:
    """One build at a time across worktrees: they share the cache."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    with (IMAGES / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def scratch() -> Iterator[Path]:
    """A work directory, removed afterwards; an interrupted debootstrap can leave /proc and /sys
    mounted in its target, so those are unmounted first and never walked into."""
    work = Path(tempfile.mkdtemp(dir=IMAGES, prefix="work-"))
    try:
        yield work
    finally:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{work}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], check=False)
        shutil.rmtree(work)


def apt_sources() -> list[str]:
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return [p.read_text() for p in paths if p.is_file() and p.suffix in {".list", ".sources"}]


def base_inputs(base: Base) -> list[tuple[str, bytes]]:
    """What the base is made of. The mirror is left out: any mirror serves the same suite."""
    recipe = [BASE_RECIPE_VERSION, SUITE, ",".join(base.packages), *BASE_ENV, *SLIM_PATHS]
    return [("base-recipe", "\n".join(recipe).encode())]


def base_key(base: Base) -> str:
    return inputs_hash(base_inputs(base))


def base_archive(base: Base) -> Path:
    return IMAGES / f"python-{base_key(base)}.tar"


def slim(rootfs: Path) -> None:
    """Drop what a runtime never reads, and the host's files debootstrap copied in."""
    for relative in SLIM_PATHS:
        directory = rootfs / relative
        keep = relative == "usr/share/doc"  # licences stay: usr/share/doc/<package>/copyright
        for child in directory.glob("*") if directory.is_dir() else []:
            if keep and (child / "copyright").is_file():
                for extra in child.iterdir():
                    if extra.name != "copyright":
                        _remove(extra)
            else:
                _remove(child)
    for relative in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / relative).unlink(missing_ok=True)
    # The image installs nothing with apt; an empty list keeps the host's mirror out of it.
    (rootfs / "etc/apt/sources.list").write_text("")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def pack_layout(rootfs: Path, layout: Path, ref: str, env: Sequence[str]) -> None:
    """An OCI image layout with `rootfs` as its one layer, tagged `ref`."""
    logfile = IMAGES / "logs" / "base.log"
    run(["umoci", "init", "--layout", layout], logfile)
    run(["umoci", "new", "--image", f"{layout}:{ref}"], logfile)
    run(["umoci", "insert", "--image", f"{layout}:{ref}", rootfs, "/"], logfile)
    config = [f"--config.env={item}" for item in env]
    run(["umoci", "config", "--image", f"{layout}:{ref}", *config, "--config.cmd=python3"], logfile)
    run(["umoci", "gc", "--layout", layout], logfile)


def tar_layout(layout: Path, archive: Path) -> None:
    """An OCI archive is the layout directory as a tar; written aside, then renamed."""
    partial = archive.with_suffix(".partial")
    subprocess.run(
        ["tar", "-C", layout, "-cf", partial, "oci-layout", "index.json", "blobs"], check=True
    )
    partial.rename(archive)


def build_base(base: Base) -> Path:
    archive = base_archive(base)
    if archive.exists():
        return archive
    require_tools()
    mirror = debian_mirror(apt_sources(), SUITE)
    if mirror is None:
        raise ImageError(f"apt has no `deb` source for {SUITE}; cannot debootstrap")
    (IMAGES / "logs").mkdir(parents=True, exist_ok=True)
    with scratch() as work:
        rootfs, started = work / "rootfs", time.monotonic()
        log(f"debootstrap {SUITE} ({', '.join(base.packages)}) ...")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(base.packages)}",
                SUITE,
                rootfs,
                mirror,
            ],
            IMAGES / "logs" / "base.log",
        )
        slim(rootfs)
        pack_layout(rootfs, work / "layout", f"{BASE_NAME}:{base.tag}", BASE_ENV)
        tar_layout(work / "layout", archive)
    log(f"base image {archive} ({time.monotonic() - started:.0f} s)")
    return archive


def serving_inputs() -> list[tuple[str, bytes]]:
    """Exactly what the builder sees: the context the dockerignore admits, the Dockerfile, the
    ignore file itself, the base it starts from and this recipe."""
    rules = ignore_rules(IGNOREFILE.read_text())
    entries = [
        ("@base", base_key(RUNTIME_BASE).encode()),
        ("@build-base", base_key(BUILD_BASE).encode()),
        ("@recipe", SERVING_RECIPE_VERSION.encode()),
        ("@dockerfile", DOCKERFILE.read_bytes()),
        ("@dockerignore", IGNOREFILE.read_bytes()),
    ]
    for directory, dirnames, filenames in os.walk(ROOT):
        relative_dir = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        # Skip ignored trees (.git, .venv) unless a `!` rule reaches inside them.
        dirnames[:] = [
            name
            for name in dirnames
            if not is_ignored(prefix + name, rules)
            or any(not r.exclude and r.text.startswith(prefix + name + "/") for r in rules)
        ]
        for name in filenames:
            path = prefix + name
            if not is_ignored(path, rules):
                full = Path(directory) / name
                data = os.readlink(full).encode() if full.is_symlink() else full.read_bytes()
                entries.append((path, data))
    return entries


def serving_tag(key: str) -> str:
    return key[:12]


def serving_key() -> str:
    return inputs_hash(serving_inputs())


def serving_archive(key: str) -> Path:
    return IMAGES / f"serving-{key}.tar"


def buildah(*args: str | Path) -> list[str | Path]:
    """buildah with its own storage in the cache (never the host's /var/lib/containers)."""
    store = CACHE / "buildah"
    return ["buildah", "--root", store / "root", "--runroot", store / "run", *args]


def ensure_base_in_store(base: Base, logfile: Path) -> str:
    """The base in buildah's store, named by its inputs hash so a new base is a new name."""
    archive = build_base(base)
    name = f"{BASE_NAME}:{base_key(base)[:12]}"
    if capture(buildah("images", "--quiet", name)).strip():
        return name
    pulled = capture(buildah("pull", "--quiet", f"oci-archive:{archive}:{BASE_NAME}:{base.tag}"))
    if not pulled.strip():
        raise ImageError(f"buildah could not read the base archive {archive}")
    run(buildah("tag", pulled.strip().splitlines()[-1], name), logfile)
    return name


def pip_build_settings(work: Path) -> list[str]:
    """The --volume flag giving pip in the build this host's settings, CA bundle and local wheel
    directories: a home directory made for the build, mounted over /root."""
    settings = parse_pip_config(capture([sys.executable, "-m", "pip", "config", "list"]))
    home = work / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    ca = (
        settings.get("cert")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
    )
    if ca and Path(ca).is_file():
        shutil.copyfile(ca, home / Path(HOST_CA_PATH).name)
    links = {}
    for number, directory in enumerate(local_find_links(settings)):
        if Path(directory).is_dir() and any(Path(directory).iterdir()):
            shutil.copytree(directory, home / f"find-links-{number}", copy_function=_link_or_copy)
            links[directory] = f"{BUILD_HOME}/find-links-{number}"
    ca_path = HOST_CA_PATH if (home / Path(HOST_CA_PATH).name).exists() else None
    (home / ".config" / "pip" / "pip.conf").write_text(render_pip_conf(settings, ca_path, links))
    return [f"--volume={home}:{BUILD_HOME}"]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def sbom_path(archive: Path) -> Path:
    return archive.with_suffix(".cdx.json")


def write_sbom(archive: Path, logfile: Path) -> Path:
    """The image's CycloneDX SBOM beside its archive: the project and every locked dependency
    the image keeps.

    From the lock rather than the built tree: `pip install --require-hashes` in the Dockerfile
    installs exactly the locked files and nothing else, and then uninstalls the build-only ones
    (lock.BUILD_ONLY), so the two agree by construction."""
    sbom = sbom_path(archive)
    if not sbom.exists():
        logfile.parent.mkdir(parents=True, exist_ok=True)
        partial = sbom.with_suffix(".partial")
        runtime = sbom.with_suffix(".lock")
        run([sys.executable, ROOT / "scripts" / "lock.py", f"--runtime-lock={runtime}"], logfile)
        run(
            [
                Path(sys.executable).parent / "cyclonedx-py",
                "requirements",
                f"--pyproject={ROOT / 'pyproject.toml'}",
                "--output-reproducible",
                f"--output-file={partial}",
                runtime,
            ],
            logfile,
        )
        runtime.unlink()
        partial.rename(sbom)
        log(f"SBOM {sbom}")
    return sbom


def build_serving() -> Path:
    key = serving_key()
    archive = serving_archive(key)
    logfile = IMAGES / "logs" / "serving.log"
    if archive.exists():
        write_sbom(archive, logfile)  # archives built before SBOMs existed get one too
        return archive
    require_tools()
    started = time.monotonic()
    with scratch() as work:
        base_name = ensure_base_in_store(RUNTIME_BASE, logfile)
        build_name = ensure_base_in_store(BUILD_BASE, logfile)
        name = f"{SERVING_NAME}:{serving_tag(key)}"
        log(f"buildah bud -f serving_image/Dockerfile (PYTHON_IMAGE={base_name}) ...")
        run(
            buildah(
                "bud",
                "--isolation=chroot",
                "--pull=never",
                f"--file={DOCKERFILE}",
                # buildah 1.28 does not read <Dockerfile>.dockerignore by itself.
                f"--ignorefile={IGNOREFILE}",
                f"--build-arg=PYTHON_IMAGE={base_name}",
                f"--build-arg=BUILD_IMAGE={build_name}",
                *pip_build_settings(work),
                f"--tag={name}",
                f"--tag={SERVING_NAME}:dev",
                ROOT,
            ),
            logfile,
        )
        # Both names in one layout (same blobs), so an import gets :<hash> and :dev.
        for ref in (name, f"{SERVING_NAME}:dev"):
            run(buildah("push", "--quiet", name, f"oci:{work / 'layout'}:{ref}"), logfile)
        tar_layout(work / "layout", archive)
        # The archive is the cache; keep the store small.
        run(buildah("rmi", name, f"{SERVING_NAME}:dev"), logfile)
    log(f"serving image {archive} ({time.monotonic() - started:.0f} s)")
    write_sbom(archive, logfile)
    return archive


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("base", help="build (or find) the Python base image")
    commands.add_parser("serving", help="build (or find) the serving image")
    show = commands.add_parser("print", help="path of the cached serving archive; exit 1 if none")
    show.add_argument("--ref", action="store_true", help="print the image name instead")
    show.add_argument("--sbom", action="store_true", help="print the SBOM's path instead")
    args = parser.parse_args(argv)
    try:
        if args.command == "print":
            key = serving_key()
            if not serving_archive(key).exists():
                log("no serving image for these sources; build it with `make image`")
                return 1
            archive = serving_archive(key)
            print(
                f"{SERVING_NAME}:{serving_tag(key)}"
                if args.ref
                else sbom_path(archive)
                if args.sbom
                else archive
            )
            return 0
        with locked():
            print(build_base(RUNTIME_BASE) if args.command == "base" else build_serving())
        return 0
    except ImageError as error:
        log(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
