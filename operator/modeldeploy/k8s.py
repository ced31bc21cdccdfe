"""The only module that talks to the Kubernetes API.

A small async REST client on aiohttp. Credentials come from the kubernetes client's own loaders
(kubeconfig or in-cluster), so every auth method they support works here too; requests are plain
JSON so builders can stay plain dicts. Server-side apply uses one field manager.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp

from modeldeploy import names
from modeldeploy.metrics import API_REQUESTS

APPLY: Final = "application/apply-patch+yaml"
MERGE: Final = "application/merge-patch+json"
STRATEGIC: Final = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        tail = f"/{name}" if name else ""
        return f"{root}{ns}/{self.plural}{tail}"


RESOURCES: Final = {
    "ModelDeployment": Resource(names.API_VERSION, names.PLURAL),
    "Deployment": Resource("apps/v1", "deployments"),
    "ControllerRevision": Resource("apps/v1", "controllerrevisions"),
    "Service": Resource("v1", "services"),
    "HorizontalPodAutoscaler": Resource("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Resource("policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": Resource("networking.k8s.io/v1", "networkpolicies"),
    "Pod": Resource("v1", "pods"),
    "Event": Resource("v1", "events"),
    "ServiceAccount": Resource("v1", "serviceaccounts"),
    "RoleBinding": Resource("rbac.authorization.k8s.io/v1", "rolebindings"),
    "EndpointSlice": Resource("discovery.k8s.io/v1", "endpointslices"),
    "Lease": Resource("coordination.k8s.io/v1", "leases"),
}


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Credentials:
    host: str
    ssl: ssl.SSLContext | bool
    token: Any  # callable returning the current "Bearer ..." header, or None

    @classmethod
    def load(cls, kubeconfig: str | None = None) -> Credentials:
        """Kubeconfig (explicit, $KUBECONFIG, ~/.kube/config) or the in-cluster service account."""
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call, unused-ignore]
        except config.ConfigException:
            if kubeconfig:
                raise
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call, unused-ignore]
        ctx: ssl.SSLContext | bool
        if cfg.verify_ssl:
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        else:
            ctx = False

        def token() -> str | None:
            # The hook re-reads rotating in-cluster tokens.
            # The client stores kubeconfig and in-cluster tokens under "BearerToken" (v37) or
            # "authorization" (older releases); client-certificate configs have neither.
            value = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
            return str(value) if value else None

        return cls(host=cfg.host.rstrip("/"), ssl=ctx, token=token)


class Kube:
    """Async access to the handful of resources the operator reads and writes."""

    def __init__(
        self, credentials: Credentials, timeout_s: float = 30.0, metric_kind: str | None = None
    ) -> None:
        self._creds = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0  # counted for benchmarks: API requests this client made
        # None: count requests as read/write. A name (e.g. "lease") counts them apart, so the
        # leader's renewals never look like reconcile writes.
        self._metric_kind = metric_kind

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._creds.ssl, limit=50)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if (token := self._creds.token()) is not None:
            headers["Authorization"] = token
        url = f"{self._creds.host}{path}"
        if query:
            url += "?" + urlencode(query)
        # UTF-8, not ASCII escapes: the apply content type is YAML, and YAML rejects the
        # surrogate-pair escapes JSON uses for characters outside the BMP (an emoji in an env).
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        self.requests += 1
        API_REQUESTS.labels(self._metric_kind or ("read" if method == "GET" else "write")).inc()
        async with self._http().request(method, url, data=data, headers=headers) as resp:
            payload = await resp.read()
            if resp.status >= 300:
                try:
                    status = json.loads(payload)
                    reason, message = status.get("reason", ""), status.get("message", "")
                except ValueError:
                    reason, message = resp.reason or "", payload.decode(errors="replace")
                raise ApiError(resp.status, reason, message)
            return json.loads(payload) if payload else None

    # --- reads ------------------------------------------------------------------------------
    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call("GET", RESOURCES[kind].path(namespace, name))
        except ApiError as err:
            if err.not_found:
                return None
            raise
        return result

    async def list(
        self, kind: str, namespace: str | None, selector: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        query = None
        if selector:
            query = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
        result = await self._call("GET", RESOURCES[kind].path(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    # --- writes -----------------------------------------------------------------------------
    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's field manager, taking over conflicts."""
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": names.FIELD_MANAGER, "force": "true"}
        result: dict[str, Any] = await self._call("PATCH", path, obj, APPLY, query)
        return result

    async def patch(
        self, kind: str, namespace: str, name: str, patch: Any, content_type: str = MERGE
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PATCH", RESOURCES[kind].path(namespace, name), patch, content_type
        )
        return result

    async def scale(self, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set replicas with an update (not an apply) under a manager of its own: the template's
        apply never owns `spec.replicas`, so an HPA can take the field over without conflicts."""
        query = {"fieldManager": names.SCALE_FIELD_MANAGER}
        result: dict[str, Any] = await self._call(
            "PATCH",
            RESOURCES[kind].path(namespace, name),
            {"spec": {"replicas": replicas}},
            MERGE,
            query,
        )
        return result

    async def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """A merge patch of .status; with `resource_version`, only onto that exact version
        (the API answers 409 Conflict if the object changed since)."""
        path = RESOURCES[kind].path(namespace, name) + "/status"
        patch: dict[str, Any] = {"status": status}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        result: dict[str, Any] = await self._call("PATCH", path, patch, MERGE)
        return result

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        result: dict[str, Any] = await self._call(
            "POST", RESOURCES[obj["kind"]].path(meta.get("namespace")), obj
        )
        return result

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object. With `metadata.resourceVersion` set, the server refuses (409) if
        anyone wrote it since it was read: optimistic concurrency, as the Lease needs."""
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"])
        result: dict[str, Any] = await self._call("PUT", path, obj)
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call("DELETE", RESOURCES[kind].path(namespace, name))
        except ApiError as err:
            if not err.not_found:
                raise
