"""The CRD schema and the pydantic spec models describe the same API, field by field.

Why two hand-written descriptions checked against each other rather than one generated from
the other: the CRD carries what pydantic's JSON Schema cannot (CEL rules with messages and
field paths, int-or-string, list types, printer columns, descriptions written for users), and
pydantic carries parsed types (timedelta durations, frozen models) the CRD cannot. Generating
either would need a custom generator as large as this test, and would be harder to review.
So both are written for their readers, and this test proves they agree: the same field names,
types, required fields, defaults, enums, ranges, lengths and patterns, in both directions.
Cross-field rules are held to the same table of cases instead (tests/helpers/spec_cases.py).
"""

from __future__ import annotations

import re
import types
from datetime import timedelta
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import pytest
from pydantic import BaseModel, TypeAdapter, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from modeldeploy import names
from modeldeploy.spec import DurationBounds, ModelDeploymentSpec
from modeldeploy.units import DURATION_PATTERN, format_duration, parse_duration
from tests.helpers.crd import apply_defaults, crd, root_schema, spec_schema, status_schema, walk

# Keywords compared; everything else (descriptions, CEL, list types) is CRD-only by design.
COMPARED = (
    "type",
    "required",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "maxItems",
    "maxProperties",
    "durationBounds",
)
_DURATION_RULE = re.compile(
    r"duration\(self\) >= duration\('(\w+)'\) && duration\(self\) <= duration\('(\w+)'\)"
)


# --- the CRD side ------------------------------------------------------------------------------


def _crd_node(schema: dict[str, Any]) -> dict[str, Any]:
    node = {key: schema[key] for key in COMPARED if key in schema}
    if schema.get("x-kubernetes-int-or-string"):
        node["type"] = "string"  # the spec turns integer quantities into strings
    if node.get("type") == "object":
        node["required"] = sorted(schema.get("required", []))
    for rule in schema.get("x-kubernetes-validations", []):
        if match := _DURATION_RULE.search(rule["rule"]):
            node["durationBounds"] = match.groups()
    if "default" in schema:
        node["default"] = _normalize(_canonical(schema, apply_defaults(schema, schema["default"])))
    return node


def _canonical(schema: dict[str, Any], value: Any) -> Any:
    """CRD values as the spec holds them: durations canonical, quantities as strings."""
    if schema.get("pattern") == DURATION_PATTERN and isinstance(value, str):
        return format_duration(parse_duration(value))
    if schema.get("x-kubernetes-int-or-string"):
        return str(value)
    if isinstance(value, dict):
        return {k: _canonical(schema.get("properties", {}).get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(schema.get("items", {}), v) for v in value]
    return value


def crd_fields() -> dict[str, dict[str, Any]]:
    return {path: _crd_node(node) for path, node in walk(spec_schema(), "spec")}


# --- the pydantic side -------------------------------------------------------------------------


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Strip Optional and Annotated, collecting constraints."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            metadata = [*metadata, *extra]
        elif get_origin(annotation) in (Union, types.UnionType):
            (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        else:
            break
    flat: list[Any] = []
    for item in metadata:  # a Field(...) inside Annotated carries its constraints in .metadata
        flat += item.metadata if isinstance(item, FieldInfo) else [item]
    return annotation, flat


def _constraints(kind: str, metadata: list[Any]) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, at.Ge):
            node["minimum"] = item.ge
        elif isinstance(item, at.Le):
            node["maximum"] = item.le
        elif isinstance(item, at.Gt):  # OpenAPI v3.0 spells "> x" as minimum + exclusiveMinimum
            node["minimum"], node["exclusiveMinimum"] = item.gt, True
        elif isinstance(item, at.MinLen):
            node["minItems" if kind == "array" else "minLength"] = item.min_length
        elif isinstance(item, at.MaxLen):
            key = {"array": "maxItems", "object": "maxProperties"}.get(kind, "maxLength")
            node[key] = item.max_length
        elif isinstance(item, WithJsonSchema) and item.json_schema:
            node |= {k: v for k, v in item.json_schema.items() if k != "type"}
        elif isinstance(item, DurationBounds):
            node["durationBounds"] = (item.low, item.high)
        elif getattr(item, "pattern", None):
            node["pattern"] = item.pattern
    return node


def _kind(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if get_origin(annotation) is tuple:
        return "array"
    if get_origin(annotation) is dict:
        return "object"
    if get_origin(annotation) is Literal:
        return "string"
    return {bool: "boolean", int: "integer", float: "number", str: "string", timedelta: "string"}[
        annotation
    ]


def _pydantic_node(annotation: Any, metadata: list[Any], path: str, out: dict[str, Any]) -> None:
    annotation, metadata = _unwrap(annotation, metadata)
    kind = _kind(annotation)
    node = out.setdefault(path, {})
    node |= {"type": kind, **_constraints(kind, metadata)}
    if get_origin(annotation) is Literal:
        node["enum"] = list(get_args(annotation))
    if get_origin(annotation) is dict:  # a map: its values' schema under `path{}`
        node["required"] = []
        _pydantic_node(get_args(annotation)[1], [], f"{path}{{}}", out)
        return
    if kind == "object":
        node["required"] = sorted(
            f.alias or n for n, f in annotation.model_fields.items() if f.is_required()
        )
        for name, field in annotation.model_fields.items():
            child = f"{path}.{field.alias or name}"
            _pydantic_node(field.annotation, list(field.metadata), child, out)
            default = field.get_default(call_default_factory=True)
            if default is not PydanticUndefined:
                typed = (
                    Annotated[field.annotation, *field.metadata]
                    if field.metadata
                    else field.annotation
                )
                dumped = TypeAdapter(typed).dump_python(
                    default, mode="json", by_alias=True, exclude_none=True
                )
                if _normalize(dumped) not in (None, []):  # "absent" means the same in the CRD
                    out[child]["default"] = _normalize(dumped)
    if kind == "array":
        (item_type, _ellipsis) = get_args(annotation)
        _pydantic_node(item_type, [], f"{path}[]", out)


def _normalize(value: Any) -> Any:
    """Empty lists and nulls mean "absent" on both sides."""
    if isinstance(value, dict):
        kept = {k: _normalize(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [])}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def pydantic_fields() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    _pydantic_node(ModelDeploymentSpec, [], "spec", out)
    return out


CRD = crd_fields()
PYDANTIC = pydantic_fields()


# --- the tests --------------------------------------------------------------------------------


def test_same_fields_in_both() -> None:
    assert sorted(set(CRD) - set(PYDANTIC)) == [], "in the CRD but not in modeldeploy.spec"
    assert sorted(set(PYDANTIC) - set(CRD)) == [], "in modeldeploy.spec but not in the CRD"


@pytest.mark.parametrize("path", sorted(CRD))
def test_field_agrees(path: str) -> None:
    crd, pyd = CRD[path], PYDANTIC.get(path, {})
    for key in COMPARED:
        assert pyd.get(key) == crd.get(key), f"{path}: {key} differs (pydantic vs CRD)"


def test_the_comparison_sees_real_constraints() -> None:
    """Guard against a walker that silently finds nothing (and so compares nothing)."""
    assert PYDANTIC["spec.model.sha256"]["pattern"] == "^[a-f0-9]{64}$"
    assert PYDANTIC["spec.analysis.window"]["durationBounds"] == ("5s", "1h")
    assert CRD["spec.analysis.window"]["durationBounds"] == ("5s", "1h")
    assert CRD["spec.rollout.steps"]["default"] == [
        {"weight": 10, "pause": "30s"},
        {"weight": 50, "pause": "1m"},
    ]
    assert PYDANTIC["spec.serving"]["default"]["resources"]["requests"]["cpu"] == "250m"
    assert CRD["spec.analysis.thresholds.errorRate"] == {
        "type": "number",
        "default": 0.01,
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
    }
    assert sum("default" in node for node in CRD.values()) >= 15


def test_status_enums_match_the_names_module() -> None:
    status = status_schema()["properties"]
    assert tuple(status["phase"]["enum"]) == names.PHASES
    assert tuple(status["history"]["items"]["properties"]["outcome"]["enum"]) == names.OUTCOMES


def test_every_field_has_a_description() -> None:
    missing = [
        p
        for p, node in walk(root_schema())
        if p != "metadata" and p != "metadata.name" and not node.get("description")
    ]
    assert missing == []


def test_every_string_and_list_is_bounded() -> None:
    """Unbounded strings and lists make CEL cost estimates explode and let clients store
    megabytes in one object (api-conventions: bound every string and list)."""
    unbounded = [
        path
        for path, node in walk(root_schema())
        if (
            node.get("type") == "string"
            and "maxLength" not in node
            and "enum" not in node
            and node.get("format") != "date-time"
            and path not in ("apiVersion", "kind")
        )
        or (node.get("type") == "array" and "maxItems" not in node)
    ]
    assert unbounded == []


def test_crd_names_and_schema_version_match_the_names_module() -> None:
    definition = crd()
    assert definition["metadata"]["name"] == names.CRD_NAME
    annotations = definition["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_SCHEMA_VERSION] == names.CRD_SCHEMA_VERSION
    spec = definition["spec"]
    assert (spec["group"], spec["scope"]) == (names.GROUP, "Namespaced")
    assert spec["names"]["kind"] == names.KIND
    assert spec["names"]["plural"] == names.PLURAL
    assert spec["names"]["singular"] == names.SINGULAR
    assert spec["names"]["shortNames"] == [names.SHORT_NAME]
    assert [v["name"] for v in spec["versions"]] == [names.VERSION]
    name_schema = root_schema()["properties"]["metadata"]["properties"]["name"]
    assert name_schema["maxLength"] == names.MAX_MD_NAME_LENGTH
