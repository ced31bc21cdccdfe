"""What an mlflow:// model means for a plan: the resolution to look up or reuse, and the spec
the pods run with it.

Pure. A resolution is asked of the registry once per spec (modeldeploy.controller does the
asking through modeldeploy.registry_client) and recorded in the revision's ControllerRevision
(`data.resolved`); every later render of that revision reads it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy import names, registry
from modeldeploy.hashing import revision_hash
from modeldeploy.rollout_types import Registered
from modeldeploy.spec import ModelDeploymentSpec, SpecError, parse_spec


def registry_need(
    body: Mapping[str, Any],
    observed: Mapping[str, list[dict[str, Any]]],
    *,
    default_image: str,
    default_tracking_uri: str | None,
) -> tuple[str, registry.Reference | registry.Resolution | registry.Problem] | None:
    """What the controller must find out before planning, keyed by the spec hash: None for a
    spec with no mlflow:// URI (or an invalid one: `plan` reports it); the Resolution recorded
    in a ControllerRevision of this same spec when there is one (no registry call: an alias
    that moved since does not move a revision); else the Reference to resolve, or a Problem.

    "This same spec" is judged with the image each revision was hashed with (its
    `defaultImage`): under the image policy the revision that serves may run an older image
    than the operator's default, and an image-upgrade canary keeps its model's resolution."""
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError:
        return None
    tracking = spec.model.registry.tracking_uri if spec.model.registry else None
    need = registry.reference(spec.model.uri, tracking, default_tracking_uri)
    if need is None:
        return None
    spec_hash = revision_hash(spec, default_image=default_image)
    hashes = {default_image: spec_hash}
    for history in sorted(observed.get("controllerrevisions", []), key=_number, reverse=True):
        data = history.get("data") or {}
        image = str(data.get("defaultImage") or default_image)
        if image not in hashes:
            hashes[image] = revision_hash(spec, default_image=image)
        if data.get("specHash") == hashes[image] and (found := recorded(history)) is not None:
            return spec_hash, found
    return spec_hash, need


def _number(history: Mapping[str, Any]) -> int:
    number = history.get("revision")
    return number if isinstance(number, int) else 0


def recorded(history: Mapping[str, Any] | None) -> registry.Resolution | None:
    """The resolution a ControllerRevision recorded (None: none, or unreadable)."""
    found = ((history or {}).get("data") or {}).get("resolved")
    if not isinstance(found, Mapping):
        return None
    try:
        return registry.Resolution.from_dict(found)
    except (KeyError, TypeError):
        return None


def served_spec(
    spec: ModelDeploymentSpec, resolved: registry.Resolution | None
) -> ModelDeploymentSpec:
    """The spec the pods run: an mlflow:// URI replaced by the artifact it resolved to (the
    spec hash stays the one of the spec as written)."""
    if resolved is None:
        return spec
    model = spec.model.model_copy(
        update={"uri": resolved.artifact_uri, "format": resolved.format, "registry": None}
    )
    return spec.model_copy(update={"model": model})


def registered(resolved: registry.Resolution | None) -> Registered | None:
    if resolved is None:
        return None
    return Registered(resolved.registry_version, resolved.run_id)


def resolved_event(
    spec: ModelDeploymentSpec, revision: int, resolved: registry.Resolution
) -> dict[str, str]:
    run = f", run {resolved.run_id}" if resolved.run_id else ""
    return {
        "type": "Normal",
        "reason": names.REASON_MODEL_RESOLVED,
        "message": f"r{revision}: {spec.model.uri} is registry version "
        f"{resolved.registry_version}{run}: {resolved.artifact_uri} ({resolved.format})",
    }
