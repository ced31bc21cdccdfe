"""Live accuracy from feedback, the pure parts: label parsing and scoring in the server, the
feedback counters through the sidecar's parse, window and verdict (hand-computed values), the
monitor flags, and what the spec puts in the pod. No processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from modeldeploy import names
from modeldeploy.names import (
    REASON_ACCURACY_BELOW_THRESHOLD,
    REASON_INSUFFICIENT_DATA,
    REASON_MAE_ABOVE_THRESHOLD,
    REASON_METRIC_BREACH,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy.pod import PodSettings, pod_template
from modeldeploy.spec import SpecError, parse_spec
from modeldeploy_serving.errors import InvalidInput
from modeldeploy_serving.feedback import Target, score, target
from modeldeploy_serving.monitor.config import parse_config
from modeldeploy_serving.monitor.health import MonitorMetrics
from modeldeploy_serving.monitor.loop import Monitor
from modeldeploy_serving.monitor.parse import parse_sample
from modeldeploy_serving.monitor.verdict import (
    FeedbackEvidence,
    OnNoData,
    Status,
    Thresholds,
    Verdict,
    evaluate,
)
from modeldeploy_serving.monitor.window import Feedback, Sample, feedback_only, window_stats
from modeldeploy_serving.protocol.feedback import check_length, parse_labels, parse_v1, parse_v2
from modeldeploy_serving.signature import ModelSignature, OutputSpec
from tests.helpers.spec_cases import valid_manifest

NUMBERS = Target("classification", "number")


def signature(dtype: str = "int64", task: Any = "classification", shape: Any = ()) -> Any:
    return ModelSignature(
        n_features=2,
        allow_nan=False,
        outputs=(OutputSpec("predict", np.dtype(dtype), shape),),
        task=task,
    )


# --- the server: what a label must be, and the score ---------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "task", "expected"),
    [
        ("int64", "classification", Target("classification", "number")),
        ("float64", "classification", Target("classification", "number")),
        ("<U10", "classification", Target("classification", "string")),
        ("object", "classification", Target("classification", "string")),
        ("bool", "classification", Target("classification", "boolean")),
        ("float64", "regression", Target("regression", "number")),
    ],
)
def test_the_target_follows_the_estimator_and_its_predictions(
    dtype: str, task: str, expected: Target
) -> None:
    assert target(signature(dtype, task)) == expected


def test_models_feedback_cannot_score_are_refused() -> None:
    with pytest.raises(InvalidInput, match="neither a classifier nor a regressor"):
        target(signature(task=None))
    with pytest.raises(InvalidInput, match=r"predicts \[2\] values per row"):
        target(signature("float64", "regression", (2,)))


@pytest.mark.parametrize(
    ("labels", "want", "message"),
    [
        (None, NUMBERS, "labels: required"),
        ({"a": 1}, NUMBERS, "labels: expected an array, got an object"),
        ([1, "2"], NUMBERS, r"labels\[1\]: expected numbers .*got a string"),
        ([True], NUMBERS, r"labels\[0\]: expected numbers .*got a boolean"),
        ([1, None], NUMBERS, r"labels\[1\]: expected numbers .*got null"),
        ([[1]], NUMBERS, r"labels\[0\]: expected numbers .*got an array"),
        ([1], Target("classification", "string"), r"labels\[0\]: expected strings"),
        ([1], Target("classification", "boolean"), r"labels\[0\]: expected true or false"),
        (["1.5"], Target("regression", "number"), r"targets are numbers"),
    ],
)
def test_bad_labels_name_the_label_and_the_rule(labels: Any, want: Target, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_labels(labels, want)


def test_labels_and_rows_must_pair_up() -> None:
    with pytest.raises(InvalidInput, match="labels: 3 labels for 2 rows; send one per row"):
        check_length(np.zeros(3), 2)


def test_feedback_bodies_are_infer_bodies_parsed_by_the_same_code() -> None:
    tensor = {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
    raw = orjson.dumps({"id": "b", "inputs": [tensor], "labels": [0, 2]})
    parsed = parse_v2(raw, signature(), NUMBERS, max_rows=10)
    assert parsed.id == "b"
    assert parsed.rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert parsed.labels.tolist() == [0.0, 2.0]
    v1 = parse_v1(
        orjson.dumps({"instances": [[1, 2]], "labels": [1]}), signature(), NUMBERS, max_rows=10
    )
    assert v1.rows.tolist() == [[1.0, 2.0]] and v1.labels.tolist() == [1.0]
    with pytest.raises(InvalidInput, match="2 labels for 1 rows"):
        parse_v1(
            orjson.dumps({"instances": [[1, 2]], "labels": [1, 2]}),
            signature(),
            NUMBERS,
            max_rows=10,
        )
    bad = {**tensor, "shape": [1, 4]}  # the infer rules: 4 features for a 2-feature model
    with pytest.raises(InvalidInput, match="feature"):
        parse_v2(orjson.dumps({"inputs": [bad], "labels": [0]}), signature(), NUMBERS, max_rows=10)


def test_scores_match_hand_computed_values() -> None:
    # 3 of 5 predicted classes match.
    numeric = score(np.array([0, 1, 2, 1, 0]), np.array([0.0, 1.0, 1.0, 1.0, 2.0]), NUMBERS)
    assert (numeric.rows, numeric.correct) == (5, 3)
    assert numeric.summary()["accuracy"] == 0.6
    text = score(
        np.array(["a", "b", "c"]),
        np.array(["a", "c", "c"], dtype=object),
        Target("classification", "string"),
    )
    assert (text.rows, text.correct) == (3, 2)
    # |1.5 - 1| + |2 - 4| + |-1 - -1| = 2.5 over 3 rows
    regression = score(
        np.array([1.5, 2.0, -1.0]), np.array([1.0, 4.0, -1.0]), Target("regression", "number")
    )
    assert regression.absolute_error == pytest.approx(2.5)
    assert regression.summary()["mae"] == pytest.approx(2.5 / 3)


# --- the sidecar: parse, window, verdict ----------------------------------------------------------


def exposition(
    requests: int, classified: int, correct: int, regressed: int = 0, error: float = 0
) -> str:
    return (
        f'modeldeploy_requests_total{{protocol="v2",status_class="2xx"}} {requests}\n'
        f'modeldeploy_feedback_rows_total{{task="classification"}} {classified}\n'
        f'modeldeploy_feedback_rows_total{{task="regression"}} {regressed}\n'
        f"modeldeploy_feedback_correct_rows_total {correct}\n"
        f"modeldeploy_feedback_absolute_error_total {error}\n"
    )


def test_parse_reads_the_feedback_counters() -> None:
    sample = parse_sample(exposition(10, 200, 150, 80, 12.5), 0)
    assert sample.feedback == Feedback(200, 150, 80, 12.5)
    assert parse_sample(exposition(10, 0, 0), 0).feedback == Feedback()


def test_the_window_counts_increases_and_a_restart_counts_from_zero() -> None:
    samples = [
        Sample(0, 0, 0, feedback=Feedback(100, 90, 10, 5.0)),
        Sample(10, 0, 0, feedback=Feedback(150, 120, 20, 9.0)),  # +50, +30, +10, +4
        Sample(20, 0, 0, feedback=Feedback(40, 10, 0, 0.0)),  # restarted: +40, +10 from zero
    ]
    stats = window_stats(samples, 60)
    assert stats.feedback == Feedback(90, 40, 10, 4.0)
    assert stats.resets == 1


def test_the_feedback_window_keeps_only_the_feedback_counters() -> None:
    full = parse_sample(exposition(10, 200, 150), 5.0)
    slim = feedback_only(full)
    assert (slim.t, slim.feedback, slim.started) == (5.0, full.feedback, full.started)
    assert (slim.requests, slim.drift) == (0.0, {})


ACCURACY = Thresholds(max_error_rate=0.1, min_accuracy=0.8)
MAE = Thresholds(max_error_rate=0.1, max_mae=2.5)


def judge(
    feedback: Feedback,
    thresholds: Thresholds = ACCURACY,
    requests: float = 100,
    errors: float = 0,
    min_rows: int = 50,
) -> Verdict:
    stats = window_stats([Sample(0, 0, 0), Sample(30, requests, errors)], 30)
    evidence = FeedbackEvidence(feedback, window_seconds=300, min_rows=min_rows)
    return evaluate(stats, thresholds, 20, OnNoData.HOLD, 30, evidence)


def test_accuracy_below_the_threshold_breaches_naming_value_threshold_window_rows() -> None:
    verdict = judge(Feedback(classified=200, correct=130))  # 130 / 200 = 0.65
    assert (verdict.status, verdict.reason) == (Status.FALSE, REASON_ACCURACY_BELOW_THRESHOLD)
    assert verdict.message == "minAccuracy: accuracy 0.65 < 0.8 over 300s (200 rows of feedback)"


def test_accuracy_at_the_threshold_holds_and_is_shown() -> None:
    verdict = judge(Feedback(classified=200, correct=160))  # exactly 0.8
    assert (verdict.status, verdict.reason) == (Status.TRUE, REASON_WITHIN_THRESHOLDS)
    assert "accuracy 0.8 >= 0.8 over 300s (200 rows of feedback)" in verdict.message


def test_mae_above_the_threshold_breaches() -> None:
    verdict = judge(Feedback(regressed=80, absolute_error=400), MAE)  # 400 / 80 = 5
    assert (verdict.status, verdict.reason) == (Status.FALSE, REASON_MAE_ABOVE_THRESHOLD)
    assert verdict.message == "maxMAE: MAE 5 > 2.5 over 300s (80 rows of feedback)"
    assert judge(Feedback(regressed=80, absolute_error=200), MAE).status == Status.TRUE  # 2.5


def test_fewer_than_min_feedback_rows_say_nothing() -> None:
    # 40 rows, all wrong: below minFeedback 50 this is neither a breach nor a reason to hold.
    verdict = judge(Feedback(classified=40, correct=0))
    assert (verdict.status, verdict.reason) == (Status.TRUE, REASON_WITHIN_THRESHOLDS)
    assert (
        "minAccuracy: 40 rows of feedback over 300s, fewer than minFeedback 50" in verdict.message
    )
    few_requests = judge(Feedback(classified=40, correct=0), requests=5)
    assert (few_requests.status, few_requests.reason) == (Status.UNKNOWN, REASON_INSUFFICIENT_DATA)


def test_labelled_rows_are_evidence_even_below_min_requests() -> None:
    verdict = judge(Feedback(classified=60, correct=6), requests=0)
    assert verdict.reason == REASON_ACCURACY_BELOW_THRESHOLD


def test_error_rate_comes_first_and_each_rule_reads_its_own_task() -> None:
    assert judge(Feedback(classified=60, correct=6), errors=50).reason == REASON_METRIC_BREACH
    # A regressor's rows never count toward accuracy, a classifier's never toward MAE.
    assert judge(Feedback(regressed=500, absolute_error=1e6)).reason == REASON_WITHIN_THRESHOLDS
    assert judge(Feedback(classified=500), MAE).reason == REASON_WITHIN_THRESHOLDS


def test_without_feedback_thresholds_feedback_changes_nothing() -> None:
    verdict = judge(Feedback(classified=500, correct=0), Thresholds(max_error_rate=0.1))
    assert verdict.message == "errorRate 0 <= 0.1 over 30s (100 requests)"


class Text:
    url = "http://127.0.0.1:8080/metrics"

    def __init__(self) -> None:
        self.text = exposition(0, 0, 0)

    async def fetch(self) -> str:
        return self.text


class Api:
    async def patch_pod_status(self, body: dict[str, Any]) -> None:
        pass

    async def create_event(self, body: dict[str, Any]) -> None:
        pass


def test_the_monitor_judges_feedback_over_its_own_longer_window() -> None:
    flags = ["--pod-name=p", "--pod-namespace=ns", "--deployment-name=iris", "--min-requests=5"]
    flags += ["--window-seconds=30", "--feedback-window-seconds=120", "--min-accuracy=0.8"]
    now = [1000.0]
    source = Text()
    monitor = Monitor(
        parse_config(flags, {}),
        source,
        Api(),
        MonitorMetrics(),
        clock=lambda: now[0],
        wall=lambda: datetime(2026, 5, 1, tzinfo=UTC),
    )

    def scrape(at: float, requests: int, classified: int, correct: int) -> Verdict:
        now[0] = 1000.0 + at
        source.text = exposition(requests, classified, correct)
        asyncio.run(monitor.scrape_once())
        assert monitor.verdict is not None
        return monitor.verdict

    assert scrape(0, 0, 0, 0).reason == REASON_INSUFFICIENT_DATA
    assert scrape(20, 50, 60, 30).reason == REASON_ACCURACY_BELOW_THRESHOLD  # 30 / 60 = 0.5
    # 60 s later the 30 s window saw no feedback, the 120 s feedback window still holds it all.
    assert scrape(80, 100, 60, 30).reason == REASON_ACCURACY_BELOW_THRESHOLD
    # Past the feedback window: no labelled rows left, the rule says nothing.
    assert scrape(160, 150, 60, 30).reason == REASON_WITHIN_THRESHOLDS


def test_monitor_flags_and_their_defaults() -> None:
    required = ["--pod-name=p", "--pod-namespace=ns", "--deployment-name=iris"]
    config = parse_config(required, {})
    assert (config.feedback_window_seconds, config.min_feedback) == (300, 50)
    assert (config.thresholds.min_accuracy, config.thresholds.max_mae) == (None, None)
    env = {names.ENV_MONITOR_MIN_ACCURACY: "0.9", names.ENV_MONITOR_MAX_MAE: "0"}
    config = parse_config([*required, "--min-feedback=10"], env)
    assert (config.thresholds.min_accuracy, config.thresholds.max_mae) == (0.9, 0.0)
    assert config.min_feedback == 10
    for bad in ("--min-accuracy=1.5", "--max-mae=-1", "--feedback-window-seconds=0"):
        with pytest.raises(SystemExit):
            parse_config([*required, bad], {})


# --- the spec and the pod -------------------------------------------------------------------------


def monitor_env(analysis: dict[str, Any]) -> dict[str, Any]:
    raw = valid_manifest()["spec"]
    raw["analysis"] = analysis
    pod = pod_template(
        parse_spec(raw), md_name="iris", md_uid="u", labels={}, default_image="img",
        settings=PodSettings(),
    )["spec"]  # fmt: skip
    return {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}


def test_feedback_thresholds_reach_the_sidecar_with_window_and_minimum() -> None:
    env = monitor_env({"thresholds": {"minAccuracy": 0.85}, "feedbackWindow": "10m"})
    assert env[names.ENV_MONITOR_MIN_ACCURACY] == "0.85"
    assert env[names.ENV_MONITOR_FEEDBACK_WINDOW_SECONDS] == "600"
    assert env[names.ENV_MONITOR_MIN_FEEDBACK] == "50"
    assert names.ENV_MONITOR_MAX_MAE not in env
    assert monitor_env({"thresholds": {"maxMAE": 0}})[names.ENV_MONITOR_MAX_MAE] == "0"


def test_without_a_feedback_threshold_the_sidecar_is_told_nothing_of_feedback() -> None:
    env = monitor_env({"feedbackWindow": "10m", "minFeedback": 7})
    feedback = {
        names.ENV_MONITOR_MIN_ACCURACY,
        names.ENV_MONITOR_MAX_MAE,
        names.ENV_MONITOR_FEEDBACK_WINDOW_SECONDS,
        names.ENV_MONITOR_MIN_FEEDBACK,
    }
    assert not feedback & set(env)


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"thresholds": {"minAccuracy": 1.5}}, "minAccuracy"),
        ({"thresholds": {"minAccuracy": -0.1}}, "minAccuracy"),
        ({"thresholds": {"maxMAE": -1}}, "maxMAE"),
        ({"feedbackWindow": "7h"}, "feedbackWindow"),
        ({"minFeedback": 0}, "minFeedback"),
    ],
)
def test_the_spec_refuses_bad_feedback_settings_naming_the_field(
    analysis: dict[str, Any], field: str
) -> None:
    raw = valid_manifest()["spec"]
    raw["analysis"] = analysis
    with pytest.raises(SpecError, match=field):
        parse_spec(raw)
