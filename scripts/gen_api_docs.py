"""Generate docs/api.md, the ModelDeployment API reference, from crds/modeldeployment.yaml.

    python scripts/gen_api_docs.py           # rewrite docs/api.md
    python scripts/gen_api_docs.py --check   # exit 1 if docs/api.md is out of date

The CRD is the source of truth; this page only renders it, so the two cannot drift
(tests/unit/test_api_docs.py runs the check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "modeldeployment.yaml"
DOCS_PATH = ROOT / "docs" / "api.md"

# Keyword -> how the Validation column states it.
_BOUNDS = (
    ("minimum", "≥ {}"),
    ("maximum", "≤ {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
)


def render(crd: dict[str, Any]) -> str:
    names = crd["spec"]["names"]
    (version,) = crd["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    lines = [
        f"# {names['kind']} API reference ({api_version})",
        "",
        "<!-- Generated from crds/modeldeployment.yaml by scripts/gen_api_docs.py. -->",
        "",
        root["description"],
        "",
        f"- API version: `{api_version}`, kind `{names['kind']}`, {crd['spec']['scope'].lower()}",
        f"- Resource: `{names['plural']}`, short name"
        f" {', '.join(f'`{s}`' for s in names.get('shortNames', []))}",
        "- Subresources: " + ", ".join(f"`{s}`" for s in version.get("subresources", {})),
        "",
        "Validation happens at admission (OpenAPI schema and CEL rules below), so `kubectl apply`",
        "reports the field and the rule before anything is stored. Durations are strings such as",
        "`500ms`, `30s`, `5m` or `1h30m`.",
        "",
        "## `kubectl get` columns",
        "",
        "| Column | From | Shown |",
        "| --- | --- | --- |",
    ]
    for column in version.get("additionalPrinterColumns", []):
        shown = "with `-o wide`" if column.get("priority", 0) else "always"
        lines.append(f"| {column['name']} | `{column['jsonPath']}` | {shown} |")
    lines += ["", "## Object-wide rules", ""]
    lines += [f"- {_cell(_rule(r, ''))}" for r in root.get("x-kubernetes-validations", [])]
    for section in ("spec", "status"):
        schema = root["properties"][section]
        lines += ["", f"## `{section}`", "", schema["description"], ""]
        if rules := schema.get("x-kubernetes-validations", []):
            lines += ["Rules across fields:", ""]
            lines += [f"- {_cell(_rule(rule, section))}" for rule in rules] + [""]
        lines += ["| Field | Type | Default | Validation | Description |"]
        lines += ["| --- | --- | --- | --- | --- |"]
        lines += [
            _row(path, node, parent_required)
            for path, node, parent_required in _fields(schema, section)
        ]
    return "\n".join(lines) + "\n"


def _fields(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(path, node, required) for every field below `schema`, depth first."""
    rows = []
    required = set(schema.get("required", []))
    for name, node in schema.get("properties", {}).items():
        child = f"{path}.{name}"
        rows.append((child, node, name in required))
        rows += _fields(node, child)
        if "items" in node:
            rows += _fields(node["items"], f"{child}[]")
    return rows


def _row(path: str, node: dict[str, Any], required: bool) -> str:
    default = f"`{_compact(node['default'])}`" if "default" in node else ""
    validation = _validation(node, required, path)
    cells = [f"`{path}`", _type(node), default, validation, node["description"]]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity (integer or string)"
    kind = str(node.get("type", ""))
    if kind == "array":
        item = node["items"]
        return f"list of {'objects' if item.get('type') == 'object' else item.get('type')}"
    if node.get("format") == "date-time":
        return "timestamp (RFC 3339)"
    if node.get("pattern", "").startswith("^([0-9]{1,5}(ms|s|m|h))"):
        return "duration"
    return kind


def _validation(node: dict[str, Any], required: bool, path: str) -> str:
    parts = ["required"] if required else []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, template in _BOUNDS:
        if key in node:
            bound = template.format(node[key])
            if key == "minimum" and node.get("exclusiveMinimum"):
                bound = f"> {node[key]}"
            parts.append(bound)
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        parts.append(f"unique by `{', '.join(node['x-kubernetes-list-map-keys'])}`")
    elif list_type == "set":
        parts.append("unique items")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        parts.append("free-form")
    parts += [_rule(rule, path) for rule in node.get("x-kubernetes-validations", [])]
    return "; ".join(parts)


def _rule(rule: dict[str, Any], path: str) -> str:
    """A CEL rule as users meet it: its message, and the field it is reported on."""
    if "fieldPath" not in rule:
        return str(rule["message"])
    return f"`{(path + rule['fieldPath']).lstrip('.')}`: {rule['message']}"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _cell(text: str) -> str:
    """One line, pipes escaped, and <placeholders> outside code spans kept visible."""
    segments = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(segments), 2):  # even segments are outside backticks
        segments[i] = segments[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(segments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args(argv)
    text = render(yaml.safe_load(CRD_PATH.read_text()))
    if args.check:
        if not DOCS_PATH.exists() or DOCS_PATH.read_text() != text:
            print(
                f"{DOCS_PATH} is out of date: run python scripts/gen_api_docs.py", file=sys.stderr
            )
            return 1
        return 0
    DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOCS_PATH.write_text(text)
    print(f"wrote {DOCS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
