"""The server's --signature-uri/--signature-sha256 pair: the variables the operator sets
(modeldeploy.names) are the server's, both go together, and a URI excludes --signature-file."""

from __future__ import annotations

import pytest

from modeldeploy import names
from modeldeploy_serving.config import FLAGS, ConfigError, parse_config

_SERVER = ["--model-uri", "/m.joblib", "--model-name", "m", "--sha256", "a" * 64]
_URI = "https://models.example.com/iris/signature.json"


def test_the_operators_variables_are_the_servers_flags() -> None:
    envs = {flag.env for flag in FLAGS}
    assert {names.ENV_SIGNATURE_URI, names.ENV_SIGNATURE_SHA256} <= envs


def test_uri_and_sha256_from_the_environment() -> None:
    env = {names.ENV_SIGNATURE_URI: _URI, names.ENV_SIGNATURE_SHA256: "B" * 64}
    config = parse_config(_SERVER, env)
    assert (config.signature_uri, config.signature_sha256) == (_URI, "b" * 64)
    assert parse_config(_SERVER, {}).signature_uri == ""


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--signature-uri", _URI], "go together"),
        (["--signature-sha256", "b" * 64], "go together"),
        (["--signature-uri", _URI, "--signature-sha256", "xyz"], "64 hexadecimal"),
        (["--signature-uri", "ftp://h/s.json", "--signature-sha256", "b" * 64], "not allowed"),
        (
            ["--signature-uri", _URI, "--signature-sha256", "b" * 64, "--signature-file", "/s"],
            "not both",
        ),
    ],
)
def test_bad_pairs_are_refused(extra: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_config([*_SERVER, *extra], {})
