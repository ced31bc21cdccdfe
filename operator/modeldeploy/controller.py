"""The reconcile loop: gather what is observed, ask the pure core what to do, apply it.

Everything that decides lives elsewhere (spec, hashing, analysis, rollout, builders, status);
this module only moves data between them and the API, and keeps the bookkeeping that makes an
idle system cost nothing: a child is re-applied only when its desired form changed or someone
else changed it, and status is written only when it differs from what is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modeldeploy import metrics, names
from modeldeploy.diagnosis import Problem, deployment_problem, pod_problem
from modeldeploy.k8s import ApiError, Kube
from modeldeploy.reconcile import Reconciliation, plan
from modeldeploy.workqueue import Key, WorkQueue

log = logging.getLogger("modeldeploy.controller")

# Backoff for API trouble (conflicts, timeouts, 5xx): "not yet", never a hot loop.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _rv(obj: dict[str, Any]) -> int:
    value = obj.get("metadata", {}).get("resourceVersion", "0")
    return int(value) if str(value).isdigit() else 0


def _mark(obj: dict[str, Any]) -> str:
    """What changes when someone changes the object's desired state, and only then.

    `generation` moves on spec changes only, so a Deployment's status churn (ready counts) never
    triggers a re-apply; kinds without one (Service, HPA) are compared by their spec and labels.
    """
    meta = obj.get("metadata", {})
    if generation := meta.get("generation"):
        return f"g{generation}"
    return _digest([obj.get("spec"), meta.get("labels")])


class Controller:
    """Turns watch events into reconciles of the owning ModelDeployment."""

    def __init__(
        self, kube: Kube, default_image: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.kube = kube
        self.default_image = default_image
        self.clock = clock
        self.queue = WorkQueue(self.reconcile)
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._pod_signatures: dict[str, tuple[Any, ...]] = {}
        # (kind, namespace, name) -> (digest of what we applied, _mark of what it produced)
        self._applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._failures: dict[Key, int] = {}
        self._phases: dict[Key, str] = {}
        self._breach_seen: dict[tuple[str, str], datetime] = {}  # (namespace, pod) -> first seen
        self._child_problems: dict[tuple[str, str, str], Problem | None] = {}  # Deployments

    async def close(self) -> None:
        await self.queue.drain()
        await self.kube.close()

    # --- event intake (called by the kopf handlers) ------------------------------------------
    def on_modeldeployment(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._phases.pop(key, None)
            self._update_phase_gauge()
            self.queue.forget(key)
            return
        self._remember(key, body)
        self.queue.trigger(key)

    def on_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        owner = meta.get("labels", {}).get(names.LABEL_NAME)
        if not owner:
            return
        uid = meta["uid"]
        if event_type == "DELETED":
            self._pod_signatures.pop(uid, None)
            self._breach_seen.pop((meta["namespace"], meta["name"]), None)
            self.queue.trigger((meta["namespace"], owner))
            return
        conditions = {
            c.get("type"): (c.get("status"), c.get("reason"))
            for c in body.get("status", {}).get("conditions", [])
            if c.get("type") in ("Ready", names.POD_COND_METRICS_HEALTHY)
        }
        breaching = conditions.get(names.POD_COND_METRICS_HEALTHY, (None,))[0] == "False"
        pod_key = (meta["namespace"], meta["name"])
        if breaching:
            # Second-resolution lastTransitionTime would inflate time-to-rollback; this is the
            # moment the operator learned of the breach.
            self._breach_seen.setdefault(pod_key, self.clock())
        else:
            self._breach_seen.pop(pod_key, None)
        signature = (
            meta.get("deletionTimestamp") is not None,
            sorted(conditions.items()),
            pod_problem(body),  # why it is not ready (image pull, scheduling, model load)
        )
        if self._pod_signatures.get(uid) == signature:
            return  # nothing the decision depends on changed
        self._pod_signatures[uid] = signature
        self.queue.trigger((meta["namespace"], owner))

    def on_child(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        owner = meta.get("labels", {}).get(names.LABEL_NAME)
        if not owner:
            return
        ident = (body.get("kind", ""), meta["namespace"], meta["name"])
        applied = self._applied.get(ident)
        if ident[0] == "Deployment" and event_type != "DELETED":
            # A status-only change that still matters: pods refused (FailedCreate), or no longer.
            problem = deployment_problem(body)
            if self._child_problems.get(ident) != problem:
                self._child_problems[ident] = problem
                self.queue.trigger((meta["namespace"], owner))
        elif event_type == "DELETED":
            self._child_problems.pop(ident, None)
        if event_type != "DELETED" and applied is not None and applied[1] == _mark(body):
            return  # our own write echoing back, or a status-only change
        # Deleted or changed by someone else (the HPA, a user): apply again on the next pass.
        self._applied.pop(ident, None)
        self.queue.trigger((meta["namespace"], owner))

    def _remember(self, key: Key, body: dict[str, Any]) -> None:
        known = self._bodies.get(key)
        if known is None or _rv(body) >= _rv(known):
            self._bodies[key] = body

    # --- the reconcile -------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        started = time.perf_counter()
        namespace, name = key
        try:
            body = self._bodies.get(key) or await self.kube.get("ModelDeployment", *key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None  # children go with their owner (garbage collection)
            observed = await self._observe(namespace, name)
            result = plan(body, observed, default_image=self.default_image, now=self.clock())
            await self._execute(key, body, result)
        except ApiError as err:
            metrics.RECONCILES.labels("error").inc()
            if err.status == 403 and "being terminated" in err.message:
                return None  # the namespace is going away, and the ModelDeployment with it
            if err.not_found and await self.kube.get("ModelDeployment", *key) is None:
                self._bodies.pop(key, None)
                return None  # deleted while we worked
            delay = self._backoff(key)
            log.warning("%s/%s: API error %s; retrying in %.1fs", namespace, name, err, delay)
            return delay
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        self._failures.pop(key, None)
        metrics.RECONCILES.labels(result.outcome).inc()
        return result.requeue_after

    def _backoff(self, key: Key) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (failures - 1)))

    async def _observe(self, namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
        selector = {names.LABEL_NAME: name, names.LABEL_MANAGED_BY: names.MANAGED_BY}
        return {
            "deployments": await self.kube.list("Deployment", namespace, selector),
            "pods": await self.kube.list("Pod", namespace, selector),
            "hpas": await self.kube.list("HorizontalPodAutoscaler", namespace, selector),
        }

    async def _execute(self, key: Key, body: dict[str, Any], result: Reconciliation) -> None:
        namespace = key[0]
        for obj in result.apply:
            await self._apply(obj)
        for deployment, replicas in result.scale.items():
            log.info("%s/%s: scaling Deployment %s to %d", *key, deployment, replicas)
            try:
                stored = await self.kube.scale("Deployment", namespace, deployment, replicas)
            except ApiError as err:
                if not err.not_found:
                    raise
                # Deleted under us: its DELETED event triggers the reconcile that restores it.
                self._applied.pop(("Deployment", namespace, deployment), None)
                continue
            ident = ("Deployment", namespace, deployment)
            if (known := self._applied.get(ident)) is not None:
                self._applied[ident] = (known[0], _mark(stored))
        for kind, obj_name in result.delete:
            log.info("%s/%s: deleting %s %s", *key, kind, obj_name)
            await self.kube.delete(kind, namespace, obj_name)
            self._applied.pop((kind, namespace, obj_name), None)
        if result.status is not None:
            log.info("%s/%s: status %s", *key, ", ".join(sorted(result.status)))
            stored = await self.kube.patch_status("ModelDeployment", *key, result.status)
            self._remember(key, stored)
        for event in result.events:
            log.info("%s/%s: %s %s: %s", *key, event["type"], event["reason"], event["message"])
            await self._post_event(body, event)
        if result.phase:
            self._phases[key] = result.phase
            self._update_phase_gauge()
        for reason in result.rollbacks:
            metrics.ROLLBACKS.labels(reason).inc()
        started = self._breach_seen.get((namespace, result.breach_pod or ""))
        started = started or result.breach_started
        if started is not None and result.rollbacks:
            elapsed = (self.clock() - started).total_seconds()
            metrics.TIME_TO_ROLLBACK.observe(max(elapsed, 0.0))

    async def _apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        ident = (obj["kind"], meta["namespace"], meta["name"])
        digest = _digest(obj)
        known = self._applied.get(ident)
        if known is not None and known[0] == digest:
            return  # unchanged desire, and nobody touched it since (or on_child would clear it)
        log.info("%s/%s: applying %s", meta["namespace"], meta["name"], obj["kind"])
        stored = await self.kube.apply(obj)
        self._applied[ident] = (digest, _mark(stored))

    async def _post_event(self, body: dict[str, Any], event: dict[str, str]) -> None:
        meta = body["metadata"]
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "generateName": f"{meta['name']}.",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "type": event["type"],
                "reason": event["reason"],
                "message": event["message"][:1024],
                "source": {"component": names.FIELD_MANAGER},
                "reportingComponent": names.FIELD_MANAGER,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
        )

    def _update_phase_gauge(self) -> None:
        counts = dict.fromkeys(names.PHASES, 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            metrics.MANAGED.labels(phase).set(count)
