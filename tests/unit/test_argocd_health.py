"""The Argo CD health check (resource_customizations/.../health.lua) under Lua 5.1 (Argo CD's
gopher-lua dialect), one case per status.

The script gets the live object as the global `obj`, exactly as Argo CD runs it, and must return
the Argo CD health status and a message a person can act on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from modeldeploy import names

ROOT = Path(__file__).resolve().parents[2]
# One copy, in the layout of an upstream argo-cd `resource_customizations` contribution.
HEALTH_LUA = ROOT / "docs/argocd/resource_customizations/modeldeploy.io/ModelDeployment/health.lua"
ARGOCD_CM = ROOT / "docs" / "argocd" / "argocd-cm.yaml"
CM_KEY = f"resource.customizations.health.{names.GROUP}_{names.KIND}"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return result["status"], result["message"]


def md(phase: str | None = None, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "iris", "namespace": "ml", "generation": 2},
    }
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": 2, **status}
    return obj


def with_annotation(obj: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("annotations", {})[key] = value
    return obj


BREACH = "errorRate 0.2 > 0.01 over 30s (120 requests); rolled back to r3"


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        pytest.param(
            md(),
            "Progressing",
            "Waiting for the modeldeploy operator to observe this ModelDeployment",
            id="no-status",
        ),
        pytest.param(
            md(names.PHASE_PENDING, message="creating r1"),
            "Progressing",
            "Pending: creating r1",
            id="pending",
        ),
        pytest.param(
            md(names.PHASE_PROGRESSING, message="canary r4 at 10%"),
            "Progressing",
            "Progressing: canary r4 at 10%",
            id="progressing",
        ),
        pytest.param(
            md(names.PHASE_STABLE, message="r3 serves 100%"),
            "Healthy",
            "Stable: r3 serves 100%",
            id="stable",
        ),
        pytest.param(
            md(names.PHASE_DEGRADED, message="1 of 2 stable pods not ready"),
            "Degraded",
            "Degraded: 1 of 2 stable pods not ready",
            id="degraded",
        ),
        pytest.param(
            md(names.PHASE_ROLLED_BACK, message=BREACH),
            "Degraded",
            f"RolledBack: {BREACH}",
            id="rolled-back",
        ),
        pytest.param(
            md(names.PHASE_FAILED, message="model failed to load: sha256 mismatch"),
            "Degraded",
            "Failed: model failed to load: sha256 mismatch",
            id="failed",
        ),
        pytest.param(
            md(
                names.PHASE_ROLLED_BACK,
                conditions=[
                    {"type": names.COND_READY, "status": "True", "message": "r3 serves"},
                    {"type": names.COND_DEGRADED, "status": "True", "message": BREACH},
                ],
            ),
            "Degraded",
            f"RolledBack: {BREACH}",
            id="message-from-degraded-condition",
        ),
        pytest.param(md(names.PHASE_STABLE), "Healthy", "Stable", id="no-message-at-all"),
        pytest.param(
            {**md(names.PHASE_STABLE), "metadata": {"name": "iris", "generation": 3}},
            "Progressing",
            "Waiting for the operator to observe generation 3 (status is from generation 2)",
            id="stale-generation",
        ),
        pytest.param(
            with_annotation(
                md(names.PHASE_PROGRESSING, message="canary r4 at 10%"),
                names.ANNOTATION_PAUSED,
                "true",
            ),
            "Suspended",
            f"Paused (annotation {names.ANNOTATION_PAUSED}): Progressing: canary r4 at 10%",
            id="paused",
        ),
        pytest.param(
            with_annotation(
                md(names.PHASE_ROLLED_BACK, message=BREACH), names.ANNOTATION_PAUSED, "true"
            ),
            "Degraded",
            f"RolledBack: {BREACH}",
            id="paused-but-broken-stays-degraded",
        ),
        pytest.param(
            with_annotation(md(names.PHASE_STABLE, message="ok"), names.ANNOTATION_PAUSED, "no"),
            "Healthy",
            "Stable: ok",
            id="paused-annotation-not-true",
        ),
        pytest.param(md("Exploded"), "Unknown", "Unknown phase Exploded", id="unknown-phase"),
    ],
)
def test_health(obj: dict[str, Any], status: str, message: str) -> None:
    assert health(obj) == (status, message)


def test_every_phase_has_a_rule() -> None:
    """A phase added to names.PHASES without a rule here would show as Unknown in Argo CD."""
    for phase in names.PHASES:
        assert health(md(phase))[0] != "Unknown", phase


def test_argocd_cm_snippet_embeds_health_lua_verbatim() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert cm["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert list(cm["data"]) == [CM_KEY, CM_KEY.replace(".health.", ".actions.")]
    assert cm["data"][CM_KEY] == HEALTH_LUA.read_text()


def test_paused_annotation_in_lua_is_the_one_in_names() -> None:
    assert f'"{names.ANNOTATION_PAUSED}"' in HEALTH_LUA.read_text()
