"""cli_views: the list table, the revision tree, the wait verdict and cutting to the width."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modeldeploy import cli_views, names
from tests.unit.cli_fixtures import NOW, progressing, stable

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pod(
    name: str,
    revision: int,
    *,
    ready: bool = True,
    verdict: str | None = "True",
    reason: str = "WithinThresholds",
    restarts: int = 0,
    message: str = "",
    **extra: Any,
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "reason": "" if ready else "ContainersNotReady"}]  # fmt: skip
    if verdict is not None:
        conditions.append(
            {"type": names.POD_COND_METRICS_HEALTHY, "status": verdict, "reason": reason,
             "message": message}
        )  # fmt: skip
    return {
        "metadata": {"name": name, "labels": {names.LABEL_REVISION: str(revision)},
                     "creationTimestamp": "2026-01-02T11:00:00Z"},
        "status": {"conditions": conditions,
                   "containerStatuses": [{"name": "model-server", "restartCount": restarts,
                                          **extra}]},
    }  # fmt: skip


def deployment(revision: int, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"iris-r{revision}", "labels": {names.LABEL_REVISION: str(revision)}},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


@pytest.mark.parametrize(
    ("line", "width", "cut"),
    [
        ("short", 80, "short"),
        ("abcdefghij", 5, "abcd…"),
        ("abcdefghij", None, "abcdefghij"),
        ("\x1b[31mabcdefghij\x1b[0m", 5, "\x1b[31mabcd…\x1b[0m"),  # colour codes take no width
        ("\x1b[31mabc\x1b[0m", 3, "\x1b[31mabc\x1b[0m"),
    ],
)
def test_clip_cuts_visible_characters(line: str, width: int | None, cut: str) -> None:
    assert cli_views.clip(line, width) == cut
    if width:
        assert len(ANSI.sub("", cli_views.clip(line, width))) <= width


def test_wait_verdict_only_for_the_desired_spec() -> None:
    obj = stable()
    assert cli_views.wait_verdict(obj) == 0
    obj["status"]["observedGeneration"] = 3  # about the spec before this one
    assert cli_views.wait_verdict(obj) is None
    assert cli_views.wait_verdict(progressing()) is None
    assert cli_views.wait_verdict({"metadata": {"generation": 1}}) is None


def test_list_shows_the_columns_and_colours_only_trouble() -> None:
    broken = stable()
    broken["metadata"]["name"] = "wine"
    broken["status"]["phase"] = names.PHASE_ROLLED_BACK
    lines = cli_views.list_lines([progressing(), broken], NOW, True, color=True)
    assert ANSI.sub("", lines[0]).split() == [
        "NAMESPACE", "NAME", "PHASE", "VERSION", "CANARY", "TRAFFIC", "READY", "AGE", "MESSAGE",
    ]  # fmt: skip
    assert ANSI.sub("", lines[1]).split()[:7] == [
        "ml",
        "iris",
        "Progressing",
        "3",
        "10%",
        "33%",
        "3/3",
    ]
    assert not ANSI.search(lines[1])
    assert "\x1b[31mRolledBack" in lines[2]
    assert cli_views.list_lines([], NOW, False, False) == ["No ModelDeployments found."]


def test_tree_shows_revisions_deployments_and_pods() -> None:
    pods = [
        pod("iris-r3-a", 3),
        pod("iris-r3-b", 3, restarts=2),
        pod("iris-r4-a", 4, ready=False, verdict=None,
            state={"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}),
        pod("iris-r4-b", 4, verdict="False", reason="MetricBreach"),
    ]  # fmt: skip
    lines = cli_views.tree_lines(
        progressing(), [deployment(3, 2, 2), deployment(4, 2, 1)], pods, NOW
    )
    assert lines[0] == "ml/iris  Progressing  model iris 3 (desired)"
    assert lines[2] == "r3 stable  model 2  weight 90%  traffic 67%"
    assert lines[3] == "└─ Deployment iris-r3  2/2 ready"
    assert lines[4] == "   ├─ pod iris-r3-a  Healthy  ready  restarts 0  1h"
    assert lines[5] == "   └─ pod iris-r3-b  Healthy  ready  restarts 2  1h"
    assert lines[6] == "r4 canary  model 3  weight 10%  traffic 33%"
    assert lines[8] == (
        "   ├─ pod iris-r4-a  -  not ready (ImagePullBackOff: container model-server: pull failed)"
        "  restarts 0  1h"
    )
    assert lines[9] == "   └─ pod iris-r4-b  Breaching  ready  restarts 0  1h"


HEALTHY = "errorRate 0 <= 0.01, predictionDrift PSI 0.01 <= 0.2 over 30s (90 requests)"
DRIFTED = "predictionDrift PSI 0.6 > 0.2 over 30s (40 rows)"


def test_tree_shows_each_pods_figures_under_it() -> None:
    pods = [
        pod("iris-r3-a", 3, message=HEALTHY),
        pod("iris-r3-b", 3, message=HEALTHY),
        pod("iris-r4-a", 4, verdict="False", reason="PredictionDrift", message=DRIFTED),
    ]
    lines = cli_views.tree_lines(
        progressing(), [deployment(3, 2, 2), deployment(4, 1, 1)], pods, NOW
    )
    assert lines[4:7] == [
        "   ├─ pod iris-r3-a  Healthy  ready  restarts 0  1h",
        f"   │    {HEALTHY}",
        "   └─ pod iris-r3-b  Healthy  ready  restarts 0  1h",
    ]
    assert lines[-2:] == [
        "   └─ pod iris-r4-a  Breaching (PredictionDrift)  ready  restarts 0  1h",
        f"        {DRIFTED}",
    ]


def test_status_health_names_each_serving_pod_with_its_figures() -> None:
    pods = [
        pod("iris-r3-a", 3, message=HEALTHY),
        pod("iris-r4-a", 4, verdict="False", reason="PredictionDrift", message=DRIFTED),
        pod("iris-r1-a", 1, message=HEALTHY),  # not in status: not serving
        pod("iris-r4-b", 4, verdict=None),
    ]
    assert cli_views.health_lines(progressing(), pods) == [
        "",
        "Health (each pod's sidecar, over its last window):",
        f"  r4 canary  iris-r4-a  Breaching (PredictionDrift): {DRIFTED}",
        "  r4 canary  iris-r4-b  -",
        f"  r3 stable  iris-r3-a  Healthy: {HEALTHY}",
    ]
    coloured = cli_views.health_lines(progressing(), pods, color=True)
    assert "\x1b[31mBreaching (PredictionDrift)" in coloured[2]
    assert cli_views.health_lines(progressing(), []) == []


def test_tree_lists_cold_revisions_and_colours_only_trouble() -> None:
    pods = [pod("iris-r4-b", 4, verdict="False", reason="MetricBreach", restarts=1)]
    lines = cli_views.tree_lines(
        progressing(), [deployment(4, 1, 1), deployment(1, 0, 0)], pods, NOW, color=True
    )
    assert "r1 scaled to zero" in lines
    assert "\x1b[31mBreaching" in "\n".join(lines)
    assert not ANSI.search(lines[0])  # Progressing is not news
    assert "└─ Deployment missing" in lines  # r3 has none here


def test_tree_shows_the_status_warnings_under_the_message() -> None:
    md = progressing()
    md["status"]["warnings"] = ["the model is a joblib/pickle artifact: ..."]
    lines = cli_views.tree_lines(md, [deployment(3, 2, 2)], [], NOW)
    assert lines[2] == "  warning: the model is a joblib/pickle artifact: ..."
    assert lines[3].startswith("r3 stable")


@pytest.mark.parametrize(
    ("status", "reason", "verdict"),
    [("True", "WithinThresholds", "Healthy"), ("False", "MetricBreach", "Breaching"),
     ("False", "InsufficientData", "NoData"), (None, "", "-"),
     ("False", "FeatureDrift", "Breaching (FeatureDrift)"),
     ("False", "PredictionDrift", "Breaching (PredictionDrift)")],
)  # fmt: skip
def test_pod_verdict(status: str | None, reason: str, verdict: str) -> None:
    assert cli_views.pod_verdict(pod("p", 1, verdict=status, reason=reason)) == verdict
