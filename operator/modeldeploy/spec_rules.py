"""Rules spanning several fields of a parsed spec: the CRD's CEL rules (in the CRD's order, with
its messages), plus what CEL cannot compare (quantities). modeldeploy.spec.parse_spec reports the
first problem as a SpecError naming the field.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Final

from modeldeploy import names, registry
from modeldeploy.units import parse_quantity
from modeldeploy.uri_rules import ENV_SCHEMES, FETCHED_SCHEMES, NOT_MLFLOW, STORE_NEEDS_MODEL_STORE

if TYPE_CHECKING:
    from modeldeploy.spec import EnvVar, ModelDeploymentSpec, ModelSource, Resources

# The range a threshold can be met in: mae is an error (>= 0, lower is better); accuracy and f1
# are shares; r2 is at most 1 and may be negative. The CRD states the same rule in CEL.
THRESHOLD_RANGES: Final[dict[str, tuple[float | None, float | None]]] = {
    "accuracy": (0, 1),
    "f1": (0, 1),
    "mae": (0, None),
    "r2": (None, 1),
}


def artifact_uris(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """Every URI the pod fetches, with its field path."""
    found = [("spec.model.uri", spec.model.uri)]
    if spec.model.profile is not None:
        found.append(("spec.model.profile.uri", spec.model.profile.uri))
    if spec.model.signature is not None:
        found.append(("spec.model.signature.uri", spec.model.signature.uri))
    if spec.analysis.validation is not None:
        found.append(("spec.analysis.validation.uri", spec.analysis.validation.uri))
    return found


def cross_field_problems(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """Rules spanning several fields: the CRD's CEL rules, plus what CEL cannot compare."""
    problems: list[tuple[str, str]] = []
    scaling = spec.autoscaling
    if spec.replicas is not None and spec.autoscaling_enabled:
        problems.append(
            (
                "spec.replicas",
                "must not be set when `autoscaling.enabled` is true: "
                "the HorizontalPodAutoscaler owns the replica count",
            )
        )
    requests = spec.serving.resources.requests
    if spec.autoscaling_enabled and (requests is None or requests.cpu is None):
        problems.append(
            (
                "spec.serving.resources.requests",
                "must set `cpu` when autoscaling is "
                "enabled: the HorizontalPodAutoscaler measures utilization against "
                "the CPU request",
            )
        )
    if scaling is not None and scaling.min_replicas > scaling.max_replicas:
        problems.append(
            ("spec.autoscaling.minReplicas", "must be less than or equal to `maxReplicas`")
        )
    weights = [step.weight for step in spec.rollout.steps]
    if any(later <= earlier for earlier, later in itertools.pairwise(weights)):
        problems.append(("spec.rollout.steps", "weights must be strictly increasing"))
    if spec.serving.port == names.MONITOR_PORT:
        problems.append(("spec.serving.port", "must not be 9090, the monitoring sidecar's port"))
    if spec.model.registry is not None and not spec.model.uri.startswith(registry.SCHEME):
        problems.append(("spec.model.registry", "must be set only with an 'mlflow://' uri"))
    problems.extend(_env_problems(spec.serving.env))
    problems.extend(spec.serving.pod_field_problems())
    problems.extend(_fetcher_env_problems(spec.model))
    problems.extend(_validation_problems(spec))
    problems.extend(_beside_model_problems(spec))
    problems.extend(_request_limit_problems(spec.serving.resources))
    return problems


def _fetcher_env_problems(model: ModelSource) -> list[tuple[str, str]]:
    """The CRD's CEL rules on spec.model.env and envFrom, in the same order."""
    problems: list[tuple[str, str]] = []
    if (model.env or model.env_from) and not model.uri.startswith(ENV_SCHEMES):
        problems.append(
            (
                "spec.model.env",
                "must only be set with an object-store URI (s3://, gs://, azure://) or an "
                "mlflow:// one: only the fetcher init container gets this environment",
            )
        )
    seen: set[str] = set()
    for index, var in enumerate(model.env or ()):
        path = f"spec.model.env[{index}]"
        if var.name.startswith(names.RESERVED_ENV_PREFIX):
            problems.append(
                (f"{path}.name", "must not start with 'MODELDEPLOY_' (reserved for the operator)")
            )
        if var.value is not None and var.value_from is not None:
            problems.append((path, "must set either `value` or `valueFrom`, not both"))
        source = var.value_from
        if source is not None and (source.secret_key_ref is None) == (
            source.config_map_key_ref is None
        ):
            problems.append(
                (f"{path}.valueFrom", "must set exactly one of `secretKeyRef`, `configMapKeyRef`")
            )
        if var.name in seen:
            problems.append((path, f"Duplicate value: {var.name!r}"))
        seen.add(var.name)
    for index, source_from in enumerate(model.env_from or ()):
        path = f"spec.model.envFrom[{index}]"
        if (source_from.secret_ref is None) == (source_from.config_map_ref is None):
            problems.append((path, "must set exactly one of `secretRef`, `configMapRef`"))
        if (source_from.prefix or "").startswith(names.RESERVED_ENV_PREFIX):
            problems.append(
                (f"{path}.prefix", "must not start with 'MODELDEPLOY_' (reserved for the operator)")
            )
    return problems


def _env_problems(env: tuple[EnvVar, ...]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, var in enumerate(env):
        path = f"spec.serving.env[{index}].name"
        if var.name.startswith(names.RESERVED_ENV_PREFIX):
            problems.append(
                (path, "must not start with 'MODELDEPLOY_' (reserved for the operator)")
            )
        if var.name in seen:
            problems.append((f"spec.serving.env[{index}]", f"Duplicate value: {var.name!r}"))
        seen.add(var.name)
    return problems


def _validation_problems(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """The CRD's CEL rule on spec.analysis.validation: the threshold's range for its metric."""
    validation = spec.analysis.validation
    if validation is None:
        return []
    problems: list[tuple[str, str]] = []
    low, high = THRESHOLD_RANGES[validation.metric]
    if (low is not None and validation.threshold < low) or (
        high is not None and validation.threshold > high
    ):
        if low is not None and high is not None:
            bounds = f"{low} to {high}"
        else:
            bounds = f"at least {low}" if low is not None else f"at most {high}"
        problems.append(
            (
                "spec.analysis.validation.threshold",
                f"out of range for the metric: {validation.metric} takes {bounds}",
            )
        )
    return problems


def _beside_model_problems(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """The CRD's CEL rules on the files beside the model: no registry reference (the shared
    URI rules admit mlflow:// for the model), and an object store only beside an object-store
    model (one fetcher identity)."""
    problems: list[tuple[str, str]] = []
    for field_path, uri in artifact_uris(spec)[1:]:
        if uri.startswith(registry.SCHEME):
            problems.append((field_path, NOT_MLFLOW))
    # The spec-level rules, after the field-level ones (the CRD's order).
    for field_path, uri in artifact_uris(spec)[1:]:
        if uri.startswith(FETCHED_SCHEMES) and not spec.model.uri.startswith(FETCHED_SCHEMES):
            problems.append((field_path, STORE_NEEDS_MODEL_STORE))
    return problems


def _request_limit_problems(resources: Resources) -> list[tuple[str, str]]:
    # The CRD cannot compare quantities; without this check the Deployment would be refused
    # later with a message that never mentions the ModelDeployment.
    if resources.requests is None or resources.limits is None:
        return []
    requests, limits = resources.requests.as_dict(), resources.limits.as_dict()
    problems: list[tuple[str, str]] = []
    for name, requested in requests.items():
        if name not in limits:
            continue
        path = f"spec.serving.resources.requests.{name}"
        try:
            larger = parse_quantity(requested) > parse_quantity(limits[name])
        except (ArithmeticError, ValueError) as err:  # the pattern should have refused it
            problems.append((path, str(err)))
            continue
        if larger:
            problems.append(
                (
                    path,
                    f"must be less than or equal to `limits.{name}` ({limits[name]}), "
                    f"got {requested}",
                )
            )
    return problems
