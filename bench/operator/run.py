"""`make bench-operator`: how fast the operator turns ModelDeployments into running objects.

1. Sequential: N ModelDeployments applied one at a time; for each, the time from the create
   call to its Deployment, Service and HPA all existing, and to status.phase == Stable (KWOK makes
   the pods Ready). p50/p99 reported.
2. Burst: M ModelDeployments created at once; time until all are Stable, the operator's peak RSS,
   and the API requests the operator made per ModelDeployment.

Times come from watch events seen by this process (no polling). The control plane runs on the
same 2 cores, so the burst also reports how busy the apiserver was, to tell which side limits.
Results: bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.operator_proc import OperatorProcess  # noqa: E402
from tests.kube import BACKENDS, KubeCluster, wait_until  # noqa: E402

SHA = "0" * 64


def md(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": name,
                "version": "1",
                "uri": f"https://models.example/{name}.joblib",
                "sha256": SHA,
            },
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        },
    }


class Watcher:
    """Records when each ModelDeployment's children appear and when it turns Stable."""

    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[str]] = []
        for resource in ("deployments", "services", "hpa", "modeldeployments"):
            proc = subprocess.Popen(
                [
                    str(cluster.bin_dir / "kubectl"),
                    "get",
                    resource,
                    "-n",
                    namespace,
                    "--watch",
                    "-o",
                    "json",
                    "--output-watch-events",
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=cluster.env,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(resource, proc), daemon=True).start()

    def _read(self, resource: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in proc.stdout:
            buf += line
            try:
                event, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                continue
            buf = buf.lstrip()[end:]
            now = time.monotonic()
            obj = event.get("object", {})
            meta = obj.get("metadata", {})
            owner = meta.get("labels", {}).get("modeldeploy.io/name") or meta.get("name")
            if resource == "modeldeployments":
                if obj.get("status", {}).get("phase") != "Stable":
                    continue
                key = (owner, "stable")
            else:
                key = (owner, resource)
            with self.lock:
                self.seen.setdefault(key, now)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    args = parser.parse_args()

    with BACKENDS["local"]() as cluster:
        cluster.apply_crds()
        ns_seq, ns_burst = "bench-seq", "bench-burst"
        for ns in (ns_seq, ns_burst):
            cluster.kubectl(
                "delete", "namespace", ns, "--ignore-not-found", "--wait=true", timeout=180
            )
            cluster.kubectl("create", "namespace", ns)
        operator = OperatorProcess(cluster, namespaces=["bench-*"])
        operator.start()
        try:
            api = cluster.api()
            from kubernetes import client

            objects = client.CustomObjectsApi(api)

            def create(ns: str, name: str) -> None:
                objects.create_namespaced_custom_object(
                    "modeldeploy.io", "v1alpha1", ns, "modeldeployments", md(name, ns)
                )

            # 1. sequential
            watcher = Watcher(cluster, ns_seq)
            time.sleep(1)
            children, stable = [], []
            for i in range(args.sequential):
                name = f"seq-{i}"
                t0 = time.monotonic()
                create(ns_seq, name)
                wait_until(
                    lambda n=name: (n, "stable") in watcher.seen,
                    60,
                    f"{name} Stable",
                    interval=0.005,
                )
                kids = [watcher.seen[(name, r)] for r in ("deployments", "services", "hpa")]
                children.append(max(kids) - t0)
                stable.append(watcher.seen[(name, "stable")] - t0)
            watcher.stop()

            # 2. burst
            watcher = Watcher(cluster, ns_burst)
            time.sleep(1)
            requests_before = operator.metric("modeldeploy_api_requests_total")
            assert operator.proc is not None
            cpu_before = cpu_seconds(operator.proc.pid)
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=create, args=(ns_burst, f"burst-{i}"))
                for i in range(args.burst)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            created = time.monotonic() - t0
            wait_until(
                lambda: sum(1 for k in watcher.seen if k[1] == "stable") >= args.burst,
                600,
                f"{args.burst} Stable",
                interval=0.05,
            )
            all_stable = max(v for k, v in watcher.seen.items() if k[1] == "stable") - t0
            watcher.stop()
            time.sleep(3)  # let trailing status writes land before counting
            requests = operator.metric("modeldeploy_api_requests_total") - requests_before
            rss, peak = rss_mb(operator.proc.pid)
            cpu = cpu_seconds(operator.proc.pid) - cpu_before
        finally:
            operator.stop()

    result = {
        "sequential": {
            "count": args.sequential,
            "apply_to_children_s": {
                "p50": statistics.median(children),
                "p99": percentile(children, 0.99),
            },
            "apply_to_stable_s": {
                "p50": statistics.median(stable),
                "p99": percentile(stable, 0.99),
            },
        },
        "burst": {
            "count": args.burst,
            "create_calls_s": created,
            "all_stable_s": all_stable,
            "operator_rss_mb": rss,
            "operator_peak_rss_mb": peak,
            "operator_cpu_s": cpu,
            "api_requests_per_modeldeployment": requests / args.burst,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
