"""Command line and environment: every ``--flag`` also reads ``MODELDEPLOY_MONITOR_FLAG``.

A flag on the command line wins over the environment; the environment wins over the default; an
empty environment variable counts as unset. Values are checked here, at the edge; the rest of
the monitor trusts :class:`Config`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modeldeploy.names import MONITOR_PORT, PATH_METRICS, SERVICE_ACCOUNT_MOUNT
from modeldeploy_serving.monitor.verdict import OnNoData, Thresholds

ENV_PREFIX: Final = "MODELDEPLOY_MONITOR_"
DEFAULT_METRICS_URL: Final = f"http://127.0.0.1:8080{PATH_METRICS}"


@dataclass(frozen=True, slots=True)
class Config:
    metrics_url: str
    pod_name: str
    pod_namespace: str
    deployment_name: str
    deployment_uid: str
    window_seconds: float
    min_requests: int
    feedback_window_seconds: float
    min_feedback: int
    on_no_data: OnNoData
    thresholds: Thresholds
    scrape_interval_seconds: float
    refresh_seconds: float
    host: str
    port: int
    kubeconfig: str | None
    log_level: str


def env_name(flag: str) -> str:
    """``--max-error-rate`` -> ``MODELDEPLOY_MONITOR_MAX_ERROR_RATE``."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    namespace = args.pod_namespace or _in_cluster_namespace()
    if not namespace:
        parser.error(f"--pod-namespace (or {env_name('--pod-namespace')}) is required")
    return Config(
        metrics_url=args.metrics_url,
        pod_name=args.pod_name,
        pod_namespace=namespace,
        deployment_name=args.deployment_name,
        deployment_uid=args.deployment_uid,
        window_seconds=args.window_seconds,
        min_requests=args.min_requests,
        feedback_window_seconds=args.feedback_window_seconds,
        min_feedback=args.min_feedback,
        on_no_data=OnNoData(args.on_no_data),
        thresholds=Thresholds(
            max_error_rate=args.max_error_rate,
            max_latency_p99_ms=args.max_latency_p99_ms,
            max_prediction_drift=args.max_prediction_drift,
            max_feature_drift=args.max_feature_drift,
            min_accuracy=args.min_accuracy,
            max_mae=args.max_mae,
        ),
        scrape_interval_seconds=args.scrape_interval_seconds,
        refresh_seconds=args.refresh_seconds,
        host=args.host,
        port=args.port,
        kubeconfig=args.kubeconfig or None,
        log_level=args.log_level.upper(),
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-monitor",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Scrape the model server, judge a sliding window against thresholds, and "
        f"report the verdict as a condition on this Pod. Every flag also reads {ENV_PREFIX}<FLAG>.",
    )

    def add(flag: str, help: str, *, required: bool = False, **kwargs: Any) -> None:
        env = env_name(flag)
        if environ.get(env):
            kwargs["default"] = environ[env]  # argparse converts string defaults with `type`
        parser.add_argument(
            flag, required=required and not environ.get(env), help=f"{help} [env {env}]", **kwargs
        )

    add("--metrics-url", "model server metrics", default=DEFAULT_METRICS_URL)
    add("--pod-name", "this Pod (downward API)", required=True)
    add("--pod-namespace", "this Pod's namespace (default: the service account's)", default="")
    add("--deployment-name", "the ModelDeployment, for Events", required=True)
    add("--deployment-uid", "the ModelDeployment's uid, for Events (optional)", default="")
    add("--window-seconds", "analysis window", type=_positive, default=30.0)
    add("--min-requests", "fewer requests in the window is no data", type=_count, default=20)
    add("--on-no-data", "no data means", choices=[m.value for m in OnNoData], default="hold")
    add("--max-error-rate", "model errors per request, 0..1", type=_fraction, default=None)
    add("--max-latency-p99-ms", "p99 latency threshold", type=_positive, default=None)
    add("--max-prediction-drift", "PSI of the predictions", type=_positive, default=None)
    add("--max-feature-drift", "PSI of the worst input column", type=_positive, default=None)
    add("--min-accuracy", "accuracy of labelled feedback, 0..1", type=_fraction, default=None)
    add("--max-mae", "mean absolute error of labelled feedback", type=_non_negative, default=None)
    add("--feedback-window-seconds", "window of the feedback rules", type=_positive, default=300.0)
    add("--min-feedback", "fewer feedback rows: no feedback verdict", type=_count, default=50)
    add("--scrape-interval-seconds", "scrape period", type=_positive, default=2.0)
    add("--refresh-seconds", "rewrite an unchanged verdict this often", type=_positive, default=60)
    add("--host", "address for /healthz and /metrics", default="0.0.0.0")
    add("--port", "port for /healthz and /metrics (0: any)", type=_port, default=MONITOR_PORT)
    add("--kubeconfig", "kubeconfig file (default: in-cluster service account)", default="")
    add("--log-level", "DEBUG, INFO, WARNING, ERROR", default="INFO")
    return parser


def _number(check: Callable[[float], bool], what: str, kind: type = float) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


_positive = _number(lambda v: v > 0, "a positive number")
_non_negative = _number(lambda v: v >= 0, "a number >= 0")
_fraction = _number(lambda v: 0 <= v <= 1, "a fraction between 0 and 1")
_count = _number(lambda v: v >= 0, "a whole number >= 0", int)
_port = _number(lambda v: 0 <= v <= 65535, "a port number", int)


def _in_cluster_namespace() -> str:
    try:
        return (Path(SERVICE_ACCOUNT_MOUNT) / "namespace").read_text().strip()
    except OSError:
        return ""
