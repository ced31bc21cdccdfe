"""The real monitor process against a stand-in /metrics endpoint and a recording API server.

The model server itself is tested elsewhere; here a prometheus-client registry with the same
metric names plays its part, and a small HTTP server plays the Kubernetes API (recording each
write, answering 503 on demand). The real control plane is in tests/integration.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.analysis import model_runtime
from modeldeploy.names import (
    API_VERSION,
    KIND,
    POD_COND_METRICS_HEALTHY,
    POD_COND_MODEL_READY,
    REASON_INSUFFICIENT_DATA,
    REASON_METRIC_BREACH,
    REASON_MODEL_LOADED,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving.monitor.health import SCRAPES
from modeldeploy_serving.monitor.verdict import REASON_SCRAPE_FAILED
from tests.helpers.monitor_proc import FakeModelMetrics, MonitorProcess, monitor_process
from tests.kube import wait_until
from tests.serving import models
from tests.serving.process import ServerProcess

NS, POD, MD = "ml", "iris-r2-abc", "iris"


@dataclass
class Write:
    method: str
    path: str
    content_type: str
    body: dict[str, Any]


@dataclass
class FakeApi:
    """Records PATCH/POST bodies; answers ``status`` (503 simulates an outage)."""

    port: int = 0
    status: int = 200
    writes: list[Write] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def conditions(self, type_: str = POD_COND_METRICS_HEALTHY) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c
                for w in self.writes
                if w.path.endswith(f"/pods/{POD}/status")
                for c in w.body["status"]["conditions"]
                if c["type"] == type_
            ]

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [w.body for w in self.writes if w.path.endswith("/events")]

    def last_condition(self) -> dict[str, Any] | None:
        conditions = self.conditions()
        return conditions[-1] if conditions else None


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _write(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if api.status >= 300:
                self._reply(api.status, {"kind": "Status", "message": "unavailable"})
                return
            with api.lock:
                api.writes.append(
                    Write(self.command, self.path, self.headers["Content-Type"], body)
                )
            if self.path.endswith("/status"):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD}}
                self._reply(200, pod)
            else:
                self._reply(201, body)

        do_PATCH = do_POST = _write

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(fake_api: FakeApi, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "f", "cluster": {"server": f"http://127.0.0.1:{fake_api.port}"}}
                ],
                "users": [{"name": "f", "user": {"token": "fake"}}],
                "contexts": [{"name": "f", "context": {"cluster": "f", "user": "f"}}],
                "current-context": "f",
            }
        )
    )
    return path


@pytest.fixture
def fake_metrics() -> Iterator[FakeModelMetrics]:
    with FakeModelMetrics() as metrics:
        yield metrics


@pytest.fixture
def monitor(
    fake_metrics: FakeModelMetrics, kubeconfig: Path, tmp_path: Path
) -> Iterator[MonitorProcess]:
    with monitor_process(
        metrics_url=fake_metrics.url,
        pod=POD,
        namespace=NS,
        deployment=MD,
        kubeconfig=kubeconfig,
        log_path=tmp_path / "monitor.log",
        flags={"max-error-rate": 0.1, "max-latency-p99-ms": 250},
    ) as proc:
        yield proc


def _condition(api: FakeApi, status: str, reason: str) -> dict[str, Any]:
    def written() -> dict[str, Any] | None:
        last = api.last_condition()
        return last if last and (last["status"], last["reason"]) == (status, reason) else None

    return dict(wait_until(written, timeout=30, what=f"condition {status}/{reason}"))


def _scrapes(monitor: MonitorProcess, result: str) -> float:
    match = re.search(rf'^{SCRAPES}_total{{result="{result}"}} (\S+)$', monitor.metrics(), re.M)
    return float(match.group(1)) if match else 0.0


def test_breach_is_written_on_the_pod_and_as_an_event(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    _condition(fake_api, "Unknown", REASON_INSUFFICIENT_DATA)
    fake_metrics.record(ok=40)
    healthy = _condition(fake_api, "True", REASON_WITHIN_THRESHOLDS)
    assert healthy["type"] == POD_COND_METRICS_HEALTHY
    assert "errorRate 0 <= 0.1" in healthy["message"]
    assert fake_api.events() == []

    fake_metrics.record(ok=10, model_errors=30)
    breach = _condition(fake_api, "False", REASON_METRIC_BREACH)
    assert re.match(r"errorRate 0\.\d+ > 0\.1 over 5s \(\d+ requests\)$", breach["message"])
    assert breach["lastTransitionTime"] >= healthy["lastTransitionTime"]
    patches = [w for w in fake_api.writes if w.method == "PATCH"]
    assert {w.content_type for w in patches} == {"application/strategic-merge-patch+json"}

    event = wait_until(fake_api.events, timeout=10, what="a MetricBreach event")[0]
    assert event["type"] == "Warning"
    assert event["reason"] == REASON_METRIC_BREACH
    assert event["involvedObject"]["kind"] == KIND
    assert event["involvedObject"]["apiVersion"] == API_VERSION
    assert event["involvedObject"]["name"] == MD
    assert event["metadata"]["name"].startswith(f"{MD}.")
    assert POD in event["message"] and "errorRate" in event["message"]


def test_slow_model_breaches_the_latency_threshold(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    fake_metrics.record(ok=40, latency_seconds=0.4)
    breach = _condition(fake_api, "False", REASON_METRIC_BREACH)
    assert re.match(r"latencyP99Ms \d+(\.\d+)? > 250 over 5s \(40 requests\)$", breach["message"])


def test_client_errors_never_count_as_model_errors(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    fake_metrics.record(ok=20, client_errors=500)
    verdict = monitor.wait_for_verdict("True", REASON_WITHIN_THRESHOLDS)
    assert "(20 requests)" in verdict["message"]
    assert _condition(fake_api, "True", REASON_WITHIN_THRESHOLDS)


def test_unchanged_verdict_is_written_once(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    fake_metrics.record(ok=40)
    _condition(fake_api, "True", REASON_WITHIN_THRESHOLDS)
    written = len(fake_api.conditions())
    seen = _scrapes(monitor, "ok")
    wait_until(lambda: _scrapes(monitor, "ok") >= seen + 10, timeout=30, what="10 more scrapes")
    assert len(fake_api.conditions()) == written
    assert monitor.stop() == 0  # SIGTERM is a clean stop


def test_survives_the_metrics_endpoint_going_away_and_a_server_restart(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    fake_metrics.record(ok=40)
    monitor.wait_for_verdict("True", REASON_WITHIN_THRESHOLDS)
    fake_metrics.stop()
    verdict = monitor.wait_for_verdict("Unknown", REASON_SCRAPE_FAILED)
    assert fake_metrics.url in verdict["message"]
    assert _condition(fake_api, "Unknown", REASON_SCRAPE_FAILED)
    assert monitor.alive() and _scrapes(monitor, "error") >= 3

    fake_metrics.restart()  # counters start again from zero
    fake_metrics.record(ok=30)
    verdict = monitor.wait_for_verdict("True", REASON_WITHIN_THRESHOLDS)
    # The reset is not a negative increase: 30 new requests, plus the 40 from before the restart
    # while they are still inside the window.
    assert re.search(r"\((30|70) requests\)$", verdict["message"])
    assert "cannot scrape" in monitor.log() and "again after" in monitor.log()


def test_keeps_judging_while_the_api_server_is_down(
    monitor: MonitorProcess, fake_metrics: FakeModelMetrics, fake_api: FakeApi
) -> None:
    fake_api.status = 503
    fake_metrics.record(ok=10, model_errors=30)
    monitor.wait_for_verdict("False", REASON_METRIC_BREACH)
    wait_until(lambda: (monitor.health() or {}).get("apiFailures", 0) >= 2, 30, "API retries")
    assert all(c["status"] != "False" for c in fake_api.conditions()) and monitor.alive()

    fake_api.status = 200
    _condition(fake_api, "False", REASON_METRIC_BREACH)
    wait_until(fake_api.events, timeout=30, what="the MetricBreach event after the outage")
    assert monitor.log().count("cannot write to the Kubernetes API") == 1


def test_bad_flags_exit_with_a_usage_error(tmp_path: Path) -> None:
    proc = MonitorProcess(
        metrics_url="http://127.0.0.1:1/metrics",
        pod=POD,
        namespace=NS,
        deployment=MD,
        kubeconfig=tmp_path / "missing",
        log_path=tmp_path / "monitor.log",
        flags={"max-error-rate": 2},
    )
    assert proc.proc.wait(timeout=30) == 2
    assert "max-error-rate" in proc.log()


def test_missing_credentials_exit_with_a_clear_message(tmp_path: Path) -> None:
    proc = MonitorProcess(
        metrics_url="http://127.0.0.1:1/metrics",
        pod=POD,
        namespace=NS,
        deployment=MD,
        kubeconfig=tmp_path / "missing",
        log_path=tmp_path / "monitor.log",
    )
    assert proc.proc.wait(timeout=30) == 2
    assert "no Kubernetes credentials" in proc.log()


def test_the_real_model_server_drives_the_verdict(
    tmp_path: Path,
    launch: Callable[..., ServerProcess],
    fake_api: FakeApi,
    kubeconfig: Path,
) -> None:
    """End to end on the real metric names: healthy traffic, a flood of 4xx, then model errors."""
    saved = models.train_failing(tmp_path, failure_rate=0.0, poison_value=99.0, name="poisoned")
    server = launch(saved, name="poisoned").wait_ready()
    rows = models.sample_rows(3).tolist()
    with monitor_process(
        metrics_url=f"http://127.0.0.1:{server.port}/metrics",
        pod=POD,
        namespace=NS,
        deployment=MD,
        kubeconfig=kubeconfig,
        log_path=tmp_path / "monitor.log",
        flags={"max-error-rate": 0.1, "window-seconds": 30},
    ) as monitor:
        for _ in range(10):
            assert server.infer(rows).status == 200
        monitor.wait_for_verdict("True", REASON_WITHIN_THRESHOLDS)

        for _ in range(40):  # wrong feature count: the client's fault
            assert 400 <= server.infer([[1.0, 2.0]]).status < 500
        seen = _scrapes(monitor, "ok")
        wait_until(lambda: _scrapes(monitor, "ok") >= seen + 3, timeout=30, what="3 more scrapes")
        verdict = monitor.wait_for_verdict("True", REASON_WITHIN_THRESHOLDS)
        assert verdict["message"].startswith("errorRate 0 <= 0.1")

        poisoned = [[99.0, *row[1:]] for row in rows]
        for _ in range(10):
            assert server.infer(poisoned).status >= 500
        breach = _condition(fake_api, "False", REASON_METRIC_BREACH)
        assert breach["message"] == "errorRate 0.5 > 0.1 over 30s (20 requests)"


# --- ModelReady: why the model server is not ready, on the pod -------------------------------


def _model_ready(api: FakeApi, server: ServerProcess, tmp_path: Path, kubeconfig: Path) -> Any:
    """Run the sidecar beside `server` until it writes a ModelReady condition; return them all."""
    with monitor_process(
        metrics_url=f"http://127.0.0.1:{server.port}/metrics",
        pod=POD,
        namespace=NS,
        deployment=MD,
        kubeconfig=kubeconfig,
        log_path=tmp_path / "monitor.log",
    ) as monitor:
        written = wait_until(
            lambda: api.conditions(POD_COND_MODEL_READY), timeout=30, what="ModelReady"
        )
        seen = _scrapes(monitor, "ok")
        wait_until(lambda: _scrapes(monitor, "ok") >= seen + 5, timeout=30, what="5 more scrapes")
        assert api.conditions(POD_COND_MODEL_READY) == written, "written once, not per scrape"
        return written


def test_a_loaded_model_names_its_runtime_in_model_ready(
    tmp_path: Path, launch: Callable[..., ServerProcess], fake_api: FakeApi, kubeconfig: Path
) -> None:
    """The operator shows each revision's runtime in status from this message."""
    saved = models.train_classifier(tmp_path)
    server = launch(saved).wait_ready()
    runtime = server.request("GET", "/v2/health/ready").json()["runtime"]
    assert runtime in names.RUNTIMES
    (condition,) = _model_ready(fake_api, server, tmp_path, kubeconfig)
    assert (condition["status"], condition["reason"]) == ("True", names.REASON_MODEL_LOADED)
    assert model_runtime(condition) == runtime


def test_a_wrong_sha256_is_written_as_model_ready_false(
    tmp_path: Path, launch: Callable[..., ServerProcess], fake_api: FakeApi, kubeconfig: Path
) -> None:
    saved = models.train_classifier(tmp_path)
    server = launch(saved, sha256="0" * 64)
    server.wait_for_log("model load failed")
    (condition,) = _model_ready(fake_api, server, tmp_path, kubeconfig)
    assert (condition["status"], condition["reason"]) == ("False", "Sha256Mismatch")
    assert "0" * 64 in condition["message"] and saved.sha256 in condition["message"]


def test_an_unloadable_artifact_is_written_as_model_ready_false(
    tmp_path: Path, launch: Callable[..., ServerProcess], fake_api: FakeApi, kubeconfig: Path
) -> None:
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"this is not a pickle")
    digest = hashlib.sha256(garbage.read_bytes()).hexdigest()
    saved = models.SavedModel(garbage, digest, "joblib", models.N_FEATURES, None)
    server = launch(saved)
    server.wait_for_log("model load failed")
    (condition,) = _model_ready(fake_api, server, tmp_path, kubeconfig)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidArtifact")
    assert condition["message"].startswith("model failed to load: InvalidArtifact: ")


def test_a_loaded_model_is_written_as_model_ready_true(
    tmp_path: Path, launch: Callable[..., ServerProcess], fake_api: FakeApi, kubeconfig: Path
) -> None:
    server = launch(models.train_classifier(tmp_path)).wait_ready()
    (condition,) = _model_ready(fake_api, server, tmp_path, kubeconfig)
    assert (condition["status"], condition["reason"]) == ("True", REASON_MODEL_LOADED)
