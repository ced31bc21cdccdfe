"""The chart's metadata, values and schema stay in step with the project and with each other."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import yaml

from tests.unit.chart import CHART, ROOT

VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
# Helm's own key for values an umbrella chart shares; passed through unchecked.
PASS_THROUGH = {"global"}


def test_app_version_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    assert chart["version"] == project
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_chart_crd_is_a_copy_of_the_source_crd() -> None:
    source = ROOT / "crds" / "modeldeployment.yaml"
    copy = CHART / "crds" / "modeldeployment.yaml"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["modeldeployment.yaml"]
    assert copy.read_bytes() == source.read_bytes(), (
        "charts/modeldeploy/crds drifted from crds/: run `python scripts/check_chart_crd.py --fix`"
    )


def schema_paths(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every key the schema defines (not map entries), with its schema node."""
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path, child
        if path not in PASS_THROUGH:
            yield from schema_paths(child, f"{path}.")
        for item in (child.get("items"),):
            if isinstance(item, dict):
                yield from schema_paths(item, f"{path}[].")


def value_paths(value: Any, node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key values.yaml sets, except entries of maps (additionalProperties schemas)."""
    if not isinstance(value, dict) or "properties" not in node:
        return
    for key, child in value.items():
        path = f"{prefix}{key}"
        yield path
        if path not in PASS_THROUGH:
            yield from value_paths(child, node["properties"].get(key, {}), f"{path}.")


def test_values_and_schema_define_the_same_keys() -> None:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads(SCHEMA.read_text())
    defined = {path for path, _ in schema_paths(schema) if "[]" not in path}
    assert set(value_paths(values, schema)) == defined


def test_every_object_in_the_schema_rejects_unknown_keys() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["additionalProperties"] is False
    for path, node in schema_paths(schema):
        if node.get("type") != "object" or path in PASS_THROUGH:
            continue
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path}: additionalProperties must be false"
        else:  # a map (labels, annotations): entries must have a typed schema
            typed = isinstance(extra, dict) and ("type" in extra or "anyOf" in extra)
            assert typed, f"{path}: untyped map"


def test_every_schema_node_has_a_description() -> None:
    schema = json.loads(SCHEMA.read_text())
    missing = [path for path, node in schema_paths(schema) if not node.get("description")]
    assert missing == []


def test_every_key_in_values_yaml_has_a_comment() -> None:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads(SCHEMA.read_text())
    documented = set(value_paths(values, schema))
    lines = VALUES.read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        stack = [(n, k) for n, k in stack if n < indent]
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        above = lines[i - 1].strip() if i else ""
        if path in documented and not above.startswith("#"):
            undocumented.append(path)
    assert undocumented == []


def test_notes_and_docs_name_example_files_that_exist() -> None:
    texts = [CHART / "templates" / "NOTES.txt", ROOT / "README.md", ROOT / "docs" / "cli.md"]
    named = {m for t in texts for m in re.findall(r"examples/[\w.-]+\.yaml", t.read_text())}
    assert "examples/iris-autoscaling.yaml" in named
    assert [n for n in sorted(named) if not (ROOT / n).exists()] == []
