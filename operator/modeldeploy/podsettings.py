"""Pod settings of `spec.serving` (scheduling, pull secrets, pod labels and annotations), the
model server's tuning, and `spec.disruption`: frozen pydantic models mirroring the CRD, as in
modeldeploy.spec (which imports them; tests/unit/test_crd_agrees_with_spec.py covers both).

The Kubernetes types keep their Kubernetes field names and meaning, bounded so the CRD's CEL
rules stay within the API server's cost budget. What a schema cannot say (map keys, reserved
label keys, toleration rules) is checked by `PodFields.pod_field_problems`, with the CRD's messages.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from modeldeploy import names
from modeldeploy.units import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    DurationBounds,
    format_duration,
    parse_duration,
)


class SpecModel(BaseModel):
    """Frozen, camelCase on the wire, and no unknown fields: a field the API server kept but
    this operator does not know means the CRD is newer than the operator."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


# --- patterns (the CRD states the same ones) ----------------------------------------------------
# A label or annotation key: an optional DNS-subdomain prefix and '/', then a name.
QUALIFIED_NAME: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
QUALIFIED_NAME_MAX_LENGTH: Final = 317  # 253 for the prefix, '/', 63 for the name
LABEL_VALUE: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KEY_MESSAGE: Final = (
    "keys must be qualified names: an optional DNS-subdomain prefix and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)

# Keys users may not set on pods: the operator's own labels (the Service and each revision's
# Deployment select pods by them) and the Argo CD tracking keys (a tracked pod would be pruned).
RESERVED_PREFIX: Final = f"{names.GROUP}/"
RESERVED_LABELS: Final = (names.LABEL_MANAGED_BY, names.LABEL_ARGOCD_INSTANCE)
RESERVED_ANNOTATIONS: Final = (names.ANNOTATION_ARGOCD_TRACKING_ID,)

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
QualifiedName = Annotated[
    str, Field(min_length=1, max_length=QUALIFIED_NAME_MAX_LENGTH, pattern=QUALIFIED_NAME)
]
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


def _none_if_empty(value: object) -> object:
    """`[]` and `{}` mean unset, so they neither change the spec hash nor the pods."""
    return None if value in ([], {}, ()) else value


# --- label selectors and affinity (core/v1 and meta/v1 types, bounded) -------------------------


class LabelSelectorRequirement(SpecModel):
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[LabelValue, ...] | None = Field(default=None, max_length=32)


class LabelSelector(SpecModel):
    match_labels: dict[str, LabelValue] | None = Field(default=None, max_length=16)
    match_expressions: tuple[LabelSelectorRequirement, ...] | None = Field(
        default=None, max_length=8
    )


class NodeSelectorRequirement(SpecModel):
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: tuple[LabelValue, ...] | None = Field(default=None, max_length=32)


class NodeSelectorTerm(SpecModel):
    match_expressions: tuple[NodeSelectorRequirement, ...] | None = Field(
        default=None, max_length=8
    )
    match_fields: tuple[NodeSelectorRequirement, ...] | None = Field(default=None, max_length=8)


class NodeSelector(SpecModel):
    node_selector_terms: tuple[NodeSelectorTerm, ...] = Field(min_length=1, max_length=8)


class PreferredSchedulingTerm(SpecModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(SpecModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: (
        tuple[PreferredSchedulingTerm, ...] | None
    ) = Field(default=None, max_length=8)


class PodAffinityTerm(SpecModel):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: tuple[Annotated[str, Field(max_length=63)], ...] | None = Field(
        default=None, max_length=16
    )
    topology_key: QualifiedName
    match_label_keys: tuple[QualifiedName, ...] | None = Field(default=None, max_length=8)
    mismatch_label_keys: tuple[QualifiedName, ...] | None = Field(default=None, max_length=8)


class WeightedPodAffinityTerm(SpecModel):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(SpecModel):
    required_during_scheduling_ignored_during_execution: tuple[PodAffinityTerm, ...] | None = Field(
        default=None, max_length=8
    )
    preferred_during_scheduling_ignored_during_execution: (
        tuple[WeightedPodAffinityTerm, ...] | None
    ) = Field(default=None, max_length=8)


class Affinity(SpecModel):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class Toleration(SpecModel):
    key: QualifiedName | None = None  # unset (with operator Exists): every taint
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0, le=31_536_000)


class TopologySpreadConstraint(SpecModel):
    max_skew: int = Field(ge=1, le=1000)
    topology_key: QualifiedName
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: int | None = Field(default=None, ge=1, le=1000)
    match_label_keys: tuple[QualifiedName, ...] | None = Field(default=None, max_length=8)
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None


class LocalObjectReference(SpecModel):
    name: Name


# --- the model server's tuning (its flags, passed as MODELDEPLOY_<FLAG> env vars) ---------------

_BODY_TIMEOUT_BOUNDS: Final = DurationBounds("1s", "1h")


def _to_duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


class Batching(SpecModel):
    enabled: bool | None = None
    max_rows: int | None = Field(default=None, ge=1, le=100_000)
    max_wait_ms: int | None = Field(default=None, ge=0, le=1000)
    max_queued_rows: int | None = Field(default=None, ge=1, le=10_000_000)


class Tuning(SpecModel):
    batching: Batching | None = None
    max_request_bytes: str | None = Field(
        default=None, max_length=16, pattern=r"^[1-9][0-9]{0,11}(Ki|Mi|Gi|K|M|G)?$"
    )
    max_request_rows: int | None = Field(default=None, ge=1, le=10_000_000)
    body_timeout: (
        Annotated[
            timedelta,
            BeforeValidator(_to_duration),
            AfterValidator(_BODY_TIMEOUT_BOUNDS),
            PlainSerializer(format_duration, return_type=str),
            WithJsonSchema(
                {"type": "string", "pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH}
            ),
            _BODY_TIMEOUT_BOUNDS,
        ]
        | None
    ) = None


# --- the PodDisruptionBudget -------------------------------------------------------------------

MAX_UNAVAILABLE_MESSAGE: Final = "must be a number of pods (0 to 1000) or a percentage (0% to 100%)"
_MAX_UNAVAILABLE: Final = re.compile(r"([0-9]|[1-9][0-9]{1,2}|1000|([0-9]|[1-9][0-9]|100)%)")


def _max_unavailable(value: str) -> str:
    if not _MAX_UNAVAILABLE.fullmatch(value):
        raise ValueError(MAX_UNAVAILABLE_MESSAGE)
    return value


class Disruption(SpecModel):
    # Integer or string on the wire (like a quantity); held as a string, rendered back as an int.
    max_unavailable: Annotated[
        str,
        BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
        AfterValidator(_max_unavailable),
        Field(max_length=4),
    ]

    def pdb_value(self) -> int | str:
        """The PodDisruptionBudget's maxUnavailable: a count as an integer, else a percent."""
        value = self.max_unavailable
        return int(value) if value.isdigit() else value


# --- the pod fields of spec.serving ------------------------------------------------------------


# Optional collections whose empty value means unset.
_EmptyIsNone = BeforeValidator(_none_if_empty)
LabelMap = Annotated[dict[str, LabelValue] | None, _EmptyIsNone]
AnnotationMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]] | None, _EmptyIsNone]
Tolerations = Annotated[tuple[Toleration, ...] | None, _EmptyIsNone]
SpreadConstraints = Annotated[tuple[TopologySpreadConstraint, ...] | None, _EmptyIsNone]
PullSecrets = Annotated[tuple[LocalObjectReference, ...] | None, _EmptyIsNone]


class PodFields(SpecModel):
    """The pod-level fields of `spec.serving` (modeldeploy.spec.Serving inherits them).

    All unset by default and left out of the pods when unset, so existing revisions keep
    their spec hash on the operator upgrade that introduces them."""

    node_selector: LabelMap = Field(default=None, max_length=32)
    tolerations: Tolerations = Field(default=None, max_length=32)
    affinity: Affinity | None = None
    topology_spread_constraints: SpreadConstraints = Field(default=None, max_length=8)
    priority_class_name: Name | None = None
    image_pull_secrets: PullSecrets = Field(default=None, max_length=16)
    pod_labels: LabelMap = Field(default=None, max_length=32)
    pod_annotations: AnnotationMap = Field(default=None, max_length=32)
    tuning: Tuning | None = None

    def pod_field_problems(self) -> list[tuple[str, str]]:
        """What a schema cannot state, with the CRD's CEL messages: map keys, reserved keys,
        and the tolerations' rules."""
        path = "spec.serving"
        problems: list[tuple[str, str]] = []
        for field, keys in (
            ("nodeSelector", self.node_selector),
            ("podLabels", self.pod_labels),
            ("podAnnotations", self.pod_annotations),
        ):
            if keys is not None and not all(_qualified(key) for key in keys):
                problems.append((f"{path}.{field}", KEY_MESSAGE))
        if any(_reserved(key, RESERVED_LABELS) for key in self.pod_labels or ()):
            problems.append((f"{path}.podLabels", RESERVED_LABELS_MESSAGE))
        if any(_reserved(key, RESERVED_ANNOTATIONS) for key in self.pod_annotations or ()):
            problems.append((f"{path}.podAnnotations", RESERVED_ANNOTATIONS_MESSAGE))
        for index, toleration in enumerate(self.tolerations or ()):
            problems += [
                (f"{path}.tolerations[{index}]", m) for m in _toleration_problems(toleration)
            ]
        return problems


RESERVED_LABELS_MESSAGE: Final = (
    "must not set 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance' (Argo CD's "
    "tracking label) or keys under 'modeldeploy.io/': the operator selects its pods by them"
)
RESERVED_ANNOTATIONS_MESSAGE: Final = (
    "must not set 'argocd.argoproj.io/tracking-id' (Argo CD's tracking annotation) or keys "
    "under 'modeldeploy.io/' (reserved for the operator)"
)
TOLERATION_EXISTS_MESSAGE: Final = "must not set `value` when `operator` is Exists"
TOLERATION_EMPTY_KEY_MESSAGE: Final = "must set `operator: Exists` when `key` is empty"
TOLERATION_SECONDS_MESSAGE: Final = "must set `effect: NoExecute` when `tolerationSeconds` is set"


def _toleration_problems(toleration: Toleration) -> list[str]:
    problems = []
    if toleration.operator == "Exists" and toleration.value:
        problems.append(TOLERATION_EXISTS_MESSAGE)
    if not toleration.key and toleration.operator != "Exists":
        problems.append(TOLERATION_EMPTY_KEY_MESSAGE)
    if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
        problems.append(TOLERATION_SECONDS_MESSAGE)
    return problems


def _qualified(key: str) -> bool:
    return len(key) <= QUALIFIED_NAME_MAX_LENGTH and re.fullmatch(QUALIFIED_NAME, key) is not None


def _reserved(key: str, exact: tuple[str, ...]) -> bool:
    return key in exact or key.startswith(RESERVED_PREFIX)


def dump(model: SpecModel | tuple[SpecModel, ...] | None) -> Any:
    """A model (or tuple of models) as the Kubernetes object it mirrors."""
    if model is None:
        return None
    if isinstance(model, tuple):
        return [dump(item) for item in model]
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
