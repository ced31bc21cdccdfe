"""What each `kubectl modeldeploy` action writes: annotations only, validated first."""

from __future__ import annotations

import pytest

from modeldeploy import cli_actions, names
from modeldeploy.cli_actions import CliError
from tests.unit.cli_fixtures import NOW, progressing, stable


def test_rollback_targets_only_promoted_revisions_other_than_the_stable_one() -> None:
    assert cli_actions.rollback_targets(progressing()) == [1]


def test_rollback_sets_the_revision_number_with_a_token() -> None:
    action = cli_actions.rollback(progressing(), 1, "tok-0")
    patch = {"metadata": {"annotations": {names.ANNOTATION_ROLLBACK_TO: "1@tok-0"}}}
    assert action.patch() == patch
    assert action.message == "rollback of ml/iris to revision 1 (version 1) requested"


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (3, "revision 3 is already the stable revision of ml/iris"),
        (9, "revision 9 is not in the history of ml/iris (history: 1, 2, 3)"),
        (
            2,
            "revision 2 of ml/iris was rolled back (MetricBreach); it cannot be a rollback "
            "target (candidates: 1)",
        ),
    ],
)
def test_rollback_refuses_revisions_that_cannot_be_targeted(revision: int, message: str) -> None:
    with pytest.raises(CliError) as err:
        cli_actions.rollback(progressing(), revision, "tok")
    assert str(err.value) == message


def test_a_revision_whose_newest_entry_failed_is_no_longer_a_target() -> None:
    obj = progressing()
    obj["status"]["history"].append(
        {"revision": 1, "specHash": "h1", "outcome": names.OUTCOME_FAILED,
         "reason": names.REASON_PROGRESS_DEADLINE_EXCEEDED}
    )  # fmt: skip
    assert cli_actions.rollback_targets(obj) == []
    with pytest.raises(CliError, match=r"never became ready \(ProgressDeadlineExceeded\)"):
        cli_actions.rollback(obj, 1, "tok")


def test_promote_needs_a_canary_or_a_bake() -> None:
    action = cli_actions.promote(progressing(), "tok-1")
    assert action.patch() == {"metadata": {"annotations": {names.ANNOTATION_PROMOTE: "tok-1"}}}
    with pytest.raises(CliError, match=r"no canary or bake in progress \(phase: Stable\)"):
        cli_actions.promote(stable(), "tok-2")
    baking = stable()
    baking["status"].update(bakeUntil="2026-01-02T12:05:00Z", phase=names.PHASE_PROGRESSING)
    action = cli_actions.promote(baking, "tok-3")
    assert action.value == "tok-3" and "end of its bake" in action.message


def test_abort_needs_a_rollout_in_flight() -> None:
    action = cli_actions.abort(progressing(), "tok-1")
    assert action.patch() == {"metadata": {"annotations": {names.ANNOTATION_ABORT: "tok-1"}}}
    assert action.message == "abort of ml/iris revision 4 (version 3) requested"
    with pytest.raises(CliError, match=r"nothing to abort: ml/iris has no rollout in progress"):
        cli_actions.abort(stable(), "tok-2")
    baking = stable()
    baking["status"].update(bakeUntil="2026-01-02T12:05:00Z", previous={"revision": 2})
    assert "revision 3 in its bake" in cli_actions.abort(baking, "tok-3").message


def test_pause_and_resume_set_and_remove_the_annotation_once() -> None:
    obj = stable()
    pause = cli_actions.pause(obj)
    assert pause is not None
    assert pause.patch() == {"metadata": {"annotations": {names.ANNOTATION_PAUSED: "true"}}}
    assert cli_actions.resume(obj) is None  # not paused: nothing to write

    obj["metadata"]["annotations"][names.ANNOTATION_PAUSED] = "true"
    assert cli_actions.pause(obj) is None  # already paused
    resume = cli_actions.resume(obj)
    assert resume is not None
    # JSON merge patch: null deletes the key.
    assert resume.patch() == {"metadata": {"annotations": {names.ANNOTATION_PAUSED: None}}}


def test_retry_sets_the_token_and_says_when_nothing_is_quarantined() -> None:
    action = cli_actions.retry(progressing(), "tok-3")
    assert action.patch() == {"metadata": {"annotations": {names.ANNOTATION_RETRY: "tok-3"}}}
    assert "nothing is quarantined" not in action.message
    assert "nothing is quarantined" in cli_actions.retry(stable(), "tok-4").message


def test_tokens_differ_between_calls_and_start_with_the_time() -> None:
    first = cli_actions.unique_token(NOW, "abc123")
    assert first == "20260102T120000Z-abc123"
    assert first != cli_actions.unique_token(NOW, "def456")


def test_a_superseded_or_manually_rolled_back_revision_is_a_target() -> None:
    obj = progressing()
    obj["status"]["history"] += [
        {"revision": 5, "specHash": "h5", "outcome": names.OUTCOME_SUPERSEDED},
        {"revision": 6, "specHash": "h6", "outcome": names.OUTCOME_ROLLED_BACK,
         "reason": names.REASON_MANUAL_ROLLBACK},
    ]  # fmt: skip
    assert cli_actions.rollback_targets(obj) == [1, 5, 6]
