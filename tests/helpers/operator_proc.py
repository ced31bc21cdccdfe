"""Run the real operator (`modeldeploy-operator`) as a process against a test cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.kube import ROOT, KubeCluster, free_port, wait_until


class OperatorProcess:
    """One operator process; `restart()` kills it hard (SIGKILL) and starts a new one.

    Leader election is on, as in production. Without `lease_id` every start gets a Lease of its
    own (so a restart never waits for the killed process's Lease to expire); with one, the
    processes given the same id compete for it."""

    def __init__(
        self,
        cluster: KubeCluster,
        namespaces: list[str],
        kubeconfig: Path | None = None,
        extra_env: dict[str, str] | None = None,
        lease_id: str | None = None,
        lease_namespace: str = "default",
        name: str = "",
        allow_file_uris: bool = False,
        leader_election: bool = True,
    ) -> None:
        self.cluster = cluster
        self.leader_election = leader_election  # off only for builds that predate it
        self.allow_file_uris = allow_file_uris
        self.namespaces = namespaces
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.env = {**cluster.env, "KUBECONFIG": str(self.kubeconfig), **(extra_env or {})}
        self.fixed_lease_id = lease_id
        self.lease_id = ""
        self.lease_namespace = lease_namespace
        suffix = f"-{name}" if name else ""
        self.log_path = ROOT / ".cluster" / "logs" / f"operator-test-{os.getpid()}{suffix}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.lease_id = self.fixed_lease_id or f"modeldeploy-test-{uuid.uuid4().hex[:8]}"
        scope = [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "modeldeploy-operator"),
                *scope,
                f"--kubeconfig={self.kubeconfig}",
                f"--metrics-port={self.metrics_port}",
                f"--health-port={self.health_port}",
                *(
                    [
                        f"--leader-election-id={self.lease_id}",
                        f"--leader-election-namespace={self.lease_namespace}",
                    ]
                    if self.leader_election
                    else []
                ),
                *(["--allow-file-uris"] if self.allow_file_uris else []),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, timeout=60, what="the operator's /healthz", interval=0.2)

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def restart(self) -> None:
        self.stop(signal.SIGKILL)
        self.start()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of one sample name (e.g. 'modeldeploy_api_requests_total') matching `labels`."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in (labels or {}).items()
                ):
                    total += sample.value
        return total

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_stopped(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
