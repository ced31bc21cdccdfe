"""Helpers for the chart tests: the project's own helm build, rendering, and lookups."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

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


def rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of the serving (Cluster)Roles; the Lease Role is checked on its own."""
    return [
        rule
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and not is_leader_election(d)
        for rule in d["rules"]
    ]


def permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Rules flattened to (apiGroup, resource, verb) triples."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
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
    | {("", "pods", v) for v in ("get", "list", "watch")}
    | {("", "pods/status", "patch")}
    | {(group, "events", v) for group in ("", "events.k8s.io") for v in ("create", "patch")}
    | {
        (group, resource, v)
        for group, resource in (
            ("", "serviceaccounts"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
        )
        for v in ("get", "list", "watch", "create", "patch")
    }
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
