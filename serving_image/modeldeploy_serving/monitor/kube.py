"""The only place the monitor talks to the Kubernetes API: patch its Pod's status, create Events.

The synchronous client runs in a worker thread with a short request timeout, so a slow or
unreachable API server never stalls scraping.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from modeldeploy_serving.monitor.report import ReportError

REQUEST_TIMEOUT: Final = (3.0, 5.0)  # connect, read (seconds)
STRATEGIC_MERGE: Final = "application/strategic-merge-patch+json"


class ConfigError(Exception):
    """No usable credentials: a deployment mistake, not something to retry."""


class KubeReporter:
    def __init__(self, api: Any, namespace: str, pod_name: str) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self.namespace = namespace
        self.pod_name = pod_name

    @classmethod
    def connect(cls, kubeconfig: str | None, namespace: str, pod_name: str) -> KubeReporter:
        """From a kubeconfig file, or the Pod's projected service-account token."""
        try:
            if kubeconfig:
                api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call, unused-ignore]
            else:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call, unused-ignore]
                api = client.ApiClient(configuration)
        except (ConfigException, OSError) as exc:
            raise ConfigError(f"no Kubernetes credentials: {exc}") from exc
        return cls(api, namespace, pod_name)

    async def patch_pod_status(self, body: dict[str, Any]) -> None:
        await self._call(
            "patch pods/status",
            self._core.patch_namespaced_pod_status,
            self.pod_name,
            self.namespace,
            body,
            # Pod conditions merge by type under a strategic-merge patch. (A dict body is sent as
            # one by every client version; said explicitly here.)
            _content_type=STRATEGIC_MERGE,
        )

    async def create_event(self, body: dict[str, Any]) -> None:
        await self._call("create events", self._core.create_namespaced_event, self.namespace, body)

    def close(self) -> None:
        self._api.close()

    async def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await asyncio.to_thread(method, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            raise ReportError(f"{what}: HTTP {exc.status} {_api_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReportError(f"{what}: API server unreachable ({type(exc).__name__})") from None


def _api_message(exc: ApiException) -> str:
    """The Status message the API server sent, or the HTTP reason."""
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.reason or "")
