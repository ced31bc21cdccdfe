"""The pod template of one model revision: model server + monitoring sidecar, locked down.

Pure: returns a plain dict. Security posture (DESIGN §4, §6): Pod Security "restricted" plus a
read-only root filesystem; only the sidecar gets a ServiceAccount token, through a projected
volume on that container alone, so code in a (possibly malicious) model file cannot reach the
Kubernetes API; and the sidecar runs the operator's image (`PodSettings.monitor_image`), never
the spec's serving image.

Where the model and the files beside it come from (claim mounts, the fetcher init containers
that alone see the store credentials) is modeldeploy.model_source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from modeldeploy import names
from modeldeploy.model_source import (
    TMP_MOUNT,
    beside_model,
    container_security,
    env_list,
    fetch_container,
    identity_skips,
    model_fetched,
    model_fetcher,
    model_files,
    model_location,
    mount_claim,
    server_resources,
    validation_file,
)
from modeldeploy.podsettings import PodFields, Tuning, dump
from modeldeploy.spec import Analysis, ModelDeploymentSpec, effective_image

TOKEN_EXPIRATION_SECONDS: Final = 3607  # the kubelet's usual bound-token lifetime


@dataclass(frozen=True)
class PodSettings:
    """Operator-wide pod settings (from the chart), not part of any ModelDeployment."""

    run_as_user: int = names.RUN_AS_USER
    # The preStop hook starts the drain (every answer closes its connection), then pauses so
    # EndpointSlice removal reaches every proxy before the server stops accepting; the grace
    # period must cover the pause plus the longest request.
    pre_stop_seconds: int = 5
    # After SIGTERM the server keeps answering this long, each answer closing its keep-alive
    # connection, so clients pinned to this pod by conntrack move to another one unharmed.
    drain_seconds: int = 3
    termination_grace_seconds: int = 30
    tmp_size_limit: str = "256Mi"
    # The fetched artifact's emptyDir: above the server's default artifact limit (1Gi).
    fetched_model_size_limit: str = "2Gi"
    # The sidecar holds the pod's API token, so it runs the operator's image, never the spec's.
    monitor_image: str = names.DEFAULT_SERVING_IMAGE
    # Measured in a pod on the real node: 143 MB RSS, steady (84 MB of it heap, grown in the
    # first two seconds; 80 MB for the same process outside a pod). 128Mi OOM-killed it.
    monitor_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "10m", "memory": "160Mi"},
            "limits": {"memory": "256Mi"},
        }
    )

    def __post_init__(self) -> None:
        if self.run_as_user <= 0:
            raise ValueError("run_as_user must be a non-root UID (> 0)")
        if not 0 <= self.pre_stop_seconds + self.drain_seconds < self.termination_grace_seconds:
            raise ValueError(
                "pre_stop_seconds + drain_seconds must be shorter than termination_grace_seconds"
            )


def _pre_stop(settings: PodSettings) -> list[str]:
    return [names.COMMAND_PRESTOP, str(settings.pre_stop_seconds)]


def pod_template(
    spec: ModelDeploymentSpec,
    *,
    md_name: str,
    md_uid: str,
    labels: dict[str, str],
    default_image: str,
    settings: PodSettings,
) -> dict[str, Any]:
    image = effective_image(spec, default_image)
    model_uri, model_volumes, model_mounts = model_location(spec, settings.fetched_model_size_limit)
    fetchers = [model_fetcher(spec, image)] if model_fetched(spec) else []
    metadata = _pod_metadata(spec.serving, labels)
    if spec.serving.service_account_name is not None:
        # The operator's annotations win: they keep identity webhooks off the other containers.
        metadata["annotations"] = {**metadata.get("annotations", {}), **identity_skips()}
    for artifact in beside_model(spec):
        if artifact.fetched:  # admission: only when the model's is, so the emptyDir exists
            fetchers.append(
                fetch_container(
                    spec, image, artifact.fetcher, artifact.uri, artifact.sha256, artifact.target
                )
            )
        else:
            mount_claim(artifact.uri, artifact.volume, model_volumes, model_mounts)
    return {
        "metadata": metadata,
        "spec": {
            **_scheduling(spec.serving),
            # The spec's own identity (cloud workload identity) or the sidecar's account. No
            # container mounts a token but the sidecar, through its own projected volume.
            "serviceAccountName": (
                spec.serving.service_account_name or names.SIDECAR_SERVICE_ACCOUNT
            ),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # no env vars describing every Service in the namespace
            "terminationGracePeriodSeconds": settings.termination_grace_seconds,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": settings.run_as_user,
                "runAsGroup": settings.run_as_user,
                "fsGroup": settings.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            # The fetcher first (it must finish before anything else starts), then the native
            # sidecar (restartPolicy Always): it starts before the server and is stopped only
            # after the server has drained, so verdicts cover the whole life.
            "initContainers": [*fetchers, _monitor(spec, md_name, md_uid, settings)],
            "containers": [_server(spec, image, model_uri, model_mounts, settings)],
            "volumes": [
                {"name": "server-tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}},
                # Separate scratch space: the model container must not reach the sidecar's.
                {"name": "monitor-tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                _token_volume(),
                *model_volumes,
            ],
        },
    }


def _server(
    spec: ModelDeploymentSpec,
    image: str,
    model_uri: str,
    model_mounts: list[dict[str, Any]],
    settings: PodSettings,
) -> dict[str, Any]:
    model, serving = spec.model, spec.serving
    env = {
        names.ENV_MODEL_URI: model_uri,
        names.ENV_MODEL_NAME: model.name,
        names.ENV_MODEL_VERSION: model.version,
        names.ENV_SHA256: model.sha256,
        names.ENV_FORMAT: model.format,
        names.ENV_PORT: str(serving.port),
        names.ENV_DRAIN_SECONDS: str(settings.drain_seconds),
    }
    # Unset profile: no drift counting; unset signature: the server derives the columns. Either
    # way the pods are unchanged.
    for artifact in model_files(spec):
        env[artifact.uri_env] = artifact.server_uri
        env[artifact.sha256_env] = artifact.sha256
    if serving.runtime is not None:  # unset: the server's own default (auto), pods unchanged
        env[names.ENV_RUNTIME] = serving.runtime
    env |= tuning_env(serving.tuning)
    if serving.allow_sklearn_upgrade:  # the opt-in would be moot if the server still refused
        env[names.ENV_ALLOW_SKLEARN_MISMATCH] = "true"
    env |= validation_env(spec)  # empty without a validation gate: pods unchanged
    resources = server_resources(spec)
    return {
        "name": names.CONTAINER_SERVER,
        "image": image,
        "command": [names.COMMAND_SERVER],
        "env": [*env_list(env), *({"name": v.name, "value": v.value} for v in serving.env)],
        "ports": [{"name": names.PORT_NAME_HTTP, "containerPort": serving.port, "protocol": "TCP"}],
        "readinessProbe": _http_probe(names.PATH_READY, names.PORT_NAME_HTTP, period=2, failures=2),
        "livenessProbe": _http_probe(names.PATH_LIVE, names.PORT_NAME_HTTP, period=10, failures=3),
        # Starts the drain and pauses; an image without the command skips the pause and
        # drains for --drain-seconds after SIGTERM.
        "lifecycle": {"preStop": {"exec": {"command": _pre_stop(settings)}}},
        "resources": resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "server-tmp", "mountPath": TMP_MOUNT}, *model_mounts],
    }


def _feedback_env(analysis: Analysis) -> dict[str, str]:
    """The feedback window and minimum, only when a feedback threshold uses them: pods of
    specs without one stay exactly as before."""
    if not analysis.thresholds.feedback_rules:
        return {}
    return {
        names.ENV_MONITOR_FEEDBACK_WINDOW_SECONDS: _number(
            analysis.feedback_window.total_seconds()
        ),
        names.ENV_MONITOR_MIN_FEEDBACK: str(analysis.min_feedback),
    }


def _monitor(
    spec: ModelDeploymentSpec, md_name: str, md_uid: str, settings: PodSettings
) -> dict[str, Any]:
    analysis = spec.analysis
    metrics_url = f"http://127.0.0.1:{spec.serving.port}{names.PATH_METRICS}"
    env = [
        *env_list({names.ENV_MONITOR_METRICS_URL: metrics_url}),
        _field_env(names.ENV_MONITOR_POD_NAME, "metadata.name"),
        _field_env(names.ENV_MONITOR_POD_NAMESPACE, "metadata.namespace"),
        *env_list(
            {
                names.ENV_MONITOR_DEPLOYMENT_NAME: md_name,
                names.ENV_MONITOR_DEPLOYMENT_UID: md_uid,
                names.ENV_MONITOR_WINDOW_SECONDS: _number(analysis.window.total_seconds()),
                names.ENV_MONITOR_MIN_REQUESTS: str(analysis.min_requests),
                names.ENV_MONITOR_ON_NO_DATA: analysis.on_no_data,
                names.ENV_MONITOR_MAX_ERROR_RATE: _number(analysis.thresholds.error_rate),
                names.ENV_MONITOR_MAX_LATENCY_P99_MS: _number(analysis.thresholds.latency_p99_ms),
            }
        ),
        *env_list(
            {
                name: _number(value)
                for name, value in (
                    (names.ENV_MONITOR_MAX_PREDICTION_DRIFT, analysis.thresholds.prediction_drift),
                    (names.ENV_MONITOR_MAX_FEATURE_DRIFT, analysis.thresholds.feature_drift),
                    (names.ENV_MONITOR_MIN_ACCURACY, analysis.thresholds.min_accuracy),
                    (names.ENV_MONITOR_MAX_MAE, analysis.thresholds.max_mae),
                )
                if value is not None
            }
        ),
        *env_list(_feedback_env(analysis)),
    ]
    return {
        "name": names.CONTAINER_MONITOR,
        "image": settings.monitor_image,
        "command": [names.COMMAND_MONITOR],
        "restartPolicy": "Always",
        "env": env,
        "ports": [
            {
                "name": names.PORT_NAME_MONITOR,
                "containerPort": names.MONITOR_PORT,
                "protocol": "TCP",
            }
        ],
        # Liveness only: a sidecar's readiness would gate the pod's, and a monitor hiccup must
        # never take a healthy model out of the Service.
        "livenessProbe": _http_probe(
            names.PATH_MONITOR_HEALTH, names.PORT_NAME_MONITOR, period=10, failures=3
        ),
        "resources": settings.monitor_resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "monitor-tmp", "mountPath": TMP_MOUNT},
            {"name": "monitor-token", "mountPath": names.SERVICE_ACCOUNT_MOUNT, "readOnly": True},
        ],
    }


def _pod_metadata(serving: PodFields, labels: dict[str, str]) -> dict[str, Any]:
    """The user's pod labels under the operator's (its selector labels always win; admission
    refuses colliding keys anyway), and the user's pod annotations. Pods only: the Deployment,
    Service and HPA carry the operator's labels alone."""
    metadata: dict[str, Any] = {"labels": {**(serving.pod_labels or {}), **labels}}
    if serving.pod_annotations:
        metadata["annotations"] = dict(serving.pod_annotations)
    return metadata


def _scheduling(serving: PodFields) -> dict[str, Any]:
    """Scheduling and pull settings, each only when set (so unset ones leave pods unchanged)."""
    fields = {
        "nodeSelector": dict(serving.node_selector) if serving.node_selector else None,
        "tolerations": dump(serving.tolerations),
        "affinity": dump(serving.affinity),
        "topologySpreadConstraints": dump(serving.topology_spread_constraints),
        "priorityClassName": serving.priority_class_name,
        "imagePullSecrets": dump(serving.image_pull_secrets),
    }
    return {key: value for key, value in fields.items() if value}


def tuning_env(tuning: Tuning | None) -> dict[str, str]:
    """spec.serving.tuning as the server's MODELDEPLOY_<FLAG> variables, each only when set."""
    if tuning is None:
        return {}
    batching = tuning.batching
    values: dict[str, object] = {
        names.ENV_MAX_REQUEST_BYTES: tuning.max_request_bytes,
        names.ENV_MAX_REQUEST_ROWS: tuning.max_request_rows,
        names.ENV_BODY_TIMEOUT: (
            None if tuning.body_timeout is None else _number(tuning.body_timeout.total_seconds())
        ),
    }
    if batching is not None:
        values |= {
            names.ENV_MICRO_BATCHING: (
                None if batching.enabled is None else str(batching.enabled).lower()
            ),
            names.ENV_BATCH_MAX_ROWS: batching.max_rows,
            names.ENV_BATCH_MAX_WAIT_MS: batching.max_wait_ms,
            names.ENV_MAX_QUEUED_ROWS: batching.max_queued_rows,
        }
    return {name: str(value) for name, value in values.items() if value is not None}


def _token_volume() -> dict[str, Any]:
    """What automountServiceAccountToken would mount, but for the sidecar only."""
    return {
        "name": "monitor-token",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": "token",
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                    }
                },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def validation_env(spec: ModelDeploymentSpec) -> dict[str, str]:
    """spec.analysis.validation as the server's MODELDEPLOY_VALIDATION_* variables."""
    validation, artifact = spec.analysis.validation, validation_file(spec)
    if validation is None or artifact is None:
        return {}
    return {
        names.ENV_VALIDATION_URI: artifact.server_uri,
        names.ENV_VALIDATION_SHA256: artifact.sha256,
        names.ENV_VALIDATION_METRIC: validation.metric,
        names.ENV_VALIDATION_THRESHOLD: _number(validation.threshold),
        names.ENV_VALIDATION_LABEL_COLUMN: validation.label_column,
    }


def _http_probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": failures,
    }


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _number(value: float) -> str:
    """30.0 -> '30', 0.01 -> '0.01': what a human would write in the env var."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
