"""The child objects a ModelDeployment renders to (modeldeploy.builders and modeldeploy.pod)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.builders import (
    Owner,
    child_labels,
    hpa,
    owner_reference,
    revision_deployment,
    service,
    sidecar_rbac,
)
from modeldeploy.pod import PodSettings
from modeldeploy.spec import ModelDeploymentSpec, parse_spec
from tests.helpers.spec_cases import SHA, valid_manifest

IMAGE = "registry.invalid/modeldeploy-serving:1.0"
OWNER = Owner(name="iris", namespace="ml", uid="4f1c-uid")

SPECS: dict[str, dict[str, Any]] = {
    "minimal": {},
    "fixed-replicas": {"replicas": 3},
    "autoscaling": {"autoscaling": {"minReplicas": 2, "maxReplicas": 8}},
    "autoscaling-off": {"autoscaling": {"maxReplicas": 8, "enabled": False}, "replicas": 2},
    "pvc-skops": {
        "model": {
            "name": "churn",
            "version": "7",
            "uri": "pvc://models/churn/7/m.skops",
            "sha256": SHA,
            "format": "skops",
        },
        "serving": {
            "image": "example.org/custom:2",
            "port": 9000,
            "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        },
    },
}


def _spec(name: str) -> ModelDeploymentSpec:
    return parse_spec({**valid_manifest()["spec"], **SPECS[name]})


def _deployment(name: str = "minimal", **kwargs: Any) -> dict[str, Any]:
    spec = _spec(name)
    args: dict[str, Any] = {
        "revision": 3,
        "spec_hash": "abc123",
        "default_image": IMAGE,
        "replicas": spec.fixed_replicas,
    }
    return revision_deployment(OWNER, spec, **(args | kwargs))


def _pod(name: str = "minimal") -> dict[str, Any]:
    result: dict[str, Any] = _deployment(name)["spec"]["template"]["spec"]
    return result


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- Pod Security "restricted", checked the way pod-security-admission checks it --------------

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of pod-security-admission's restricted level, plus our read-only root."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append("host namespaces")
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} type")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        ctx = c.get("securityContext", {})

        def get(key: str, ctx: dict[str, Any] = ctx) -> Any:
            return ctx.get(key, pod_ctx.get(key))

        if get("runAsNonRoot") is not True:
            problems.append(f"{c['name']}: runAsNonRoot")
        if not isinstance(get("runAsUser"), int) or get("runAsUser") == 0:
            problems.append(f"{c['name']}: numeric non-root runAsUser")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation")
        if ctx.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        if (get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c['name']}: seccompProfile")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: capabilities")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']}: readOnlyRootFilesystem")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
    return problems


@pytest.mark.parametrize("name", SPECS)
def test_pods_meet_the_restricted_profile_with_a_read_only_root(name: str) -> None:
    assert restricted_violations(_pod(name)) == []


def test_the_restricted_checker_catches_a_violation() -> None:
    pod = _pod()
    pod["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert restricted_violations(pod) == ["volume host type", "model-server: capabilities"]


@pytest.mark.parametrize("name", SPECS)
def test_every_container_has_a_writable_tmp(name: str) -> None:
    for container in _containers(_pod(name)).values():
        assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, container["name"]


# --- who owns replicas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "replicas", "expected"),
    [
        ("autoscaling", None, None),  # the HPA owns the field: it must not appear at all
        ("minimal", 1, 1),
        ("fixed-replicas", 3, 3),
        ("autoscaling-off", 2, 2),
        ("autoscaling", 2, 2),  # a canary of an autoscaled model is sized by the operator
        ("fixed-replicas", 0, 0),  # a canary scaled to zero
    ],
)
def test_replicas_appear_only_when_given(
    name: str, replicas: int | None, expected: int | None
) -> None:
    deployment = _deployment(name, replicas=replicas)
    assert deployment["spec"].get("replicas") == expected
    assert ("replicas" in deployment["spec"]) is (expected is not None)


def test_under_an_hpa_the_stable_deployment_has_no_replicas_field() -> None:
    spec = _spec("autoscaling")
    deployment = _deployment("autoscaling", replicas=spec.fixed_replicas)
    assert "replicas" not in json.dumps(deployment["spec"]["strategy"])
    assert "replicas" not in deployment["spec"]


def test_negative_replicas_are_a_bug() -> None:
    with pytest.raises(ValueError, match="replicas"):
        _deployment(replicas=-1)


# --- labels, names, owners -----------------------------------------------------------------------


def test_children_carry_only_the_operator_labels() -> None:
    body = {
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "uid": "4f1c-uid",
            "labels": {"argocd.argoproj.io/instance": "ml-app", "team": "x"},
        }
    }
    owner = Owner.from_body(body)
    spec = _spec("autoscaling")
    expected = {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_NAME: "iris",
        names.LABEL_REVISION: "3",
    }
    deployment = revision_deployment(
        owner, spec, revision=3, spec_hash="h", default_image=IMAGE, replicas=None
    )
    autoscaler = hpa(owner, spec, revision=3)
    assert autoscaler is not None
    assert deployment["metadata"]["labels"] == expected
    assert deployment["spec"]["template"]["metadata"]["labels"] == expected
    assert autoscaler["metadata"]["labels"] == expected
    assert service(owner)["metadata"]["labels"] == child_labels("iris")
    assert "argocd" not in json.dumps([deployment, autoscaler, service(owner)])


def test_deployment_name_selector_and_spec_hash() -> None:
    deployment = _deployment()
    assert deployment["metadata"]["name"] == "iris-r3"
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["metadata"]["annotations"] == {names.ANNOTATION_SPEC_HASH: "abc123"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    other = _deployment(revision=4)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= other.items()  # revisions never adopt each other's pods


def test_every_child_is_owned_by_the_model_deployment_as_controller() -> None:
    ref = owner_reference(OWNER)
    assert ref == {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "iris",
        "uid": "4f1c-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    autoscaler = hpa(OWNER, _spec("autoscaling"), revision=3)
    assert autoscaler is not None
    for child in (_deployment(), service(OWNER), autoscaler):
        assert child["metadata"]["ownerReferences"] == [ref]


# --- the pod's process contract ------------------------------------------------------------------


def test_server_container_contract() -> None:
    server = _containers(_pod())[names.CONTAINER_SERVER]
    assert server["image"] == IMAGE
    assert server["command"] == ["modeldeploy-server"]
    assert _env(server) == {
        "MODELDEPLOY_MODEL_URI": "https://models.example.com/iris/3/model.joblib",
        "MODELDEPLOY_MODEL_NAME": "iris",
        "MODELDEPLOY_MODEL_VERSION": "3",
        "MODELDEPLOY_SHA256": SHA,
        "MODELDEPLOY_FORMAT": "joblib",
        "MODELDEPLOY_PORT": "8080",
        "MODELDEPLOY_DRAIN_SECONDS": "3",
    }
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_monitor_sidecar_contract() -> None:
    pod = _pod()
    monitor = _containers(pod)[names.CONTAINER_MONITOR]
    assert monitor["command"] == ["modeldeploy-monitor"]
    assert monitor["restartPolicy"] == "Always"  # native sidecar: outlives the server's drain
    assert _env(monitor) == {
        "MODELDEPLOY_MONITOR_METRICS_URL": "http://127.0.0.1:8080/metrics",
        "MODELDEPLOY_MONITOR_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "MODELDEPLOY_MONITOR_POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "MODELDEPLOY_MONITOR_DEPLOYMENT_NAME": "iris",
        "MODELDEPLOY_MONITOR_DEPLOYMENT_UID": "4f1c-uid",
        "MODELDEPLOY_MONITOR_WINDOW_SECONDS": "30",
        "MODELDEPLOY_MONITOR_MIN_REQUESTS": "20",
        "MODELDEPLOY_MONITOR_ON_NO_DATA": "hold",
        "MODELDEPLOY_MONITOR_MAX_ERROR_RATE": "0.01",
        "MODELDEPLOY_MONITOR_MAX_LATENCY_P99_MS": "250",
    }
    assert monitor["ports"] == [{"name": "monitor", "containerPort": 9090, "protocol": "TCP"}]
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "monitor"}
    assert "readinessProbe" not in monitor  # a monitor hiccup must not unready the model


def test_only_the_sidecar_gets_a_service_account_token() -> None:
    pod = _pod()
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == names.SIDECAR_SERVICE_ACCOUNT
    mounts = {
        name: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        for name, c in _containers(pod).items()
    }
    sa_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert sa_path not in mounts[names.CONTAINER_SERVER]
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[names.CONTAINER_MONITOR][sa_path]]
    sources = volume["projected"]["sources"]
    assert [next(iter(s)) for s in sources] == ["serviceAccountToken", "configMap", "downwardAPI"]
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    server_volumes = set(mounts[names.CONTAINER_SERVER].values())
    assert volume["name"] not in server_volumes


def test_graceful_termination() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    server = _containers(pod)[names.CONTAINER_SERVER]
    # The hook starts the server's drain, then pauses (prestop.py).
    command, pause = server["lifecycle"]["preStop"]["exec"]["command"]
    assert command == names.COMMAND_PRESTOP
    assert 0 < int(pause) < pod["terminationGracePeriodSeconds"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "readinessGates" not in pod


def test_pod_settings_refuse_a_pre_stop_longer_than_the_grace_period() -> None:
    with pytest.raises(ValueError, match="pre_stop"):
        PodSettings(pre_stop_seconds=30, termination_grace_seconds=30)
    with pytest.raises(ValueError, match="non-root"):
        PodSettings(run_as_user=0)


def test_pvc_model_is_mounted_read_only_and_served_from_a_file_uri() -> None:
    pod = _pod("pvc-skops")
    server = _containers(pod)[names.CONTAINER_SERVER]
    env = _env(server)
    assert env["MODELDEPLOY_MODEL_URI"] == "file:///mnt/models/models/churn/7/m.skops"
    assert env["MODELDEPLOY_FORMAT"] == "skops"
    assert {"name": "model", "mountPath": "/mnt/models/models", "readOnly": True} in server[
        "volumeMounts"
    ]
    assert {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    monitor = _containers(pod)[names.CONTAINER_MONITOR]
    assert "model" not in {m["name"] for m in monitor["volumeMounts"]}


def test_spec_image_port_and_env_reach_the_pod() -> None:
    containers = _containers(_pod("pvc-skops"))
    server, monitor = containers[names.CONTAINER_SERVER], containers[names.CONTAINER_MONITOR]
    assert server["image"] == "example.org/custom:2"
    assert _env(server)["MODELDEPLOY_PORT"] == "9000"
    assert _env(server)["OMP_NUM_THREADS"] == "1"
    assert _env(monitor)["MODELDEPLOY_MONITOR_METRICS_URL"] == "http://127.0.0.1:9000/metrics"


@pytest.mark.parametrize("name", ["minimal", "pvc-skops"])
def test_the_monitor_runs_the_operators_image_never_the_specs(name: str) -> None:
    """The sidecar holds the pod's API token: a user-chosen image must never get it."""
    settings = PodSettings(monitor_image="registry.example/modeldeploy:9")
    pod = _deployment(name, settings=settings)["spec"]["template"]["spec"]
    assert _containers(pod)[names.CONTAINER_MONITOR]["image"] == "registry.example/modeldeploy:9"
    default = _containers(_pod(name))[names.CONTAINER_MONITOR]["image"]
    assert default == names.DEFAULT_SERVING_IMAGE


# --- Service, HPA, RBAC --------------------------------------------------------------------------


def test_service_selects_the_pods_of_every_revision() -> None:
    svc = service(OWNER)
    assert svc["metadata"]["name"] == "iris"
    for revision in (1, 2, 7):
        pod_labels = _deployment(revision=revision)["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize("name", ["minimal", "fixed-replicas", "autoscaling-off"])
def test_no_hpa_without_autoscaling(name: str) -> None:
    assert hpa(OWNER, _spec(name), revision=1) is None


def test_hpa_scales_the_given_revision_on_the_server_containers_cpu() -> None:
    raw = {
        **valid_manifest()["spec"],
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 8,
            "targetCPUUtilizationPercentage": 60,
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        },
    }
    autoscaler = hpa(OWNER, parse_spec(raw), revision=5)
    assert autoscaler is not None
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris-r5",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    assert spec["metrics"] == [
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "cpu",
                "container": "model-server",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        }
    ]
    assert spec["behavior"] == {
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }


def test_sidecar_rbac_binds_the_given_cluster_role_in_its_namespace_only() -> None:
    account, binding = sidecar_rbac("ml", "md-monitor")
    assert (account["kind"], binding["kind"]) == ("ServiceAccount", "RoleBinding")
    assert account["metadata"]["name"] == names.SIDECAR_SERVICE_ACCOUNT
    assert account["automountServiceAccountToken"] is False
    assert binding["metadata"]["name"] == names.SIDECAR_ROLE_BINDING
    # A RoleBinding: the ClusterRole's permissions hold in this namespace only.
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "md-monitor",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": names.SIDECAR_SERVICE_ACCOUNT, "namespace": "ml"}
    ]
    assert all(obj["metadata"]["namespace"] == "ml" for obj in (account, binding))


def test_builders_are_pure_and_render_plain_json() -> None:
    """Plain dicts, lists and scalars only (no tuples or models), equal on every call."""
    raw = {
        **valid_manifest()["spec"],
        "autoscaling": {
            "maxReplicas": 3,
            "behavior": {
                "scaleUp": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
            },
        },
    }
    spec = parse_spec(raw)
    children = [
        _deployment("pvc-skops"),
        revision_deployment(
            OWNER, spec, revision=1, spec_hash="h", default_image=IMAGE, replicas=None
        ),
        hpa(OWNER, spec, revision=1),
        service(OWNER),
        *sidecar_rbac("ml", names.DEFAULT_MONITOR_CLUSTER_ROLE),
    ]
    for child in children:
        assert json.loads(json.dumps(child)) == child
    assert _deployment("pvc-skops") == children[0]


def test_serving_runtime_reaches_the_server_only_when_set() -> None:
    def server_env(spec: ModelDeploymentSpec) -> dict[str, str]:
        deployment = revision_deployment(
            OWNER, spec, revision=1, spec_hash="h", default_image=IMAGE, replicas=1
        )
        containers = _containers(deployment["spec"]["template"]["spec"])
        return {e["name"]: e.get("value") for e in containers[names.CONTAINER_SERVER]["env"]}

    unset = parse_spec(valid_manifest()["spec"])
    assert unset.serving.runtime is None
    assert names.ENV_RUNTIME not in server_env(unset)  # existing pods stay unchanged
    chosen = parse_spec({**valid_manifest()["spec"], "serving": {"runtime": "onnx"}})
    assert server_env(chosen)[names.ENV_RUNTIME] == "onnx"
