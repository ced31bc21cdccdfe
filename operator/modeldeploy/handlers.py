"""kopf glue: watch events only trigger reconciles; every decision lives in pure modules.

Plain event handlers (no kopf progress storage, no diff-base annotation, no finalizer) so the
operator never writes the ModelDeployment's metadata, deletes are never wedged while the operator
is down, and an idle system causes zero writes. Children and pods only wake up their owner.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from modeldeploy import names
from modeldeploy.controller import Controller
from modeldeploy.k8s import Credentials, Kube

MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    image = os.environ.get(names.ENV_SERVING_IMAGE, names.DEFAULT_SERVING_IMAGE)
    memo.controller = Controller(Kube(Credentials.load()), default_image=image)
    logging.getLogger("modeldeploy").info("operator started")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.controller.close()


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def modeldeployment_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_modeldeployment(_event_type(event), dict(body))


@kopf.on.event("v1", "pods", labels=MANAGED)
async def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_pod(_event_type(event), dict(body))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.controller.on_child(_event_type(event), dict(body))


def _event_type(event: kopf.RawEvent) -> str | None:
    # kopf delivers the initial listing with type None; treat it like an update.
    value = event.get("type") if isinstance(event, dict) else None
    return str(value) if value else None
