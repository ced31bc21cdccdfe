"""status_patch: the smallest merge patch that makes the stored status the desired one, and
nothing at all when they already agree (the root of "an idle operator writes nothing")."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.status import merged as merge
from modeldeploy.status import status_patch

leaves = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b", ""])
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3)
    ),
    max_leaves=12,
)
statuses = st.dictionaries(st.sampled_from(["phase", "canary", "rollout", "history"]), values)


def stored_form(value: Any) -> Any:
    """What the API server keeps of a value: no null keys in objects, at any depth."""
    if isinstance(value, dict):
        return {k: stored_form(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [stored_form(v) for v in value]
    return value


@given(statuses, statuses)
def test_the_patch_makes_stored_desired_and_then_nothing_is_written(
    before: dict[str, Any], desired: dict[str, Any]
) -> None:
    stored = stored_form(before) or {}
    patch = status_patch(stored, desired)
    after = merge(stored, patch or {})
    assert after == (stored_form(desired) or {})
    assert status_patch(after, desired) is None


def test_a_null_in_desired_equals_a_missing_key_in_stored() -> None:
    """The hot loop seen in the fault tests: rollout.previous is None in the rendered state
    and absent in the stored one; that is no change."""
    stored = {"rollout": {"step": 0}}
    assert status_patch(stored, {"rollout": {"step": 0, "previous": None}}) is None


def test_a_nested_key_desired_lacks_is_deleted_explicitly() -> None:
    stored = {"canary": {"revision": 2, "nextStepAt": "2026-11-30T10:00:30Z"}}
    assert status_patch(stored, {"canary": {"revision": 2}}) == {"canary": {"nextStepAt": None}}
