"""What the operator tells the outside world: per-object gauges and the notification webhook.

A real operator process with `--notify-url` pointing at a receiver in this test that refuses
its first post (so the retry is exercised), KWOK pods running the real server and sidecar
processes, one promotion and one automatic rollback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import LoadGenerator, PodRuntime
from tests.integration.test_rollback_e2e import MD, apply, spec_for, wait_md, wait_phase
from tests.kube import KubeCluster, wait_until
from tests.serving.models import train_classifier, train_failing, train_forest

pytestmark = pytest.mark.kwok

PREFIX = "mdhook"
INFO = "modeldeploy_modeldeployment_info"
WEIGHT = "modeldeploy_canary_weight"
PHASES = "modeldeploy_modeldeployments"


class Receiver:
    """An HTTP endpoint that answers 503 to its first `refuse_first` posts, then 204."""

    def __init__(self, refuse_first: int = 1) -> None:
        self.posts: list[dict[str, Any]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.refused < refuse_first:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.posts.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()

    def events(self) -> list[str]:
        return [p["event"] for p in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(refuse_first=1) as r:
        yield r


@pytest.fixture
def notifying_operator(cluster: KubeCluster, receiver: Receiver) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        cluster,
        namespaces=[f"{PREFIX}-*"],
        allow_file_uris=True,
        extra_env={names.ENV_NOTIFY_URL: receiver.url},
        name="notify",
    )
    proc.start()
    try:
        yield proc
    finally:
        print(f"--- operator log ---\n{proc.log_tail(60)}")
        proc.stop()


def test_webhook_and_per_object_gauges_follow_a_promotion_and_a_rollback(
    cluster: KubeCluster, notifying_operator: OperatorProcess, receiver: Receiver, tmp_path: Path
) -> None:
    op = notifying_operator
    with (
        cluster.fresh_namespace(prefix=PREFIX) as ns,
        PodRuntime(cluster, ns, MD, tmp_path / "pods") as pods,
        LoadGenerator(pods.service_endpoints, rate=20, max_seconds=150),
    ):
        steps = [{"weight": 30, "pause": "3s"}]
        apply(cluster, ns, spec_for(train_classifier(tmp_path), "1", steps=steps))
        wait_phase(cluster, ns, names.PHASE_STABLE)
        ours = {"namespace": ns, "name": MD}
        first = {**ours, "stable_revision": "1", "canary_revision": ""}
        # Published right after the reconcile that wrote the status, so it may trail it a bit.
        wait_until(lambda: op.metric(INFO, first) == 1, 10, "info shows r1")
        assert op.metric(WEIGHT, ours) == 0
        assert op.metric(PHASES, {"phase": names.PHASE_STABLE}) == 1  # this operator's only one
        assert receiver.events() == []  # a first deploy is neither a promotion nor a rollback

        apply(cluster, ns, spec_for(train_forest(tmp_path), "2", steps=steps))
        wait_md(cluster, ns, "r2 at 30%", lambda md: md["status"].get("canaryWeight") == "30%")
        canary = {**ours, "stable_revision": "1", "canary_revision": "2"}
        wait_until(lambda: op.metric(INFO, canary) == 1, 10, "info shows the canary")
        assert op.metric(WEIGHT, ours) == 30
        assert op.metric(INFO, {**ours, "canary_revision": ""}) == 0  # the old series is gone
        wait_until(lambda: "Promoted" in receiver.events(), 180, "a Promoted notice")
        promoted = receiver.posts[receiver.events().index("Promoted")]
        assert (promoted["namespace"], promoted["name"]) == (ns, MD)
        assert promoted["stableRevision"] == 2 and "r2" in promoted["message"]
        assert receiver.refused == 1  # the first post was refused and retried

        apply(cluster, ns, spec_for(train_failing(tmp_path, failure_rate=1.0), "3", steps=steps))
        wait_phase(cluster, ns, names.PHASE_ROLLED_BACK)
        wait_until(lambda: "RolledBack" in receiver.events(), 60, "a RolledBack notice")
        rolled = receiver.posts[receiver.events().index("RolledBack")]
        assert rolled["stableRevision"] == 2 and rolled["canaryRevision"] is None
        phase = {**ours, "phase": names.PHASE_ROLLED_BACK, "stable_revision": "2"}
        wait_until(lambda: op.metric(INFO, phase) == 1, 10, "info shows RolledBack")
        assert op.metric(PHASES, {"phase": names.PHASE_ROLLED_BACK}) == 1
        assert op.metric(PHASES, {"phase": names.PHASE_STABLE}) == 0
        assert op.metric(WEIGHT, ours) == 0

        cluster.kubectl("delete", "md", MD, "-n", ns)
        wait_until(lambda: op.metric(INFO, ours) == 0, 30, "the series leave with the object")
        assert op.metric(PHASES) == 0
    assert receiver.events().count("Promoted") == 1
