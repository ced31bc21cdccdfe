"""One reconcile, planned in pure code: from the ModelDeployment and what is observed in the
cluster to the objects to apply, the replica counts to set, what to delete, the status to write
and the events to post. The controller executes the plan; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modeldeploy import builders, conditions, imagepolicy, names, registry, resolutions, rollout
from modeldeploy.analysis import OnNoData, PodView, analyze, pod_view, runtimes
from modeldeploy.containment import EgressSettings, network_policy, spec_warnings
from modeldeploy.diagnosis import Problem, problems_by_revision
from modeldeploy.hashing import revision_hash
from modeldeploy.imagepolicy import ImagePolicy, Images
from modeldeploy.pod import PodSettings
from modeldeploy.rollout_types import (
    Breach,
    Observation,
    Outcome,
    Policy,
    Revision,
    RollbackRequest,
    RolloutState,
    Step,
)
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
    deployments = _by_revision(observed.get("deployments", []))
    histories = _by_revision(observed.get("controllerrevisions", []))
    state = state_from_status(stored_status)
    image_policy = ImagePolicy(default_image, image_rollout, image_sklearn_version)
    images = _Images(histories, deployments)
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
    images.new = (spec_hash, _new_images(choice.image, current_images, image_policy, settings))
    pods = [pod_view(p) for p in observed.get("pods", [])]
    ready = _ready(deployments, pods)
    obs = _observation(spec, spec_hash, meta, deployments, pods, ready, state, now)
    refused = list(observed.get("refused") or [])
    problems = problems_by_revision(observed.get("pods", []), deployments)
    for revision, words in _refused_revisions(owner.name, refused).items():
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
            revision_settings = _with_monitor(settings, runs)
            apply.append(
                _deployment(owner, served, revision, spec_hash, choice.image, revision_settings)
            )
        elif revision not in deployments:
            # Deleted by hand (or never created before a crash): render it from its history.
            restored = _from_history(
                owner,
                revision,
                histories.get(revision),
                _with_monitor(settings, images.recorded(revision)),
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
    upgrading = _upgrade_in_flight(spec, new_state, images)
    desired["image"] = _image_status(choice, upgrading, new_state, images, image_policy)
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
        breach_started=_breach_started(breach, observed.get("pods", [])) if breach else None,
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
        for revision in sorted(_by_revision(observed))
        if (name := names.revision_name(owner.name, revision)) not in kept
    ]
    return wanted, gone


class _Images:
    """The images each revision runs: recorded ones, and those of a revision this plan makes."""

    def __init__(
        self, histories: Mapping[int, dict[str, Any]], deployments: Mapping[int, dict[str, Any]]
    ) -> None:
        self.histories, self.deployments = histories, deployments
        self.new: tuple[str, Images] | None = None  # (spec hash, images) of the desired spec

    def recorded(self, number: int) -> Images | None:
        return imagepolicy.recorded(self.histories.get(number), self.deployments.get(number))

    def of(self, rev: Revision | None) -> Images | None:
        if rev is None:
            return None
        found = self.recorded(rev.number)
        if found is None and self.new and self.new[0] == rev.spec_hash:
            return self.new[1]
        return found


def _new_images(
    image: str, current: Images | None, policy: ImagePolicy, settings: PodSettings
) -> Images:
    """What a revision created now records: the sidecar is this operator's; the serving
    image's scikit-learn is known for the default image (its flag) or a kept one."""
    if image == policy.default_image:
        sklearn = policy.sklearn_version
    else:
        sklearn = current.sklearn if current and current.server == image else None
    return Images(image, settings.monitor_image, sklearn)


def _with_monitor(settings: PodSettings, images: Images | None) -> PodSettings:
    """A revision keeps the sidecar image it was created with (an operator upgrade that
    changes it must not restart every revision's pods); unknown: the operator's own."""
    if images is None or not images.monitor:
        return settings
    return replace(settings, monitor_image=images.monitor)


def _upgrade_in_flight(spec: ModelDeploymentSpec, s: RolloutState, images: _Images) -> bool:
    if s.canary and s.stable and not s.restoring:
        new, old = s.canary, s.stable
    elif s.previous and s.stable and s.bake_until is not None:
        new, old = s.stable, s.previous
    else:
        return False
    pairs = [(r.spec_hash, i) if (i := images.of(r)) else None for r in (new, old)]
    return imagepolicy.upgrade_in_flight(spec, pairs[0], pairs[1])


def _image_status(
    choice: imagepolicy.Choice,
    upgrading: bool,
    s: RolloutState,
    images: _Images,
    policy: ImagePolicy,
) -> dict[str, Any]:
    """status.image: the image that serves, the operator's default and where the
    ModelDeployment stands with it (`kubectl get md -o wide`, `kubectl modeldeploy status`)."""
    serving = images.of(s.stable) or images.of(s.canary)
    state, message = choice.state, choice.message
    if upgrading:
        new = s.canary or s.stable
        old = s.stable if s.canary else s.previous
        to, was = images.of(new), images.of(old)
        state = names.IMAGE_UPGRADING
        if new and old and to and was:
            message = f"r{new.number} moves r{old.number}'s model from {was.server} to {to.server}"
    return {
        "serving": serving.server if serving else None,
        "default": policy.default_image,
        "state": state,
        "message": message,
    }


def _refused_revisions(md_name: str, refused: list[dict[str, Any]]) -> dict[int, str]:
    """Revision -> "Deployment <name>-r<n>: <the API's words>" for refused revision applies."""
    found = {}
    for r in refused:
        prefix = f"{md_name}-r"
        number = str(r["name"])[len(prefix) :]
        if r["kind"] == "Deployment" and str(r["name"]).startswith(prefix) and number.isdigit():
            found[int(number)] = f"Deployment {r['name']}: {r['message']}"
    return found


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


def _observation(
    spec: ModelDeploymentSpec,
    spec_hash: str,
    meta: Mapping[str, Any],
    deployments: Mapping[int, dict[str, Any]],
    pods: list[PodView],
    ready: Mapping[int, int],
    state: RolloutState,
    now: datetime,
) -> Observation:
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    # `onNoData` judges a revision under analysis. A revision already proven healthy that sees
    # no traffic is idle, not failing: no data there holds (it can never read as a breach).
    proven = {
        rev.number for rev in (state.stable, state.previous) if rev is not None and rev.proven
    }
    verdicts = {
        revision: analyze(
            pods,
            revision,
            now=now,
            window=spec.analysis.window,
            on_no_data=OnNoData.HOLD if revision in proven else OnNoData(spec.analysis.on_no_data),
        )
        for revision in sorted(deployments)
    }
    # "N" or "N@<nonce>": the nonce makes a repeated request to the same revision a new one.
    rollback_to = annotations.get(names.ANNOTATION_ROLLBACK_TO)
    target = (rollback_to or "").split("@", 1)[0]
    return Observation(
        spec_hash=spec_hash,
        model_version=spec.model.version,
        model_sha256=spec.model.sha256,
        replicas={
            r: int((d.get("spec") or {}).get("replicas") or 0) for r, d in deployments.items()
        },
        ready=ready,
        verdicts=verdicts,
        retry=annotations.get(names.ANNOTATION_RETRY),
        promote=annotations.get(names.ANNOTATION_PROMOTE),
        rollback=(
            RollbackRequest(revision=int(target), token=rollback_to)
            if rollback_to and target.isdigit()
            else None
        ),
        abort=annotations.get(names.ANNOTATION_ABORT),
        paused=annotations.get(names.ANNOTATION_PAUSED, "").lower() == "true",
    )


def _by_revision(deployments: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    result: dict[int, dict[str, Any]] = {}
    for d in deployments:
        label = (d["metadata"].get("labels") or {}).get(names.LABEL_REVISION, "")
        if label.isdigit() and not d["metadata"].get("deletionTimestamp"):
            result[int(label)] = d
    return result


def _ready(deployments: Mapping[int, dict[str, Any]], pods: list[PodView]) -> dict[int, int]:
    """Ready pods per revision, counted from the pods themselves: their events are what wake
    the operator, so the count is never older than the event (a Deployment's readyReplicas
    lags behind its pods)."""
    ready = dict.fromkeys(deployments, 0)
    for pod in pods:
        if pod.revision in ready and pod.ready and not pod.terminating:
            ready[pod.revision] += 1
    return ready


def _breach_started(breach: Breach, pods: list[dict[str, Any]]) -> datetime | None:
    """The breaching pod's condition transition time: the start of time-to-rollback."""
    for pod in pods:
        if pod["metadata"]["name"] != breach.pod:
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == names.POD_COND_METRICS_HEALTHY and cond.get("status") == "False":
                stamp = cond.get("lastTransitionTime")
                if stamp:
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return breach.at


def _invalid(body: Mapping[str, Any], err: SpecError, now: datetime) -> Reconciliation:
    """A spec only the operator can reject: say so once, touch nothing that serves."""
    stored: Mapping[str, Any] = body.get("status") or {}
    desired = invalid_spec_status(stored, err, body["metadata"].get("generation"), now)
    patch = status_patch(stored, desired)
    events: tuple[dict[str, str], ...] = ()
    if patch is not None:
        events = ({"type": "Warning", "reason": REASON_INVALID_SPEC, "message": str(err)},)
    return Reconciliation(status=patch, events=events, phase=names.PHASE_FAILED, outcome="invalid")
