"""parse_spec never escapes with anything but SpecError, and quantities never overflow."""

from __future__ import annotations

import contextlib
import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeploy.spec import SpecError, parse_spec
from modeldeploy.units import parse_quantity
from tests.helpers.spec_cases import valid_manifest

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
QUANTITY_LIKE = st.from_regex(
    r"[+-]?[0-9.]{0,25}([eE][+-]?[0-9]{0,9}|[KMGTPE]i?|[num])?", fullmatch=True
)
PLACES = [
    ("serving", "resources", "requests", "cpu"),
    ("serving", "resources", "limits", "memory"),
    ("serving", "resources", "requests", "ephemeral-storage"),
    ("rollout", "progressDeadline"),
    ("rollout", "bakeTime"),
    ("analysis", "thresholds", "latencyP99Ms"),
    ("replicas",),
]


def _put(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return spec


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PLACES), JSON | QUANTITY_LIKE)
def test_any_value_anywhere_is_a_spec_error_or_a_spec(path: tuple[str, ...], value: Any) -> None:
    spec = _put(valid_manifest()["spec"], path, value)
    resources = spec.setdefault("serving", {}).setdefault("resources", {})
    if isinstance(resources, dict):
        resources.setdefault("limits", {"memory": "1Gi"})
    try:
        parse_spec(spec)
    except SpecError as err:
        assert err.field_path.startswith("spec")


@settings(max_examples=300, deadline=None)
@given(QUANTITY_LIKE)
def test_parse_quantity_is_a_value_or_a_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_quantity(text) >= 0


@pytest.mark.parametrize("text", ["-1", "1e9999999", "1E+999", "9" * 16, "1 ", "∞"])
def test_absurd_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="non-negative Kubernetes quantity"):
        parse_quantity(text)


def test_the_largest_quantities_still_parse() -> None:
    assert parse_quantity("999999999999999Ei") == Decimal(999999999999999) * 1024**6
    assert parse_quantity("1e99") == Decimal(10) ** 99
    assert parse_quantity("2E") == 2 * Decimal(10) ** 18  # exa, not an exponent
    assert parse_quantity(".000000001") == Decimal("1e-9")


def test_request_above_limit_with_huge_values_is_a_spec_error_not_a_traceback() -> None:
    spec = valid_manifest()["spec"]
    spec["serving"] = {"resources": {"requests": {"cpu": "1e99"}, "limits": {"cpu": "1e98"}}}
    with pytest.raises(SpecError, match=r"requests\.cpu: must be less than or equal"):
        parse_spec(spec)
