"""The fault proxy against the real API server: clients work through it, faults reach them."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from modeldeploy.k8s import ApiError, Credentials, Kube
from tests.helpers.fault_proxy import Delay, FaultProxy, Reply, Rule
from tests.kube import KubeCluster, wait_until


@pytest.fixture
def proxy(cluster: KubeCluster, tmp_path: Path) -> Iterator[FaultProxy]:
    with FaultProxy(cluster.kubeconfig, tmp_path) as running:
        yield running


def via(cluster: KubeCluster, proxy: FaultProxy, *args: str, check: bool = True) -> str:
    proc = cluster.kubectl("--kubeconfig", str(proxy.kubeconfig), *args, check=check)
    return proc.stdout + proc.stderr


def test_kubectl_works_through_the_proxy_and_is_recorded(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    mark = proxy.mark()
    via(cluster, proxy, "create", "configmap", "through", "-n", namespace, "--from-literal=a=1")
    got = json.loads(via(cluster, proxy, "get", "configmap", "through", "-n", namespace, "-o=json"))
    assert got["data"] == {"a": "1"}
    writes = proxy.writes(mark, path=f"/namespaces/{namespace}/configmaps")
    assert [(w.method, w.status) for w in writes] == [("POST", 201)]
    reads = [r for r in proxy.records(mark) if r.path.endswith("/configmaps/through")]
    assert reads and all(r.method == "GET" and r.status == 200 for r in reads)


def test_an_injected_500_reaches_the_client(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    proxy.add(Rule(path=f"/namespaces/{namespace}$", method="GET", action=Reply(500, "boom")))
    out = via(cluster, proxy, "get", "namespace", namespace, check=False)
    assert "boom" in out
    # Once only (times=1): the next request goes through.
    assert namespace in via(cluster, proxy, "get", "namespace", namespace)


def test_a_429_with_retry_after_is_retried_by_the_client(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    proxy.add(Rule(path=f"/namespaces/{namespace}$", action=Reply(429, retry_after=1)))
    mark = proxy.mark()
    assert namespace in via(cluster, proxy, "get", "namespace", namespace)
    statuses = [r.status for r in proxy.records(mark) if r.path.endswith(namespace)]
    assert statuses == [429, 200]


def test_the_operators_client_works_through_the_proxy_and_sees_status_codes(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    async def run() -> None:
        kube = Kube(Credentials.load(str(proxy.kubeconfig)))
        try:
            assert (await kube.get("ServiceAccount", namespace, "default")) is not None
            mark = proxy.mark()
            answered: list[tuple[str, int | None]] = []
            proxy.add(
                Rule(
                    path="/serviceaccounts/default$",
                    method="PATCH",
                    before_reply=lambda r: answered.append(("before", r.status)),
                    after=lambda r: answered.append(("after", r.status)),
                )
            )
            labels = {"metadata": {"labels": {"seen-by": "proxy"}}}
            await kube.patch("ServiceAccount", namespace, "default", labels)
            (write,) = proxy.writes(mark)
            assert (write.method, write.status, write.body) == ("PATCH", 200, labels)
            for _ in range(100):  # `after` runs once the answer is on its way: it may trail it
                if len(answered) == 2:
                    break
                await asyncio.sleep(0.02)
            assert answered == [("before", 200), ("after", 200)]
            proxy.add(Rule(path="/serviceaccounts/default$", action=Reply(409, "taken")))
            with pytest.raises(ApiError) as err:
                await kube.get("ServiceAccount", namespace, "default")
            assert (err.value.status, err.value.reason, err.value.message) == (
                409,
                "Conflict",
                "taken",
            )
        finally:
            await kube.close()

    asyncio.run(run())


def test_large_compressed_lists_pass_through_intact(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    """The API server gzips large answers for clients that accept it (aiohttp, like the
    operator's client, and kubectl do); the proxy must pass body and encoding through."""
    for i in range(3):
        cluster.kubectl(
            "create",
            "configmap",
            f"big-{i}",
            "-n",
            namespace,
            f"--from-literal=data={'x' * 60_000}",
        )
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    async def fetch() -> tuple[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(proxy.url + path) as resp:
            return resp.headers.get("Content-Encoding", ""), await resp.json()

    encoding, listed = asyncio.run(fetch())
    assert encoding == "gzip"  # else this test no longer tests compression
    assert sum(1 for cm in listed["items"] if cm["metadata"]["name"].startswith("big-")) == 3
    got = json.loads(via(cluster, proxy, "get", "configmaps", "-n", namespace, "-o=json"))
    assert len(got["items"]) >= 3


def _open_watch(proxy: FaultProxy, namespace: str) -> http.client.HTTPResponse:
    url = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    conn.request("GET", f"/api/v1/namespaces/{namespace}/configmaps?watch=true")
    return conn.getresponse()


def test_watches_stream_event_by_event_and_can_be_dropped(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    resp = _open_watch(proxy, namespace)
    assert resp.status == 200
    cluster.kubectl("create", "configmap", "streamed", "-n", namespace)
    # The event arrives while the watch is still open (chunk by chunk, not at its end).
    while True:
        event = json.loads(resp.readline())
        if event["object"]["metadata"]["name"] == "streamed":
            break
    assert event["type"] == "ADDED"
    assert proxy.drop_watches() == 1
    with pytest.raises((http.client.IncompleteRead, ConnectionError, OSError)):
        while resp.read(1):
            pass
        raise ConnectionError("ended cleanly")  # a dropped watch must not end like a timeout


def test_a_delay_ending_in_a_reset_fails_the_client_fast(
    cluster: KubeCluster, proxy: FaultProxy, namespace: str
) -> None:
    proxy.add(Rule(path=f"/namespaces/{namespace}$", action=Delay(0.3, reset=True)))
    url = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.request("GET", f"/api/v1/namespaces/{namespace}")
        conn.getresponse()
    wait_until(
        lambda: [r.status for r in proxy.records() if r.path.endswith(namespace)] == [0],
        5,
        "the dropped request to be recorded",
    )
