"""The spec hash: which spec changes make a new model revision and which do not.

A revision is what runs inside its pods: the model artifact, how the server runs, and the
thresholds the sidecar judges it by. Replica counts, autoscaling, rollout pacing and rollback
policy change how revisions are scheduled, never what a revision is, so they are left out: an
HPA bound or a canary step edit must not restart a rollout or escape a quarantine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from modeldeploy.spec import ModelDeploymentSpec, effective_image

# Part of the hashed document, so a change to what is hashed can never collide with old hashes.
HASH_SCHEME: Final = "v1"
HASH_LENGTH: Final = 10


def revision_hash(spec: ModelDeploymentSpec, *, default_image: str) -> str:
    """A stable short hex digest of the fields that define a model revision.

    `default_image` is the image a spec without its own runs: the one the image policy chose
    (imagepolicy.choose), so a new operator default makes a new revision only under that
    policy, and a revision hashes alike across operator upgrades.
    Values are taken after parsing, so "60s" and "1m", or `cpu: 1` and `cpu: "1"`, hash alike.
    """
    serving = spec.serving.model_dump(by_alias=True, mode="json", exclude_none=True)
    serving["image"] = effective_image(spec, default_image)
    if not serving.get("allowSklearnUpgrade"):  # unset and false run the same pods
        serving.pop("allowSklearnUpgrade", None)
    # A declaration about the artifact, not what runs: editing it starts no rollout.
    model = spec.model.model_dump(
        by_alias=True, mode="json", exclude={"sklearn_version"}, exclude_none=True
    )
    analysis = spec.analysis.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not spec.analysis.thresholds.feedback_rules:
        # Unused without a feedback threshold (the sidecar is not told them), and left out so
        # specs from before they existed keep their hash.
        analysis.pop("feedbackWindow")
        analysis.pop("minFeedback")
    document = {
        "scheme": HASH_SCHEME,
        "model": model,
        "serving": serving,
        # exclude_none: a spec without the optional validation gate, drift or feedback
        # thresholds hashes as it did before they existed, so an operator upgrade restarts no
        # revision.
        "analysis": analysis,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]
