"""The ModelDeployment spec as frozen pydantic models, mirroring crds/modeldeployment.yaml.

The CRD rejects bad input at admission; this module checks it again because the installed CRD
may be older than the operator (Helm never upgrades CRDs). Defaults here equal the CRD's
(tests/unit/test_crd_agrees_with_spec.py), so a parsed spec is complete whichever layer filled
it. `parse_spec` turns every problem into one typed `SpecError` naming the field. The URI
forms are checked in modeldeploy.uri_rules, the rules spanning fields in modeldeploy.spec_rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from modeldeploy import names, uri_rules
from modeldeploy.podsettings import Disruption, PodFields, SpecModel
from modeldeploy.spec_rules import artifact_uris, cross_field_problems
from modeldeploy.units import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    QUANTITY_MAX_LENGTH,
    QUANTITY_PATTERN,
    DurationBounds,
    format_duration,
    parse_duration,
)


class SpecError(ValueError):
    """A spec the operator cannot act on: `field_path` (e.g. spec.model.uri) and why."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


# --- field types --------------------------------------------------------------------------


def _to_duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


_DURATION_SCHEMA: Final = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "maxLength": DURATION_MAX_LENGTH,
}
_PAUSE_BOUNDS: Final = DurationBounds("0s", "24h")
_WINDOW_BOUNDS: Final = DurationBounds("5s", "1h")
_DEADLINE_BOUNDS: Final = DurationBounds("30s", "24h")
# Labels arrive late, so the feedback window reaches further back than the analysis window.
_FEEDBACK_WINDOW_BOUNDS: Final = DurationBounds("5s", "6h")

# A duration is written "30s" or "1h30m", held as a timedelta, and written back canonically.
PauseDuration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    AfterValidator(_PAUSE_BOUNDS),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
    _PAUSE_BOUNDS,
]
WindowDuration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    AfterValidator(_WINDOW_BOUNDS),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
    _WINDOW_BOUNDS,
]
FeedbackWindowDuration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    AfterValidator(_FEEDBACK_WINDOW_BOUNDS),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
    _FEEDBACK_WINDOW_BOUNDS,
]
DeadlineDuration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    AfterValidator(_DEADLINE_BOUNDS),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
    _DEADLINE_BOUNDS,
]

# The API server accepts a quantity as an integer or a string; the spec always holds a string.
Quantity = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    Field(max_length=QUANTITY_MAX_LENGTH, pattern=QUANTITY_PATTERN),
]

SKLEARN_VERSION_PATTERN: Final = r"^[0-9]+\.[0-9]+([.+-]?[0-9A-Za-z][0-9A-Za-z.+-]*)?$"
# Where an artifact (the model, its validation dataset) lives, and the digest it must match.
# mlflow:// is for the model only: _validation_problems refuses it for the dataset.
ArtifactUri = Annotated[
    str, AfterValidator(uri_rules.check_uri), Field(min_length=1, max_length=2048)
]
Sha256 = Annotated[str, Field(max_length=64, pattern=r"^[a-f0-9]{64}$")]


# --- the models -------------------------------------------------------------------------------


class _Spec(SpecModel):
    """Frozen, camelCase on the wire, no unknown fields (modeldeploy.podsettings.SpecModel)."""


# Kubernetes names: a Secret or ConfigMap (DNS subdomain), a data key, a ServiceAccount.
_OBJECT_NAME: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DATA_KEY: Final = r"^[-._a-zA-Z0-9]+$"
_ENV_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"


class KeyRef(_Spec):
    """One key of a Secret or ConfigMap in the ModelDeployment's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=_OBJECT_NAME)
    key: str = Field(min_length=1, max_length=253, pattern=_DATA_KEY)
    optional: bool | None = None


class EnvVarSource(_Spec):
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None


class FetcherEnvVar(_Spec):
    """An environment variable of the fetcher: a literal or a Secret/ConfigMap key."""

    name: str = Field(min_length=1, max_length=128, pattern=_ENV_NAME)
    value: str | None = Field(default=None, max_length=4096)
    value_from: EnvVarSource | None = None


class LocalObjectRef(_Spec):
    name: str = Field(min_length=1, max_length=253, pattern=_OBJECT_NAME)
    optional: bool | None = None


class EnvFromSource(_Spec):
    """Every key of a Secret or ConfigMap as an environment variable of the fetcher."""

    prefix: str | None = Field(default=None, max_length=128, pattern=_ENV_NAME)
    secret_ref: LocalObjectRef | None = None
    config_map_ref: LocalObjectRef | None = None


class Profile(_Spec):
    """The reference profile for drift; its URI obeys the model URI's rules, but no registry
    (cross_field_problems), and an object store only beside an object-store model."""

    uri: ArtifactUri
    sha256: Sha256


class Signature(_Spec):
    """The model's input signature (columns, kinds, an example row): the profile's URI rules."""

    uri: ArtifactUri
    sha256: Sha256


class Registry(_Spec):
    """Where an mlflow:// URI is resolved (else the operator's --mlflow-tracking-uri)."""

    tracking_uri: Annotated[str, AfterValidator(uri_rules.check_tracking_uri)] = Field(
        min_length=1, max_length=2048
    )


class ModelSource(_Spec):
    name: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    )
    version: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.+]*[A-Za-z0-9])?$"
    )
    uri: ArtifactUri
    sha256: Sha256
    format: Literal["joblib", "skops"] = "joblib"
    # The scikit-learn version the artifact was saved with, as declared by its producer: the
    # operator never moves the model onto an image of another minor version (imagepolicy.py).
    sklearn_version: str | None = Field(
        default=None, max_length=32, pattern=SKLEARN_VERSION_PATTERN
    )
    # Unset, not (): a default would change the spec hash of every existing revision.
    env: tuple[FetcherEnvVar, ...] | None = Field(default=None, max_length=32)
    env_from: tuple[EnvFromSource, ...] | None = Field(default=None, max_length=8)
    profile: Profile | None = None
    signature: Signature | None = None
    registry: Registry | None = None


class ResourceList(_Spec):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    ephemeral_storage: Quantity | None = Field(default=None, alias="ephemeral-storage")

    def as_dict(self) -> dict[str, str]:
        """The Kubernetes ResourceList (only the quantities that are set)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Resources(_Spec):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


DEFAULT_RESOURCES: Final = Resources(
    requests=ResourceList(cpu="250m", memory="256Mi"), limits=ResourceList(memory="512Mi")
)


class EnvVar(_Spec):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str = Field(default="", max_length=4096)


class Serving(PodFields):
    # Pod settings and server tuning: modeldeploy.podsettings.PodFields.
    image: str | None = Field(default=None, min_length=1, max_length=512, pattern=r"^[^\s]+$")
    port: int = Field(default=8080, ge=1024, le=65535)
    resources: Resources = DEFAULT_RESOURCES
    env: tuple[EnvVar, ...] = Field(default=(), max_length=32)
    # Unset means auto. No default on purpose: a defaulted field would change the spec hash, and
    # so restart every existing revision, on the operator upgrade that introduces it.
    runtime: Literal["auto", "sklearn", "onnx"] | None = None
    # Opt-in: the operator may move this model onto an image of another scikit-learn minor
    # version, and the server loads it there (warning instead of refusing).
    allow_sklearn_upgrade: bool | None = None
    # The pod's own identity, for cloud workload identity (IRSA, GKE, Azure); unset: the
    # operator's per-namespace monitor ServiceAccount. No container mounts an API token but the
    # sidecar (modeldeploy.pod).
    service_account_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=_OBJECT_NAME
    )


class ScalingPolicy(_Spec):
    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1, le=1000)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(_Spec):
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: tuple[ScalingPolicy, ...] = Field(default=(), max_length=10)


class Behavior(_Spec):
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class Autoscaling(_Spec):
    enabled: bool = True
    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    target_cpu_utilization_percentage: int = Field(
        default=70, ge=1, le=100, alias="targetCPUUtilizationPercentage"
    )
    behavior: Behavior | None = None


class Step(_Spec):
    weight: int = Field(ge=1, le=100)
    pause: PauseDuration = timedelta(seconds=30)


DEFAULT_STEPS: Final = (
    Step(weight=10, pause=timedelta(seconds=30)),
    Step(weight=50, pause=timedelta(seconds=60)),
)


class Rollout(_Spec):
    steps: tuple[Step, ...] = Field(default=DEFAULT_STEPS, max_length=20)
    bake_time: PauseDuration = timedelta(minutes=5)
    progress_deadline: DeadlineDuration = timedelta(minutes=10)


class Thresholds(_Spec):
    error_rate: float = Field(default=0.01, gt=0, le=1)
    latency_p99_ms: float = Field(default=250, gt=0, le=600_000)
    # PSI against spec.model.profile; no default, so existing specs keep their hash.
    prediction_drift: float | None = Field(default=None, gt=0, le=100)
    feature_drift: float | None = Field(default=None, gt=0, le=100)
    # Labelled feedback over analysis.feedbackWindow; no default either.
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    max_mae: float | None = Field(default=None, ge=0, alias="maxMAE")

    @property
    def feedback_rules(self) -> bool:
        """A feedback threshold is set (else feedbackWindow and minFeedback change nothing)."""
        return self.min_accuracy is not None or self.max_mae is not None


ValidationMetric = Literal["accuracy", "f1", "mae", "r2"]


class Validation(_Spec):
    """A labelled dataset each new revision must score well enough on before it turns ready."""

    uri: ArtifactUri
    sha256: Sha256
    metric: ValidationMetric
    threshold: float
    label_column: str = Field(default="label", min_length=1, max_length=256)


class Analysis(_Spec):
    window: WindowDuration = timedelta(seconds=30)
    min_requests: int = Field(default=20, ge=1, le=1_000_000)
    on_no_data: Literal["hold", "pass", "fail"] = "hold"
    thresholds: Thresholds = Thresholds()
    validation: Validation | None = None
    feedback_window: FeedbackWindowDuration = timedelta(minutes=5)
    min_feedback: int = Field(default=50, ge=1, le=1_000_000)


class Rollback(_Spec):
    automatic: bool = True
    history_limit: int = Field(default=10, ge=1, le=50)


def _canonical_cidr(value: str) -> str:
    # Canonical only ("10.0.0.0/8", not "10.0.0.1/8"): what the NetworkPolicy API stores.
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(
            "must be a CIDR with no host bits set, e.g. '10.0.0.0/8' or '2001:db8::/32'"
        ) from None
    if str(network) != value:
        raise ValueError(f"must be written canonically, as {str(network)!r}")
    return value


class EgressRule(_Spec):
    """One more destination the model pods may connect to (the model source of an http(s)://
    URI, an in-cluster object store). NetworkPolicy matches addresses, never host names."""

    cidr: Annotated[str, AfterValidator(_canonical_cidr)] = Field(min_length=1, max_length=49)
    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(default=(), max_length=8)


class NetworkPolicy(_Spec):
    """The ModelDeployment's own NetworkPolicy (docs/security.md). Not part of the spec hash:
    it changes what the pods may reach, not what a revision is."""

    enabled: bool = True
    egress: tuple[EgressRule, ...] = Field(default=(), max_length=16)


class ModelDeploymentSpec(_Spec):
    model: ModelSource
    serving: Serving = Serving()
    replicas: int | None = Field(default=None, ge=1, le=1000)
    autoscaling: Autoscaling | None = None
    rollout: Rollout = Rollout()
    analysis: Analysis = Analysis()
    rollback: Rollback = Rollback()
    # Not part of a revision (outside the spec hash): a budget changes in place on every one.
    disruption: Disruption | None = None
    network_policy: NetworkPolicy = NetworkPolicy()

    @property
    def autoscaling_enabled(self) -> bool:
        return self.autoscaling is not None and self.autoscaling.enabled

    @property
    def fixed_replicas(self) -> int | None:
        """Pods of the stable revision when no HPA owns the count (1 if unset); else None."""
        return None if self.autoscaling_enabled else (self.replicas or 1)


def effective_image(spec: ModelDeploymentSpec, default_image: str) -> str:
    """The serving image: the spec's own, else the one the operator was installed with."""
    return spec.serving.image or default_image


# --- parsing ----------------------------------------------------------------------------------


def parse_spec(raw: Mapping[str, Any], *, allow_file_uris: bool = True) -> ModelDeploymentSpec:
    """Validate `.spec` of a ModelDeployment; raise SpecError for the first problem found.

    The CRD admits file:// (the cluster cannot know the operator's flags); an operator run
    without --allow-file-uris passes `allow_file_uris=False` and reports such a spec invalid.
    """
    try:
        spec = ModelDeploymentSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise SpecError(_field_path(first["loc"]), _message(first)) from None
    for field_path, message in cross_field_problems(spec):
        raise SpecError(field_path, message)
    for field_path, uri in artifact_uris(spec):
        if not allow_file_uris and uri.startswith("file://"):
            raise SpecError(field_path, uri_rules.FILE_URIS_OFF)
    return spec


def validate_name(name: str) -> None:
    """The CRD's rule on metadata.name, for objects that reached the operator without it."""
    if len(name) > names.MAX_MD_NAME_LENGTH or not re.fullmatch(
        r"[a-z]([-a-z0-9]*[a-z0-9])?", name
    ):
        raise SpecError(
            "metadata.name",
            "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
            "letter) of at most 52 characters, so that the Service and the "
            "`<name>-r<revision>` Deployments get valid names",
        )


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "value_error":  # our own validators: their message as written
        return str(error["ctx"]["error"])
    if error["type"] == "extra_forbidden":
        return "unknown field (is the installed CRD newer than the operator?)"
    return str(error["msg"])
