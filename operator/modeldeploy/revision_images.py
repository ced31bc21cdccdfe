"""The images each revision of one ModelDeployment runs, for its reconcile plan
(modeldeploy.reconcile): those its ControllerRevision recorded, those a revision the plan
creates will record, the sidecar image a revision keeps, whether an image upgrade is in flight
and status.image. The policy that chooses the desired revision's image is modeldeploy.imagepolicy.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from modeldeploy import imagepolicy, names
from modeldeploy.imagepolicy import ImagePolicy, Images
from modeldeploy.pod import PodSettings
from modeldeploy.rollout_types import Revision, RolloutState
from modeldeploy.spec import ModelDeploymentSpec


class RevisionImages:
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


def new_images(
    image: str, current: Images | None, policy: ImagePolicy, settings: PodSettings
) -> Images:
    """What a revision created now records: the sidecar is this operator's; the serving
    image's scikit-learn is known for the default image (its flag) or a kept one."""
    if image == policy.default_image:
        sklearn = policy.sklearn_version
    else:
        sklearn = current.sklearn if current and current.server == image else None
    return Images(image, settings.monitor_image, sklearn)


def with_monitor(settings: PodSettings, images: Images | None) -> PodSettings:
    """A revision keeps the sidecar image it was created with (an operator upgrade that
    changes it must not restart every revision's pods); unknown: the operator's own."""
    if images is None or not images.monitor:
        return settings
    return replace(settings, monitor_image=images.monitor)


def image_upgrade_in_flight(
    spec: ModelDeploymentSpec, s: RolloutState, images: RevisionImages
) -> bool:
    if s.canary and s.stable and not s.restoring:
        new, old = s.canary, s.stable
    elif s.previous and s.stable and s.bake_until is not None:
        new, old = s.stable, s.previous
    else:
        return False
    pairs = [(r.spec_hash, i) if (i := images.of(r)) else None for r in (new, old)]
    return imagepolicy.upgrade_in_flight(spec, pairs[0], pairs[1])


def image_status(
    choice: imagepolicy.Choice,
    upgrading: bool,
    s: RolloutState,
    images: RevisionImages,
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
