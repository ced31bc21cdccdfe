"""Helpers for the chart tests: the project's own helm build, rendering, and lookups."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from modeldeploy import names

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
RELEASE = "md"
RELEASE_NAMESPACE = "modeldeploy-system"


@functools.cache
def helm_bin() -> Path:
    """helm built from Go modules by tools/build.sh (cached, so this is fast after the first)."""
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "build.sh")], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


def helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values or {}, f)
        f.flush()
        return subprocess.run(
            [str(helm_bin()), *args, "--values", f.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template` output as objects; fails the test with helm's message on error."""
    proc = helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, values=values)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def is_leader_election(doc: dict[str, Any]) -> bool:
    return str(doc["metadata"]["name"]).endswith("-leader-election")


def is_monitor_role(doc: dict[str, Any]) -> bool:
    """The sidecar's ClusterRole `<fullname>-monitor`: the operator binds it, never holds it."""
    return doc["kind"] == "ClusterRole" and str(doc["metadata"]["name"]).endswith("-monitor")


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's serving (Cluster)Roles: not the Lease Role, not the sidecar's."""
    return [
        d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and not is_leader_election(d)
        if not is_monitor_role(d)
    ]


def rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of the operator's serving (Cluster)Roles."""
    return [rule for d in operator_roles(docs) for rule in d["rules"]]


def permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Rules on every object of a kind (no resourceNames), as (apiGroup, resource, verb)."""
    return {
        (group, resource, verb)
        for rule in rules
        if "resourceNames" not in rule
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def named_permissions(
    rules: list[dict[str, Any]], monitor_role: str
) -> set[tuple[str, str, str, str]]:
    """Rules limited by resourceNames, as (apiGroup, resource, verb, name); the release's
    monitor ClusterRole is spelled MONITOR_ROLE."""
    return {
        (group, resource, verb, "MONITOR_ROLE" if name == monitor_role else name)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", [])
    }


# The golden permission list: what the operator does in every namespace it serves (docs/chart.md
# explains each row). The integration tests check the same list against the real API server.
CRUD = ("get", "list", "watch", "create", "patch", "delete")
NAMESPACED_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {("modeldeploy.io", "modeldeployments", v) for v in ("get", "list", "watch")}
    | {("modeldeploy.io", "modeldeployments/status", "patch")}
    | {("apps", "deployments", v) for v in CRUD}
    | {("apps", "controllerrevisions", v) for v in CRUD}
    | {("", "services", v) for v in CRUD}
    | {("autoscaling", "horizontalpodautoscalers", v) for v in CRUD}
    # Budgets are watched, never read by name: no get.
    | {("policy", "poddisruptionbudgets", v) for v in CRUD if v != "get"}
    | {("networking.k8s.io", "networkpolicies", v) for v in CRUD if v != "get"}
    | {("", "pods", v) for v in ("get", "list", "watch")}
    | {("", "events", "create")}
    # RBAC cannot limit create by name (the name is in the body); patch is limited below.
    | {("", "serviceaccounts", "create"), ("rbac.authorization.k8s.io", "rolebindings", "create")}
)
# Limited to one object each: the sidecar's ServiceAccount and RoleBinding, and `bind` on the
# release's monitor ClusterRole (so the operator grants it without holding pods/status patch).
NAMED_PERMISSIONS: frozenset[tuple[str, str, str, str]] = frozenset(
    {
        ("", "serviceaccounts", "patch", names.SIDECAR_SERVICE_ACCOUNT),
        ("rbac.authorization.k8s.io", "rolebindings", "patch", names.SIDECAR_ROLE_BINDING),
        ("rbac.authorization.k8s.io", "clusterroles", "bind", "MONITOR_ROLE"),
    }
)
# What the operator held before the sidecar's ClusterRole, and must not any more.
REMOVED_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {("", "pods/status", "patch")}
    | {("rbac.authorization.k8s.io", "roles", v) for v in ("create", "patch", "get")}
    | {("events.k8s.io", "events", "create"), ("", "events", "patch")}
    | {("", "serviceaccounts", v) for v in ("get", "list", "watch", "patch")}
    | {("rbac.authorization.k8s.io", "rolebindings", v) for v in ("get", "list", "watch", "patch")}
    | {("rbac.authorization.k8s.io", "clusterroles", "bind")}  # any other ClusterRole
)
# The sidecar's ClusterRole, bound by the operator in each served namespace.
MONITOR_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {("", "pods/status", "patch")}
    | {(group, "events", v) for group in ("", "events.k8s.io") for v in ("create", "patch")}
)
# Only in cluster-wide mode: kopf follows CRDs appearing and disappearing.
CLUSTER_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
)
# Leader election, in the release namespace only: create any Lease (RBAC cannot limit create by
# name), get and update only the release's own. (group, resource, verb, resourceName or "").
LEASE_PERMISSIONS: frozenset[tuple[str, str, str, str]] = frozenset(
    {("coordination.k8s.io", "leases", "create", "")}
    | {("coordination.k8s.io", "leases", v, "LEASE") for v in ("get", "update")}
)


def lease_permissions(rules: list[dict[str, Any]], lease: str) -> set[tuple[str, str, str, str]]:
    """Rules as (apiGroup, resource, verb, resourceName), the Lease's name spelled LEASE."""
    return {
        (group, resource, verb, "LEASE" if name == lease else name)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", [""])
    }
