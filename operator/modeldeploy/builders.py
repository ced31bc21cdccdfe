"""Desired child objects of a ModelDeployment, as plain dicts ready for server-side apply.

Pure functions: the same inputs give the same dict, and a rollback is just these builders
called with an older revision. Children carry only the operator's labels (DESIGN §1), never the
ModelDeployment's own: a copied Argo CD instance label would make Argo CD prune them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy import names
from modeldeploy.pod import PodSettings, pod_template
from modeldeploy.spec import ModelDeploymentSpec


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns (and garbage-collects) the children."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_labels(md_name: str, revision: int | None = None) -> dict[str, str]:
    """Labels on everything the operator creates; `revision` for per-revision objects."""
    labels = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_NAME: md_name}
    if revision is not None:
        labels[names.LABEL_REVISION] = str(revision)
    return labels


def revision_selector(md_name: str, revision: int) -> dict[str, str]:
    """Selects the pods of one revision (a Deployment's immutable selector)."""
    return {names.LABEL_NAME: md_name, names.LABEL_REVISION: str(revision)}


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def revision_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    revision: int,
    spec_hash: str,
    default_image: str,
    replicas: int | None,
    settings: PodSettings | None = None,
) -> dict[str, Any]:
    """The Deployment `<name>-r<revision>` that runs one model revision.

    `replicas=None` leaves `spec.replicas` out entirely, for a Deployment an HPA scales: under
    server-side apply the operator then never owns the field, so it never fights the HPA.
    Give a number for fixed sizing (autoscaling off) or a canary sized from its weight.
    """
    labels = child_labels(owner.name, revision)
    metadata = _metadata(owner, names.revision_name(owner.name, revision), labels)
    metadata["annotations"] = {names.ANNOTATION_SPEC_HASH: spec_hash}
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": revision_selector(owner.name, revision)},
        # In-place changes are rare (each model revision is its own Deployment): keep few.
        "revisionHistoryLimit": 2,
        # Never below the desired count of ready pods while replacing one: zero dropped requests.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": pod_template(
            spec,
            md_name=owner.name,
            md_uid=owner.uid,
            labels=labels,
            default_image=default_image,
            settings=settings or PodSettings(),
        ),
    }
    if replicas is not None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        deployment_spec = {"replicas": replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": deployment_spec,
    }


def controller_revision(
    owner: Owner,
    *,
    revision: int,
    spec: Mapping[str, Any],
    spec_hash: str,
    default_image: str,
    images: Mapping[str, Any] | None = None,
    resolved: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The spec a revision was created from, kept so its Deployment can be rendered again
    without the current spec (a deleted Deployment, a `rollback --to N`), the way StatefulSets
    and DaemonSets keep their history. Immutable once created, like the revision itself, so
    `images` (imagepolicy.as_data: the serving and sidecar images and the serving image's
    scikit-learn) stay what the revision runs across operator upgrades, and `resolved` (what
    the spec's mlflow:// URI meant then, registry.Resolution.to_dict) what it serves."""
    name = names.revision_name(owner.name, revision)
    data: dict[str, Any] = {
        "spec": dict(spec),
        "specHash": spec_hash,
        "defaultImage": default_image,
    }
    if images is not None:
        data["images"] = dict(images)
    if resolved is not None:
        data["resolved"] = dict(resolved)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": _metadata(owner, name, child_labels(owner.name, revision)),
        "revision": revision,
        "data": data,
    }


def service(owner: Owner, pinned_revision: int | None = None) -> dict[str, Any]:
    """One Service over every revision: traffic splits by the ratio of ready pods.

    `pinned_revision` narrows it to one revision (a warm revision kept out of traffic during a
    bake, or a restore)."""
    selector = child_labels(owner.name)
    if pinned_revision is not None:
        selector |= revision_selector(owner.name, pinned_revision)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, names.service_name(owner.name), child_labels(owner.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {
                    "name": names.PORT_NAME_HTTP,
                    "port": names.SERVICE_PORT,
                    "targetPort": names.PORT_NAME_HTTP,
                    "protocol": "TCP",
                }
            ],
        },
    }


def hpa(owner: Owner, spec: ModelDeploymentSpec, *, revision: int) -> dict[str, Any] | None:
    """The HPA scaling revision `revision` (the stable one), or None when autoscaling is off."""
    scaling = spec.autoscaling
    if scaling is None or not scaling.enabled:
        return None
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": names.revision_name(owner.name, revision),
        },
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        # The server container only: the sidecar's CPU must not dilute the model's utilization.
        "metrics": [
            {
                "type": "ContainerResource",
                "containerResource": {
                    "name": "cpu",
                    "container": names.CONTAINER_SERVER,
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.target_cpu_utilization_percentage,
                    },
                },
            }
        ],
    }
    if scaling.behavior is not None:
        hpa_spec["behavior"] = scaling.behavior.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(
            owner, names.hpa_name(owner.name), child_labels(owner.name, revision)
        ),
        "spec": hpa_spec,
    }


def disruption_budget(
    owner: Owner, spec: ModelDeploymentSpec, *, revision: int
) -> dict[str, Any] | None:
    """The PodDisruptionBudget `<name>-r<revision>` over one revision's pods, or None without
    `spec.disruption`. Per revision, like the Deployment, so each one's budget counts its own
    pods (a canary's few pods never borrow the stable's)."""
    if spec.disruption is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(
            owner, names.revision_name(owner.name, revision), child_labels(owner.name, revision)
        ),
        "spec": {
            "selector": {"matchLabels": revision_selector(owner.name, revision)},
            "maxUnavailable": spec.disruption.pdb_value(),
            # A pod that is not ready serves nothing: a drain may always evict it, so a revision
            # whose model fails to load never blocks node maintenance.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def sidecar_rbac(namespace: str, cluster_role: str) -> list[dict[str, Any]]:
    """ServiceAccount and RoleBinding the monitoring sidecars of a namespace share.

    The binding grants `cluster_role`, the chart's fixed ClusterRole (patch pods/status,
    create/patch Events), in this namespace only; the API server's admission policy narrows the
    status patch to the pod the token is bound to. No owner reference: every ModelDeployment in
    the namespace uses the same objects.
    """
    meta = {
        "namespace": namespace,
        "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": names.SIDECAR_SERVICE_ACCOUNT, **meta},
            # Tokens reach only the sidecar, through the pod's projected volume.
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": names.SIDECAR_ROLE_BINDING, **meta},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": names.SIDECAR_SERVICE_ACCOUNT,
                    "namespace": namespace,
                }
            ],
        },
    ]
