"""Run the real ``modeldeploy-monitor`` process in tests, and the pieces it needs around it.

- :class:`FakeModelMetrics`: a stand-in for the model server's /metrics (same metric names from
  ``metric_names``), driven by the test: record requests, errors, latency; stop; restart.
- :class:`MonitorProcess`: the sidecar as a subprocess, with helpers to read its /healthz and
  /metrics and to wait for a verdict.
- :func:`apply_sidecar_rbac` / :func:`token_kubeconfig`: the sidecar's ServiceAccount and
  RoleBinding exactly as the operator creates them (to the chart's monitor ClusterRole, which the
  session's cluster fixture installs: only ``patch pods/status``, ``create``/``patch events``),
  and a kubeconfig that authenticates as that ServiceAccount with a TokenRequest token bound to
  the pod, as the projected volume's is, so the process runs with its real permissions and the
  verdict admission policy lets it write its own pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from modeldeploy.builders import sidecar_rbac
from modeldeploy.names import DEFAULT_MONITOR_CLUSTER_ROLE, SIDECAR_SERVICE_ACCOUNT
from modeldeploy_serving import metric_names
from tests.kube import KubeCluster, free_port, wait_until

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Fast settings for tests: the contract's defaults are for production.
FAST_FLAGS: Mapping[str, object] = {
    "scrape-interval-seconds": 0.2,
    "window-seconds": 5,
    "min-requests": 5,
    "refresh-seconds": 60,
}


class FakeModelMetrics:
    """A /metrics endpoint that looks like the model server's. ``restart`` resets counters."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._fresh_registry()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def _fresh_registry(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            metric_names.REQUESTS, "requests", ["protocol", "status_class"], registry=r
        )
        self.model_errors = Counter(metric_names.MODEL_ERRORS, "model errors", registry=r)
        self.client_errors = Counter(
            metric_names.CLIENT_ERRORS, "client errors", ["reason"], registry=r
        )
        self.latency = Histogram(
            metric_names.REQUEST_LATENCY, "latency", buckets=LATENCY_BUCKETS, registry=r
        )

    def record(
        self,
        ok: int = 0,
        model_errors: int = 0,
        client_errors: int = 0,
        latency_seconds: float = 0.003,
        protocol: str = "v2",
    ) -> None:
        """``ok`` successes and ``model_errors`` 5xx (both timed), ``client_errors`` 4xx."""
        if ok:
            self.requests.labels(protocol, "2xx").inc(ok)
        if model_errors:
            self.requests.labels(protocol, "5xx").inc(model_errors)
            self.model_errors.inc(model_errors)
        if client_errors:
            self.requests.labels(protocol, "4xx").inc(client_errors)
            self.client_errors.labels("malformed").inc(client_errors)
        for _ in range(ok + model_errors):
            self.latency.observe(latency_seconds)

    def start(self) -> FakeModelMetrics:
        self._server, self._thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> None:
        """Like a model server restart: same port, every counter back to zero."""
        self.stop()
        self._fresh_registry()
        self.start()

    def __enter__(self) -> FakeModelMetrics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MonitorProcess:
    """``python -m modeldeploy_serving.monitor.main`` with its log in a file."""

    def __init__(
        self,
        *,
        metrics_url: str,
        pod: str,
        namespace: str,
        deployment: str,
        kubeconfig: Path,
        log_path: Path,
        flags: Mapping[str, object] | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        merged = {**FAST_FLAGS, **(flags or {})}
        self.args = [
            sys.executable,
            "-m",
            "modeldeploy_serving.monitor.main",
            f"--metrics-url={metrics_url}",
            f"--pod-name={pod}",
            f"--pod-namespace={namespace}",
            f"--deployment-name={deployment}",
            f"--kubeconfig={kubeconfig}",
            "--host=127.0.0.1",
            f"--port={self.port}",
            *(f"--{name}={value}" for name, value in merged.items()),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDEPLOY_MONITOR_")}
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any] | None:
        """The /healthz JSON, or None while the process does not answer."""
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:  # 503 still carries the details
            return dict(json.loads(exc.read()))
        except (OSError, ValueError):
            return None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())

    def wait_for_verdict(
        self, status: str, reason: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Poll /healthz until the current verdict matches; returns it."""

        def matches() -> dict[str, Any] | None:
            if not self.alive():
                raise AssertionError(f"monitor exited {self.proc.returncode}:\n{self.log()}")
            verdict = (self.health() or {}).get("verdict") or {}
            if verdict.get("status") == status and reason in (None, verdict.get("reason")):
                return dict(verdict)
            return None

        return dict(wait_until(matches, timeout=timeout, what=f"verdict {status}/{reason}"))

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the first verdict: from then on, new traffic lands inside the window."""

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"monitor exited {self.proc.returncode}:\n{self.log()}")
            return bool((self.health() or {}).get("verdict"))

        wait_until(ready, timeout=timeout, what="the monitor's first verdict")

    def stop(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return int(self.proc.returncode)


@contextmanager
def monitor_process(**kwargs: Any) -> Iterator[MonitorProcess]:
    """A ready :class:`MonitorProcess` (first verdict made), stopped afterwards."""
    monitor = MonitorProcess(**kwargs)
    try:
        monitor.wait_ready()
        yield monitor
    finally:
        monitor.stop()
        # pytest shows captured output only for failing tests: the log comes with the failure.
        print(f"--- monitor log ({monitor.log_path}) ---\n{monitor.log()}")


# --- Kubernetes: the sidecar's identity and permissions ----------------------------------------


def apply_sidecar_rbac(cluster: KubeCluster, namespace: str) -> None:
    """The sidecar's ServiceAccount and RoleBinding, from the operator's own builder."""
    for manifest in sidecar_rbac(namespace, DEFAULT_MONITOR_CLUSTER_ROLE):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def token_kubeconfig(
    cluster: KubeCluster,
    namespace: str,
    path: Path,
    account: str = SIDECAR_SERVICE_ACCOUNT,
    pod: Mapping[str, Any] | None = None,
) -> Path:
    """A kubeconfig for ``account`` with a TokenRequest token. Given ``pod`` (an object with its
    metadata), the token is bound to it, like the one its projected volume holds: the API server
    then knows which pod the caller is (user extra ``authentication.kubernetes.io/pod-name``)."""
    bound = []
    if pod is not None:
        meta = pod["metadata"]
        bound = ["--bound-object-kind=Pod", f"--bound-object-name={meta['name']}",
                 f"--bound-object-uid={meta['uid']}"]  # fmt: skip
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h", *bound)
    admin = json.loads(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
    )
    server = dict(admin["clusters"][0]["cluster"])
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": server}],
        "users": [{"name": account, "user": {"token": token.stdout.strip()}}],
        "contexts": [
            {"name": "c", "context": {"cluster": "c", "user": account, "namespace": namespace}}
        ],
        "current-context": "c",
    }
    path.write_text(json.dumps(kubeconfig))
    return path
