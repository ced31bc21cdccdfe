"""The ModelDeployment CRD as test data: its schema, and the API server's defaulting in Python."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "modeldeployment.yaml"


@cache
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def version() -> dict[str, Any]:
    (only,) = crd()["spec"]["versions"]
    result: dict[str, Any] = only
    return result


def root_schema() -> dict[str, Any]:
    result: dict[str, Any] = version()["schema"]["openAPIV3Schema"]
    return result


def spec_schema() -> dict[str, Any]:
    result: dict[str, Any] = root_schema()["properties"]["spec"]
    return result


def status_schema() -> dict[str, Any]:
    result: dict[str, Any] = root_schema()["properties"]["status"]
    return result


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server does before validation: fill each absent property that has a
    `default` (a deep copy), then recurse into objects and arrays, defaults included."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = apply_defaults(prop, value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, node) in a schema, parents first; array items are `path[]`, map values
    `path{}`."""
    nodes = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        nodes += walk(prop, f"{path}.{name}" if path else name)
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes
