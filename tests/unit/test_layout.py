"""The source roots must never shadow the standard library."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_module_still_imports() -> None:
    module = importlib.import_module("operator")
    assert module.add(2, 3) == 5
    assert Path(module.__file__ or "").parent != ROOT / "operator"


def test_source_roots_are_not_packages() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "serving_image" / "__init__.py").exists()


def test_project_packages_import_from_their_source_roots() -> None:
    import modeldeploy
    import modeldeploy_serving

    assert Path(modeldeploy.__file__ or "").parent == ROOT / "operator" / "modeldeploy"
    assert Path(modeldeploy_serving.__file__ or "").parent == (
        ROOT / "serving_image" / "modeldeploy_serving"
    )
    assert "operator" not in {p.name for p in (ROOT / "operator").iterdir() if p.suffix == ".py"}
    assert sys.modules["operator"].__name__ == "operator"
