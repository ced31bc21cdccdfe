"""kopf glue: watch events only trigger reconciles; every decision lives in pure modules.

Plain event handlers (no kopf progress storage, no diff-base annotation, no finalizer) so the
operator never writes the ModelDeployment's metadata, deletes are never wedged while the operator
is down, and an idle system causes zero writes. Children and pods only wake up their owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy import kopf_fixes, names
from modeldeploy.controller import Controller
from modeldeploy.k8s import Credentials, Kube
from modeldeploy.leader import LeaderElector, default_identity
from modeldeploy.pod import PodSettings
from modeldeploy.webhook import WebhookSender

MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}

kopf_fixes.apply()  # before kopf.run starts any watcher


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """An explicit kubeconfig (--kubeconfig / $KUBECONFIG) wins, else the pod's ServiceAccount.

    kopf's own readers look at the environment when called, unlike the kubernetes client's
    defaults, which are fixed when it is imported."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    in_cluster = kopf.login_with_service_account(**kwargs)
    if in_cluster is None:
        return kopf.login_with_kubeconfig(**kwargs)
    # kopf names the API server `kubernetes.default.svc`, which needs cluster DNS; client-go
    # (and our own client) use the address the kubelet puts in every pod's environment.
    server = in_cluster_server(os.environ)
    return dataclasses.replace(in_cluster, server=server) if server else in_cluster


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    if memo.namespaced and not any(set(ns) & set("*?[!,") for ns in memo.namespaces):
        # Exact namespaces need no scan, and with Roles only, listing namespaces and CRDs is
        # forbidden (kopf would retry for about a minute). Globs do need the namespace scan.
        settings.scanning.disabled = True
    credentials = Credentials.load(os.environ.get("KUBECONFIG") or None)
    memo.controller = Controller(
        Kube(credentials),
        default_image=memo.serving_image,
        allow_file_uris=memo.allow_file_uris,
        pod_settings=PodSettings(monitor_image=memo.monitor_image),
        monitor_role=memo.monitor_role,
        mlflow_tracking_uri=memo.mlflow_tracking_uri,
        webhook=WebhookSender(memo.notify_url) if memo.notify_url else None,
        image_policy=memo.image_policy,
        egress=memo.egress,
    )
    logging.getLogger("modeldeploy").info(
        "operator started (%s)",
        "namespaces " + ", ".join(memo.namespaces) if memo.namespaced else "all namespaces",
    )
    memo.elector = None
    if memo.leader_election:
        memo.controller.set_leading(False)  # watch and cache, but reconcile only once elected
        memo.elector = LeaderElector(
            Kube(credentials, metric_kind="lease"),  # its own session: renewals never queue
            namespace=memo.lease_namespace,
            name=memo.lease_name,
            identity=default_identity(),
            on_change=memo.controller.set_leading,
            on_lost=_exit_lost,
        )
        memo.elector_task = asyncio.create_task(memo.elector.run())


def _exit_lost() -> None:
    """Stop at once, as client-go programs do: a process that may no longer be leader must not
    finish a reconcile. The kubelet restarts it as a fresh standby."""
    logging.shutdown()
    sys.stdout.flush()
    os._exit(names.EXIT_LEADERSHIP_LOST)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    elector: LeaderElector | None = memo.get("elector")
    if elector is not None:
        memo.elector_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.elector_task
        memo.controller.set_leading(False)
        await memo.controller.queue.drain()  # finish in-flight reconciles, then hand over
        await elector.release()
        await elector.kube.close()
    await memo.controller.close()


# Index handlers run for every object of the initial listings before kopf lets any handler
# run, so the first reconcile already sees every child: the controller plans from this cache
# and never lists per reconcile. (They index nothing in kopf; the controller keeps the copies.)
@kopf.index(names.GROUP, names.VERSION, names.PLURAL)
async def observe_modeldeployment(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.remember(dict(body))  # statuses first: image-upgrade slots in use


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def observe_deployment(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("Deployment", dict(body))


@kopf.index("v1", "pods", labels=MANAGED)
async def observe_pod(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("Pod", dict(body))


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def observe_hpa(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("HorizontalPodAutoscaler", dict(body))


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def observe_budget(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("PodDisruptionBudget", dict(body))


@kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED)
async def observe_network_policy(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("NetworkPolicy", dict(body))


@kopf.index("apps", "v1", "controllerrevisions", labels=MANAGED)
async def observe_history(body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.observe("ControllerRevision", dict(body))


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def modeldeployment_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_modeldeployment(_event_type(event), dict(body))


@kopf.on.event("v1", "pods", labels=MANAGED)
async def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_pod(_event_type(event), dict(body))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("apps", "v1", "controllerrevisions", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED)
async def child_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_child(_event_type(event), dict(body))


def _event_type(event: kopf.RawEvent) -> str | None:
    # kopf delivers the initial listing with type None; treat it like an update.
    value = event.get("type") if isinstance(event, dict) else None
    return str(value) if value else None
