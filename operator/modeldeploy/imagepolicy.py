"""Which serving image a ModelDeployment's desired revision runs, decided in pure code.

A revision records the images its pods run when it is created (its ControllerRevision), so an
operator upgrade that changes the default image (`--serving-image`) changes no existing
revision. Whether an existing ModelDeployment moves to the new default is this policy:

- `spec.serving.image` set: that image, as any spec change (no policy applies).
- the spec changed for another reason (a new model version): the new revision takes the
  default image, unless its declared scikit-learn minor differs from the image's.
- only the default image changed: `manual` keeps the recorded image and says an upgrade is
  available; `progressive` starts an image-upgrade canary when one of the operator's upgrade
  slots is free, and only when the model's scikit-learn minor is known to match the new
  image's (or the spec opts in with `allowSklearnUpgrade`). No evidence is never a pass.

The model's scikit-learn version is `spec.model.sklearnVersion`, else the one the current
revision's image declared (the same artifact has been loading there). The image's is the
operator's `--serving-image-sklearn-version`, recorded with each revision created on it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from modeldeploy import names
from modeldeploy.hashing import revision_hash
from modeldeploy.spec import ModelDeploymentSpec

ROLLOUTS: Final = (names.IMAGE_ROLLOUT_MANUAL, names.IMAGE_ROLLOUT_PROGRESSIVE)


@dataclass(frozen=True)
class ImagePolicy:
    """The operator's flags: its default image and how existing revisions move onto it."""

    default_image: str = names.DEFAULT_SERVING_IMAGE
    rollout: str = names.IMAGE_ROLLOUT_MANUAL
    sklearn_version: str | None = None  # scikit-learn in `default_image`, as declared
    max_canaries: int = 1  # image-upgrade canaries in flight at once, across the operator

    def __post_init__(self) -> None:
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, got {self.rollout!r}")
        if self.max_canaries < 1:
            raise ValueError("max_canaries must be at least 1")


@dataclass(frozen=True)
class Images:
    """What one revision's pods run, recorded when the revision is created."""

    server: str
    monitor: str
    sklearn: str | None = None  # scikit-learn in `server`, when it was declared


@dataclass(frozen=True)
class Choice:
    image: str  # the desired revision's serving image (it goes into the spec hash)
    state: str  # names.IMAGE_* (status.image.state)
    message: str


def minor(version: str | None) -> tuple[str, ...] | None:
    """'1.5.2' -> ('1', '5'): the part whose change makes scikit-learn refuse a pickle."""
    return tuple(version.split(".")[:2]) if version else None


def choose(
    spec: ModelDeploymentSpec,
    current: tuple[str, Images] | None,
    policy: ImagePolicy,
    *,
    slot: bool,
    quarantined: Collection[str] = (),
) -> Choice:
    """`current` is the spec hash and images of the revision the desired spec would replace
    (the canary on its way, else the stable); `slot` whether this ModelDeployment may start an
    image-upgrade canary now (progressive only)."""
    default = policy.default_image
    if spec.serving.image:
        return Choice(spec.serving.image, names.IMAGE_PINNED, "spec.serving.image names it")
    if current is None or current[1].server == default:
        return Choice(default, names.IMAGE_UP_TO_DATE, "runs the operator's default image")
    spec_hash, images = current
    allowed = bool(spec.serving.allow_sklearn_upgrade)
    if revision_hash(spec, default_image=images.server) != spec_hash:
        # A new revision for another reason: the default, unless known to refuse the model.
        declared = spec.model.sklearn_version
        if not allowed and _differs(declared, policy.sklearn_version):
            why = _mismatch(declared, policy, "the new revision keeps " + images.server)
            return Choice(images.server, names.IMAGE_SKLEARN_MISMATCH, why)
        return Choice(default, names.IMAGE_UP_TO_DATE, "runs the operator's default image")
    keep = f"keeps {images.server}"
    model_version = spec.model.sklearn_version or images.sklearn
    if not allowed and (model_version is None or policy.sklearn_version is None):
        side = "the model's" if model_version is None else "the new image's"
        why = (
            f"{default} is available, but {side} scikit-learn version is not declared; {keep} "
            "(set spec.model.sklearnVersion, run the operator with "
            "--serving-image-sklearn-version, or set spec.serving.allowSklearnUpgrade)"
        )
        return Choice(images.server, names.IMAGE_SKLEARN_UNKNOWN, why)
    if not allowed and _differs(model_version, policy.sklearn_version):
        why = _mismatch(model_version, policy, keep)
        return Choice(images.server, names.IMAGE_SKLEARN_MISMATCH, why)
    if policy.rollout == names.IMAGE_ROLLOUT_MANUAL:
        why = (
            f"{default} is available; {keep} until a new revision (a new model version, or "
            "spec.serving.image set to it) (--serving-image-rollout=manual)"
        )
        return Choice(images.server, names.IMAGE_UPGRADE_AVAILABLE, why)
    if revision_hash(spec, default_image=default) in quarantined:
        # Desired as any quarantined spec is: the phase says RolledBack until `retry`.
        why = f"the upgrade to {default} was rolled back; `retry` tries it again"
        return Choice(default, names.IMAGE_UPGRADE_ROLLED_BACK, why)
    if not slot:
        why = f"{default} waits for one of {policy.max_canaries} image-upgrade slots; {keep}"
        return Choice(images.server, names.IMAGE_WAITING_FOR_SLOT, why)
    return Choice(default, names.IMAGE_UPGRADING, f"image upgrade {images.server} -> {default}")


def _differs(model: str | None, image: str | None) -> bool:
    return model is not None and image is not None and minor(model) != minor(image)


def _mismatch(model: str | None, policy: ImagePolicy, what: str) -> str:
    return (
        f"{policy.default_image} runs scikit-learn {policy.sklearn_version}, the model was saved "
        f"with {model}; {what} (spec.serving.allowSklearnUpgrade: true opts in)"
    )


def upgrade_in_flight(
    spec: ModelDeploymentSpec,
    new: tuple[str, Images] | None,
    old: tuple[str, Images] | None,
) -> bool:
    """Whether revision `new` (the canary, or the stable in its bake) replaces `old` only to
    change its image: the same spec hashed with `old`'s image gives `old`'s hash. Such a move
    holds an upgrade slot until it ends (promoted, rolled back or failed)."""
    if new is None or old is None or spec.serving.image:
        return False
    (new_hash, new_images), (old_hash, old_images) = new, old
    if new_images.server == old_images.server:
        return False
    same_spec = revision_hash(spec, default_image=new_images.server) == new_hash
    return same_spec and revision_hash(spec, default_image=old_images.server) == old_hash


def as_data(images: Images) -> dict[str, Any]:
    """How a ControllerRevision records them (read back by `recorded`)."""
    return {"server": images.server, "monitor": images.monitor, "sklearn": images.sklearn}


def recorded(history: dict[str, Any] | None, deployment: dict[str, Any] | None) -> Images | None:
    """A revision's images: from its ControllerRevision, else (revisions made before images
    were recorded) from its Deployment's pod template, else its history's defaultImage."""
    data = (history or {}).get("data") or {}
    if isinstance(data.get("images"), dict) and data["images"].get("server"):
        got = data["images"]
        return Images(str(got["server"]), str(got.get("monitor") or ""), got.get("sklearn"))
    containers = {
        c.get("name"): c.get("image")
        for key in ("containers", "initContainers")
        for c in ((deployment or {}).get("spec", {}).get("template", {}).get("spec", {})).get(
            key, []
        )
    }
    if server := containers.get(names.CONTAINER_SERVER):
        return Images(str(server), str(containers.get(names.CONTAINER_MONITOR) or ""))
    if image := ((data.get("spec") or {}).get("serving") or {}).get("image") or data.get(
        "defaultImage"
    ):
        return Images(str(image), "")
    return None


class UpgradeSlots:
    """Image-upgrade canaries in flight across the operator, at most `limit` at a time.

    Holders are known from what this process decided (so two reconciles in a row never both
    take the last slot before either wrote its status) and, for ModelDeployments it has not
    planned yet, from what their statuses say (`Upgrading`: a restarted operator counts the
    upgrades its predecessor started)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[tuple[str, str]] = set()
        self.waiting: set[tuple[str, str]] = set()
        self.planned: set[tuple[str, str]] = set()  # this process's count is authoritative

    def free_for(self, key: tuple[str, str], recorded: Collection[tuple[str, str]]) -> bool:
        others = (self.holders | (set(recorded) - self.planned)) - {key}
        return key in self.holders or len(others) < self.limit

    def settle(
        self, key: tuple[str, str], *, held: bool, holds: bool, waits: bool
    ) -> list[tuple[str, str]]:
        """Record what `key`'s plan decided; returns the waiting keys to wake when it freed a
        slot (`held`: it held one before, by this process's count or by its status)."""
        self.planned.add(key)
        (self.holders.add if holds else self.holders.discard)(key)
        (self.waiting.add if waits else self.waiting.discard)(key)
        return sorted(self.waiting) if held and not holds else []

    def forget(self, key: tuple[str, str]) -> list[tuple[str, str]]:
        held = key in self.holders
        self.planned.discard(key)
        self.holders.discard(key)
        self.waiting.discard(key)
        return sorted(self.waiting) if held else []
