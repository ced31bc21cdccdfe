"""Flags of modeldeploy-server, each also read from MODELDEPLOY_<FLAG> (flag wins over env).

Parsed and validated once at start into a frozen `ServerConfig`; nothing else reads argv or the
environment. A bad value stops the process with exit code 2 and a message naming the flag or
the environment variable it came from.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

ENV_PREFIX = "MODELDEPLOY_"
FORMATS = ("joblib", "skops")
ModelFormat = Literal["joblib", "skops"]
LOG_LEVELS = ("debug", "info", "warning", "error")
EVENT_LOOPS = ("uvloop", "asyncio")
RUNTIMES = ("auto", "sklearn", "onnx")
RuntimeChoice = Literal["auto", "sklearn", "onnx"]
# Metrics of the validation gate; see validation.py for which direction is better.
VALIDATION_METRICS = ("accuracy", "f1", "mae", "r2")
ValidationMetric = Literal["accuracy", "f1", "mae", "r2"]
# pvc:// is resolved by the operator into a mounted path; the server sees a local path.
# s3, gs and azure are fetched by the init container (the `storage` extra's clients).
URI_SCHEMES = ("", "file", "http", "https", "s3", "gs", "azure")
_SIZE_UNITS = {
    "": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
}


class ConfigError(Exception):
    """A flag or environment value that cannot be used; the message names its source."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    model_uri: str
    model_name: str
    model_version: str
    sha256: str
    format: ModelFormat
    host: str
    port: int
    max_request_bytes: int
    max_request_rows: int
    micro_batching: bool
    batch_max_rows: int
    batch_max_wait_ms: float
    max_queued_rows: int
    inline_predict_below_ms: float
    max_artifact_bytes: int
    download_timeout: float
    allow_loopback_downloads: bool
    shutdown_timeout: float
    drain_seconds: float
    keepalive_timeout: float
    max_requests_per_connection: int
    max_connection_age: float
    header_timeout: float
    body_timeout: float
    max_connections: int
    skops_trusted_types: tuple[str, ...]
    allow_sklearn_version_mismatch: bool
    runtime: RuntimeChoice
    signature_file: Path | None
    signature_uri: str
    signature_sha256: str
    profile_uri: str
    profile_sha256: str
    validation_uri: str
    validation_sha256: str
    validation_metric: ValidationMetric
    validation_threshold: float | None
    validation_label_column: str
    fetch_to: Path | None
    skip_load_check: bool
    termination_log: Path | None
    log_level: str
    event_loop: str


# --- value parsers: str -> typed value, ValueError with the rule on failure -------------------
def _model_uri(value: str) -> str:
    scheme = urlsplit(value).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter is not a scheme; keep paths portable
        scheme = ""
    if scheme not in URI_SCHEMES:
        raise ValueError(
            f"scheme {scheme!r} not allowed; use a path, file://, http(s)://, s3://, gs:// or "
            "azure://"
        )
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _finite(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number; got {value}")
    return number


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be 64 hexadecimal characters")
    return value.lower()


def _optional_uri(value: str) -> str:
    return _model_uri(value) if value else ""


def _optional_sha256(value: str) -> str:
    return _sha256(value) if value else ""


def _model_name(value: str) -> str:
    # The name is a URL path segment (/v2/models/<name>/infer, /v1/models/<name>:predict).
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
        raise ValueError("must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def _text(limit: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return parse


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return value.lower()

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}; got {number}")
        return number

    return parse


def _seconds(value: str) -> float:
    number = float(value.removesuffix("s"))
    if not 0 <= number <= 86_400:
        raise ValueError(f"must be between 0 and 86400 seconds; got {value}")
    return number


def _positive_seconds(value: str) -> float:
    number = _seconds(value)
    if number == 0:  # 0 would cut off every connection at once, not disable the timeout
        raise ValueError("must be more than 0 seconds")
    return number


def _milliseconds(value: str) -> float:
    number = float(value.removesuffix("ms"))
    if not 0 <= number <= 1000:
        raise ValueError(f"must be between 0 and 1000 milliseconds; got {value}")
    return number


def _size(value: str) -> int:
    """Bytes, with an optional Kubernetes-style suffix: 512Ki, 16Mi, 1Gi, 10M."""
    match = re.fullmatch(r"(\d+)\s*(Ki|Mi|Gi|K|M|G)?", value.strip())
    if match is None:
        raise ValueError(f"must be a byte count such as 1048576, 16Mi or 1Gi; got {value!r}")
    number = int(match[1]) * _SIZE_UNITS[match[2] or ""]
    if number < 1:
        raise ValueError("must be at least 1 byte")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false; got {value!r}")


def _path(value: str) -> Path:
    if not value:
        raise ValueError("must not be empty")
    return Path(value)


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    kind: Literal["value", "switch", "list"] = "value"
    field: str = ""  # the ServerConfig field, when it differs from the flag's name

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


_REQUIRED = object()
MiB = 1024**2

FLAGS: tuple[_Flag, ...] = (
    _Flag(
        "model-uri",
        _model_uri,
        _REQUIRED,
        "artifact location: path, file://, http(s)://, s3://, gs://, azure://",
    ),
    _Flag("model-name", _model_name, _REQUIRED, "served name, as in /v2/models/<name>/infer"),
    _Flag("model-version", _text(128), "", "free-form version reported in metadata and metrics"),
    _Flag("sha256", _sha256, _REQUIRED, "sha256 of the artifact bytes; nothing else is loaded"),
    _Flag("format", _choice(FORMATS), "joblib", "artifact format: joblib or skops"),
    _Flag("host", _text(255), "0.0.0.0", "listen address"),
    _Flag("port", _int_range(0, 65535), 8080, "listen port (0: any free port, logged)"),
    _Flag("max-request-bytes", _size, 16 * MiB, "largest request body; larger gets 413"),
    _Flag("max-request-rows", _int_range(1, 10_000_000), 10_000, "most rows in one request"),
    _Flag(
        "micro-batching",
        _bool,
        True,
        "let concurrent requests share one predict() call",
        kind="switch",
    ),
    _Flag("batch-max-rows", _int_range(1, 100_000), 64, "most rows in one shared predict()"),
    _Flag(
        "batch-max-wait-ms",
        _milliseconds,
        2.0,
        "under concurrent load, hold a batch open for a quarter of the predict() time, at most "
        "this long (0: only rows already queued)",
    ),
    _Flag("max-queued-rows", _int_range(1, 10_000_000), 4096, "rows waiting beyond this get 503"),
    _Flag(
        "inline-predict-below-ms",
        _milliseconds,
        20.0,
        "run predict() on the event loop while it takes less than this (0: always a thread)",
    ),
    _Flag("max-artifact-bytes", _size, 1024 * MiB, "largest artifact accepted"),
    _Flag("download-timeout", _seconds, 120.0, "seconds for the whole artifact download"),
    _Flag(
        "allow-loopback-downloads",
        _bool,
        False,
        "tests only: let an http(s) download connect to a loopback address (link-local and "
        "metadata addresses stay refused)",
        kind="switch",
    ),
    _Flag("shutdown-timeout", _seconds, 20.0, "seconds in-flight requests get after SIGTERM"),
    _Flag("drain-seconds", _seconds, 0.0, "after SIGTERM keep serving this long while not ready"),
    _Flag("keepalive-timeout", _seconds, 5.0, "close idle keep-alive connections after this"),
    _Flag(
        "max-connection-age",
        _seconds,
        2.0,
        "close a keep-alive connection with its first answer after it is this many seconds "
        "old, so a Service spreads long-lived clients over new pods such as a canary within "
        "that time, whatever their request rate (0: no limit)",
    ),
    _Flag(
        "max-requests-per-connection",
        _int_range(0, 1_000_000_000),
        0,
        "also close a keep-alive connection after this many answers (0: no limit)",
    ),
    _Flag(
        "header-timeout",
        _positive_seconds,
        10.0,
        "a request's headers must arrive within this many seconds, else 408 and close",
    ),
    _Flag(
        "body-timeout",
        _positive_seconds,
        30.0,
        "an inference request's body must arrive within this many seconds, else 408 and close",
    ),
    _Flag(
        "max-connections",
        _int_range(1, 1_000_000),
        1024,
        "open connections beyond this evict the oldest one waiting for headers, else get 503",
    ),
    _Flag(
        "skops-trusted-type",
        _text(200),
        (),
        "extra type a skops artifact may contain (repeatable; env: comma-separated)",
        kind="list",
        field="skops_trusted_types",
    ),
    _Flag(
        "allow-sklearn-version-mismatch",
        _bool,
        False,
        "load artifacts saved by another scikit-learn minor version (warns instead of refusing)",
        kind="switch",
    ),
    _Flag(
        "runtime",
        _choice(RUNTIMES),
        "auto",
        "what computes predictions: auto (ONNX Runtime when the model converts and matches "
        "scikit-learn on a parity sample, else scikit-learn), sklearn, or onnx (or fail to load)",
    ),
    _Flag(
        "signature-file",
        _optional_path,
        None,
        "JSON file with the input columns and an example row (default: <artifact>.signature.json "
        "beside a local artifact, if present)",
    ),
    _Flag(
        "signature-uri",
        _optional_uri,
        "",
        "the signature file at a URI, fetched and verified like the model (instead of "
        "--signature-file)",
    ),
    _Flag(
        "signature-sha256", _optional_sha256, "", "sha256 of the signature file; required with it"
    ),
    _Flag(
        "profile-uri",
        _optional_uri,
        "",
        "reference profile (modeldeploy-profile): count served rows per bin for drift",
    ),
    _Flag("profile-sha256", _optional_sha256, "", "sha256 of the profile; required with it"),
    _Flag(
        "validation-uri",
        _optional_uri,
        "",
        "labelled dataset (CSV with a header row) scored after warm-up; the server becomes "
        "ready only if the model meets --validation-threshold on it",
    ),
    _Flag("validation-sha256", _optional_sha256, "", "sha256 of the validation dataset"),
    _Flag(
        "validation-metric",
        _choice(VALIDATION_METRICS),
        "accuracy",
        "accuracy, f1 (macro) and r2 must reach the threshold; mae must not exceed it",
    ),
    _Flag("validation-threshold", _finite, None, "the value the validation metric must meet"),
    _Flag(
        "validation-label-column",
        _text(256),
        "label",
        "the dataset's column holding the true label or target",
    ),
    _Flag("fetch-to", _optional_path, None, "init-container mode: verify, write here, exit"),
    _Flag("skip-load-check", _bool, False, "init-container mode: do not test-load", kind="switch"),
    _Flag(
        "termination-log",
        _optional_path,
        Path("/dev/termination-log"),
        "file that receives the one-line load failure reason ('' to disable)",
    ),
    _Flag("log-level", _choice(LOG_LEVELS), "info", "debug, info, warning or error"),
    _Flag(
        "event-loop",
        _choice(EVENT_LOOPS),
        "uvloop",
        "uvloop (libuv, in C) or asyncio (the standard library's, in Python)",
    ),
)


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-server",
        description="Serve one verified scikit-learn model over the Open Inference Protocol "
        "(v2) and v1. Every flag can also be set as MODELDEPLOY_<FLAG>.",
    )
    for flag in FLAGS:
        option = f"--{flag.name}"
        text = f"{flag.help} [env {flag.env}]"
        if flag.kind == "switch":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, help=text)
        elif flag.kind == "list":
            parser.add_argument(option, action="append", metavar="VALUE", help=text)
        else:
            parser.add_argument(option, metavar=flag.dest.upper(), help=text)
    parser.set_defaults(**{flag.dest: None for flag in FLAGS})
    return parser


def _resolve(flag: _Flag, cli_value: Any, environ: Mapping[str, str]) -> Any:
    if cli_value is not None:
        source, raw = f"--{flag.name}", cli_value
    elif flag.env in environ:
        source, raw = flag.env, environ[flag.env]
    elif flag.default is _REQUIRED:
        raise ConfigError(f"--{flag.name} (or {flag.env}) is required")
    else:
        return flag.default
    try:
        if flag.kind == "switch":
            return raw if isinstance(raw, bool) else flag.parse(raw)
        if flag.kind == "list":
            items = raw if isinstance(raw, list) else raw.split(",")
            return tuple(flag.parse(item.strip()) for item in items if item.strip())
        return flag.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
    """Typed, validated configuration; raises ConfigError (argparse exits 2 on unknown flags)."""
    namespace = _argument_parser().parse_args(list(argv))
    values = {
        flag.field or flag.dest: _resolve(flag, getattr(namespace, flag.dest), environ)
        for flag in FLAGS
    }
    for pair in ("profile", "signature"):
        if bool(values[f"{pair}_uri"]) != bool(values[f"{pair}_sha256"]):
            raise ConfigError(f"--{pair}-uri and --{pair}-sha256 go together")
    if values["signature_uri"] and values["signature_file"] is not None:
        raise ConfigError("--signature-uri and --signature-file: give one, not both")
    if values["validation_uri"]:
        for needed in ("validation-sha256", "validation-threshold"):
            if values[needed.replace("-", "_")] in ("", None):
                raise ConfigError(f"--validation-uri needs --{needed} too")
    return ServerConfig(**values)
