"""`make run`: the CRD, the operator (in the background) and an example ModelDeployment on the
local cluster, ending with `kubectl get md`.

With the cluster's real node (the default where the machine allows one), the example is a real
model: three iris classifiers are trained and served to the node over HTTP, version 1 is
applied with its real sha256, and the run ends with a prediction fetched through the Service.

    python scripts/run_local.py [--dir .cluster]            # version 1, then a prediction
    python scripts/run_local.py --version 2 [--traffic 180] # a canary, under light traffic
    python scripts/run_local.py --stop

Without a real node the KWOK example (examples/iris-autoscaling.yaml) is applied as before: its
pods turn Ready without running, so nothing answers predictions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

import example_models
import local_kubectl

ROOT = Path(__file__).resolve().parent.parent
REAL_NODE_LABEL = "modeldeploy.io/real-node=true"
LOCAL_EXAMPLE = ROOT / "examples" / "iris-local.yaml"
KWOK_EXAMPLE = ROOT / "examples" / "iris-autoscaling.yaml"
STORE_PORT = example_models.DEFAULT_PORT
FLOWERS = example_models.SAMPLE_ROWS


class Kubectl:
    def __init__(self, cluster_dir: Path) -> None:
        self.dir = cluster_dir

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        try:
            return local_kubectl.kubectl(self.dir, *args, input=input)
        except local_kubectl.KubectlError as err:
            if check:
                raise SystemExit(f"error: {err}") from None
            return ""

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    parser.add_argument("--version", choices=example_models.VERSIONS, help="apply this version")
    parser.add_argument(
        "--traffic",
        type=float,
        default=180,
        metavar="SECONDS",
        help="with --version: send light traffic through the Service and follow the rollout "
        "for at most this long (a canary is judged on real requests)",
    )
    parser.add_argument("--stop", action="store_true", help="stop the operator started earlier")
    args = parser.parse_args()
    cluster_dir = args.dir.resolve()
    kubectl = Kubectl(cluster_dir)
    if args.stop:
        stop_operator(cluster_dir)
        example_models.stop(cluster_dir / "models")
        print("operator and model store stopped")
        return 0

    node_ip = real_node_ip(kubectl)
    if args.version and node_ip is None:
        raise SystemExit("error: --version needs the real node (see `make cluster-status`)")
    if args.version:
        apply_version(kubectl, cluster_dir, node_ip or "", args.version)
        return follow(kubectl, args.version, args.traffic)

    install_cluster_objects(kubectl, cluster_dir)
    image = serving_image() if node_ip else None
    start_operator(cluster_dir, image)
    if node_ip is None:
        print(
            "warning: no real node (see `make cluster-status`): applying the KWOK example, "
            "whose pods are Ready without running",
            file=sys.stderr,
        )
        kubectl("create", "namespace", "ml", check=False)
        print(kubectl("apply", "-f", str(KWOK_EXAMPLE)), end="")
        wait_phase(kubectl, "Stable", None, 90)
        print(kubectl("get", "md", "-A"), end="")
        return 0

    apply_version(kubectl, cluster_dir, node_ip, "1")
    if not wait_phase(kubectl, "Stable", "1", 180):
        print(kubectl("describe", "md", "iris", "-n", "ml"), file=sys.stderr)
        return 1
    print(kubectl("get", "md", "-A"), end="")
    url = service_url(kubectl)
    answer = predict(url)
    print(f"\n$ curl -s -X POST {url} -d '<three flowers>'")
    print(json.dumps(answer["outputs"][0]) + f"  (model_version {answer.get('model_version')})")
    print(
        "\nA canary that is promoted, and one that is rolled back by itself:\n"
        "  make run V=2    # a better model: 50% for 20s, a 20s bake, then it serves alone\n"
        "  make run V=3    # fails on every real flower: rolled back within seconds\n"
        "  kubectl modeldeploy watch iris -n ml    # follow either from another terminal"
    )
    return 0


# --- the cluster side -----------------------------------------------------------------------


def real_node_ip(kubectl: Kubectl) -> str | None:
    nodes = kubectl.json("nodes", "-l", REAL_NODE_LABEL)["items"]
    for node in nodes:
        for address in node["status"].get("addresses", []):
            if address["type"] == "InternalIP":
                return str(address["address"])
    return None


def install_cluster_objects(kubectl: Kubectl, cluster_dir: Path) -> None:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "crd", "--all")
    # The sidecar's ClusterRole and the verdict admission policy, from the chart's own template
    # (release `modeldeploy`: the ClusterRole is the operator's default --monitor-cluster-role).
    rendered = subprocess.run(
        [
            str(cluster_dir / "bin" / "helm"),
            "template",
            "modeldeploy",
            str(ROOT / "charts" / "modeldeploy"),
            "--show-only",
            "templates/monitor.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered)


def serving_image() -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "images.py"), "print", "--ref"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: the serving image is not built: {done.stderr.strip()}")
    return done.stdout.strip()


def start_operator(cluster_dir: Path, image: str | None) -> None:
    stop_operator(cluster_dir)
    log_path = cluster_dir / "logs" / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(cluster_dir / "kubeconfig")}
    command = [
        str(Path(sys.executable).parent / "modeldeploy-operator"),
        "--all-namespaces",
        "--metrics-port=0",
        "--health-port=0",
    ]
    if image:
        command.append(f"--serving-image={image}")
    else:
        command.append("--allow-file-uris")  # local development: models from file:// paths
    with log_path.open("ab") as log:
        operator = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    (cluster_dir / "pids" / "operator").write_text(str(operator.pid))
    print(f"operator running (pid {operator.pid}), log: {log_path}")


def stop_operator(cluster_dir: Path) -> None:
    pid_file = cluster_dir / "pids" / "operator"
    if pid_file.exists():  # one operator at a time
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def apply_version(kubectl: Kubectl, cluster_dir: Path, node_ip: str, version: str) -> None:
    store = cluster_dir / "models"
    store.mkdir(parents=True, exist_ok=True)
    digests = example_models.train(store)
    example_models.serve(store, node_ip, STORE_PORT)
    manifest = yaml.safe_load(LOCAL_EXAMPLE.read_text())
    manifest["spec"]["model"].update(
        version=version,
        uri=example_models.uri(node_ip, version, STORE_PORT),
        sha256=digests[version],
    )
    kubectl("create", "namespace", manifest["metadata"]["namespace"], check=False)
    print(kubectl("apply", "-f", "-", input=json.dumps(manifest)), end="")


def status(kubectl: Kubectl) -> dict[str, Any]:
    md = kubectl.json("md", "iris", "-n", "ml")
    return dict(md.get("status") or {})


def wait_phase(kubectl: Kubectl, phase: str, version: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = status(kubectl)
        stable = (now.get("stable") or {}).get("modelVersion")
        if now.get("phase") == phase and (version is None or stable == version):
            return True
        time.sleep(1)
    print(f"warning: not {phase} after {timeout:.0f}s", file=sys.stderr)
    return False


def service_url(kubectl: Kubectl) -> str:
    service = kubectl.json("service", "iris", "-n", "ml")
    return f"http://{service['spec']['clusterIP']}/v2/models/iris/infer"


def predict(url: str) -> dict[str, Any]:
    rows = [v for row in FLOWERS for v in row]
    body = {"inputs": [{"name": "x", "shape": [len(FLOWERS), 4], "datatype": "FP64", "data": rows}]}
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


def follow(kubectl: Kubectl, version: str, seconds: float) -> int:
    """Light traffic through the Service while printing each change of the rollout, until the
    version is Stable or rolled back."""
    url = service_url(kubectl)
    deadline = time.monotonic() + seconds
    last = ""
    answered: dict[str, int] = {}
    while time.monotonic() < deadline:
        for _ in range(10):
            try:
                served = predict(url).get("model_version", "?")
            except OSError as err:  # HTTPError included: a failing canary answers 500
                served = f"error {getattr(err, 'code', type(err).__name__)}"
            answered[served] = answered.get(served, 0) + 1
            time.sleep(0.05)
        now = status(kubectl)
        line = f"{now.get('phase')}: {now.get('message', '')}"
        if line != last:
            print(f"{time.strftime('%H:%M:%S')}  {line}")
            last = line
        stable = (now.get("stable") or {}).get("modelVersion")
        if now.get("phase") == "Stable" and stable == version:
            break
        if now.get("phase") == "RolledBack":
            break
    print(f"answers by model version: {answered}")
    print(kubectl("get", "md", "-A"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
