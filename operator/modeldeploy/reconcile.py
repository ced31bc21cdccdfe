"""One reconcile, planned in pure code: from the ModelDeployment and what is observed in the
cluster to the objects to apply, the replica counts to set, what to delete, the status to write
and the events to post. The controller executes the plan; nothing here does I/O.

Reading what is observed is modeldeploy.observation; the images each revision runs (and
status.image) are modeldeploy.revision_images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modeldeploy import builders, conditions, imagepolicy, names, registry, resolutions, rollout
from modeldeploy.analysis import pod_view, runtimes
from modeldeploy.containment import EgressSettings, network_policy, spec_warnings
from modeldeploy.diagnosis import Problem, problems_by_revision
from modeldeploy.hashing import revision_hash
from modeldeploy.imagepolicy import ImagePolicy
from modeldeploy.observation import (
    breach_started,
    by_revision,
    observation_from,
    ready_by_revision,
    refused_revisions,
)
from modeldeploy.pod import PodSettings
from modeldeploy.revision_images import (
    RevisionImages,
    image_status,
    image_upgrade_in_flight,
    new_images,
    with_monitor,
)
from modeldeploy.rollout_types import Breach, Outcome, Policy, RolloutState, Step
from modeldeploy.spec import ModelDeploymentSpec, SpecError, parse_spec, validate_name
from modeldeploy.status import (
    invalid_spec_status,
    render_status,
    state_from_status,
    status_patch,
    unresolved_status,
    with_refusals,
)

REASON_INVALID_SPEC = "InvalidSpec"
MANUAL = "Manual"  # the rollbacks metric's reason for a rollback or abort by hand


@dataclass(frozen=True)
class Reconciliation:
    """What the controller must do, in order: apply, scale, delete, write status, post events."""

    apply: tuple[dict[str, Any], ...] = ()
    scale: Mapping[str, int] = field(default_factory=dict)  # Deployment name -> replicas
    delete: tuple[tuple[str, str], ...] = ()  # (kind, name)
    status: dict[str, Any] | None = None  # a merge patch of .status; None = nothing to write
    events: tuple[dict[str, str], ...] = ()
    phase: str | None = None
    rollbacks: tuple[str, ...] = ()  # reasons, one per rollback this plan performs ("Manual")
    breach_started: datetime | None = None  # when the breach that caused a rollback began
    breach_pod: str | None = None  # the pod whose condition caused it
    requeue_after: float | None = None
    outcome: str = "ok"  # "ok" | "invalid" | "unresolved" (an mlflow:// URI did not resolve)
    lost: tuple[int, ...] = ()  # revisions to keep that have neither Deployment nor history
    image_upgrade: bool = False  # an image-upgrade canary (or its bake) holds a slot
    image_state: str = ""  # status.image.state (names.IMAGE_*)


def plan(
    body: Mapping[str, Any],
    observed: Mapping[str, list[dict[str, Any]]],  # children by kind; "refused": API refusals
    *,
    default_image: str,
    now: datetime,
    allow_file_uris: bool = False,
    pod_settings: PodSettings | None = None,
    monitor_role: str = names.DEFAULT_MONITOR_CLUSTER_ROLE,
    image_rollout: str = names.IMAGE_ROLLOUT_MANUAL,
    image_sklearn_version: str | None = None,
    upgrade_slot: bool = False,
    egress: EgressSettings | None = None,
    resolved: registry.Resolution | registry.Problem | None = None,
) -> Reconciliation:
    """`pod_settings`, `monitor_role` (the ClusterRole bound for the sidecar), `default_image`,
    `image_rollout` and `image_sklearn_version` (imagepolicy.ImagePolicy) and `egress` (where
    model pods must reach, for their NetworkPolicy) are the operator's own settings, from its
    flags; `upgrade_slot`: whether this ModelDeployment may start an image-upgrade canary now
    (the controller counts them across ModelDeployments). `resolved` is what the spec's
    mlflow:// URI resolved to (see `resolutions.registry_need`), or why it could not be."""
    meta = body["metadata"]
    settings = pod_settings or PodSettings()
    stored_status: Mapping[str, Any] = body.get("status") or {}
    try:
        validate_name(meta["name"])
        spec = parse_spec(body.get("spec") or {}, allow_file_uris=allow_file_uris)
    except SpecError as err:
        return _invalid(body, err, now)
    if isinstance(resolved, registry.Problem):
        return _unresolved(body, resolved, now)

    owner = builders.Owner.from_body(body)
    deployments = by_revision(observed.get("deployments", []))
    histories = by_revision(observed.get("controllerrevisions", []))
    state = state_from_status(stored_status)
    image_policy = ImagePolicy(default_image, image_rollout, image_sklearn_version)
    images = RevisionImages(histories, deployments)
    replaced = state.canary if state.canary and not state.restoring else state.stable
    current_images = images.of(replaced)
    choice = imagepolicy.choose(
        spec,
        (replaced.spec_hash, current_images) if replaced and current_images else None,
        image_policy,
        slot=upgrade_slot,
        quarantined=state.quarantined,
    )
    spec_hash = revision_hash(spec, default_image=choice.image)
    images.new = (spec_hash, new_images(choice.image, current_images, image_policy, settings))
    pods = [pod_view(p) for p in observed.get("pods", [])]
    ready = ready_by_revision(deployments, pods)
    obs = observation_from(spec, spec_hash, meta, deployments, pods, ready, state, now)
    refused = list(observed.get("refused") or [])
    problems = problems_by_revision(observed.get("pods", []), deployments)
    for revision, words in refused_revisions(owner.name, refused).items():
        # The API will not store this revision's Deployment: its pods can never exist.
        problems[revision] = Problem(names.REASON_APPLY_FAILED, words, terminal=True)
    obs = replace(obs, problems=problems, registry=resolutions.registered(resolved))
    policy = policy_from(spec)
    new_state, decision = rollout.step(state, obs, policy, now)

    apply: list[dict[str, Any]] = [*builders.sidecar_rbac(owner.namespace, monitor_role)]
    apply.append(builders.service(owner, decision.service_revision))
    lost: list[int] = []
    resolved_events: list[dict[str, str]] = []
    for revision in sorted(decision.replicas):
        if revision == decision.render_revision:
            runs = images.recorded(revision) or images.new[1]
            if revision not in histories:  # recorded before its Deployment exists
                apply.append(
                    builders.controller_revision(
                        owner,
                        revision=revision,
                        spec=body.get("spec") or {},
                        spec_hash=spec_hash,
                        default_image=choice.image,
                        images=imagepolicy.as_data(runs),
                        resolved=resolved.to_dict() if resolved else None,
                    )
                )
                if resolved is not None:
                    resolved_events.append(resolutions.resolved_event(spec, revision, resolved))
            # A revision keeps what its reference meant when it was made.
            meant = resolutions.recorded(histories.get(revision)) or resolved
            served = resolutions.served_spec(spec, meant)
            revision_settings = with_monitor(settings, runs)
            apply.append(
                _deployment(owner, served, revision, spec_hash, choice.image, revision_settings)
            )
        elif revision not in deployments:
            # Deleted by hand (or never created before a crash): render it from its history.
            restored = _from_history(
                owner,
                revision,
                histories.get(revision),
                with_monitor(settings, images.recorded(revision)),
                allow_file_uris,
                replicas=decision.replicas[revision],
            )
            if restored is None:
                lost.append(revision)
            else:
                apply.append(restored)
    delete: list[tuple[str, str]] = []
    hpa = (
        builders.hpa(owner, spec, revision=decision.hpa_revision) if decision.hpa_revision else None
    )
    if hpa is not None:
        apply.append(hpa)
    elif observed.get("hpas"):
        delete.append(("HorizontalPodAutoscaler", names.hpa_name(owner.name)))
    running = {revision for revision, count in decision.replicas.items() if count != 0}
    budgets, unwanted = _budgets(owner, spec, running, observed.get("pdbs", []))
    apply += budgets
    delete += unwanted
    policy_object = network_policy(owner, spec, egress or EgressSettings())
    if policy_object is not None:
        apply.append(policy_object)
    elif observed.get("networkpolicies"):
        delete.append(("NetworkPolicy", names.network_policy_name(owner.name)))

    scale: dict[str, int] = {}
    for revision, replicas in decision.replicas.items():
        current = deployments.get(revision)
        if replicas is None and current is None and spec.autoscaling_enabled:
            # A new Deployment starts at 1 replica; size it to the HPA's floor once, before the
            # HPA takes the field over (an update, so the HPA can own it without a conflict).
            assert spec.autoscaling is not None
            replicas = spec.autoscaling.min_replicas
        have = None if current is None else (current.get("spec") or {}).get("replicas")
        if replicas is not None and have != replicas and revision not in lost:
            scale[names.revision_name(owner.name, revision)] = replicas
    for revision in sorted(set(deployments) | set(histories)):
        if revision not in decision.replicas:
            if revision in deployments:
                delete.append(("Deployment", names.revision_name(owner.name, revision)))
            if revision in histories:
                delete.append(("ControllerRevision", names.revision_name(owner.name, revision)))

    desired = render_status(
        stored_status,
        new_state,
        decision,
        conditions.derive(new_state, obs, policy, decision, now),
        generation=meta.get("generation"),
        ready=ready,
        replicas=obs.replicas,
        runtimes=runtimes(pods),
        now=now,
    )
    upgrading = image_upgrade_in_flight(spec, new_state, images)
    desired["image"] = image_status(choice, upgrading, new_state, images, image_policy)
    # What the pods serve: an mlflow:// model warns about the format and source it resolved to.
    desired["warnings"] = spec_warnings(resolutions.served_spec(spec, resolved)) or None
    others = [r for r in refused if r["kind"] != "Deployment"]  # revisions fail as problems
    desired, refusal = with_refusals(desired, others, stored_status, meta.get("generation"), now)
    events = [{"type": e.type, "reason": e.reason, "message": e.message} for e in decision.events]
    events += resolved_events
    if refusal:
        events.append({"type": "Warning", "reason": names.REASON_APPLY_FAILED, "message": refusal})
    reasons, breach = rollbacks(state, new_state)
    return Reconciliation(
        apply=tuple(apply),
        scale=scale,
        delete=tuple(delete),
        status=status_patch(stored_status, desired),
        events=tuple(events),
        phase=str(new_state.phase),
        rollbacks=reasons,
        breach_started=breach_started(breach, observed.get("pods", [])) if breach else None,
        breach_pod=breach.pod if breach else None,
        requeue_after=decision.requeue_after,
        lost=tuple(lost),
        image_upgrade=upgrading,
        image_state=desired["image"]["state"],
    )


def rollbacks(before: RolloutState, after: RolloutState) -> tuple[tuple[str, ...], Breach | None]:
    """The rollbacks one step performed, by reason (one `Manual` for a `rollback --to N` or an
    abort, whatever it recorded), and the breach behind them when one caused it (the start of
    time-to-rollback; a manual one has none)."""
    added = [h for h in after.history if h not in before.history]
    done = [h for h in added if h.outcome is Outcome.ROLLED_BACK]
    manual = (names.REASON_MANUAL_ROLLBACK, names.REASON_ABORTED)
    automatic = [h for h in done if h.reason not in manual]
    moved = (after.stable, after.canary) != (before.stable, before.canary)
    requested = after.handled_rollback != before.handled_rollback and moved  # not refused
    by_hand = requested or len(automatic) < len(done)
    reasons = tuple(h.reason for h in automatic) + ((MANUAL,) if by_hand else ())
    breached = {h.revision for h in automatic}
    breach = after.last_breach
    return reasons, breach if breach and breach.revision in breached else None


def _budgets(
    owner: builders.Owner,
    spec: ModelDeploymentSpec,
    revisions: set[int],
    observed: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """One PodDisruptionBudget per revision that runs pods (rendered from the current spec: a
    budget is not part of a revision), and the deletions of those no longer wanted: their
    revision went or was scaled to zero (kept as history), or `spec.disruption` was removed."""
    wanted = [
        budget
        for revision in sorted(revisions)
        if (budget := builders.disruption_budget(owner, spec, revision=revision)) is not None
    ]
    kept = {b["metadata"]["name"] for b in wanted}
    gone = [
        ("PodDisruptionBudget", name)
        for revision in sorted(by_revision(observed))
        if (name := names.revision_name(owner.name, revision)) not in kept
    ]
    return wanted, gone


def _deployment(
    owner: builders.Owner,
    spec: ModelDeploymentSpec,
    revision: int,
    spec_hash: str,
    default_image: str,
    settings: PodSettings,
    replicas: int | None = None,
) -> dict[str, Any]:
    return builders.revision_deployment(
        owner,
        spec,
        revision=revision,
        spec_hash=spec_hash,
        default_image=default_image,
        replicas=replicas,  # None: never owned by the template's apply (the HPA may own it)
        settings=settings,
    )


def _from_history(
    owner: builders.Owner,
    revision: int,
    history: Mapping[str, Any] | None,
    settings: PodSettings,
    allow_file_uris: bool,
    replicas: int | None,
) -> dict[str, Any] | None:
    """A revision's Deployment rendered from its ControllerRevision, or None without one.

    It is created at its count (a history revision at 0), not at the API's default of 1 and
    scaled after: a pod of an old model would otherwise join the Service for a moment. The
    scale that follows in the same plan makes the scale manager own the count too, so a later
    apply without it (the HPA's revision) leaves it in place."""
    data = (history or {}).get("data") or {}
    try:
        spec = parse_spec(data["spec"], allow_file_uris=allow_file_uris)
        image = str(data["defaultImage"])
        hash_ = str(data["specHash"])
        resolved = resolutions.recorded(history)
        if resolved is None and spec.model.uri.startswith(registry.SCHEME):
            return None  # never rendered without what its reference meant then
        served = resolutions.served_spec(spec, resolved)
        return _deployment(owner, served, revision, hash_, image, settings, replicas)
    except (KeyError, TypeError, SpecError):
        return None


# --- mlflow:// models --------------------------------------------------------------------------


def _unresolved(
    body: Mapping[str, Any], problem: registry.Problem, now: datetime
) -> Reconciliation:
    """An mlflow:// URI that did not resolve: say so once, touch nothing that serves."""
    stored: Mapping[str, Any] = body.get("status") or {}
    desired = unresolved_status(
        stored, problem.reason, problem.message, body["metadata"].get("generation"), now
    )
    patch = status_patch(stored, desired)
    events: tuple[dict[str, str], ...] = ()
    if patch is not None:
        events = ({"type": "Warning", "reason": problem.reason, "message": problem.message},)
    phase = str(desired["phase"])
    return Reconciliation(status=patch, events=events, phase=phase, outcome="unresolved")


def policy_from(spec: ModelDeploymentSpec) -> Policy:
    return Policy(
        steps=tuple(Step(weight=s.weight, pause=s.pause) for s in spec.rollout.steps),
        bake_time=spec.rollout.bake_time,
        automatic_rollback=spec.rollback.automatic,
        history_limit=spec.rollback.history_limit,
        progress_deadline=spec.rollout.progress_deadline,
        autoscaling=spec.autoscaling_enabled,
        replicas=spec.fixed_replicas or 1,
    )


def _invalid(body: Mapping[str, Any], err: SpecError, now: datetime) -> Reconciliation:
    """A spec only the operator can reject: say so once, touch nothing that serves."""
    stored: Mapping[str, Any] = body.get("status") or {}
    desired = invalid_spec_status(stored, err, body["metadata"].get("generation"), now)
    patch = status_patch(stored, desired)
    events: tuple[dict[str, str], ...] = ()
    if patch is not None:
        events = ({"type": "Warning", "reason": REASON_INVALID_SPEC, "message": str(err)},)
    return Reconciliation(status=patch, events=events, phase=names.PHASE_FAILED, outcome="invalid")
