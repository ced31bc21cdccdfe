"""Flags and MODELDEPLOY_* variables: typed, validated once, errors name their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeploy_serving.config import ConfigError, parse_config
from modeldeploy_serving.errors import EXIT_USAGE
from modeldeploy_serving.server import main

SHA = "ab" * 32
REQUIRED = ["--model-uri", "/models/m.joblib", "--model-name", "iris", "--sha256", SHA]


def test_every_flag_has_a_default_or_comes_from_the_environment() -> None:
    env = {
        "MODELDEPLOY_MODEL_URI": "https://models.example/iris.skops",
        "MODELDEPLOY_MODEL_NAME": "iris",
        "MODELDEPLOY_MODEL_VERSION": "3",
        "MODELDEPLOY_SHA256": SHA.upper(),
        "MODELDEPLOY_FORMAT": "skops",
        "MODELDEPLOY_PORT": "9000",
        "MODELDEPLOY_MAX_REQUEST_BYTES": "2Mi",
        "MODELDEPLOY_MICRO_BATCHING": "false",
        "MODELDEPLOY_SKOPS_TRUSTED_TYPE": "a.B, c.D",
        "MODELDEPLOY_TERMINATION_LOG": "",
    }
    config = parse_config([], env)
    assert config.model_uri == "https://models.example/iris.skops"
    assert (config.model_version, config.format, config.port) == ("3", "skops", 9000)
    assert config.sha256 == SHA  # normalised to lower case
    assert config.max_request_bytes == 2 * 1024 * 1024
    assert config.micro_batching is False
    assert config.skops_trusted_types == ("a.B", "c.D")
    assert config.termination_log is None
    assert config.host == "0.0.0.0"


def test_flags_win_over_the_environment() -> None:
    config = parse_config(
        [*REQUIRED, "--port", "8081", "--micro-batching"],
        {"MODELDEPLOY_PORT": "9000", "MODELDEPLOY_MICRO_BATCHING": "false"},
    )
    assert (config.port, config.micro_batching) == (8081, True)
    assert config.fetch_to is None
    assert config.termination_log == Path("/dev/termination-log")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--model-uri (or MODELDEPLOY_MODEL_URI) is required"),
        ([*REQUIRED, "--sha256", "abc"], {}, "--sha256: must be 64 hexadecimal characters"),
        (REQUIRED, {"MODELDEPLOY_FORMAT": "pickle"}, "MODELDEPLOY_FORMAT: must be one of joblib"),
        ([*REQUIRED, "--port", "70000"], {}, "--port: must be between 0 and 65535"),
        (REQUIRED, {"MODELDEPLOY_PORT": "http"}, "MODELDEPLOY_PORT: invalid literal"),
        ([*REQUIRED, "--model-uri", "ftp://b/m"], {}, "--model-uri: scheme 'ftp' not allowed"),
        ([*REQUIRED, "--model-name", "a/b"], {}, "--model-name: must be 1-128 characters"),
        ([*REQUIRED, "--max-request-bytes", "lots"], {}, "--max-request-bytes: must be a byte"),
        (REQUIRED, {"MODELDEPLOY_MICRO_BATCHING": "maybe"}, "must be true or false"),
        ([*REQUIRED, "--batch-max-wait-ms", "5000"], {}, "between 0 and 1000 milliseconds"),
        ([*REQUIRED, "--header-timeout", "0"], {}, "--header-timeout: must be more than 0"),
        (REQUIRED, {"MODELDEPLOY_BODY_TIMEOUT": "-1"}, "MODELDEPLOY_BODY_TIMEOUT: must be between"),
        ([*REQUIRED, "--max-connections", "0"], {}, "--max-connections: must be between 1"),
    ],
)
def test_bad_values_name_the_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(argv, env)
    assert message in str(caught.value)


def test_hostile_client_limits_have_defaults_and_come_from_the_environment() -> None:
    defaults = parse_config(REQUIRED, {})
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_connections) == (
        10.0,
        30.0,
        1024,
    )
    env = {"MODELDEPLOY_HEADER_TIMEOUT": "2s", "MODELDEPLOY_BODY_TIMEOUT": "0.5"}
    config = parse_config([*REQUIRED, "--max-connections", "64"], env)
    assert (config.header_timeout, config.body_timeout, config.max_connections) == (2.0, 0.5, 64)


def test_bad_configuration_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REQUIRED, "--format", "onnx"]) == EXIT_USAGE
    error = capsys.readouterr().err.strip()
    assert error == (
        "modeldeploy-server: invalid configuration: --format: must be one of joblib, skops; "
        "got 'onnx'"
    )
