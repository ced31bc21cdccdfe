"""Which spec changes make a new revision (modeldeploy.hashing.revision_hash)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modeldeploy.hashing import revision_hash
from modeldeploy.spec import parse_spec
from tests.helpers.spec_cases import valid_manifest

IMAGE = "registry.invalid/modeldeploy-serving:1.0"


def _hash(changes: dict[str, Any], default_image: str = IMAGE) -> str:
    raw = valid_manifest()["spec"]
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return revision_hash(parse_spec(raw), default_image=default_image)


BASE = _hash({})


def test_optional_fields_left_unset_keep_the_hash_of_older_operators() -> None:
    # The hash of the minimal spec before model.profile, model.signature and the drift
    # thresholds existed: an operator upgrade must not restart every revision.
    assert _hash({}, default_image="img") == "5328c7623f"


def test_hash_is_short_hex_and_stable() -> None:
    assert re.fullmatch(r"[0-9a-f]{10}", BASE)
    assert _hash({}) == BASE


@pytest.mark.parametrize(
    "changes",
    [
        {"model.version": "4"},
        {"model.sha256": "a" * 64},
        {"model.uri": "https://models.example.com/iris/4/model.joblib"},
        {"model.format": "skops"},
        {"model.name": "iris-v2"},
        {"serving.image": "example.org/other:2"},
        {"serving.port": 8081},
        {"serving.resources": {"requests": {"cpu": "1"}}},
        {"serving.env": [{"name": "A", "value": "1"}]},
        {"analysis.window": "1m"},
        {"analysis.minRequests": 50},
        {"analysis.onNoData": "fail"},
        {"analysis.thresholds": {"errorRate": 0.02}},
        {"analysis.thresholds": {"latencyP99Ms": 300}},
        {"analysis.thresholds": {"featureDrift": 0.25}},
        {"analysis.thresholds": {"predictionDrift": 0.25}},
        {"analysis.thresholds": {"minAccuracy": 0.8}},
        {"analysis.thresholds": {"maxMAE": 2.5}},
        {"model.profile": {"uri": "https://models.example.com/p.json", "sha256": "c" * 64}},
        {"model.signature": {"uri": "https://models.example.com/s.json", "sha256": "c" * 64}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_what_runs_in_the_pod_makes_a_new_revision(changes: dict[str, Any]) -> None:
    assert _hash(changes) != BASE


@pytest.mark.parametrize(
    "changes",
    [
        {"replicas": 5},
        {"autoscaling": {"minReplicas": 2, "maxReplicas": 9}},
        {"rollout": {"steps": []}},
        {"rollout.bakeTime": "1h"},
        {"rollback": {"automatic": False, "historyLimit": 3}},
        # Spellings of the same value:
        {"analysis.window": "30000ms"},
        {
            "serving.resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"memory": "512Mi"},
            }
        },  # the default, written out
        {"serving.port": 8080},
        {"model.format": "joblib"},
        # Without a feedback threshold the sidecar is not told them: nothing in the pod changes.
        {"analysis.feedbackWindow": "1h"},
        {"analysis.minFeedback": 500},
    ],
    ids=lambda c: next(iter(c)),
)
def test_how_revisions_are_scheduled_does_not(changes: dict[str, Any]) -> None:
    assert _hash(changes) == BASE


def test_the_feedback_window_and_minimum_count_once_a_feedback_threshold_uses_them() -> None:
    judged = {"analysis.thresholds": {"minAccuracy": 0.8}}
    assert _hash({**judged, "analysis.feedbackWindow": "1h"}) != _hash(judged)
    assert _hash({**judged, "analysis.minFeedback": 500}) != _hash(judged)
    assert _hash({**judged, "analysis.feedbackWindow": "300s"}) == _hash(judged)  # the default


def test_the_operators_default_image_counts_only_when_the_spec_has_none() -> None:
    assert _hash({}, default_image="registry.invalid/modeldeploy-serving:1.1") != BASE
    own = {"serving.image": "example.org/own:1"}
    assert _hash(own, default_image="a:1") == _hash(own, default_image="b:2")
    # Naming the default image explicitly is the same revision as leaving it out.
    assert _hash({"serving.image": IMAGE}) == BASE


def test_integer_and_string_quantities_hash_alike() -> None:
    as_int = _hash({"serving.resources": {"requests": {"cpu": 1}}})
    assert as_int == _hash({"serving.resources": {"requests": {"cpu": "1"}}})


def test_a_new_signature_file_is_a_new_revision() -> None:
    uri = "https://models.example.com/iris/3/signature.json"
    first = _hash({"model.signature": {"uri": uri, "sha256": "c" * 64}})
    assert first != _hash({"model.signature": {"uri": uri, "sha256": "d" * 64}})
    assert first != _hash({"model.signature": {"uri": uri + "2", "sha256": "c" * 64}})
