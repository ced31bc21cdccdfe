"""docs/serving.md documents every flag, exit code and metric the code has (no drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeploy_serving import errors, metric_names
from modeldeploy_serving.config import FLAGS

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
LOAD_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.LoadError)
]
METRICS = [
    value
    for key, value in vars(metric_names).items()
    if key.isupper() and isinstance(value, str) and value.startswith(f"{metric_names.PREFIX}_")
]


@pytest.mark.parametrize(("flag", "env"), [(f"--{flag.name}", flag.env) for flag in FLAGS])
def test_every_flag_and_its_variable_is_documented(flag: str, env: str) -> None:
    assert f"| `{flag}`" in DOCS
    assert f"| `{env}` |" in DOCS


def test_every_load_failure_cause_and_exit_code_is_documented() -> None:
    assert len(LOAD_ERRORS) >= 9
    for cause in LOAD_ERRORS:
        assert f"| {cause.exit_code} | `{cause.cause}` |" in DOCS, cause.cause


def test_every_metric_name_is_documented() -> None:
    for name in METRICS:
        assert f"`{name}" in DOCS, name
