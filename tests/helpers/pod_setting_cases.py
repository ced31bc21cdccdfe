"""Invalid pod settings, server tuning and disruption budgets (spec.serving's pod fields and
spec.disruption), part of tests/helpers/spec_cases.INVALID: the operator and admission must
both refuse each, naming the same field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.helpers.spec_cases import Invalid


def _serving(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"].setdefault("serving", {}).update(copy.deepcopy(fields))


def _disruption(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"].update(disruption={"maxUnavailable": value})


_KEYS = "keys must be qualified names"
_RESERVED_LABEL = "must not set 'app.kubernetes.io/managed-by'"
_RESERVED_ANNOTATION = "must not set 'argocd.argoproj.io/tracking-id'"
_BUDGET = "must be a number of pods (0 to 1000) or a percentage (0% to 100%)"
_S = "spec.serving"

POD_SETTING_CASES: list[Invalid] = [
    # --- pod labels: never the operator's selector labels, nor Argo CD's tracking label ---
    *(
        Invalid(f"pod-label-{key}", _serving(podLabels={key: "x"}), f"{_S}.podLabels", says, True)
        for key, says in (
            ("modeldeploy.io/name", _RESERVED_LABEL),
            ("modeldeploy.io/revision", _RESERVED_LABEL),
            ("app.kubernetes.io/managed-by", _RESERVED_LABEL),
            ("app.kubernetes.io/instance", _RESERVED_LABEL),
            ("bad key!", _KEYS),
            ("-leading-dash", _KEYS),
            ("UPPER.example/x", _KEYS),
        )
    ),
    Invalid(
        "pod-label-value-invalid",
        _serving(podLabels={"team": "not a value"}),
        f"{_S}.podLabels.team",
        "should match",
        True,
    ),
    Invalid(
        "pod-labels-too-many",
        _serving(podLabels={f"k{i}": "v" for i in range(33)}),
        f"{_S}.podLabels",
        "must have at most 32 items",
    ),
    Invalid(
        "pod-annotation-tracking-id",
        _serving(podAnnotations={"argocd.argoproj.io/tracking-id": "app:apps/Deployment:ns/x"}),
        f"{_S}.podAnnotations",
        _RESERVED_ANNOTATION,
        True,
    ),
    Invalid(
        "pod-annotation-reserved-prefix",
        _serving(podAnnotations={"modeldeploy.io/spec-hash": "x"}),
        f"{_S}.podAnnotations",
        _RESERVED_ANNOTATION,
        True,
    ),
    Invalid(
        "pod-annotation-bad-key",
        _serving(podAnnotations={"a/b/c": "x"}),
        f"{_S}.podAnnotations",
        _KEYS,
        True,
    ),
    # --- scheduling ---
    Invalid(
        "node-selector-bad-key",
        _serving(nodeSelector={"zone?": "a"}),
        f"{_S}.nodeSelector",
        _KEYS,
        True,
    ),
    Invalid(
        "toleration-exists-with-value",
        _serving(tolerations=[{"key": "gpu", "operator": "Exists", "value": "true"}]),
        f"{_S}.tolerations[0]",
        "must not set `value` when `operator` is Exists",
        True,
    ),
    Invalid(
        "toleration-empty-key-equal",
        _serving(tolerations=[{"operator": "Equal", "value": "x"}]),
        f"{_S}.tolerations[0]",
        "must set `operator: Exists` when `key` is empty",
        True,
    ),
    Invalid(
        "toleration-seconds-without-noexecute",
        _serving(tolerations=[{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        f"{_S}.tolerations[0]",
        "must set `effect: NoExecute` when `tolerationSeconds` is set",
        True,
    ),
    Invalid(
        "toleration-effect-unknown",
        _serving(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoRun"}]),
        f"{_S}.tolerations[0].effect",
        "Unsupported value",
    ),
    Invalid(
        "affinity-node-term-operator",
        _serving(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "Near"}]}
                        ]
                    }
                }
            }
        ),
        f"{_S}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator",
        "Unsupported value",
    ),
    Invalid(
        "affinity-pod-term-without-topology-key",
        _serving(
            affinity={
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"modeldeploy.io/name": "iris"}}}
                    ]
                }
            }
        ),
        f"{_S}.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
        ".topologyKey",
        "Required value",
    ),
    Invalid(
        "affinity-weight-above-100",
        _serving(
            affinity={
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 101,
                            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"},
                        }
                    ]
                }
            }
        ),
        f"{_S}.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        "less than or equal to 100",
        True,
    ),
    Invalid(
        "spread-when-unsatisfiable-unknown",
        _serving(
            topologySpreadConstraints=[
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}
            ]
        ),
        f"{_S}.topologySpreadConstraints[0].whenUnsatisfiable",
        "Unsupported value",
    ),
    Invalid(
        "spread-max-skew-zero",
        _serving(
            topologySpreadConstraints=[
                {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
            ]
        ),
        f"{_S}.topologySpreadConstraints[0].maxSkew",
        "greater than or equal to 1",
        True,
    ),
    Invalid(
        "priority-class-invalid",
        _serving(priorityClassName="High_Priority"),
        f"{_S}.priorityClassName",
        "should match",
        True,
    ),
    Invalid(
        "pull-secret-without-name",
        _serving(imagePullSecrets=[{}]),
        f"{_S}.imagePullSecrets[0].name",
        "Required value",
    ),
    Invalid(
        "pull-secret-bad-name",
        _serving(imagePullSecrets=[{"name": "Registry Creds"}]),
        f"{_S}.imagePullSecrets[0].name",
        "should match",
        True,
    ),
    # --- server tuning ---
    Invalid(
        "batching-max-rows-zero",
        _serving(tuning={"batching": {"maxRows": 0}}),
        f"{_S}.tuning.batching.maxRows",
        "greater than or equal to 1",
        True,
    ),
    Invalid(
        "batching-max-wait-above-1000",
        _serving(tuning={"batching": {"maxWaitMs": 1001}}),
        f"{_S}.tuning.batching.maxWaitMs",
        "less than or equal to 1000",
        True,
    ),
    Invalid(
        "max-request-bytes-not-a-size",
        _serving(tuning={"maxRequestBytes": "16MB"}),
        f"{_S}.tuning.maxRequestBytes",
        "should match",
        True,
    ),
    Invalid(
        "body-timeout-too-long",
        _serving(tuning={"bodyTimeout": "2h"}),
        f"{_S}.tuning.bodyTimeout",
        "must be between 1s and 1h",
        True,
    ),
    Invalid(
        "tuning-unknown-field",
        _serving(tuning={"requestTimeout": "10s"}),
        f"{_S}.tuning.requestTimeout",
        "unknown field",
    ),
    # --- the disruption budget ---
    Invalid(
        "budget-percent-above-100",
        _disruption("150%"),
        "spec.disruption.maxUnavailable",
        _BUDGET,
        True,
    ),
    Invalid("budget-negative", _disruption(-1), "spec.disruption.maxUnavailable", _BUDGET, True),
    Invalid(
        "budget-string-word", _disruption("one"), "spec.disruption.maxUnavailable", _BUDGET, True
    ),
    Invalid(
        "budget-missing",
        lambda m: m["spec"].update(disruption={}),
        "spec.disruption.maxUnavailable",
        "Required value",
    ),
]
