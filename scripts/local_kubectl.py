"""kubectl for a local cluster's state folder: <dir>/bin/kubectl with <dir>/kubeconfig (the
layout scripts/cluster.py writes). One runner for cluster.py, node.py and run_local.py."""

from __future__ import annotations

import subprocess
from pathlib import Path


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message names the command and kubectl's own error."""


def kubectl(
    cluster_dir: Path, *args: str, input: str | None = None, timeout: float | None = 60
) -> str:
    proc = subprocess.run(
        [
            str(cluster_dir / "bin" / "kubectl"),
            "--kubeconfig",
            str(cluster_dir / "kubeconfig"),
            *args,
        ],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout
