"""Pod settings, server tuning and disruption budgets, rendered: each setting reaches the pod
template (and nothing else), the operator's labels always win, tuning becomes real server
flags, and which changes make a new revision. Refusals are in tests/helpers/pod_setting_cases.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.builders import Owner, disruption_budget, hpa, revision_deployment, service
from modeldeploy.hashing import revision_hash
from modeldeploy.pod import tuning_env
from modeldeploy.reconcile import Reconciliation, plan
from modeldeploy.spec import ModelDeploymentSpec, parse_spec
from modeldeploy_serving.config import FLAGS, parse_config
from tests.helpers.spec_cases import SHA, valid_manifest

IMAGE = "registry.invalid/modeldeploy-serving:1.0"
OWNER = Owner(name="iris", namespace="ml", uid="uid-1")
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 10,
                "preference": {"matchFields": [{"key": "metadata.name", "operator": "Exists"}]},
            }
        ],
    },
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {names.LABEL_NAME: "iris"}},
                    "topologyKey": "kubernetes.io/hostname",
                    "matchLabelKeys": [names.LABEL_REVISION],
                },
            }
        ]
    },
}
SETTINGS: dict[str, Any] = {
    "nodeSelector": {"pool": "cpu", "example.com/tier": "gold"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ],
    "affinity": AFFINITY,
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {
                "matchExpressions": [
                    {"key": names.LABEL_NAME, "operator": "In", "values": ["iris"]}
                ]
            },
            "matchLabelKeys": [names.LABEL_REVISION],
            "nodeTaintsPolicy": "Honor",
        }
    ],
    "priorityClassName": "models-high",
    "imagePullSecrets": [{"name": "registry-creds"}],
    "podLabels": {"team": "fraud", "cost-center.example.com/id": "cc-42"},
    "podAnnotations": {"sidecar.istio.io/inject": "true", "example.com/note": "a b: c"},
}
TUNING = {
    "batching": {"enabled": False, "maxRows": 32, "maxWaitMs": 5, "maxQueuedRows": 1000},
    "maxRequestBytes": "64Mi",
    "maxRequestRows": 50000,
    "bodyTimeout": "1m30s",
}


def spec(serving: dict[str, Any] | None = None, **fields: Any) -> ModelDeploymentSpec:
    raw = {**valid_manifest()["spec"], **fields}
    if serving is not None:
        raw["serving"] = serving
    return parse_spec(raw)


def template(parsed: ModelDeploymentSpec) -> dict[str, Any]:
    deployment = revision_deployment(
        OWNER, parsed, revision=2, spec_hash="h", default_image=IMAGE, replicas=1
    )
    result: dict[str, Any] = deployment["spec"]["template"]
    return result


def server_env(parsed: ModelDeploymentSpec) -> dict[str, str]:
    (server,) = template(parsed)["spec"]["containers"]
    return {e["name"]: e["value"] for e in server["env"] if "value" in e}


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ],
)
def test_each_scheduling_setting_reaches_the_pod_spec_as_written(field: str) -> None:
    rendered = template(spec({field: SETTINGS[field]}))["spec"]
    assert rendered[field] == SETTINGS[field]
    without = template(spec())["spec"]
    assert field not in without  # unset: the pod spec is what it was before these settings


def test_pod_labels_and_annotations_are_on_the_pods_only() -> None:
    parsed = spec(SETTINGS, autoscaling={"maxReplicas": 3})
    deployment = revision_deployment(
        OWNER, parsed, revision=2, spec_hash="h", default_image=IMAGE, replicas=None
    )
    pod_meta = deployment["spec"]["template"]["metadata"]
    assert pod_meta["labels"] == {
        "team": "fraud",
        "cost-center.example.com/id": "cc-42",
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_NAME: "iris",
        names.LABEL_REVISION: "2",
    }
    assert pod_meta["annotations"] == SETTINGS["podAnnotations"]
    autoscaler = hpa(OWNER, parsed, revision=2)
    budget = disruption_budget(OWNER, spec(SETTINGS, disruption={"maxUnavailable": 1}), revision=2)
    assert autoscaler is not None and budget is not None
    for child in (deployment, service(OWNER), autoscaler, budget):
        meta = child["metadata"]
        assert "team" not in meta["labels"], child["kind"]
        assert "annotations" not in meta or "sidecar.istio.io/inject" not in meta["annotations"]
    assert deployment["spec"]["selector"]["matchLabels"] == {
        names.LABEL_NAME: "iris",
        names.LABEL_REVISION: "2",
    }


def test_the_operators_labels_win_even_when_the_spec_was_not_checked() -> None:
    """Admission refuses colliding keys; a spec stored under an older CRD cannot steal the
    selector either (model_construct skips validation, as an old stored object would)."""
    parsed = spec({"podLabels": {"team": "a"}})
    forged = parsed.serving.model_copy(
        update={"pod_labels": {names.LABEL_NAME: "other", names.LABEL_REVISION: "9", "team": "a"}}
    )
    labels = template(parsed.model_copy(update={"serving": forged}))["metadata"]["labels"]
    assert (labels[names.LABEL_NAME], labels[names.LABEL_REVISION], labels["team"]) == (
        "iris",
        "2",
        "a",
    )


def test_empty_settings_render_and_hash_like_absent_ones() -> None:
    empty = spec(
        {
            "nodeSelector": {},
            "tolerations": [],
            "topologySpreadConstraints": [],
            "imagePullSecrets": [],
            "podLabels": {},
            "podAnnotations": {},
        }
    )
    assert template(empty) == template(spec())
    assert revision_hash(empty, default_image=IMAGE) == revision_hash(spec(), default_image=IMAGE)


# --- server tuning -----------------------------------------------------------------------------


def test_tuning_becomes_the_servers_own_flags() -> None:
    env = server_env(spec({"tuning": TUNING}))
    wanted = {
        names.ENV_MICRO_BATCHING: "false",
        names.ENV_BATCH_MAX_ROWS: "32",
        names.ENV_BATCH_MAX_WAIT_MS: "5",
        names.ENV_MAX_QUEUED_ROWS: "1000",
        names.ENV_MAX_REQUEST_BYTES: "64Mi",
        names.ENV_MAX_REQUEST_ROWS: "50000",
        names.ENV_BODY_TIMEOUT: "90",
    }
    assert {k: env[k] for k in wanted} == wanted
    # The model server reads them as intended (its real parser, from the pod's environment).
    config = parse_config([], env)
    assert config.micro_batching is False
    assert (config.batch_max_rows, config.batch_max_wait_ms, config.max_queued_rows) == (
        32,
        5.0,
        1000,
    )
    assert (config.max_request_bytes, config.max_request_rows) == (64 * 1024**2, 50000)
    assert config.body_timeout == 90.0


def test_every_tuning_variable_names_a_real_server_flag() -> None:
    server_reads = {flag.env for flag in FLAGS}
    operator_sets = set(tuning_env(spec({"tuning": TUNING}).serving.tuning))
    assert len(operator_sets) == 7 and operator_sets <= server_reads


def test_unset_tuning_leaves_the_servers_defaults() -> None:
    assert tuning_env(None) == {}
    assert tuning_env(spec({"tuning": {"batching": {}}}).serving.tuning) == {}
    env = server_env(spec({"tuning": {"batching": {"enabled": True}}}))
    assert env[names.ENV_MICRO_BATCHING] == "true" and names.ENV_BATCH_MAX_ROWS not in env


# --- revisions: what changes the pods is a new revision; a budget is not ----------------------


@pytest.mark.parametrize("field", [*SETTINGS, "tuning"])
def test_a_pod_setting_is_a_new_revision(field: str) -> None:
    value = TUNING if field == "tuning" else SETTINGS[field]
    before = revision_hash(spec(), default_image=IMAGE)
    assert revision_hash(spec({field: value}), default_image=IMAGE) != before


def test_the_disruption_budget_is_not_part_of_a_revision() -> None:
    before = revision_hash(spec(), default_image=IMAGE)
    after = revision_hash(spec(disruption={"maxUnavailable": "25%"}), default_image=IMAGE)
    assert after == before


# --- the PodDisruptionBudget -------------------------------------------------------------------


@pytest.mark.parametrize(("given", "rendered"), [(1, 1), ("2", 2), (0, 0), ("25%", "25%")])
def test_the_budget_selects_one_revisions_pods_and_is_owned(given: Any, rendered: Any) -> None:
    budget = disruption_budget(OWNER, spec(disruption={"maxUnavailable": given}), revision=4)
    assert budget is not None
    assert (budget["apiVersion"], budget["kind"]) == ("policy/v1", "PodDisruptionBudget")
    assert budget["metadata"]["name"] == "iris-r4"
    assert budget["metadata"]["labels"][names.LABEL_REVISION] == "4"
    (ref,) = budget["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        names.KIND,
        "iris",
        "uid-1",
        True,
    )
    assert budget["spec"]["selector"] == {
        "matchLabels": {names.LABEL_NAME: "iris", names.LABEL_REVISION: "4"}
    }
    assert budget["spec"]["maxUnavailable"] == rendered
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_no_budget_without_spec_disruption() -> None:
    assert disruption_budget(OWNER, spec(), revision=1) is None


def _md(**fields: Any) -> dict[str, Any]:
    raw = {
        "model": {
            "name": "iris",
            "version": "1",
            "uri": "https://m.example/i.joblib",
            "sha256": SHA,
        },
        "analysis": {"onNoData": "pass"},
        **fields,
    }
    meta = {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": 1}
    return {"metadata": meta, "spec": raw}


def _budget(revision: int) -> dict[str, Any]:
    labels = {names.LABEL_NAME: "iris", names.LABEL_REVISION: str(revision)}
    return {"metadata": {"name": f"iris-r{revision}", "labels": labels}}


def _plan(md: dict[str, Any], **observed: Any) -> Reconciliation:
    seen = {"deployments": [], "pods": [], "hpas": [], **observed}
    return plan(md, seen, default_image=IMAGE, now=datetime(2026, 12, 1, tzinfo=UTC))


def test_the_plan_applies_a_budget_per_running_revision_and_deletes_strays() -> None:
    result = _plan(_md(disruption={"maxUnavailable": 1}), pdbs=[_budget(1), _budget(7)])
    applied = [o["metadata"]["name"] for o in result.apply if o["kind"] == "PodDisruptionBudget"]
    assert applied == ["iris-r1"]
    assert ("PodDisruptionBudget", "iris-r7") in result.delete  # its revision is gone
    assert ("PodDisruptionBudget", "iris-r1") not in result.delete


def test_removing_spec_disruption_deletes_the_budgets() -> None:
    result = _plan(_md(), pdbs=[_budget(1)])
    assert not any(o["kind"] == "PodDisruptionBudget" for o in result.apply)
    assert ("PodDisruptionBudget", "iris-r1") in result.delete
