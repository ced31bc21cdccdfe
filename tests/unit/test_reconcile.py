"""The reconcile plan, in pure code: what the controller will apply, scale, delete and write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy import names
from modeldeploy.pod import PodSettings
from modeldeploy.reconcile import Reconciliation, plan
from modeldeploy.status import merged as merge
from modeldeploy.status import status_patch

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
IMAGE = "registry.example.com/modeldeploy:1"


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {
            "name": "iris",
            "version": "1",
            "uri": "https://models.example.com/iris.joblib",
            "sha256": "ab" * 32,
        },
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
        "rollout": {"steps": [{"weight": 50, "pause": "10s"}], "bakeTime": "1m"},
        "analysis": {"onNoData": "pass"},
    }
    base.update(spec)
    return {
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "1",
            "labels": {"app.kubernetes.io/instance": "argocd"},
        },
        "spec": base,
    }


def deployment(revision: int, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"iris-r{revision}",
            "labels": {names.LABEL_REVISION: str(revision), names.LABEL_NAME: "iris"},
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": replicas},
    }


def pod(revision: int, index: int, metrics: str | None = None, since: datetime = NOW) -> dict:
    stamp = (since - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}]
    if metrics is not None:
        conditions.append(
            {
                "type": names.POD_COND_METRICS_HEALTHY,
                "status": metrics,
                "reason": "MetricBreach" if metrics == "False" else "WithinThresholds",
                "message": "errorRate 0.5 > 0.01 over 30s (40 requests)",
                "lastTransitionTime": "2026-11-24T11:59:59Z",
            }
        )
    return {
        "metadata": {
            "name": f"iris-r{revision}-{index}",
            "labels": {names.LABEL_REVISION: str(revision), names.LABEL_NAME: "iris"},
        },
        "status": {"conditions": conditions},
    }


def run(md: dict[str, Any], now: datetime = NOW, **observed: Any) -> Reconciliation:
    seen = {"deployments": [], "pods": [], "hpas": [], **observed}
    return plan(md, seen, default_image=IMAGE, now=now)


def stored_after(md: dict[str, Any], result: Reconciliation) -> dict[str, Any]:
    """The ModelDeployment as the API server stores it after the status merge patch."""
    return {**md, "status": merge(md.get("status") or {}, result.status or {})}


def kinds(result: Reconciliation) -> list[str]:
    return [obj["kind"] for obj in result.apply]


def test_a_new_modeldeployment_gets_its_children_and_a_floor_sized_first_revision() -> None:
    result = run(body())
    assert kinds(result) == [
        "ServiceAccount",
        "RoleBinding",
        "Service",
        "ControllerRevision",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ]
    history = result.apply[3]
    assert (history["metadata"]["name"], history["revision"]) == ("iris-r1", 1)
    assert history["data"]["spec"] == body()["spec"] and history["data"]["defaultImage"] == IMAGE
    deployment_obj = result.apply[4]
    assert deployment_obj["metadata"]["name"] == "iris-r1"
    assert "replicas" not in deployment_obj["spec"]  # the HPA will own it
    assert result.scale == {"iris-r1": 2}  # sized once to the HPA's floor
    assert "app.kubernetes.io/instance" not in deployment_obj["metadata"]["labels"]
    assert result.status is not None and result.status["observedGeneration"] == 1
    assert [e["reason"] for e in result.events] == ["Deploying"]


def test_the_operators_monitor_settings_reach_the_binding_and_every_rendered_revision() -> None:
    md = body(serving={"image": "user.example/own:1"})
    settings = PodSettings(monitor_image="ops.example/modeldeploy:2")
    result = plan(
        md,
        {"deployments": [], "pods": [], "hpas": []},
        default_image=IMAGE,
        now=NOW,
        pod_settings=settings,
        monitor_role="md-monitor",
    )
    binding = next(o for o in result.apply if o["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == "md-monitor"
    deployment_obj = next(o for o in result.apply if o["kind"] == "Deployment")
    pod_spec = deployment_obj["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["image"] == "user.example/own:1"
    assert [c["image"] for c in pod_spec["initContainers"]] == ["ops.example/modeldeploy:2"]


def test_ready_pods_make_the_first_revision_stable_and_a_second_plan_writes_nothing() -> None:
    md = stored_after(body(), run(body()))
    observed = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0), pod(1, 1)], "hpas": [{}]}
    result = run(md, **observed)
    assert result.status is not None and result.status["phase"] == names.PHASE_STABLE
    assert result.status["readyReplicas"] == 2
    assert not result.scale and not result.delete
    md = stored_after(md, result)
    again = run(md, **observed)
    assert again.status is None and not again.events  # idempotent: nothing to write


def loaded(pod_body: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The pod after its sidecar wrote ModelReady=True naming the runtime."""
    condition = {
        "type": names.POD_COND_MODEL_READY,
        "status": "True",
        "reason": names.REASON_MODEL_LOADED,
        "message": f"model verified, loaded and warmed up{names.MODEL_RUNTIME_MARK}{runtime}",
    }
    pod_body["status"]["conditions"].append(condition)
    return pod_body


def test_status_shows_the_runtime_each_revisions_ready_pods_report() -> None:
    md = stored_after(body(), run(body()))
    pods = [loaded(pod(1, 0), "onnx"), loaded(pod(1, 1), "onnx")]
    result = run(md, deployments=[deployment(1, 2)], pods=pods, hpas=[{}])
    assert result.status is not None and result.status["stable"]["runtime"] == "onnx"
    pods[1] = loaded(pod(1, 1), "sklearn")  # conversion failed on one pod only
    again = run(stored_after(md, result), deployments=[deployment(1, 2)], pods=pods, hpas=[{}])
    assert again.status is not None and again.status["stable"]["runtime"] == "mixed"
    unknown = run(md, deployments=[deployment(1, 2)], pods=[pod(1, 0)], hpas=[{}])
    assert unknown.status is not None and "runtime" not in unknown.status["stable"]


def test_a_new_model_version_starts_a_canary_sized_from_the_weight() -> None:
    md = stored_after(body(), run(body()))
    observed = {"deployments": [deployment(1, 4)], "pods": [pod(1, i) for i in range(4)]}
    md = stored_after(md, run(md, **observed))
    new = body()
    new["spec"]["model"] = {**new["spec"]["model"], "version": "2", "sha256": "cd" * 32}
    new["metadata"]["generation"] = 2
    new["status"] = md["status"]
    result = run(new, **observed)
    rendered = [o["metadata"]["name"] for o in result.apply if o["kind"] == "Deployment"]
    assert rendered == ["iris-r2"]
    assert result.scale == {"iris-r2": 4}  # 50%: as many canary pods as stable ones
    assert result.status is not None and result.status["phase"] == names.PHASE_PROGRESSING


def test_a_breaching_canary_is_rolled_back_with_the_breach_time() -> None:
    md = stored_after(body(), run(body()))
    stable = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0, "True"), pod(1, 1, "True")]}
    md = stored_after(md, run(md, **stable))
    md = stored_after(md, run(md, now=NOW + timedelta(minutes=2), **stable))  # bake ends
    new = body()
    new["spec"]["model"] = {**new["spec"]["model"], "version": "2", "sha256": "cd" * 32}
    new["status"] = md["status"]
    later = NOW + timedelta(minutes=3)
    md = stored_after(new, run(new, now=later, **stable))
    canary = {
        "deployments": [deployment(1, 2), deployment(2, 2)],
        "pods": [*stable["pods"], pod(2, 0, "False", since=later)],
    }
    result = run(md, now=later + timedelta(seconds=1), **canary)
    assert result.status is not None and result.status["phase"] == names.PHASE_ROLLED_BACK
    assert result.scale == {"iris-r2": 0}  # out of rotation; r1 was never scaled down
    assert [e["reason"] for e in result.events] == ["RolledBack"]
    assert result.rollbacks == ("MetricBreach",)
    assert result.breach_started == datetime(2026, 11, 24, 11, 59, 59, tzinfo=UTC)
    assert result.status["lastBreach"]["pod"] == "iris-r2-0"


def test_an_invalid_spec_is_reported_once_and_touches_nothing() -> None:
    bad = body(serving={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}})
    result = run(bad)
    assert result.outcome == "invalid" and not result.apply and not result.scale
    assert result.status is not None
    ready = next(c for c in result.status["conditions"] if c["type"] == names.COND_READY)
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    invalid = next(c for c in result.status["conditions"] if c["type"] == "InvalidSpec")
    assert invalid["status"] == "True" and "spec.serving.resources" in invalid["message"]
    assert "spec.serving.resources" not in ready["message"]  # said once, where it belongs
    assert [e["reason"] for e in result.events] == ["InvalidSpec"]
    again = run(stored_after(bad, result))
    assert again.status is None and not again.events


def test_turning_autoscaling_off_deletes_the_hpa_and_fixes_replicas() -> None:
    fixed = body(replicas=3)
    del fixed["spec"]["autoscaling"]
    result = run(fixed, deployments=[deployment(1, 2)], hpas=[{"metadata": {"name": "iris"}}])
    assert ("HorizontalPodAutoscaler", "iris") in result.delete
    assert "HorizontalPodAutoscaler" not in kinds(result)


def test_a_revision_the_decision_drops_is_deleted() -> None:
    md = stored_after(body(), run(body()))
    result = run(md, deployments=[deployment(1, 2), deployment(7, 1)])
    assert ("Deployment", "iris-r7") in result.delete


def test_status_patch_clears_removed_fields_and_keeps_transition_times() -> None:
    stored = {
        "phase": "Stable",
        "canary": {"revision": 2},
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t0"}],
    }
    desired = {"phase": "Stable", "conditions": stored["conditions"]}
    assert status_patch(stored, desired) == {"canary": None}
    assert status_patch(desired, dict(desired)) is None


def test_on_no_data_fail_judges_the_canary_not_an_idle_proven_stable() -> None:
    strict = body(analysis={"onNoData": "fail", "window": "30s"})
    md = stored_after(strict, run(strict))
    healthy = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0, "True"), pod(1, 1, "True")]}
    md = stored_after(md, run(md, **healthy))
    md = stored_after(md, run(md, now=NOW + timedelta(minutes=2), **healthy))  # proven, baked
    assert md["status"]["phase"] == names.PHASE_STABLE
    # Traffic stops: the sidecars now report no data. An idle stable is not a failing one.
    idle = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0), pod(1, 1)]}
    result = run(md, now=NOW + timedelta(minutes=10), **idle)
    assert result.status is None or result.status.get("phase", names.PHASE_STABLE) == (
        names.PHASE_STABLE
    )


def test_a_pinned_service_selects_only_that_revision() -> None:
    from modeldeploy.builders import Owner, service

    owner = Owner(name="iris", namespace="ml", uid="uid-1")
    assert names.LABEL_REVISION not in service(owner)["spec"]["selector"]
    pinned = service(owner, pinned_revision=3)["spec"]["selector"]
    assert pinned[names.LABEL_REVISION] == "3" and pinned[names.LABEL_NAME] == "iris"


def history_of(result: Reconciliation, revision: int) -> dict[str, Any]:
    return next(
        o for o in result.apply if o["kind"] == "ControllerRevision" and o["revision"] == revision
    )


def canary_started(pods: int = 4) -> tuple[dict[str, Any], Reconciliation]:
    """r1 Stable with `pods` ready pods, then version 2 applied: r2 started as a canary.
    Returns the stored ModelDeployment and r1's first plan (with its ControllerRevision)."""
    first = run(body())
    md = stored_after(body(), first)
    stable = {"deployments": [deployment(1, pods)], "pods": [pod(1, i) for i in range(pods)]}
    md = stored_after(md, run(md, **stable))
    new = body()
    new["spec"]["model"] = {**new["spec"]["model"], "version": "2", "sha256": "cd" * 32}
    new["status"] = md["status"]
    return stored_after(new, run(new, **stable)), first


def test_a_deleted_stable_is_rendered_again_from_its_history_mid_canary() -> None:
    md, first = canary_started()
    r1_history = history_of(first, 1)
    # Someone deletes iris-r1: only its ControllerRevision remembers how it was made.
    result = run(md, deployments=[deployment(2, 4)], controllerrevisions=[r1_history])
    rendered = {o["metadata"]["name"]: o for o in result.apply if o["kind"] == "Deployment"}
    assert set(rendered) == {"iris-r1", "iris-r2"}
    env = rendered["iris-r1"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": names.ENV_MODEL_VERSION, "value": "1"} in env  # the old model, not the spec
    assert (
        rendered["iris-r1"]["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH]
        == (r1_history["data"]["specHash"])
    )
    assert "replicas" not in rendered["iris-r1"]["spec"]  # the stable: the HPA's to own
    assert result.scale.get("iris-r1") == 2  # the HPA's floor until the HPA takes it over
    assert result.lost == ()


def test_without_history_a_lost_revision_is_reported_not_invented() -> None:
    md, _ = canary_started()
    result = run(md, deployments=[deployment(2, 4)])
    assert result.lost == (1,)
    assert "iris-r1" not in result.scale


def test_history_goes_with_a_dropped_revision() -> None:
    md = stored_after(body(), run(body()))
    stale = {"metadata": {"name": "iris-r7", "labels": {names.LABEL_REVISION: "7"}}}
    result = run(md, deployments=[deployment(1, 2)], controllerrevisions=[stale])
    assert ("ControllerRevision", "iris-r7") in result.delete


def test_a_refused_service_reaches_status_and_one_event() -> None:
    md = stored_after(body(), run(body()))
    stable = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0), pod(1, 1)]}
    md = stored_after(md, run(md, **stable))
    refusal = {"kind": "Service", "name": "iris", "message": "422 Invalid: spec.ports: bad"}
    result = run(md, **stable, refused=[refusal])
    assert result.status is not None
    degraded = next(c for c in result.status["conditions"] if c["type"] == names.COND_DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", names.REASON_APPLY_FAILED)
    assert "Service iris: 422 Invalid: spec.ports: bad" in result.status["message"]
    assert [e["reason"] for e in result.events] == [names.REASON_APPLY_FAILED]
    again = run(stored_after(md, result), **stable, refused=[refusal])
    assert again.status is None and not again.events  # said once
    healed = run(stored_after(md, result), **stable)
    assert healed.status is not None
    degraded = next(c for c in healed.status["conditions"] if c["type"] == names.COND_DEGRADED)
    assert degraded["status"] == "False"


def test_a_refused_canary_deployment_fails_the_canary_at_once() -> None:
    md, _ = canary_started(pods=2)
    stable = {"deployments": [deployment(1, 2)], "pods": [pod(1, 0), pod(1, 1)]}
    refusal = {"kind": "Deployment", "name": "iris-r2", "message": "403 Forbidden: denied"}
    result = run(md, **stable, refused=[refusal])
    assert result.status is not None and result.status["phase"] == names.PHASE_ROLLED_BACK
    entry = result.status["history"][-1]
    assert (entry["revision"], entry["outcome"], entry["reason"]) == (
        2,
        names.OUTCOME_FAILED,
        names.REASON_APPLY_FAILED,
    )
    assert "Deployment iris-r2: 403 Forbidden: denied" in entry["message"]


def test_a_deleted_history_revision_comes_back_at_zero_not_at_the_default_of_one() -> None:
    md, first = canary_started()
    history = history_of(first, 1)
    state = json.loads(md["status"]["rolloutState"])
    # r2 is the stable now and r1 a cold history entry (kept at 0 for rollback --to 1).
    state["stable"], state["canary"] = state["canary"], None
    state["weight"], state["step"] = 0, 0
    md["status"]["rolloutState"] = json.dumps(state)
    result = run(md, deployments=[deployment(2, 4)], controllerrevisions=[history])
    rendered = {o["metadata"]["name"]: o for o in result.apply if o["kind"] == "Deployment"}
    assert rendered["iris-r1"]["spec"]["replicas"] == 0
    assert result.scale.get("iris-r1") == 0  # the scale manager co-owns the count
