"""What the operator last saw of each ModelDeployment's children, fed by the watches.

The reconcile reads Deployments, Pods, HPAs, ControllerRevisions and PodDisruptionBudgets
from here instead of listing them per reconcile. kopf feeds it from its index handlers, which
run for every object of the initial listings before any handler runs, so a reconcile never
plans from a half-filled cache. The controller also feeds back what its own writes returned:
a newer resourceVersion wins, so the next plan does not act again on a stale copy while the
watch event is on its way.
"""

from __future__ import annotations

from typing import Any, Final

from modeldeploy import names

# Kind -> the key `reconcile.plan` reads its observed objects under.
OBSERVED: Final = {
    "Deployment": "deployments",
    "Pod": "pods",
    "HorizontalPodAutoscaler": "hpas",
    "ControllerRevision": "controllerrevisions",
    "PodDisruptionBudget": "pdbs",
    "NetworkPolicy": "networkpolicies",
}

_Owner = tuple[str, str]  # (namespace, ModelDeployment name)


def resource_version(obj: dict[str, Any]) -> int:
    value = obj.get("metadata", {}).get("resourceVersion", "0")
    return int(value) if str(value).isdigit() else 0


class ObservedCache:
    """Per owner, per kind, per name: the newest copy seen of each child."""

    def __init__(self) -> None:
        self._objects: dict[_Owner, dict[str, dict[str, dict[str, Any]]]] = {}

    @staticmethod
    def owner_of(body: dict[str, Any]) -> _Owner | None:
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(names.LABEL_NAME)
        return (meta["namespace"], owner) if owner and meta.get("namespace") else None

    def put(self, kind: str, body: dict[str, Any]) -> None:
        owner = self.owner_of(body)
        if owner is None or kind not in OBSERVED:
            return
        by_name = self._objects.setdefault(owner, {}).setdefault(kind, {})
        name = body["metadata"]["name"]
        known = by_name.get(name)
        if known is None or resource_version(body) >= resource_version(known):
            by_name[name] = body

    def remove(self, kind: str, body: dict[str, Any]) -> None:
        """A DELETED watch event (watch events of one kind arrive in order)."""
        if (owner := self.owner_of(body)) is not None:
            self.discard(kind, owner, body["metadata"]["name"])

    def discard(self, kind: str, owner: _Owner, name: str) -> None:
        by_kind = self._objects.get(owner, {})
        by_kind.get(kind, {}).pop(name, None)
        if not any(by_kind.values()):
            self._objects.pop(owner, None)

    def forget(self, namespace: str, name: str) -> None:
        """The ModelDeployment is gone: its children go with it (garbage collection)."""
        self._objects.pop((namespace, name), None)

    def observed(self, namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
        by_kind = self._objects.get((namespace, name), {})
        return {key: list(by_kind.get(kind, {}).values()) for kind, key in OBSERVED.items()}

    def __len__(self) -> int:
        return sum(len(v) for by_kind in self._objects.values() for v in by_kind.values())
