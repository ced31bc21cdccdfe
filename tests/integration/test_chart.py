"""The chart on the real control plane: it installs, and its RBAC is exactly what is needed.

Given the chart installed with `helm install --skip-crds` (the session fixture installed the CRD),
when the real operator runs as the chart's ServiceAccount, then a ModelDeployment becomes Stable;
and when one rule is taken away, the operator fails for exactly that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from tests.kube import KubeCluster, wait_until
from tests.unit.chart import (
    CHART,
    CLUSTER_PERMISSIONS,
    MONITOR_PERMISSIONS,
    NAMED_PERMISSIONS,
    NAMESPACED_PERMISSIONS,
    REMOVED_PERMISSIONS,
)

OPERATOR = Path(sys.executable).parent / "modeldeploy-operator"
MODEL = {
    "apiVersion": names.API_VERSION,
    "kind": names.KIND,
    "metadata": {"name": "iris"},
    "spec": {
        "model": {
            "name": "iris",
            "version": "1",
            "uri": "https://models.example.com/iris/1/model.joblib",
            "sha256": "e" * 64,
        },
        "replicas": 1,
    },
}
# kopf retries a 403 on its namespace and CRD scans for about a minute before it falls back to
# the namespaces it was given (single-namespace installs have no cluster-scoped RBAC).
OPERATOR_START_S = 120
# Permissions the operator must never hold, whatever the mode: (verb, resource, subresource).
FORBIDDEN = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("create", "pods", "exec"),
    ("create", "serviceaccounts", "token"),
    ("update", "deployments.apps", ""),
    ("patch", f"{names.PLURAL}.{names.GROUP}", ""),  # spec and metadata belong to the user
    ("update", f"{names.PLURAL}.{names.GROUP}", ""),
    ("delete", f"{names.PLURAL}.{names.GROUP}", ""),
    ("patch", "pods", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
    ("bind", "roles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""),
]


def release_name(namespace: str) -> str:
    # ClusterRoles are cluster-scoped: one release name per test namespace keeps them apart.
    return f"md-{namespace}"


def service_account(namespace: str) -> str:
    return f"{release_name(namespace)}-modeldeploy"


def monitor_role(namespace: str) -> str:
    """The chart's ClusterRole for the sidecar, `<fullname>-monitor`."""
    return f"{service_account(namespace)}-monitor"


@contextmanager
def installed(cluster: KubeCluster, namespace: str, *flags: str) -> Iterator[str]:
    release = release_name(namespace)
    cluster.helm(
        "install", release, str(CHART), "--namespace", namespace, "--skip-crds",
        "--wait", "--timeout", "90s", *flags,
    )  # fmt: skip
    try:
        yield release
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, check=False)


def can_i(
    cluster: KubeCluster, sa: str, verb: str, resource: str, sub: str, ns: str | None
) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += [f"--subresource={sub}"] if sub else []
    args += [f"--namespace={ns}"] if ns else []
    proc = cluster.kubectl(*args, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


def kubectl_resource(group: str, resource: str) -> tuple[str, str]:
    """('deployments.apps', 'scale') from ('apps', 'deployments/scale')."""
    plural, _, sub = resource.partition("/")
    return (f"{plural}.{group}" if group else plural), sub


def token_kubeconfig(cluster: KubeCluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, like the pod would in-cluster."""
    token = cluster.kubectl("create", "token", sa, "--namespace", namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": server["name"], "user": sa}}],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def operator(kubeconfig: Path, namespace: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    # $KUBECONFIG names the same file, so no admin credentials from the test's own environment
    # can reach any client inside the operator: the RBAC proof only holds if the token is all
    # it has.
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(OPERATOR), "--namespace", namespace, "--kubeconfig", str(kubeconfig),
             "--metrics-port", "0", "--health-port", "0",
             # The chart's Role allows get/update on the release's own Lease only.
             f"--leader-election-id={service_account(namespace)}",
             # The chart's flag: the operator may bind this ClusterRole and no other.
             f"--monitor-cluster-role={monitor_role(namespace)}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def apply_model_unserved(cluster: KubeCluster, namespace: str) -> None:
    """Create the ModelDeployment and check no other operator serves this namespace.

    The session's operator watches only `op-*` namespaces; an operator someone started by hand
    with --all-namespaces would otherwise do this test's work and make it prove nothing.
    """
    cluster.kubectl("apply", "--namespace", namespace, "-f", "-", input=json.dumps(MODEL))
    time.sleep(3)
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    deployments = cluster.get_json("deployments", "-n", namespace, "-l", selector)["items"]
    assert phase(cluster, namespace) == "", "another operator is serving this namespace"
    assert deployments == [], "another operator is serving this namespace"


def phase(cluster: KubeCluster, namespace: str) -> str:
    obj = cluster.get_json(names.PLURAL, "iris", "--namespace", namespace)
    return str((obj.get("status") or {}).get("phase") or "")


@pytest.mark.kwok
def test_install_runs_the_operator_under_the_restricted_profile(
    cluster: KubeCluster, namespace: str
) -> None:
    # Enforce, not only warn: a non-compliant pod would never be created and --wait would fail.
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    with installed(cluster, namespace, f"--set=watchNamespaces={{{namespace}}}") as release:
        deployment = cluster.get_json("deployment", "--namespace", namespace, "-l",
                                      f"app.kubernetes.io/instance={release}")["items"]  # fmt: skip
        assert len(deployment) == 1
        pod_spec = deployment[0]["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == service_account(namespace)
        cluster.get_json("serviceaccount", service_account(namespace), "--namespace", namespace)
        assert deployment[0]["spec"]["replicas"] == 2
        assert deployment[0]["status"]["readyReplicas"] == 2
        pdb = cluster.get_json("pdb", "--namespace", namespace, "-l",
                               f"app.kubernetes.io/instance={release}")["items"]  # fmt: skip
        assert [p["spec"]["minAvailable"] for p in pdb] == [1]
        cluster_roles = cluster.get_json(
            "clusterroles", "-l", f"app.kubernetes.io/instance={release}"
        )["items"]
        # Only the sidecar's, which the operator binds per namespace and does not hold.
        assert [r["metadata"]["name"] for r in cluster_roles] == [monitor_role(namespace)]


@pytest.mark.parametrize("mode", ["single-namespace", "cluster-wide"])
def test_service_account_holds_exactly_the_needed_permissions(
    cluster: KubeCluster, namespace: str, mode: str
) -> None:
    flags = [f"--set=watchNamespaces={{{namespace}}}"] if mode == "single-namespace" else []
    sa = f"system:serviceaccount:{namespace}:{service_account(namespace)}"
    with installed(cluster, namespace, *flags):
        for group, resource, verb in sorted(NAMESPACED_PERMISSIONS):
            res, sub = kubectl_resource(group, resource)
            assert can_i(cluster, sa, verb, res, sub, namespace), (verb, resource)
            # Elsewhere only in cluster-wide mode.
            elsewhere = can_i(cluster, sa, verb, res, sub, "default")
            assert elsewhere == (mode == "cluster-wide"), (verb, resource, "default")
        for group, resource, verb in sorted(CLUSTER_PERMISSIONS):
            res, sub = kubectl_resource(group, resource)
            assert can_i(cluster, sa, verb, res, sub, None) == (mode == "cluster-wide"), resource
        for group, resource, verb, name in sorted(NAMED_PERMISSIONS):
            res, sub = kubectl_resource(group, resource)
            name = monitor_role(namespace) if name == "MONITOR_ROLE" else name
            assert can_i(cluster, sa, verb, f"{res}/{name}", sub, namespace), (verb, res, name)
            assert not can_i(cluster, sa, verb, f"{res}/someone-else", sub, namespace), res
        # What the operator held while it created the sidecar's Role itself, and no more.
        for group, resource, verb in sorted(REMOVED_PERMISSIONS | MONITOR_PERMISSIONS):
            if (group, resource, verb) in NAMESPACED_PERMISSIONS:
                continue  # `create events`: its own Events on ModelDeployments
            res, sub = kubectl_resource(group, resource)
            assert not can_i(cluster, sa, verb, res, sub, namespace), (verb, resource)
        for verb, resource, sub in FORBIDDEN:
            assert not can_i(cluster, sa, verb, resource, sub, namespace), (verb, resource, sub)
        assert not can_i(cluster, sa, "list", "namespaces", "", None)
        # Leader election: the release's own Lease, in the release namespace, and nothing else.
        leases = "leases.coordination.k8s.io"
        own = f"{leases}/{service_account(namespace)}"
        assert can_i(cluster, sa, "create", leases, "", namespace)
        for verb in ("get", "update"):
            assert can_i(cluster, sa, verb, own, "", namespace), verb
            assert not can_i(cluster, sa, verb, f"{leases}/someone-else", "", namespace), verb
            assert not can_i(cluster, sa, verb, own, "", "default"), verb
        for verb in ("list", "watch", "patch", "delete"):
            assert not can_i(cluster, sa, verb, leases, "", namespace), verb
        assert not can_i(cluster, sa, "create", leases, "", "default")


@pytest.mark.kwok
def test_operator_reaches_stable_with_only_the_chart_rbac(
    cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    with installed(cluster, namespace, f"--set=watchNamespaces={{{namespace}}}"):
        kubeconfig = token_kubeconfig(
            cluster, namespace, service_account(namespace), tmp_path / "kubeconfig"
        )
        log = tmp_path / "operator.log"
        apply_model_unserved(cluster, namespace)
        with operator(kubeconfig, namespace, log) as proc:
            wait_until(
                lambda: proc.poll() is None and phase(cluster, namespace) == names.PHASE_STABLE,
                timeout=OPERATOR_START_S,
                what=f"phase Stable (operator log: {log})",
            )
            # It led through the chart's Lease Role (and releases the Lease when it stops).
            lease = cluster.get_json("lease", service_account(namespace), "-n", namespace)
            assert lease["spec"]["holderIdentity"]
        # The sidecar's identity, made with `bind` on the chart's monitor ClusterRole only.
        cluster.get_json("serviceaccount", names.SIDECAR_SERVICE_ACCOUNT, "-n", namespace)
        binding = cluster.get_json("rolebinding", names.SIDECAR_ROLE_BINDING, "-n", namespace)
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["roleRef"]["name"] == monitor_role(namespace)
        events = cluster.get_json(
            "events", "-n", namespace, "--field-selector", f"involvedObject.kind={names.KIND}"
        )["items"]
        assert events, "the operator posted no Event on the ModelDeployment"
        forbidden = [
            line
            for line in log.read_text().splitlines()
            if "Forbidden" in line and "namespaces" not in line and "customresourcedef" not in line
        ]
        assert forbidden == []


def chart_objects_without_status_rule(
    cluster: KubeCluster, namespace: str, release: str
) -> list[dict[str, Any]]:
    """The chart as rendered for this namespace, minus `patch modeldeployments/status`."""
    proc = cluster.helm(
        "template", release, str(CHART), "--namespace", namespace,
        f"--set=watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    # Namespaced objects only: nothing would uninstall cluster-scoped ones (no release).
    skip = {"Deployment", "ClusterRole", "ValidatingAdmissionPolicy"}
    skip.add("ValidatingAdmissionPolicyBinding")
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] not in skip]
    for obj in objects:
        if obj["kind"] == "Role" and not obj["metadata"]["name"].endswith("-leader-election"):
            before = len(obj["rules"])
            obj["rules"] = [
                r for r in obj["rules"] if f"{names.PLURAL}/status" not in r["resources"]
            ]
            assert len(obj["rules"]) == before - 1
    return objects


@pytest.mark.kwok
def test_operator_cannot_report_status_without_the_status_rule(
    cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    release = release_name(namespace)
    objects = chart_objects_without_status_rule(cluster, namespace, release)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1",
                                                         "items": objects}))  # fmt: skip
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "kubeconfig")
    log = tmp_path / "operator.log"
    apply_model_unserved(cluster, namespace)
    with operator(kubeconfig, namespace, log):
        # Every status write is refused, so the operator never records a decision, and a
        # decision it cannot record it does not act on: no phase, and no Deployment either.
        refusal = f'cannot patch resource "{names.PLURAL}/status"'
        wait_until(
            lambda: refusal in log.read_text(),
            timeout=OPERATOR_START_S,
            what=f"a refused status write in {log}",
        )
        revision = names.revision_name("iris", 1)
        assert cluster.kubectl(
            "get", "deployment", revision, "-n", namespace, check=False
        ).returncode
        assert phase(cluster, namespace) == ""
