"""The Grafana dashboard parses and queries only metrics the project actually exports."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from modeldeploy import metrics as operator_metrics
from modeldeploy_serving import metric_names
from tests.unit.chart import CHART, one, render

DASHBOARD = CHART / "dashboards" / "modeldeploy.json"
METRIC = re.compile(r"\bmodeldeploy_[a-z0-9_]+\b")
# The series each metric type exposes, by suffix.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
}


def operator_series() -> set[str]:
    wrappers = [m for m in vars(operator_metrics).values() if isinstance(m, MetricWrapperBase)]
    return {w._name + s for w in wrappers for s in SUFFIXES[w._type]}


def server_series() -> set[str]:
    # metric_names.py has names but not types; any of the standard suffixes may appear.
    bases = [v for k, v in vars(metric_names).items() if k.isupper() and k != "PREFIX"]
    suffixes = {s for group in SUFFIXES.values() for s in group}
    return {base + s for base in bases for s in suffixes}


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [
        var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        for var in dashboard["templating"]["list"]
        if var["type"] == "query"
    ]
    return exprs


def unknown_metrics(exprs: list[str]) -> set[str]:
    known = operator_series() | server_series()
    return {name for expr in exprs for name in METRIC.findall(expr)} - known


def test_dashboard_is_valid_json_with_queries_on_every_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "modeldeploy"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_uses_only_exported_metric_names() -> None:
    assert unknown_metrics(queries(json.loads(DASHBOARD.read_text()))) == set()


def test_the_check_catches_a_misspelt_metric() -> None:
    assert unknown_metrics(["rate(modeldeploy_rollback_total[5m])"]) == {
        "modeldeploy_rollback_total"
    }


def test_dashboard_covers_rollouts_rollbacks_and_per_revision_traffic() -> None:
    used = {
        name for expr in queries(json.loads(DASHBOARD.read_text())) for name in METRIC.findall(expr)
    }
    assert {
        operator_metrics.ROLLBACKS._name + "_total",
        operator_metrics.TIME_TO_ROLLBACK._name + "_bucket",
        operator_metrics.RECONCILES._name + "_total",
        metric_names.REQUESTS + "_total",
        metric_names.REQUEST_LATENCY + "_bucket",
        metric_names.MODEL_ERRORS + "_total",
    } <= used
    per_revision = [e for e in queries(json.loads(DASHBOARD.read_text())) if "by (revision" in e]
    assert len(per_revision) >= 3


def test_chart_ships_the_dashboard_file_unchanged() -> None:
    configmap = one(render({"dashboards": {"enabled": True}}), "ConfigMap")
    assert json.loads(configmap["data"]["modeldeploy.json"]) == json.loads(DASHBOARD.read_text())
    assert "ConfigMap" not in [d["kind"] for d in render()]
