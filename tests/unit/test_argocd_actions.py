"""The Argo CD resource actions and the upstream `resource_customizations` folder, run in a real
Lua 5.1 VM (lupa) as Argo CD's gopher-lua runs them: discovery says which actions apply, and
each action changes one annotation and nothing else."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from modeldeploy import names

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "argocd" / "resource_customizations" / names.GROUP / names.KIND
ACTIONS = FOLDER / "actions"
ARGOCD_CM = ROOT / "docs" / "argocd" / "argocd-cm.yaml"
ACTIONS_KEY = f"resource.customizations.actions.{names.GROUP}_{names.KIND}"
TOKEN = re.compile(r"^\d{8}T\d{6}Z-1234$")  # the UTC time, then the resourceVersion


def _py(value: Any) -> Any:
    """A Lua table back as Python data (a table with keys 1..n as a list)."""
    if not hasattr(value, "keys"):
        return value
    keys = list(value.keys())
    if keys and all(isinstance(k, int) for k in keys):
        return [_py(value[k]) for k in sorted(keys)]
    return {k: _py(value[k]) for k in keys}


def run(script: Path, obj: dict[str, Any]) -> Any:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(copy.deepcopy(obj), recursive=True)
    return _py(lua.execute(script.read_text()))


def load(path: str, base: Path = ACTIONS) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((base / path).read_text())
    return data


TESTS = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())


@pytest.mark.parametrize("case", TESTS["discoveryTests"], ids=lambda c: c["inputPath"])
def test_discovery(case: dict[str, Any]) -> None:
    found = run(ACTIONS / "discovery.lua", load(case["inputPath"]))
    assert {k: bool(v.get("disabled")) for k, v in found.items()} == {
        r["name"]: r["disabled"] for r in case["result"]
    }


@pytest.mark.parametrize("case", TESTS["actionTests"], ids=lambda c: c["action"])
def test_actions_with_fixed_output(case: dict[str, Any]) -> None:
    out = run(ACTIONS / case["action"] / "action.lua", load(case["inputPath"]))
    if out["metadata"].get("annotations") == []:  # an emptied Lua table
        out["metadata"]["annotations"] = {}
    assert out == load(case["expectedOutputPath"])


@pytest.mark.parametrize(
    ("action", "fixture", "annotation", "value"),
    [
        ("promote", "canary", names.ANNOTATION_PROMOTE, TOKEN),
        ("promote", "bake", names.ANNOTATION_PROMOTE, TOKEN),
        ("abort", "canary", names.ANNOTATION_ABORT, TOKEN),
        ("retry", "rolled_back", names.ANNOTATION_RETRY, TOKEN),
        ("rollback", "bake", names.ANNOTATION_ROLLBACK_TO, re.compile(r"^3@\d{8}T\d{6}Z-1234$")),
        ("rollback", "stable", names.ANNOTATION_ROLLBACK_TO, re.compile(r"^1@")),  # r2 breached
        ("pause", "canary", names.ANNOTATION_PAUSED, re.compile("^true$")),
    ],
)
def test_each_action_sets_one_annotation_and_nothing_else(
    action: str, fixture: str, annotation: str, value: re.Pattern[str]
) -> None:
    before = load(f"testdata/{fixture}.yaml")
    after = run(ACTIONS / action / "action.lua", before)
    added = after["metadata"].pop("annotations")
    kept = before["metadata"].pop("annotations")
    assert after == before  # spec, status and the rest of metadata untouched
    assert set(added) - set(kept) == {annotation} and value.match(added[annotation])


def test_rollback_without_a_target_fails_with_a_message() -> None:
    with pytest.raises(lua51.LuaError, match="no previous revision to roll back to"):
        run(ACTIONS / "rollback" / "action.lua", load("testdata/first.yaml"))


def test_actions_use_the_annotations_in_names() -> None:
    text = "\n".join(p.read_text() for p in ACTIONS.glob("*/action.lua"))
    for annotation in (
        names.ANNOTATION_PROMOTE,
        names.ANNOTATION_ABORT,
        names.ANNOTATION_RETRY,
        names.ANNOTATION_PAUSED,
        names.ANNOTATION_ROLLBACK_TO,
    ):
        assert f'"{annotation}"' in text


def test_upstream_health_check_passes_its_tests() -> None:
    for case in load("health_test.yaml", FOLDER)["tests"]:
        found = run(FOLDER / "health.lua", load(case["inputPath"], FOLDER))
        assert {"status": found["status"], "message": found["message"]} == case["healthStatus"]


def test_argocd_cm_embeds_the_actions_verbatim() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    embedded = yaml.safe_load(cm["data"][ACTIONS_KEY])
    assert embedded["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    defined = {d["name"]: d["action.lua"] for d in embedded["definitions"]}
    assert defined == {p.parent.name: p.read_text() for p in ACTIONS.glob("*/action.lua")}
