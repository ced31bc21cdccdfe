"""Flags and their MODELDEPLOY_MONITOR_* environment twins."""

from __future__ import annotations

import pytest

from modeldeploy import names
from modeldeploy_serving.monitor.config import build_parser, env_name, parse_config
from modeldeploy_serving.monitor.verdict import OnNoData, Thresholds

REQUIRED = ["--pod-name=p", "--pod-namespace=ns", "--deployment-name=iris"]


def test_defaults_follow_the_contract() -> None:
    config = parse_config(REQUIRED, {})
    assert config.metrics_url == "http://127.0.0.1:8080/metrics"
    assert (config.window_seconds, config.min_requests, config.on_no_data) == (
        30,
        20,
        OnNoData.HOLD,
    )
    assert config.thresholds == Thresholds(None, None)
    assert (config.scrape_interval_seconds, config.refresh_seconds) == (2, 60)
    assert (config.host, config.port, config.kubeconfig) == ("0.0.0.0", 9090, None)
    assert config.deployment_uid == ""


def test_every_flag_reads_the_environment_and_the_command_line_wins() -> None:
    env = {
        env_name("--pod-name"): "from-env",
        env_name("--pod-namespace"): "ml",
        env_name("--deployment-name"): "iris",
        env_name("--max-error-rate"): "0.05",
        env_name("--max-latency-p99-ms"): "250",
        env_name("--scrape-interval-seconds"): "0.2",
        env_name("--on-no-data"): "fail",
        env_name("--window-seconds"): "45",
    }
    config = parse_config(["--window-seconds=10"], env)
    assert config.pod_name == "from-env" and config.pod_namespace == "ml"
    assert config.thresholds == Thresholds(max_error_rate=0.05, max_latency_p99_ms=250)
    assert config.scrape_interval_seconds == 0.2
    assert config.on_no_data == OnNoData.FAIL
    assert config.window_seconds == 10


def test_env_names() -> None:
    assert env_name("--max-latency-p99-ms") == "MODELDEPLOY_MONITOR_MAX_LATENCY_P99_MS"


@pytest.mark.parametrize(
    "bad",
    [
        ["--max-error-rate=1.5"],
        ["--max-error-rate=nan"],
        ["--window-seconds=0"],
        ["--scrape-interval-seconds=-1"],
        ["--min-requests=2.5"],
        ["--on-no-data=ignore"],
        ["--port=70000"],
    ],
)
def test_bad_values_are_usage_errors(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config([*REQUIRED, *bad], {})
    assert exit_info.value.code == 2
    assert bad[0].split("=")[0] in capsys.readouterr().err


def test_bad_environment_values_are_usage_errors_too() -> None:
    with pytest.raises(SystemExit):
        parse_config(REQUIRED, {env_name("--max-error-rate"): "lots"})


def test_pod_name_is_required() -> None:
    with pytest.raises(SystemExit):
        parse_config(["--pod-namespace=ns", "--deployment-name=iris"], {})


def test_empty_environment_values_count_as_unset() -> None:
    config = parse_config(REQUIRED, {env_name("--max-error-rate"): "", env_name("--port"): ""})
    assert config.thresholds.max_error_rate is None
    assert config.port == names.MONITOR_PORT


def test_the_operator_sets_only_variables_the_monitor_reads() -> None:
    """names.ENV_MONITOR_* (what the operator's pod builder sets) all name real flags."""
    documented = " ".join(build_parser({}).format_help().split())  # each flag names its variable
    operator_sets = {value for key, value in vars(names).items() if key.startswith("ENV_MONITOR_")}
    assert operator_sets
    assert all(f"[env {name}]" in documented for name in operator_sets)
