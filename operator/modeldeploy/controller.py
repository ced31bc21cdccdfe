"""The reconcile loop: gather what is observed, ask the pure core what to do, apply it.

Everything that decides lives elsewhere (spec, hashing, analysis, rollout, builders, status);
this module only moves data between them and the API, and keeps the bookkeeping that makes an
idle system cost nothing: a child is re-applied only when its desired form changed or someone
else changed it, and status is written only when it differs from what is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from modeldeploy import metrics, names, registry, registry_client
from modeldeploy.cache import ObservedCache, resource_version
from modeldeploy.containment import EgressSettings
from modeldeploy.diagnosis import Problem, deployment_problem, pod_problem
from modeldeploy.imagepolicy import ImagePolicy, UpgradeSlots
from modeldeploy.k8s import ApiError, Kube
from modeldeploy.notices import ObjectSeries, notices, object_series
from modeldeploy.pod import PodSettings
from modeldeploy.reconcile import Reconciliation, plan
from modeldeploy.status import merged
from modeldeploy.webhook import WebhookSender
from modeldeploy.workqueue import Key, WorkQueue

log = logging.getLogger("modeldeploy.controller")

# Backoff for API trouble (conflicts, throttling, timeouts, 5xx): "not yet", never a hot loop.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 60.0
# The API refused an object for good (400, 403, 422): try again now and then, quietly.
REFUSED_RETRY_S = 60.0
TRANSIENT = (ApiError, aiohttp.ClientError, asyncio.TimeoutError)


class StaleStatus(Exception):
    """The ModelDeployment changed since it was read: plan again from the new copy."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _mark(obj: dict[str, Any]) -> str:
    """What changes when someone changes the object's desired state, and only then.

    `generation` moves on spec changes only, so a Deployment's status churn (ready counts) never
    triggers a re-apply; kinds without one (Service, HPA) are compared by their spec and labels.
    """
    meta = obj.get("metadata", {})
    if generation := meta.get("generation"):
        return f"g{generation}"
    return _digest([obj.get("spec"), meta.get("labels")])


def _echo(ours: str, seen: str) -> bool:
    """Whether a child's event shows nothing newer than our last write. Generations only grow,
    so an event of an older generation (it raced our scale's answer) is an echo too."""
    if ours.startswith("g") and seen.startswith("g") and ours[1:].isdigit() and seen[1:].isdigit():
        return int(seen[1:]) <= int(ours[1:])
    return ours == seen


def _upgrading(body: dict[str, Any]) -> bool:
    image = (body.get("status") or {}).get("image") or {}
    return bool(image.get("state") == names.IMAGE_UPGRADING)


def _stub(key: Key) -> dict[str, Any]:
    return {"metadata": {"namespace": key[0], "name": key[1]}}


def _refusal(err: ApiError) -> bool:
    """An answer that will not change by retrying soon: invalid (400, 422), forbidden (403,
    incl. admission webhooks). 404 (namespace gone), 409 and 429 are transient."""
    return err.status in (400, 403, 422) and "being terminated" not in err.message


class Controller:
    """Turns watch events into reconciles of the owning ModelDeployment."""

    def __init__(
        self,
        kube: Kube,
        default_image: str,
        clock: Callable[[], datetime] = utcnow,
        *,
        allow_file_uris: bool = False,
        pod_settings: PodSettings | None = None,
        monitor_role: str = names.DEFAULT_MONITOR_CLUSTER_ROLE,
        webhook: WebhookSender | None = None,
        image_policy: ImagePolicy | None = None,
        egress: EgressSettings | None = None,
        mlflow_tracking_uri: str | None = None,
    ) -> None:
        self.kube = kube
        self.webhook = webhook
        self.registry = registry_client.Resolver(default_image, mlflow_tracking_uri)
        self.default_image = default_image
        self.image_policy = replace(image_policy or ImagePolicy(), default_image=default_image)
        self.upgrade_slots = UpgradeSlots(self.image_policy.max_canaries)
        self.allow_file_uris = allow_file_uris
        self.pod_settings = pod_settings or PodSettings()
        self.monitor_role = monitor_role
        self.egress = egress or EgressSettings()
        self.clock = clock
        self.queue = WorkQueue(self.reconcile)
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._pod_signatures: dict[str, tuple[Any, ...]] = {}
        # (kind, namespace, name) -> (digest of what we applied, _mark of what it produced)
        self._applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._failures: dict[Key, int] = {}
        self._failure_class: dict[Key, str] = {}  # logged once until it changes or recovers
        self._refused: dict[Key, dict[tuple[str, str], str]] = {}  # (kind, name) -> API's words
        # What the gauges show: per object, and counted by phase (only the leader's are set).
        self._series: dict[Key, ObjectSeries] = {}
        self._breach_seen: dict[tuple[str, str], datetime] = {}  # (namespace, pod) -> first seen
        self.cache = ObservedCache()
        self._child_problems: dict[tuple[str, str, str], Problem | None] = {}  # Deployments
        # Only the Lease holder reconciles; a standby keeps its caches warm from the watches.
        self.leading = True

    def set_leading(self, leading: bool) -> None:
        """Leadership changed: on gaining it, reconcile every ModelDeployment we know of."""
        self.leading = leading
        if leading:
            for key in list(self._bodies):
                self.queue.trigger(key)
        else:
            for key in list(self._series):
                self._publish(key, None)

    async def close(self) -> None:
        await self.queue.drain()
        if self.webhook is not None:
            await self.webhook.close()
        await self.kube.close()
        await self.registry.close()

    # --- event intake (called by the kopf handlers) ------------------------------------------
    def on_modeldeployment(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._failures.pop(key, None)
            self._failure_class.pop(key, None)
            self._refused.pop(key, None)
            self.registry.forget(key)
            for waiting in self.upgrade_slots.forget(key):
                self.queue.trigger(waiting)
            self.cache.forget(*key)
            self._publish(key, None)
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
            self.cache.remove("Pod", body)
            self._pod_signatures.pop(uid, None)
            self._breach_seen.pop((meta["namespace"], meta["name"]), None)
            self.queue.trigger((meta["namespace"], owner))
            return
        conditions = {
            c.get("type"): (c.get("status"), c.get("reason"))
            for c in body.get("status", {}).get("conditions", [])
            # ModelReady: its True message names the runtime shown in status.
            if c.get("type")
            in ("Ready", names.POD_COND_METRICS_HEALTHY, names.POD_COND_MODEL_READY)
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
        if event_type == "DELETED":
            self.cache.remove(ident[0], body)
        applied = self._applied.get(ident)
        if ident[0] == "Deployment" and event_type != "DELETED":
            # A status-only change that still matters: pods refused (FailedCreate), or no longer.
            problem = deployment_problem(body)
            if self._child_problems.get(ident) != problem:
                self._child_problems[ident] = problem
                self.queue.trigger((meta["namespace"], owner))
        elif event_type == "DELETED":
            self._child_problems.pop(ident, None)
        if event_type != "DELETED" and applied is not None and _echo(applied[1], _mark(body)):
            return  # our own write echoing back (maybe late), or a status-only change
        # Deleted or changed by someone else (the HPA, a user): apply again on the next pass.
        self._applied.pop(ident, None)
        self.queue.trigger((meta["namespace"], owner))

    def observe(self, kind: str, body: dict[str, Any]) -> None:
        """A child as a watch (or our own write) returned it; called by kopf's index handlers."""
        self.cache.put(kind, body)

    def remember(self, body: dict[str, Any]) -> None:
        """A ModelDeployment as the initial listing returned it (kopf's index handler), so the
        first reconcile already knows every image upgrade a former leader started."""
        meta = body["metadata"]
        if not meta.get("deletionTimestamp"):
            self._remember((meta["namespace"], meta["name"]), body)

    def _remember(self, key: Key, body: dict[str, Any]) -> None:
        known = self._bodies.get(key)
        if known is None or resource_version(body) >= resource_version(known):
            self._bodies[key] = body

    # --- the reconcile -------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        if not self.leading:
            return None  # a standby writes nothing; set_leading(True) triggers every key again
        started = time.perf_counter()
        namespace, name = key
        if self.queue.woken_by_timer(key):
            self._bodies.pop(key, None)  # one read: the watch may have missed its deletion
        try:
            for _ in range(3):  # a stale copy is read again at once, a few times
                body = self._bodies.get(key) or await self.kube.get("ModelDeployment", *key)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    self.on_modeldeployment("DELETED", body or _stub(key))
                    return None  # children go with their owner (garbage collection)
                try:
                    result = await self._reconcile(key, body)
                    break
                except StaleStatus:
                    self._bodies.pop(key, None)
            else:
                raise StaleStatus()
        except (*TRANSIENT, StaleStatus) as err:
            metrics.RECONCILES.labels("error").inc()
            if isinstance(err, ApiError):
                if err.status == 403 and "being terminated" in err.message:
                    return None  # the namespace is going away, and the ModelDeployment with it
                if err.not_found and await self.kube.get("ModelDeployment", *key) is None:
                    self._bodies.pop(key, None)
                    return None  # deleted while we worked
            return self._backoff(key, err)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        if self._failures.pop(key, None) is not None:
            log.info("%s/%s: API calls succeed again", namespace, name)
        self._failure_class.pop(key, None)
        metrics.RECONCILES.labels(result.outcome).inc()
        if self._refused.get(key):
            return min(result.requeue_after or REFUSED_RETRY_S, REFUSED_RETRY_S)
        return result.requeue_after

    async def _reconcile(self, key: Key, body: dict[str, Any]) -> Reconciliation:
        observed: dict[str, Any] = self.cache.observed(*key)
        observed["refused"] = [
            {"kind": kind, "name": obj_name, "message": message}
            for (kind, obj_name), message in sorted((self._refused.get(key) or {}).items())
        ]
        resolved = await self.registry.resolve(key, body, observed)
        upgrading = [k for k, b in self._bodies.items() if _upgrading(b)]
        result = plan(
            body,
            observed,
            default_image=self.default_image,
            now=self.clock(),
            allow_file_uris=self.allow_file_uris,
            pod_settings=self.pod_settings,
            monitor_role=self.monitor_role,
            image_rollout=self.image_policy.rollout,
            image_sklearn_version=self.image_policy.sklearn_version,
            upgrade_slot=self.upgrade_slots.free_for(key, upgrading),
            egress=self.egress,
            resolved=resolved,
        )
        if isinstance(resolved, registry.Problem):
            result = replace(result, requeue_after=self.registry.retry_after(key))
        # Before any await: the next reconcile of another ModelDeployment sees this decision.
        for waiting in self.upgrade_slots.settle(
            key,
            held=key in upgrading or key in self.upgrade_slots.holders,
            holds=result.image_upgrade,
            waits=result.image_state == names.IMAGE_WAITING_FOR_SLOT,
        ):
            self.queue.trigger(waiting)
        refused_before = dict(self._refused.get(key) or {})
        await self._execute(key, body, result)
        self._publish(key, merged(body.get("status") or {}, result.status or {}))
        if refused := self._refused.get(key):
            wanted = {(o["kind"], o["metadata"]["name"]) for o in result.apply}
            self._refused[key] = {k: v for k, v in refused.items() if k in wanted}
        if self._refused.get(key, {}) != refused_before:
            self.queue.trigger(key)  # plan again, so status tells what the API refused
        return result

    def _backoff(self, key: Key, err: BaseException) -> float:
        """Exponential with full jitter; one log line per failure class, not per retry."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        ceiling = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if isinstance(err, ApiError):
            what, detail = f"{err.status} {err.reason}", err.message
        elif isinstance(err, StaleStatus):
            what, detail = "Conflict", "the ModelDeployment keeps changing under us"
        else:
            what, detail = type(err).__name__, str(err) or type(err).__name__
        if self._failure_class.get(key) != what:
            self._failure_class[key] = what
            log.warning("%s/%s: API error %s: %s; retrying with backoff", *key, what, detail)
        else:
            log.debug("%s/%s: still %s; retry %d in %.1fs", *key, what, failures, delay)
        return delay

    async def _execute(self, key: Key, body: dict[str, Any], result: Reconciliation) -> None:
        """Decide, record, then act: the status that records a transition is written before
        the actions that erase its evidence (scaling a breaching canary to zero removes the
        pods whose conditions proved the breach). A retried or restarted reconcile finds the
        decision in status and finishes it, because the plan renders children from the
        recorded state alone."""
        namespace = key[0]
        if result.status is not None:
            log.info("%s/%s: status %s", *key, ", ".join(sorted(result.status)))
            await self._write_status(key, body, result.status)
        for revision in result.lost:
            log.warning("%s/%s: revision %d has neither Deployment nor history", *key, revision)
        for obj in result.apply:
            await self._apply(key, obj)
        for deployment, replicas in result.scale.items():
            log.info("%s/%s: scaling Deployment %s to %d", *key, deployment, replicas)
            ident = ("Deployment", namespace, deployment)
            try:
                stored = await self.kube.scale("Deployment", namespace, deployment, replicas)
            except ApiError as err:
                if not err.not_found:
                    raise
                # Deleted under us: its DELETED event triggers the reconcile that restores it.
                self._applied.pop(ident, None)
                continue
            self.cache.put("Deployment", stored)
            if (known := self._applied.get(ident)) is not None:
                self._applied[ident] = (known[0], _mark(stored))
        for kind, obj_name in result.delete:
            log.info("%s/%s: deleting %s %s", *key, kind, obj_name)
            await self.kube.delete(kind, namespace, obj_name)
            self._applied.pop((kind, namespace, obj_name), None)
            self.cache.discard(kind, key, obj_name)
        for event in result.events:
            log.info("%s/%s: %s %s: %s", *key, event["type"], event["reason"], event["message"])
            await self._post_event(body, event)
        if self.webhook is not None:
            before = body.get("status") or {}
            after = merged(before, result.status or {})
            when = self.clock().isoformat(timespec="milliseconds")
            for notice in notices(body["metadata"], before, after, result.events, when):
                self.webhook.offer(notice)
        for reason in result.rollbacks:
            metrics.ROLLBACKS.labels(reason).inc()
        started = self._breach_seen.get((namespace, result.breach_pod or ""))
        started = started or result.breach_started
        if started is not None and result.rollbacks:
            elapsed = (self.clock() - started).total_seconds()
            metrics.TIME_TO_ROLLBACK.observe(max(elapsed, 0.0))

    async def _write_status(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Only onto the copy it was planned from: resourceVersion is a precondition, so a
        decision made on stale data (a spec edited meanwhile, a former leader) never lands."""
        version = body["metadata"].get("resourceVersion")
        try:
            stored = await self.kube.patch_status(
                "ModelDeployment", *key, status, resource_version=version
            )
        except ApiError as err:
            if err.conflict:
                raise StaleStatus() from err
            raise
        self._remember(key, stored)

    async def _apply(self, key: Key, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        ident = (obj["kind"], meta["namespace"], meta["name"])
        digest = _digest(obj)
        known = self._applied.get(ident)
        if known is not None and known[0] == digest:
            return  # unchanged desire, and nobody touched it since (or on_child would clear it)
        log.info("%s/%s: applying %s", meta["namespace"], meta["name"], obj["kind"])
        refused = self._refused.setdefault(key, {})
        try:
            stored = await self.kube.apply(obj)
        except ApiError as err:
            if not _refusal(err):
                raise
            words = f"{err.status} {err.reason}: {err.message}"
            if refused.get(ident[0::2]) != words:
                log.warning("%s/%s: the API refused %s %s: %s", *key, ident[0], ident[2], words)
            refused[ident[0::2]] = words
            return  # the rest still applies: the stable keeps serving
        refused.pop(ident[0::2], None)
        self._applied[ident] = (digest, _mark(stored))
        self.cache.put(obj["kind"], stored)

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

    def _publish(self, key: Key, status: dict[str, Any] | None) -> None:
        """Point the per-object gauges at this status (None: remove its series), and recount
        the phases when this object's changed."""
        series = object_series(status) if status is not None else None
        old = self._series.get(key)
        if series == old:
            return
        if old is not None:
            metrics.INFO.remove(*key, old.phase, old.stable_revision, old.canary_revision)
        if series is None:
            del self._series[key]  # old was not None
            metrics.CANARY_WEIGHT.remove(*key)
            metrics.CANARY_TRAFFIC.remove(*key)
        else:
            self._series[key] = series
            labels = (series.phase, series.stable_revision, series.canary_revision)
            metrics.INFO.labels(*key, *labels).set(1)
            metrics.CANARY_WEIGHT.labels(*key).set(series.canary_weight)
            metrics.CANARY_TRAFFIC.labels(*key).set(series.canary_traffic)
        if (old and old.phase) != (series and series.phase):
            counts = Counter(s.phase for s in self._series.values())
            for phase in {*names.PHASES, *counts}:
                metrics.MANAGED.labels(phase).set(counts[phase])
