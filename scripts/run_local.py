"""`make run`: the CRD, the operator (in the background) and the example ModelDeployment on the
local control plane, ending with `kubectl get md`.

    python scripts/run_local.py [--dir .cluster] [--example examples/iris-autoscaling.yaml]
    python scripts/run_local.py --stop
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from node_config import kwok_toleration_annotation

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    parser.add_argument("--example", type=Path, default=ROOT / "examples" / "iris-autoscaling.yaml")
    parser.add_argument("--stop", action="store_true", help="stop the operator started earlier")
    args = parser.parse_args()
    cluster_dir = args.dir.resolve()
    pid_file = cluster_dir / "pids" / "operator"
    kubectl = [
        str(cluster_dir / "bin" / "kubectl"),
        "--kubeconfig",
        str(cluster_dir / "kubeconfig"),
    ]

    if pid_file.exists():  # one operator at a time
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()
    if args.stop:
        print("operator stopped")
        return 0

    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        subprocess.run(
            [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crd)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # The sidecar's ClusterRole and the verdict admission policy, from the chart's own template
    # (release `modeldeploy`: the ClusterRole is the operator's default --monitor-cluster-role).
    helm = str(cluster_dir / "bin" / "helm")
    chart = str(ROOT / "charts" / "modeldeploy")
    rendered = subprocess.run(
        [helm, "template", "modeldeploy", chart, "--show-only", "templates/monitor.yaml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", "-"],
        input=rendered,
        check=True,
        stdout=subprocess.DEVNULL,
        text=True,
    )

    log = (cluster_dir / "logs" / "operator.log").open("ab")
    env = {**os.environ, "KUBECONFIG": str(cluster_dir / "kubeconfig")}
    operator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "modeldeploy-operator"),
            "--all-namespaces",
            "--allow-file-uris",  # local development: models may come from file:// paths
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    pid_file.write_text(str(operator.pid))
    print(f"operator running (pid {operator.pid}), log: {cluster_dir / 'logs' / 'operator.log'}")

    manifest = args.example.read_text()
    namespaces = {
        d["metadata"]["namespace"] for d in yaml.safe_load_all(manifest) if d and "metadata" in d
    }
    for ns in sorted(namespaces):
        # No serving image on the real node yet: the example's pods run on KWOK nodes.
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "annotations": kwok_toleration_annotation()},
        }
        subprocess.run(
            [*kubectl, "create", "-f", "-"],
            input=yaml.safe_dump(namespace),
            text=True,
            capture_output=True,
            check=False,
        )
    subprocess.run([*kubectl, "apply", "-f", str(args.example)], check=True)

    wanted = [
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in yaml.safe_load_all(manifest)
        if d and d.get("kind") == "ModelDeployment"
    ]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            print("error: the operator exited; see its log", file=sys.stderr)
            return 1
        phases = []
        for ns, name in wanted:
            out = subprocess.run(
                [*kubectl, "get", "md", name, "-n", ns, "-o", "jsonpath={.status.phase}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            phases.append(out)
        if all(p == "Stable" for p in phases):
            break
        time.sleep(0.5)
    else:
        print("warning: the example is not Stable after 90s", file=sys.stderr)
    subprocess.run([*kubectl, "get", "md", "-A"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
