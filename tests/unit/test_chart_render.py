"""`helm lint` and `helm template` of charts/modeldeploy with default and non-default values."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from tests.unit.chart import (
    CHART,
    CLUSTER_PERMISSIONS,
    LEASE_PERMISSIONS,
    MONITOR_PERMISSIONS,
    NAMED_PERMISSIONS,
    NAMESPACED_PERMISSIONS,
    RELEASE,
    RELEASE_NAMESPACE,
    helm,
    is_leader_election,
    is_monitor_role,
    kinds,
    lease_permissions,
    named_permissions,
    one,
    operator_roles,
    permissions,
    rbac_rules,
    render,
)

MONITOR_ROLE = f"{RELEASE}-modeldeploy-monitor"  # <fullname>-monitor
EVERYTHING_ON: dict[str, Any] = {
    "watchNamespaces": ["team-a", "team-b"],
    "verbose": True,
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "podDisruptionBudget": {"enabled": True},
    "dashboards": {"enabled": True, "namespace": "monitoring"},
    "image": {"digest": "sha256:" + "c" * 64},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
    "podAnnotations": {"a": "b"},
    "imagePullSecrets": [{"name": "regcred"}],
}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    result: dict[str, Any] = pod["containers"][0]
    return result


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["default", "everything-on"])
def test_helm_lint_strict_passes(values: dict[str, Any]) -> None:
    proc = helm("lint", "--strict", str(CHART), values=values)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_is_cluster_wide() -> None:
    docs = render()
    assert kinds(docs) == [
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget",
        "Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]  # fmt: skip
    assert "--all-namespaces" in container(docs)["args"]
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": RELEASE_NAMESPACE}
    ]
    (role,) = operator_roles(docs)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_single_namespace_mode_renders_roles_only() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    # Cluster-scoped only what the sidecar needs: its ClusterRole (bound per namespace, never
    # cluster-wide) and the admission policy. Nothing grants the operator anything cluster-wide.
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == [MONITOR_ROLE]
    assert "ClusterRoleBinding" not in kinds(docs)
    roles = [d for d in docs if d["kind"] == "Role" and not is_leader_election(d)]
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and not is_leader_election(d)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NAMESPACE}
        ]
    args = container(docs)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_cluster_role_grants_exactly_the_golden_permissions() -> None:
    (role,) = operator_roles(render())
    assert role["kind"] == "ClusterRole"
    assert permissions(role["rules"]) == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS
    assert named_permissions(role["rules"], MONITOR_ROLE) == NAMED_PERMISSIONS


def test_each_role_grants_exactly_the_namespaced_permissions() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    roles = operator_roles(docs)
    assert len(roles) == 2
    for role in roles:
        assert role["kind"] == "Role"
        assert permissions(role["rules"]) == NAMESPACED_PERMISSIONS
        assert named_permissions(role["rules"], MONITOR_ROLE) == NAMED_PERMISSIONS


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster", "ns"])
def test_the_monitor_cluster_role_is_what_the_operator_binds(values: dict[str, Any]) -> None:
    docs = render(values)
    (monitor,) = [d for d in docs if is_monitor_role(d)]
    assert permissions(monitor["rules"]) == MONITOR_PERMISSIONS
    args = container(docs)["args"]
    assert f"--monitor-cluster-role={monitor['metadata']['name']}" in args
    # The operator never holds what it grants: RBAC lets it bind this one role instead.
    assert not permissions(rbac_rules(docs)) & MONITOR_PERMISSIONS - {("", "events", "create")}


def test_the_monitor_runs_the_operators_image_unless_told() -> None:
    args = container(render({"image": {"tag": "dev"}}))["args"]
    repository = names.DEFAULT_SERVING_IMAGE.rsplit(":", 1)[0]
    assert f"--monitor-image={repository}:dev" in args
    args = container(render({"monitor": {"image": "ops.example/monitor:1"}}))["args"]
    assert "--monitor-image=ops.example/monitor:1" in args


def test_the_webhook_url_comes_from_the_values_or_a_secret() -> None:
    def notify_env(values: dict[str, Any]) -> list[dict[str, Any]]:
        env = container(render(values))["env"]
        return [e for e in env if e["name"] == names.ENV_NOTIFY_URL]

    assert notify_env({}) == []
    url = "https://hooks.example/modeldeploy"
    assert notify_env({"notifications": {"webhook": {"url": url}}}) == [
        {"name": names.ENV_NOTIFY_URL, "value": url}
    ]
    secret = {"notifications": {"webhook": {"url": url, "existingSecret": "hook"}}}
    (env,) = notify_env(secret)
    assert env["valueFrom"] == {"secretKeyRef": {"name": "hook", "key": "url"}}


def test_network_policy_api_server_values_become_operator_flags() -> None:
    args = container(render({}))["args"]
    assert not [a for a in args if a.startswith("--api-server-")]  # the operator's defaults
    values = {"apiServerCIDRs": ["10.0.0.5/32", "fd00::/64"], "apiServerPorts": [6443]}
    args = container(render({"networkPolicy": values}))["args"]
    assert [a for a in args if a.startswith("--api-server-")] == [
        "--api-server-cidr=10.0.0.5/32",
        "--api-server-cidr=fd00::/64",
        "--api-server-port=6443",
    ]


def test_the_verdict_policy_names_the_operators_identities() -> None:
    docs = render({"watchNamespaces": ["team-a"]})
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
         "resources": ["pods/status"]}
    ]  # fmt: skip
    (identity,) = spec["matchConditions"]
    assert f"':{names.SIDECAR_SERVICE_ACCOUNT}')" in identity["expression"]
    ours = {v["name"]: v["expression"] for v in spec["variables"]}["ours"]
    assert ours == f"['{names.POD_COND_METRICS_HEALTHY}', '{names.POD_COND_MODEL_READY}']"
    assert all(v.get("messageExpression") for v in spec["validations"])


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster", "ns"])
def test_rbac_has_no_secrets_no_wildcards_no_escalation(values: dict[str, Any]) -> None:
    rules = rbac_rules(render(values))
    assert rules
    for rule in rules:
        assert set(rule) - {"resourceNames"} == {"apiGroups", "resources", "verbs"}  # no URLs
        words = [*rule["apiGroups"], *rule["resources"], *rule["verbs"]]
        assert not any("*" in w for w in words), rule
        assert not any(r == "secrets" or r.startswith("secrets/") for r in rule["resources"])
        assert not {"escalate", "impersonate", "update", "deletecollection"} & set(rule["verbs"]), (
            rule
        )
        if "bind" in rule["verbs"]:  # only the sidecar's ClusterRole, by name
            assert rule["resources"] == ["clusterroles"] and rule["verbs"] == ["bind"], rule
            assert rule["resourceNames"] == [MONITOR_ROLE], rule
        assert "pods/exec" not in rule["resources"]
        assert "serviceaccounts/token" not in rule["resources"]


def test_no_rbac_when_disabled() -> None:
    docs = render({"rbac": {"create": False}})
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds(docs))


def test_bring_your_own_service_account() -> None:
    docs = render({"serviceAccount": {"create": False, "name": "ops-sa"}})
    assert "ServiceAccount" not in kinds(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops-sa"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-sa"
    proc = helm("template", "md", str(CHART), values={"serviceAccount": {"create": False}})
    assert proc.returncode != 0
    assert "serviceAccount.name is required" in proc.stderr


def test_operator_pod_meets_the_restricted_profile_with_a_read_only_root() -> None:
    docs = render(EVERYTHING_ON)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    ctr = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = ctr["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int)
    assert sc["runAsUser"] > 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert "privileged" not in sc
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    assert all("hostPath" not in v for v in pod["volumes"])


def test_two_replicas_by_default_with_a_lease_a_pdb_and_spread_over_nodes() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    ctr = container(docs)
    lease = deployment["metadata"]["name"]
    assert f"--leader-election-id={lease}" in ctr["args"]
    env = {e["name"]: e.get("valueFrom") for e in ctr["env"]}
    assert env[names.ENV_POD_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env[names.ENV_POD_NAME] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster", "ns"])
def test_lease_role_only_in_the_release_namespace_and_only_for_its_lease(
    values: dict[str, Any],
) -> None:
    docs = render(values)
    lease = one(docs, "Deployment")["metadata"]["name"]
    role = next(d for d in docs if d["kind"] == "Role" and is_leader_election(d))
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and is_leader_election(d))
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NAMESPACE}
    ]
    assert lease_permissions(role["rules"], lease) == LEASE_PERMISSIONS
    assert not any("leases" in r["resources"] for r in rbac_rules(docs))


def test_one_replica_has_no_pdb_and_no_anti_affinity() -> None:
    docs = render({"replicas": 1, "affinity": {"nodeAffinity": {"x": {}}}})
    assert "PodDisruptionBudget" not in kinds(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["affinity"] == {"nodeAffinity": {"x": {}}}


def test_affinity_given_by_the_user_is_kept_and_completed() -> None:
    mine = {"preferredDuringSchedulingIgnoredDuringExecution": []}
    pod = one(render({"affinity": {"podAntiAffinity": mine}}), "Deployment")["spec"]["template"]
    assert pod["spec"]["affinity"] == {"podAntiAffinity": mine}
    pod = one(render({"affinity": {"nodeAffinity": {"x": {}}}}), "Deployment")["spec"]["template"]
    assert set(pod["spec"]["affinity"]) == {"nodeAffinity", "podAntiAffinity"}


def test_without_leader_election_one_replica_recreated() -> None:
    off = {"replicas": 1, "leaderElection": {"enabled": False}}
    docs = render(off)
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "--no-leader-election" in container(docs)["args"]
    assert not [d for d in docs if is_leader_election(d)]
    proc = helm("template", RELEASE, str(CHART), values={"leaderElection": {"enabled": False}})
    assert proc.returncode != 0
    assert "replicas > 1 needs leaderElection.enabled" in proc.stderr


def test_probes_hit_kopf_health_endpoint_on_the_health_port() -> None:
    ctr = container(render({"health": {"port": 9440}, "metrics": {"port": 9441}}))
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ports == {"health": 9440, "metrics": 9441}
    assert "--health-port=9440" in ctr["args"]
    assert "--metrics-port=9441" in ctr["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ctr["resources"]["limits"]["memory"] == "256Mi"


def test_image_defaults_to_app_version_and_can_be_pinned() -> None:
    # The operator's built-in serving image is the same project image at the same version.
    assert container(render())["image"] == names.DEFAULT_SERVING_IMAGE
    repository = names.DEFAULT_SERVING_IMAGE.rsplit(":", 1)[0]
    assert container(render({"image": {"tag": "dev"}}))["image"] == f"{repository}:dev"
    digest = "sha256:" + "d" * 64
    pinned = container(render({"image": {"tag": "dev", "digest": digest}}))
    assert pinned["image"] == f"{repository}@{digest}"


def test_model_pods_default_to_the_operators_image() -> None:
    ctr = container(render({"image": {"tag": "dev"}}))
    assert f"--serving-image={ctr['image']}" in ctr["args"]


def test_an_mlflow_tracking_uri_becomes_the_operators_flag() -> None:
    assert not any(a.startswith("--mlflow") for a in container(render())["args"])
    ctr = container(render({"mlflow": {"trackingUri": "http://mlflow.mlflow.svc:5000"}}))
    assert "--mlflow-tracking-uri=http://mlflow.mlflow.svc:5000" in ctr["args"]


def test_serving_image_policy_values_become_operator_flags() -> None:
    args = container(render())["args"]
    assert "--serving-image-rollout=manual" in args
    assert "--serving-image-max-canaries=1" in args
    assert not [a for a in args if a.startswith("--serving-image-sklearn-version")]
    policy = {"rollout": "progressive", "maxCanaries": 3, "sklearnVersion": "1.5.2"}
    args = container(render({"servingImage": policy}))["args"]
    assert {
        "--serving-image-rollout=progressive",
        "--serving-image-max-canaries=3",
        "--serving-image-sklearn-version=1.5.2",
    } <= set(args)
    refused = helm("template", RELEASE, str(CHART), values={"servingImage": {"rollout": "auto"}})
    assert refused.returncode != 0


def test_optional_objects_render_when_enabled() -> None:
    docs = render(EVERYTHING_ON)
    assert {"PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "ConfigMap"} <= set(kinds(docs))
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(docs, "ConfigMap")["metadata"]["namespace"] == "monitoring"
    assert one(docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "--verbose" in container(docs)["args"]


def test_pod_monitor_selects_the_operators_model_pods() -> None:
    monitor = one(render(EVERYTHING_ON), "PodMonitor")["spec"]
    assert monitor["selector"] == {"matchLabels": {names.LABEL_MANAGED_BY: names.MANAGED_BY}}
    assert monitor["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    endpoint = monitor["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == (names.PORT_NAME_HTTP, names.PATH_METRICS)

    def meta(label: str) -> str:  # how Prometheus spells a pod label
        return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)

    relabel = {r["sourceLabels"][0]: r["targetLabel"] for r in endpoint["relabelings"]}
    assert relabel == {
        meta(names.LABEL_NAME): "modeldeployment",
        meta(names.LABEL_REVISION): "revision",
    }
    cluster = one(render({"metrics": {"podMonitor": {"enabled": True}}}), "PodMonitor")
    assert cluster["spec"]["namespaceSelector"] == {"any": True}


def test_service_monitor_without_service_fails_with_a_reason() -> None:
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    proc = helm("template", "md", str(CHART), values=values)
    assert proc.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in proc.stderr


def test_objects_carry_standard_labels_but_never_the_operators_managed_by() -> None:
    for doc in render(EVERYTHING_ON):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "modeldeploy"
        assert labels["app.kubernetes.io/instance"] == "md"
        # The operator watches children labelled managed-by=modeldeploy; its own objects are not.
        assert labels[names.LABEL_MANAGED_BY] == "Helm"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"replicas": 0}, "/replicas"),
        ({"leaderElection": {"enable": True}}, "additional properties 'enable' not allowed"),
        ({"image": {"tg": "x"}}, "additional properties 'tg' not allowed"),
        ({"metrics": {"port": "8000"}}, "/metrics/port"),
        ({"metrics": {"port": 80}}, "/metrics/port"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
        ({"resources": {"claims": []}}, "additional properties 'claims' not allowed"),
        ({"affinity": {"nodeAfinity": {}}}, "invalid propertyName 'nodeAfinity'"),
        ({"podLabels": {"a": 1}}, "/podLabels/a"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    proc = helm("template", "md", str(CHART), values=values)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert complaint in proc.stderr, proc.stderr
