"""Virtualenvs for the peers, created and installed by the benchmark itself under bench/.work.

MLServer gets its own venv (its dependency pins clash with ours). Its pins: uvloop<0.22, since
with uvloop 0.23 its inference worker dies and readiness stays 400 (SeldonIO/MLServer#2286);
the same scikit-learn and joblib as ours, so it loads the very same model file.

KServe (`kserve` from the package index; its sklearnserver is published only in its image, see
kserve_sklearn.py) gets its own venv too, with the same scikit-learn, joblib and numpy as ours.

The bare Starlette floor runs in a small overlay venv that sees our venv's packages (through a
.pth file) and adds only uvicorn and starlette.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

MLSERVER_VERSION = "1.7.1"
KSERVE_VERSION = "0.21.0"


def _venv(path: Path, requirements: list[str], *, overlay: bool = False) -> Path:
    python = path / "bin" / "python"
    stamp = path / ".installed"
    wanted = "\n".join(requirements) + ("\noverlay" if overlay else "")
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"[bench] creating {path} ({', '.join(requirements)})", flush=True)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    if overlay:
        site_packages = next(path.glob("lib/python*/site-packages"))
        (site_packages / "main-venv.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def mlserver_venv(work: Path) -> Path:
    """The venv's bin directory, with `mlserver` in it."""
    python = _venv(
        work / "venv-mlserver",
        [
            f"mlserver=={MLSERVER_VERSION}",
            f"mlserver-sklearn=={MLSERVER_VERSION}",
            "uvloop<0.22",
            f"scikit-learn=={version('scikit-learn')}",
            f"joblib=={version('joblib')}",
            f"numpy=={version('numpy')}",
        ],
    )
    return python.parent


def kserve_venv(work: Path) -> Path:
    """The venv's bin directory, whose python runs bench/serving/kserve_sklearn.py."""
    python = _venv(
        work / "venv-kserve",
        [
            f"kserve=={KSERVE_VERSION}",
            f"scikit-learn=={version('scikit-learn')}",
            f"joblib=={version('joblib')}",
            f"numpy=={version('numpy')}",
        ],
    )
    return python.parent


def asgi_python(work: Path) -> Path:
    return _venv(work / "venv-asgi", ["uvicorn[standard]", "starlette"], overlay=True)


def installed_versions(bin_dir: Path, packages: list[str]) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    output = subprocess.run(
        [str(bin_dir / "python"), "-c", script, *packages],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    import json

    return dict(json.loads(output))
