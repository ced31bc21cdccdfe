"""docs/api.md is generated from the CRD and must be regenerated whenever the CRD changes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.helpers.crd import crd, spec_schema, walk

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    # scripts/ is not a package; load the script the way `python scripts/...` runs it.
    spec = importlib.util.spec_from_file_location(
        "gen_api_docs", ROOT / "scripts" / "gen_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_docs_are_up_to_date() -> None:
    generated = _generator().render(crd())
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == generated, "run: python scripts/gen_api_docs.py"


def test_readme_embeds_the_same_reference() -> None:
    generator = _generator()
    readme = (ROOT / "README.md").read_text()
    assert readme == generator.readme_with(readme, generator.render(crd())), (
        "run: python scripts/gen_api_docs.py"
    )
    assert "| `spec.model.sha256` |" in readme


def test_docs_list_every_spec_field_with_its_default() -> None:
    docs = (ROOT / "docs" / "api.md").read_text()
    for path, node in walk(spec_schema(), "spec")[1:]:
        if path.endswith(("[]", "{}")):  # items and map values: on the list's or map's row
            continue
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{path}` |")), None)
        assert row is not None, f"{path} is not documented"
        if "default" in node and not isinstance(node["default"], dict | list):
            assert str(node["default"]).lower() in row.lower(), f"{path}: default missing"


def test_check_mode_reports_stale_docs(tmp_path: Path) -> None:
    generator = _generator()
    generator.DOCS_PATH = tmp_path / "api.md"
    assert generator.main(["--check"]) == 1  # missing
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    generator.DOCS_PATH.write_text(generator.DOCS_PATH.read_text() + "edited by hand\n")
    assert generator.main(["--check"]) == 1
