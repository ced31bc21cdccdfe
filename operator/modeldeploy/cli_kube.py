"""The CLI's only contact with the API server: read, list, annotate and watch
ModelDeployments, and read the Deployments and pods of one (for the tree view).

Synchronous (a CLI does one thing at a time) on the official client. API failures become
`CliError`s with one line a user can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modeldeploy import names
from modeldeploy.cli_actions import CliError

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 30


def connect(kubeconfig: str | None, context: str | None) -> tuple[client.ApiClient, str]:
    """An API client and the default namespace: the kubeconfig context's, else in-cluster."""
    try:
        # The client's config loaders carry no type hints.
        api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call, unused-ignore]
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call, unused-ignore]
        chosen = (
            next((c for c in contexts if c["name"] == context), current) if context else current
        )
        namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        return api, namespace
    except config.ConfigException as err:
        if kubeconfig or context:
            raise CliError(f"cannot load kubeconfig: {err}") from err
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call, unused-ignore]
    except config.ConfigException as err:
        raise CliError("no kubeconfig found and not running in a cluster") from err
    with open(f"{names.SERVICE_ACCOUNT_MOUNT}/namespace") as f:
        return client.ApiClient(), f.read().strip()


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._host = api.configuration.host

    def find(self, namespace: str | None, selector: str | None) -> list[dict[str, Any]]:
        """ModelDeployments of one namespace, or of all (`namespace=None`)."""
        try:
            if namespace is None:
                found = self._api.list_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, label_selector=selector or "",
                    _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
            else:
                found = self._api.list_namespaced_custom_object(
                    names.GROUP, names.VERSION, namespace, names.PLURAL,
                    label_selector=selector or "", _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
        except ApiException as err:
            raise self._error(err, namespace or "", "") from err
        except HTTPError as err:
            raise CliError(f"cannot reach the API server at {self._host}: {err}") from err
        items = cast(dict[str, Any], found).get("items", [])
        return sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def children(
        self, namespace: str, name: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The revision Deployments and the pods of one ModelDeployment, as plain dicts."""
        selector = f"{names.LABEL_NAME}={name}"
        try:
            deployments = self._apps.list_namespaced_deployment(
                namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
            pods = self._core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as err:
            raise self._error(err, namespace, name) from err
        except HTTPError as err:
            raise CliError(f"cannot reach the API server at {self._host}: {err}") from err
        plain = self._api.api_client.sanitize_for_serialization
        return [plain(d) for d in deployments.items], [plain(p) for p in pods.items]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj = self._api.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as err:
            raise self._error(err, namespace, name) from err
        except HTTPError as err:
            raise CliError(f"cannot reach the API server at {self._host}: {err}") from err
        return cast(dict[str, Any], obj)

    def annotate(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch on metadata only: spec is never part of the body."""
        assert set(patch) == {"metadata"}, "the CLI never patches anything but metadata"
        try:
            obj = self._api.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, patch,
                _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as err:
            raise self._error(err, namespace, name) from err
        except HTTPError as err:
            raise CliError(f"cannot reach the API server at {self._host}: {err}") from err
        return cast(dict[str, Any], obj)

    def changes(self, namespace: str, name: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The object each time it changes during `seconds` (one watch request).

        Raises CliError when the object is deleted.
        """
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call, unused-ignore]
            self._api.list_namespaced_custom_object,
            names.GROUP, names.VERSION, namespace, names.PLURAL,
            field_selector=f"metadata.name={name}", timeout_seconds=seconds,
        )  # fmt: skip
        try:
            for event in stream:
                if event["type"] == "DELETED":
                    raise CliError(f"modeldeployment {namespace}/{name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield event["object"]
        except ApiException as err:
            raise self._error(err, namespace, name) from err
        except HTTPError as err:
            raise CliError(f"cannot reach the API server at {self._host}: {err}") from err

    def _error(self, err: ApiException, namespace: str, name: str) -> CliError:
        body = _status_body(err)
        if err.status == 404:
            # A missing object names itself in the Status details; a missing CRD does not.
            if (body or {}).get("details", {}).get("name") == name:
                return CliError(self._not_found(namespace, name))
            return CliError(
                f"this cluster does not serve {names.API_VERSION} {names.PLURAL}: "
                f"is the {names.CRD_NAME} CRD installed?"
            )
        message = (body or {}).get("message") or err.reason or "no message"
        if err.status in (401, 403):
            return CliError(f"not allowed: {message}")
        return CliError(f"the API server answered {err.status}: {message}")

    def _not_found(self, namespace: str, name: str) -> str:
        text = f'modeldeployment "{name}" not found in namespace "{namespace}"'
        try:  # a hint for the common mistake of the wrong namespace, if we may list
            found = self._api.list_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL,
                field_selector=f"metadata.name={name}", _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except (ApiException, HTTPError):
            return text
        items = cast(dict[str, Any], found).get("items", [])
        elsewhere = sorted(i["metadata"]["namespace"] for i in items)
        if elsewhere:
            text += f" (it exists in: {', '.join(elsewhere)}; use -n)"
        return text


def _status_body(err: ApiException) -> dict[str, Any] | None:
    """The API's Status object, or None when the body is not one (e.g. an unserved path)."""
    try:
        body = json.loads(err.body or "")
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("kind") == "Status" else None
