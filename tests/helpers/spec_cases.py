"""One table of invalid ModelDeployments, shared by the unit tests (the operator's own checks in
modeldeploy.spec) and the admission tests (the CRD's schema and CEL rules on a real API server),
so both layers are held to the same cases and name the same field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modeldeploy import names

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def valid_manifest(name: str = "iris", namespace: str = "default") -> dict[str, Any]:
    """The smallest valid ModelDeployment: everything else comes from defaults."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": "iris",
                "version": "3",
                "uri": "https://models.example.com/iris/3/model.joblib",
                "sha256": SHA,
            }
        },
    }


@dataclass(frozen=True)
class Invalid:
    """An invalid manifest: `change` breaks a valid one; `field` is the path both layers must
    name; `says` is what the API server's message must contain."""

    id: str
    change: Callable[[dict[str, Any]], None]
    field: str
    says: str
    # The operator's message contains `says` too (its own rules, and wordings pydantic shares).
    operator_says_too: bool = False
    # False for problems only the operator can see (the CRD cannot compare quantities).
    admission: bool = True

    def manifest(self, name: str = "iris", namespace: str = "default") -> dict[str, Any]:
        manifest = valid_manifest(name, namespace)
        self.change(manifest)
        return manifest


def _spec(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"].update(copy.deepcopy(fields))


def _model(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"]["model"].update(fields)


def _drop_model_field(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"]["model"].pop(name)


def _name(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["metadata"].update(name=name)


_AUTOSCALING = {"maxReplicas": 4}

INVALID: list[Invalid] = [
    # --- metadata.name (the root CEL rule) ---
    Invalid("name-starts-with-digit", _name("3iris"), "metadata.name", "DNS-1035 label", True),
    Invalid("name-uppercase", _name("Iris"), "metadata.name", "DNS-1035 label", True),
    Invalid("name-too-long", _name("a" * 53), "metadata.name", "Too long"),
    # --- model ---
    Invalid("model-missing", lambda m: m["spec"].pop("model"), "spec.model", "Required value"),
    Invalid("sha256-missing", _drop_model_field("sha256"), "spec.model.sha256", "Required value"),
    Invalid("uri-missing", _drop_model_field("uri"), "spec.model.uri", "Required value"),
    Invalid("sha256-uppercase", _model(sha256=SHA.upper()), "spec.model.sha256", "should match"),
    Invalid("sha256-short", _model(sha256=SHA[:63]), "spec.model.sha256", "should match"),
    Invalid("sha256-not-hex", _model(sha256="g" * 64), "spec.model.sha256", "should match"),
    Invalid("format-unknown", _model(format="onnx"), "spec.model.format", "Unsupported value"),
    Invalid("model-name-slash", _model(name="a/b"), "spec.model.name", "should match"),
    Invalid("version-empty", _model(version=""), "spec.model.version", "at least 1 chars long"),
    Invalid(
        "uri-scheme-ftp",
        _model(uri="ftp://host/model.joblib"),
        "spec.model.uri",
        "allowed schemes",
        True,
    ),
    Invalid(
        "uri-scheme-s3",
        _model(uri="s3://bucket/m.joblib"),
        "spec.model.uri",
        "allowed schemes",
        True,
    ),
    Invalid(
        "uri-traversal",
        _model(uri="pvc://models/a/../b.joblib"),
        "spec.model.uri",
        "path traversal",
        True,
    ),
    Invalid(
        "uri-encoded-traversal",
        _model(uri="https://h.example/a/%2E%2E/b.joblib"),
        "spec.model.uri",
        "path traversal",
        True,
    ),
    Invalid(
        "uri-credentials",
        _model(uri="https://user:secret@h.example/m.joblib"),
        "spec.model.uri",
        "no credentials",
        True,
    ),
    Invalid(
        "uri-metadata-endpoint",
        _model(uri="http://169.254.169.254/latest/meta-data"),
        "spec.model.uri",
        "link-local",
        True,
    ),
    Invalid(
        "uri-file-relative",
        _model(uri="file://models/m.joblib"),
        "spec.model.uri",
        "file:///",
        True,
    ),
    Invalid(
        "uri-pvc-no-path",
        _model(uri="pvc://models"),
        "spec.model.uri",
        "pvc://<claim>/<path>",
        True,
    ),
    Invalid(
        "uri-whitespace",
        _model(uri="https://h.example/m .joblib"),
        "spec.model.uri",
        "whitespace",
        True,
    ),
    Invalid(
        "uri-too-long", _model(uri="https://h.example/" + "a" * 2048), "spec.model.uri", "Too long"
    ),
    # --- replicas and autoscaling ---
    Invalid(
        "replicas-zero", _spec(replicas=0), "spec.replicas", "greater than or equal to 1", True
    ),
    Invalid("replicas-string", _spec(replicas="three"), "spec.replicas", "must be of type integer"),
    Invalid(
        "replicas-with-autoscaling",
        _spec(replicas=3, autoscaling=_AUTOSCALING),
        "spec.replicas",
        "the HorizontalPodAutoscaler owns the replica count",
        True,
    ),
    Invalid(
        "min-above-max",
        _spec(autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "must be less than or equal to `maxReplicas`",
        True,
    ),
    Invalid(
        "max-replicas-missing",
        _spec(autoscaling={"minReplicas": 2}),
        "spec.autoscaling.maxReplicas",
        "Required value",
    ),
    Invalid(
        "cpu-target-above-100",
        _spec(autoscaling={"maxReplicas": 3, "targetCPUUtilizationPercentage": 150}),
        "spec.autoscaling.targetCPUUtilizationPercentage",
        "less than or equal to 100",
        True,
    ),
    Invalid(
        "autoscaling-without-cpu-request",
        _spec(autoscaling=_AUTOSCALING, serving={"resources": {"requests": {"memory": "1Gi"}}}),
        "spec.serving.resources.requests",
        "must set `cpu`",
        True,
    ),
    Invalid(
        "scale-policy-type-unknown",
        _spec(
            autoscaling={
                "maxReplicas": 3,
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 60}]}
                },
            }
        ),
        "spec.autoscaling.behavior.scaleUp.policies[0].type",
        "Unsupported value",
    ),
    # --- rollout ---
    Invalid(
        "weights-decreasing",
        _spec(rollout={"steps": [{"weight": 50}, {"weight": 10}]}),
        "spec.rollout.steps",
        "weights must be strictly increasing",
        True,
    ),
    Invalid(
        "weights-repeated",
        _spec(rollout={"steps": [{"weight": 20}, {"weight": 20}]}),
        "spec.rollout.steps",
        "weights must be strictly increasing",
        True,
    ),
    Invalid(
        "weight-zero",
        _spec(rollout={"steps": [{"weight": 0}]}),
        "spec.rollout.steps[0].weight",
        "greater than or equal to 1",
        True,
    ),
    Invalid(
        "weight-above-100",
        _spec(rollout={"steps": [{"weight": 10}, {"weight": 101}]}),
        "spec.rollout.steps[1].weight",
        "less than or equal to 100",
        True,
    ),
    Invalid(
        "too-many-steps",
        _spec(rollout={"steps": [{"weight": w} for w in range(1, 22)]}),
        "spec.rollout.steps",
        "at most 20 items",
        True,
    ),
    Invalid(
        "pause-not-a-duration",
        _spec(rollout={"steps": [{"weight": 10, "pause": "ten seconds"}]}),
        "spec.rollout.steps[0].pause",
        "should match",
        True,
    ),
    Invalid(
        "pause-too-long",
        _spec(rollout={"steps": [{"weight": 10, "pause": "25h"}]}),
        "spec.rollout.steps[0].pause",
        "must be between 0s and 24h",
        True,
    ),
    Invalid(
        "bake-time-too-long",
        _spec(rollout={"bakeTime": "24h1s"}),
        "spec.rollout.bakeTime",
        "must be between 0s and 24h",
        True,
    ),
    Invalid(
        "progress-deadline-too-short",
        _spec(rollout={"progressDeadline": "10s"}),
        "spec.rollout.progressDeadline",
        "must be between 30s and 24h",
        True,
    ),
    Invalid(
        "progress-deadline-not-a-duration",
        _spec(rollout={"progressDeadline": "ten minutes"}),
        "spec.rollout.progressDeadline",
        "should match",
        True,
    ),
    # --- analysis ---
    Invalid(
        "window-too-short",
        _spec(analysis={"window": "1s"}),
        "spec.analysis.window",
        "must be between 5s and 1h",
        True,
    ),
    Invalid(
        "window-negative",
        _spec(analysis={"window": "-30s"}),
        "spec.analysis.window",
        "should match",
        True,
    ),
    Invalid(
        "error-rate-zero",
        _spec(analysis={"thresholds": {"errorRate": 0}}),
        "spec.analysis.thresholds.errorRate",
        "greater than 0",
        True,
    ),
    Invalid(
        "error-rate-above-one",
        _spec(analysis={"thresholds": {"errorRate": 1.5}}),
        "spec.analysis.thresholds.errorRate",
        "less than or equal to 1",
        True,
    ),
    Invalid(
        "latency-negative",
        _spec(analysis={"thresholds": {"latencyP99Ms": -5}}),
        "spec.analysis.thresholds.latencyP99Ms",
        "greater than 0",
        True,
    ),
    Invalid(
        "on-no-data-unknown",
        _spec(analysis={"onNoData": "ignore"}),
        "spec.analysis.onNoData",
        "Unsupported value",
    ),
    Invalid(
        "min-requests-zero",
        _spec(analysis={"minRequests": 0}),
        "spec.analysis.minRequests",
        "greater than or equal to 1",
        True,
    ),
    # --- rollback ---
    Invalid(
        "history-limit-above-50",
        _spec(rollback={"historyLimit": 100}),
        "spec.rollback.historyLimit",
        "less than or equal to 50",
        True,
    ),
    # --- serving ---
    Invalid(
        "port-monitor",
        _spec(serving={"port": 9090}),
        "spec.serving.port",
        "monitoring sidecar",
        True,
    ),
    Invalid(
        "port-privileged",
        _spec(serving={"port": 80}),
        "spec.serving.port",
        "greater than or equal to 1024",
        True,
    ),
    Invalid(
        "image-with-space",
        _spec(serving={"image": "repo/img :1"}),
        "spec.serving.image",
        "should match",
        True,
    ),
    Invalid(
        "env-reserved",
        _spec(serving={"env": [{"name": "MODELDEPLOY_SHA256", "value": "x"}]}),
        "spec.serving.env[0].name",
        "reserved for the operator",
        True,
    ),
    Invalid(
        "env-duplicate",
        _spec(serving={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        "spec.serving.env[1]",
        "Duplicate value",
        True,
    ),
    Invalid(
        "cpu-not-a-quantity",
        _spec(serving={"resources": {"requests": {"cpu": "lots"}}}),
        "spec.serving.resources.requests.cpu",
        "should match",
        True,
    ),
    Invalid(
        "cpu-negative",
        _spec(serving={"resources": {"requests": {"cpu": "-1"}}}),
        "spec.serving.resources.requests.cpu",
        "should match",
        True,
    ),
    Invalid(
        "cpu-negative-integer",
        _spec(serving={"resources": {"limits": {"cpu": -1}}}),
        "spec.serving.resources.limits.cpu",
        "non-negative quantity",
    ),
    Invalid(
        "memory-huge-exponent",
        _spec(serving={"resources": {"limits": {"memory": "1e9999999"}}}),
        "spec.serving.resources.limits.memory",
        "should match",
        True,
    ),
    Invalid(
        "memory-huge-integer",
        _spec(serving={"resources": {"requests": {"memory": 10**16}}}),
        "spec.serving.resources.requests.memory",
        "at most 15 digits",
    ),
    Invalid(
        "storage-too-many-digits",
        _spec(serving={"resources": {"limits": {"ephemeral-storage": "9" * 20 + "Ei"}}}),
        "spec.serving.resources.limits.ephemeral-storage",
        "should match",
        True,
    ),
    Invalid(
        "resource-unknown",
        _spec(serving={"resources": {"requests": {"nvidia.com/gpu": 1}}}),
        "spec.serving.resources.requests.nvidia.com/gpu",
        "unknown field",
    ),
    Invalid("unknown-field", _spec(modle={"name": "typo"}), "spec.modle", "unknown field", True),
    # --- only the operator can see these ---
    Invalid(
        "cpu-request-above-limit",
        _spec(serving={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}),
        "spec.serving.resources.requests.cpu",
        "must be less than or equal to `limits.cpu`",
        True,
        admission=False,
    ),
]
