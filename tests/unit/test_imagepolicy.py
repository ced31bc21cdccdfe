"""The serving image policy: which image a desired revision runs when the operator's default
changes, and how the plan records, renders and reports it (pure code)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.hashing import revision_hash
from modeldeploy.imagepolicy import (
    ImagePolicy,
    Images,
    UpgradeSlots,
    choose,
    recorded,
    upgrade_in_flight,
)
from modeldeploy.main import parse_args
from modeldeploy.pod import PodSettings
from modeldeploy.reconcile import Reconciliation, plan
from modeldeploy.spec import ModelDeploymentSpec, SpecError, parse_spec
from tests.unit.test_reconcile import NOW, body, pod, stored_after

OLD, NEW = "registry.example.com/modeldeploy:1", "registry.example.com/modeldeploy:2"
OLD_MONITOR = "registry.example.com/modeldeploy:1"


def spec(model: dict[str, Any] | None = None, **serving: Any) -> ModelDeploymentSpec:
    raw = body(serving=serving)["spec"]
    raw["model"].update(model or {})
    return parse_spec(raw)


def current(s: ModelDeploymentSpec, image: str = OLD, sklearn: str | None = "1.5.2") -> Any:
    return revision_hash(s, default_image=image), Images(image, OLD_MONITOR, sklearn)


def policy(rollout: str = "manual", sklearn: str | None = "1.5.0") -> ImagePolicy:
    return ImagePolicy(NEW, rollout, sklearn)


@pytest.mark.parametrize(
    ("rollout", "slot", "image_sklearn", "model", "serving", "image", "state"),
    [
        # manual: an existing revision keeps its image and says an upgrade is available
        ("manual", True, "1.5.0", {}, {}, OLD, names.IMAGE_UPGRADE_AVAILABLE),
        # progressive: the upgrade starts only with a free slot
        ("progressive", True, "1.5.0", {}, {}, NEW, names.IMAGE_UPGRADING),
        ("progressive", False, "1.5.0", {}, {}, OLD, names.IMAGE_WAITING_FOR_SLOT),
        # another scikit-learn minor: never, unless the spec opts in
        ("progressive", True, "1.6.1", {}, {}, OLD, names.IMAGE_SKLEARN_MISMATCH),
        ("progressive", True, "1.6.1", {"sklearnVersion": "1.6.0"}, {}, NEW, "Upgrading"),
        # the spec's declaration wins over the version recorded with the current image
        ("progressive", True, "1.5.0", {"sklearnVersion": "1.4.2"}, {}, OLD, "SklearnMismatch"),
        # undeclared image version: no evidence, no automatic move
        ("progressive", True, None, {}, {}, OLD, names.IMAGE_SKLEARN_UNKNOWN),
        ("manual", True, None, {}, {}, OLD, names.IMAGE_SKLEARN_UNKNOWN),
        # an explicit image is the spec's choice, as before
        ("progressive", True, "1.6.0", {}, {"image": "own:3"}, "own:3", names.IMAGE_PINNED),
    ],
)
def test_an_image_only_change_follows_the_policy(
    rollout: str,
    slot: bool,
    image_sklearn: str | None,
    model: dict[str, Any],
    serving: dict[str, Any],
    image: str,
    state: str,
) -> None:
    s = spec(model, **serving)
    choice = choose(s, current(spec()), policy(rollout, image_sklearn), slot=slot)
    assert (choice.image, choice.state) == (image, state)


def test_allow_sklearn_upgrade_opts_in_even_without_declared_versions() -> None:
    s = spec(allowSklearnUpgrade=True)
    # The opt-in is part of the revision (the server's switch), so compare with its own hash.
    choice = choose(s, current(s, sklearn=None), policy("progressive", None), slot=True)
    assert (choice.image, choice.state) == (NEW, names.IMAGE_UPGRADING)


def test_mismatch_message_names_both_versions_and_the_opt_in() -> None:
    choice = choose(spec(), current(spec()), policy("progressive", "1.6.1"), slot=True)
    assert "1.6.1" in choice.message and "1.5.2" in choice.message
    assert "allowSklearnUpgrade" in choice.message


def test_a_new_model_version_takes_the_new_default_image_even_under_manual() -> None:
    changed = spec({"version": "2", "sha256": "cd" * 32})
    choice = choose(changed, current(spec()), policy("manual"), slot=False)
    assert (choice.image, choice.state) == (NEW, names.IMAGE_UP_TO_DATE)


def test_a_new_model_version_declared_for_another_minor_keeps_the_old_image() -> None:
    changed = spec({"version": "2", "sha256": "cd" * 32, "sklearnVersion": "1.5.1"})
    choice = choose(changed, current(spec()), policy("manual", "1.6.0"), slot=False)
    assert (choice.image, choice.state) == (OLD, names.IMAGE_SKLEARN_MISMATCH)


def test_a_first_revision_and_one_already_on_the_default_run_the_default() -> None:
    assert choose(spec(), None, policy(), slot=False).image == NEW
    on_new = current(spec(), image=NEW)
    assert choose(spec(), on_new, policy(), slot=False).state == names.IMAGE_UP_TO_DATE


def test_a_rolled_back_upgrade_is_reported_and_needs_no_slot() -> None:
    quarantined = [revision_hash(spec(), default_image=NEW)]
    choice = choose(
        spec(), current(spec()), policy("progressive"), slot=False, quarantined=quarantined
    )
    assert choice.state == names.IMAGE_UPGRADE_ROLLED_BACK and choice.image == NEW
    # Under manual nothing moves by itself: the old image keeps serving, Stable.
    manual = choose(spec(), current(spec()), policy("manual"), slot=False, quarantined=quarantined)
    assert (manual.image, manual.state) == (OLD, names.IMAGE_UPGRADE_AVAILABLE)


def test_an_upgrade_in_flight_is_an_image_only_change() -> None:
    s = spec()
    old, new = current(s, OLD), current(s, NEW)
    assert upgrade_in_flight(s, new, old)
    changed = spec({"version": "2", "sha256": "cd" * 32})
    assert not upgrade_in_flight(changed, current(changed, NEW), old)  # a new model version
    assert not upgrade_in_flight(s, old, old)


def test_sklearn_version_is_validated_and_does_not_change_the_hash() -> None:
    assert revision_hash(spec({"sklearnVersion": "1.5.2"}), default_image=OLD) == revision_hash(
        spec(), default_image=OLD
    )
    with pytest.raises(SpecError, match=r"spec\.model\.sklearnVersion"):
        spec({"sklearnVersion": "latest"})
    assert revision_hash(spec(allowSklearnUpgrade=False), default_image=OLD) == revision_hash(
        spec(), default_image=OLD
    )
    assert revision_hash(spec(allowSklearnUpgrade=True), default_image=OLD) != revision_hash(
        spec(), default_image=OLD
    )


def test_slots_count_this_process_and_unplanned_statuses() -> None:
    slots = UpgradeSlots(1)
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    assert not slots.free_for(b, recorded=[a])  # a's status says Upgrading (a former leader)
    assert slots.settle(a, held=True, holds=True, waits=False) == []
    assert slots.settle(b, held=False, holds=False, waits=True) == []
    assert not slots.free_for(c, recorded=[])
    # a finishes: b is woken, and a's stale status no longer counts
    assert slots.settle(a, held=True, holds=False, waits=False) == [b]
    assert slots.free_for(b, recorded=[a])


# --- the plan ---------------------------------------------------------------------------------


def children(result: Reconciliation, kind: str) -> list[dict[str, Any]]:
    return [o for o in result.apply if o["kind"] == kind]


def run(md: dict[str, Any], observed: dict[str, Any], **kwargs: Any) -> Reconciliation:
    seen = {"deployments": [], "pods": [], "hpas": [], **observed}
    image = kwargs.pop("image", OLD)
    settings = PodSettings(monitor_image=image)
    return plan(md, seen, default_image=image, now=kwargs.pop("now", NOW), pod_settings=settings,
                **kwargs)  # fmt: skip


def stable_on_old() -> tuple[dict[str, Any], dict[str, Any]]:
    """r1 created and made stable by an operator whose default (and sidecar) image was OLD."""
    md = body(rollout={"steps": [], "bakeTime": "1m"})
    first = run(md, {}, image_sklearn_version="1.5.0")
    history = children(first, "ControllerRevision")[0]
    deployment = {**children(first, "Deployment")[0], "status": {}}
    deployment["metadata"] = {**deployment["metadata"], "generation": 1}
    observed = {
        "deployments": [deployment],
        "controllerrevisions": [history],
        "pods": [pod(1, 0, "True"), pod(1, 1, "True")],
    }
    md = stored_after(md, first)
    md = stored_after(md, run(md, observed, image_sklearn_version="1.5.0"))
    assert md["status"]["phase"] == names.PHASE_STABLE
    return md, observed


def test_the_first_revision_records_its_images() -> None:
    md, observed = stable_on_old()
    data = observed["controllerrevisions"][0]["data"]
    assert data["images"] == {"server": OLD, "monitor": OLD, "sklearn": "1.5.0"}
    assert md["status"]["image"]["state"] == names.IMAGE_UP_TO_DATE


def test_manual_keeps_the_revision_its_pods_and_reports_the_upgrade() -> None:
    md, observed = stable_on_old()
    result = run(md, observed, image=NEW, image_sklearn_version="1.5.1")
    (deployment,) = children(result, "Deployment")
    assert deployment["metadata"]["name"] == "iris-r1"
    pod_spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"] == observed["deployments"][0]["spec"]  # the very same pods
    assert [c["image"] for c in pod_spec["containers"]] == [OLD]  # the server as it was
    assert [c["image"] for c in pod_spec["initContainers"]] == [OLD]  # and its sidecar
    assert not result.scale and not children(result, "ControllerRevision")
    assert result.status is not None and "canary" not in result.status
    image = stored_after(md, result)["status"]["image"]
    assert image == {
        "serving": OLD,
        "default": NEW,
        "state": names.IMAGE_UPGRADE_AVAILABLE,
        "message": image["message"],
    }
    assert not result.image_upgrade


def test_progressive_with_a_slot_starts_an_image_canary_recorded_with_its_images() -> None:
    md, observed = stable_on_old()
    kwargs = {"image": NEW, "image_sklearn_version": "1.5.1", "image_rollout": "progressive"}
    result = run(md, observed, upgrade_slot=True, **kwargs)
    (deployment,) = children(result, "Deployment")
    assert deployment["metadata"]["name"] == "iris-r2"
    (history,) = children(result, "ControllerRevision")
    assert history["data"]["images"] == {"server": NEW, "monitor": NEW, "sklearn": "1.5.1"}
    assert result.image_upgrade and result.image_state == names.IMAGE_UPGRADING
    assert [e["reason"] for e in result.events] == [names.REASON_ROLLOUT_STARTED]
    # Without a slot it waits, and nothing rolls out.
    waiting = run(md, observed, upgrade_slot=False, **kwargs)
    assert waiting.image_state == names.IMAGE_WAITING_FOR_SLOT and not waiting.image_upgrade
    assert [d["metadata"]["name"] for d in children(waiting, "Deployment")] == ["iris-r1"]


def test_an_image_canary_holds_its_slot_through_its_bake_then_frees_it() -> None:
    md, observed = stable_on_old()
    kwargs: dict[str, Any] = {"image": NEW, "image_sklearn_version": "1.5.1"}
    kwargs["image_rollout"] = "progressive"
    started = run(md, observed, upgrade_slot=True, **kwargs)
    md = stored_after(md, started)
    r2 = {**children(started, "Deployment")[0], "status": {}}
    observed = {
        "deployments": [*observed["deployments"], {**r2, "spec": {**r2["spec"], "replicas": 2}}],
        "controllerrevisions": [
            *observed["controllerrevisions"],
            *children(started, "ControllerRevision"),
        ],
        "pods": [*observed["pods"], pod(2, 0, "True"), pod(2, 1, "True")],
    }
    later = NOW + timedelta(seconds=1)
    baking = run(md, observed, upgrade_slot=False, now=later, **kwargs)
    assert baking.status is not None
    assert (baking.status["stable"]["revision"], baking.status["previous"]["revision"]) == (2, 1)
    assert baking.image_upgrade and baking.image_state == names.IMAGE_UPGRADING
    md = stored_after(md, baking)
    assert md["status"]["image"]["serving"] == NEW
    done = run(md, observed, upgrade_slot=False, now=later + timedelta(minutes=2), **kwargs)
    md = stored_after(md, done)
    assert md["status"]["phase"] == names.PHASE_STABLE
    assert md["status"]["image"]["state"] == names.IMAGE_UP_TO_DATE
    assert not done.image_upgrade


def test_allow_sklearn_upgrade_lets_the_server_load_another_minor() -> None:
    md = body(serving={"allowSklearnUpgrade": True})
    (deployment,) = children(run(md, {}), "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": names.ENV_ALLOW_SKLEARN_MISMATCH, "value": "true"} in env
    (plain,) = children(run(body(), {}), "Deployment")
    names_ = [e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.ENV_ALLOW_SKLEARN_MISMATCH not in names_


def test_revisions_made_before_images_were_recorded_read_them_from_their_deployment() -> None:
    old_history = {"data": {"spec": {}, "specHash": "x", "defaultImage": "img:0"}}
    deployment = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": names.CONTAINER_SERVER, "image": "img:1"}],
                    "initContainers": [{"name": names.CONTAINER_MONITOR, "image": "mon:1"}],
                }
            }
        }
    }
    assert recorded(old_history, deployment) == Images("img:1", "mon:1")
    assert recorded(old_history, None) == Images("img:0", "")
    pinned = {"data": {"spec": {"serving": {"image": "own:1"}}, "defaultImage": "img:0"}}
    assert recorded(pinned, None) == Images("own:1", "")
    assert recorded(None, None) is None


def test_operator_flags_build_the_policy() -> None:
    args = parse_args(["--serving-image-rollout=progressive", "--serving-image-max-canaries=2"])
    assert (args.serving_image_rollout, args.serving_image_max_canaries) == ("progressive", 2)
    assert args.serving_image_sklearn_version is None
    with pytest.raises(SystemExit):
        parse_args(["--serving-image-rollout=auto"])
    with pytest.raises(SystemExit):
        parse_args(["--serving-image-max-canaries=0"])
