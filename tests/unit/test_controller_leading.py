"""A standby controller caches what it watches but never reconciles until it leads."""

from __future__ import annotations

import asyncio

from modeldeploy import names
from modeldeploy.controller import Controller
from modeldeploy.k8s import Credentials, Kube

# Nothing listens here: a reconcile that reached the API would fail, and be counted.
NOWHERE = Credentials(host="http://127.0.0.1:1", ssl=False, token=lambda: None)


def body(name: str) -> dict[str, object]:
    meta = {"name": name, "namespace": "ml", "uid": f"uid-{name}", "resourceVersion": "7"}
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta, "spec": {}}


def test_standby_caches_events_and_reconciles_only_once_leading() -> None:
    async def scenario() -> tuple[int, int, bool]:
        kube = Kube(NOWHERE, timeout_s=1)
        controller = Controller(kube, default_image="img")
        assert controller.leading  # the default keeps directly built controllers working
        controller.set_leading(False)
        controller.on_modeldeployment("ADDED", body("iris"))
        await controller.queue.drain()
        assert await controller.reconcile(("ml", "iris")) is None
        standing_by = kube.requests
        cached = ("ml", "iris") in controller._bodies
        controller.set_leading(True)  # triggers every known key
        await controller.queue.drain()
        leading = kube.requests
        await kube.close()
        return standing_by, leading, cached

    standing_by, leading, cached = asyncio.run(scenario())
    assert standing_by == 0
    assert cached
    assert leading > 0
