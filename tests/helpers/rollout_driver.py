"""Drive one ModelDeployment on KWOK from a test, and play its pods' monitoring sidecars.

KWOK pods run no containers, so no sidecar judges them. `ModelDeploymentDriver.report` writes
the verdict the real sidecar would write, through the API and in its exact shape: a
strategic-merge patch of the pod's `status` with condition `modeldeploy.io/MetricsHealthy`
(built by the sidecar's own `report.condition_patch` from a verdict the sidecar's own `evaluate`
computes from window numbers), plus the sidecar's Warning Event on a breach.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from kubernetes.client.exceptions import ApiException

from modeldeploy import names
from modeldeploy.status import state_from_status
from modeldeploy_serving.monitor.report import condition_patch, verdict_event
from modeldeploy_serving.monitor.verdict import OnNoData, Thresholds, Verdict, evaluate
from modeldeploy_serving.monitor.window import WindowStats
from tests.kube import KubeCluster

WINDOW_S = 5  # the CRD's minimum analysis window
MIN_REQUESTS = 5
MAX_ERROR_RATE = 0.1
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_versions = itertools.count(1)


class Rest:
    """Direct REST calls on the test cluster (kubectl costs a process per call; the polling
    loops here make hundreds)."""

    def __init__(self, cluster: KubeCluster) -> None:
        self._api = cluster.api()
        self._host = self._api.configuration.host

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            # The client's own call path (auth, TLS); kubernetes < 37 is pinned (see pyproject),
            # whose call_api takes the path first and raises on any non-2xx answer.
            resp = self._api.call_api(
                path,
                method,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
            )
            status, data = int(resp.status), resp.data
        except ApiException as err:
            status, data = int(err.status), err.body
        return status, json.loads(data) if data else None

    def get(self, path: str) -> Any:
        """The object at `path`, or None if there is none."""
        status, data = self.call("GET", path)
        if status == 404:
            return None
        if status >= 300:
            raise AssertionError(f"GET {path}: {status} {data}")
        return data


def sidecar_verdict(healthy: bool, requests: int = 20) -> Verdict:
    """What the sidecar concludes from one full window of `requests` requests."""
    stats = WindowStats(
        window_seconds=WINDOW_S,
        span_seconds=WINDOW_S,
        requests=requests,
        model_errors=0 if healthy else requests // 2,
        client_errors=0,
        buckets=(),
        resets=0,
    )
    thresholds = Thresholds(max_error_rate=MAX_ERROR_RATE)
    return evaluate(stats, thresholds, MIN_REQUESTS, OnNoData.HOLD, WINDOW_S)


def new_version() -> str:
    """A model version never used before in this session (so a new spec hash)."""
    return f"{next(_versions)}-{uuid.uuid4().hex[:4]}"


class ModelDeploymentDriver:
    """One ModelDeployment named `name` in `namespace`, and what a user would check on it."""

    def __init__(self, cluster: KubeCluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.rest = Rest(cluster)
        self._ns_path = f"/namespaces/{namespace}"

    # --- the ModelDeployment
    def manifest(
        self,
        version: str,
        steps: list[dict[str, Any]] | None = None,
        bake: str = "0s",
        min_replicas: int = 2,
    ) -> dict[str, Any]:
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "model": {
                    "name": self.name,
                    "version": version,
                    "uri": f"https://models.example.com/{self.name}/{version}.joblib",
                    "sha256": "ab" * 32,
                },
                "autoscaling": {"minReplicas": min_replicas, "maxReplicas": min_replicas + 2},
                "rollout": {
                    "steps": [{"weight": 50, "pause": "1h"}] if steps is None else steps,
                    "bakeTime": bake,
                },
                "rollback": {"historyLimit": 50},  # every revision Deployment stays
                "analysis": {
                    "window": f"{WINDOW_S}s",
                    "minRequests": MIN_REQUESTS,
                    "onNoData": "hold",
                    "thresholds": {"errorRate": MAX_ERROR_RATE},
                },
            },
        }

    def apply(self, version: str, **kwargs: Any) -> None:
        body = self.manifest(version, **kwargs)
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    def get(self) -> dict[str, Any]:
        md = self.rest.get(f"/apis/{names.API_VERSION}{self._ns_path}/{names.PLURAL}/{self.name}")
        assert md is not None, f"{self.namespace}/{self.name} is gone"
        return dict(md)

    def objects(self, group_version: str, plural: str, selector: str = "") -> list[dict[str, Any]]:
        root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        query = f"?{urlencode({'labelSelector': selector})}" if selector else ""
        items: list[dict[str, Any]] = self.rest.get(f"{root}{self._ns_path}/{plural}{query}")[
            "items"
        ]
        return items

    def child(self, group_version: str, plural: str, name: str) -> dict[str, Any] | None:
        root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        found: dict[str, Any] | None = self.rest.get(f"{root}{self._ns_path}/{plural}/{name}")
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.get().get("status") or {})

    def wait(
        self,
        what: str,
        check: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
        tick: Callable[[], object] | None = None,
    ) -> dict[str, Any]:
        """Poll until `check(status)` holds for the current generation; `tick` runs before each
        poll (to play sidecars, or to assert an invariant by raising)."""

        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if tick is not None:
                tick()
            md = self.get()
            status = md.get("status") or {}
            current = status.get("observedGeneration") == md["metadata"]["generation"]
            if current and check(status):
                return status
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {self.namespace}/{self.name}: {what}; "
            f"now {summary(status)}"
        )

    def deploy_proven(
        self, version: str | None = None, timeout: float = 60, **kwargs: Any
    ) -> dict[str, Any]:
        """A Stable first revision that has shown health (a valid rollback target)."""
        self.apply(version or new_version(), **kwargs)
        return self.wait(
            "first revision Stable and proven",
            lambda s: s.get("phase") == names.PHASE_STABLE and stable_proven(s),
            timeout=timeout,
            tick=lambda: self.report_all(None, healthy=True),
        )

    def start_canary(
        self, version: str | None = None, timeout: float = 60, **kwargs: Any
    ) -> dict[str, Any]:
        """Apply a new version and wait until its canary has all the pods its step needs."""
        before = state_from_status(self.status()).next_revision
        self.apply(version or new_version(), **kwargs)

        def ready(s: dict[str, Any]) -> bool:
            canary = s.get("canary") or {}
            if canary.get("revision") != before:
                return False
            return len(self.pods(before)) >= self.deployment_replicas(before) > 0

        return self.wait(f"canary r{before} with its pods ready", ready, timeout=timeout)

    # --- children
    def deployment_names(self) -> list[str]:
        items = self.objects("apps/v1", "deployments", self.selector())
        return sorted(d["metadata"]["name"] for d in items)

    def deployment_replicas(self, revision: int) -> int:
        """spec.replicas of the revision's Deployment (-1: there is none)."""
        found = self.child("apps/v1", "deployments", self.revision_name(revision))
        return -1 if found is None else int(found["spec"].get("replicas", 1))

    def service(self) -> dict[str, Any] | None:
        return self.child("v1", "services", names.service_name(self.name))

    def hpa(self) -> dict[str, Any] | None:
        return self.child("autoscaling/v2", "horizontalpodautoscalers", names.hpa_name(self.name))

    def service_pin(self) -> str | None:
        service = self.service()
        assert service is not None, "the Service is missing"
        pin = service["spec"]["selector"].get(names.LABEL_REVISION)
        return None if pin is None else str(pin)

    def hpa_target(self) -> str:
        hpa = self.hpa()
        assert hpa is not None, "the HPA is missing"
        return str(hpa["spec"]["scaleTargetRef"]["name"])

    def revision_name(self, revision: int) -> str:
        return names.revision_name(self.name, revision)

    def selector(self, revision: int | None = None) -> str:
        selector = f"{names.LABEL_NAME}={self.name}"
        return selector if revision is None else f"{selector},{names.LABEL_REVISION}={revision}"

    def pods(self, revision: int | None, ready_only: bool = True) -> list[dict[str, Any]]:
        items = self.objects("v1", "pods", self.selector(revision))
        pods = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return [p for p in pods if is_ready(p)] if ready_only else pods

    def events(self, reason: str) -> list[str]:
        selector = f"involvedObject.name={self.name},reason={reason}"
        query = urlencode({"fieldSelector": selector})
        items = self.rest.get(f"/api/v1{self._ns_path}/events?{query}")["items"]
        return [e["message"] for e in items]

    # --- playing the sidecar
    def report(self, pod: dict[str, Any], healthy: bool) -> bool:
        """Write `pod`'s MetricsHealthy verdict exactly as its sidecar would (False: the pod is
        gone already, e.g. removed by a rollback that an earlier pod's verdict caused)."""
        verdict = sidecar_verdict(healthy)
        now = datetime.now(UTC)
        body = condition_patch(verdict, now, now)
        pod_name = pod["metadata"]["name"]
        path = f"/api/v1{self._ns_path}/pods/{pod_name}/status"
        code, answer = self.rest.call("PATCH", path, body, STRATEGIC_MERGE)
        if code == 404:
            return False
        assert code == 200, f"patching {pod_name}'s status: {code} {answer}"
        if not healthy:
            md = self.get()
            event = verdict_event(
                deployment=self.name,
                deployment_uid=md["metadata"]["uid"],
                namespace=self.namespace,
                pod=pod_name,
                verdict=verdict,
                now=now,
                suffix=uuid.uuid4().hex[:10],
            )
            code, answer = self.rest.call("POST", f"/api/v1{self._ns_path}/events", event)
            assert code == 201, f"creating the sidecar's Event: {code} {answer}"
        return True

    def report_all(self, revision: int | None, healthy: bool) -> int:
        """Report on every Ready pod of `revision` (None: all) that has no verdict yet."""
        count = 0
        for pod in self.pods(revision):
            if metrics_condition(pod) is None and self.report(pod, healthy):
                count += 1
        return count


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def metrics_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == names.POD_COND_METRICS_HEALTHY), None)


def stable_proven(status: dict[str, Any]) -> bool:
    stable = state_from_status(status).stable
    return bool(stable and stable.proven)


def history(status: dict[str, Any], revision: int) -> list[tuple[str, str]]:
    entries = status.get("history", [])
    return [(h["outcome"], h["reason"]) for h in entries if h["revision"] == revision]


def summary(status: dict[str, Any]) -> str:
    """One line a user would read off `kubectl get md -o yaml`."""
    canary = status.get("canary") or {}
    stable = (status.get("stable") or {}).get("revision")
    where = f"canary r{canary.get('revision')} step {canary.get('step')}" if canary else "no canary"
    return f"{status.get('phase')}, stable r{stable}, {where}: {status.get('message')}"


def settle(seconds: float) -> None:
    """Let late writes land before checking that nothing else happens (not a timed assertion)."""
    time.sleep(seconds)
