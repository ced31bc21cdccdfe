"""Model URI hosts (modeldeploy.uris) and the development-only file:// switch.

Every refused spelling is in tests/helpers/spec_cases.py (URI_CASES), which test_spec.py runs
against the operator and test_admission.py against the API server; here: what must still pass,
the normalisation itself, and --allow-file-uris."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from modeldeploy import names, uris
from modeldeploy.main import parse_args
from modeldeploy.reconcile import plan
from modeldeploy.spec import SpecError, parse_spec
from tests.helpers.crd import spec_schema
from tests.helpers.spec_cases import URI_CASES, valid_manifest

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "uri",
    [
        "http://10.0.0.5:9000/bucket/m.joblib",
        "http://192.168.1.20/m.joblib",
        "http://1.2.3.4./m.joblib",
        "https://[2001:db8::1]:8443/m.joblib",
        "https://[2001:DB8::a]/m.joblib",
        "https://models.example.com:65535/m.joblib",
        "https://models.example.com:1/m.joblib",
        "https://models.example.com./m.joblib",
        "https://metadata.example.com/m.joblib",
        "https://metadata-store.ml.svc/m.joblib",
        "https://instance-data.example/m.joblib",
        "https://localhost.example.com/m.joblib",
        "https://0x.example.com/m.joblib",
        "https://h.example/a.b/c.d/m.joblib?v=1.2",
        "https://h.example/a%20b/m.joblib",
        "pvc://models/iris/3.1/m.joblib",
    ],
)
def test_ordinary_hosts_ports_and_paths_pass(uri: str) -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = uri
    assert parse_spec(manifest["spec"]).model.uri == uri


def test_the_table_covers_every_spelling_named_in_the_issue() -> None:
    uris_in_table = {case.manifest()["spec"]["model"]["uri"] for case in URI_CASES}
    for seen in (
        "http://0xA9FEA9FE/m.joblib",
        "http://2852039166/m.joblib",
        "http://0251.0376.0251.0376/m.joblib",
        "http://[::ffff:169.254.169.254]/m.joblib",
        "http://[fe80::1]/m.joblib",
        "http://metadata.google.internal/computeMetadata/v1/",
        "https://h.example:65536/m.joblib",
        "https://h.example/a/%252e%252e/m.joblib",
    ):
        assert seen in uris_in_table
    assert sum(not case.admission for case in URI_CASES) >= 4  # the operator-only layer is tested


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_inet_aton_reads_numeric_hosts_as_a_c_resolver_does(text: str, address: str) -> None:
    assert uris.inet_aton(text) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("text", ["256.1.1.1", "1.2.3.4.5", "08.1.1.1", "4294967296", "1_0.1", ""])
def test_inet_aton_refuses_what_is_not_an_address(text: str) -> None:
    assert uris.inet_aton(text) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:169.254.169.254", "IPv4 169.254.169.254 in IPv6, a link-local"),
        ("64:ff9b::7f00:1", "IPv4 127.0.0.1 in IPv6, a loopback"),
        ("::7f00:1", "IPv4 127.0.0.1 in IPv6, a loopback"),
    ],
)
def test_forbidden_addresses_name_their_reason(address: str, reason: str) -> None:
    found = uris.forbidden(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address", ["10.0.0.5", "8.8.8.8", "2001:db8::1", "fd00::1", "::ffff:8.8.8.8"]
)
def test_ordinary_addresses_are_allowed(address: str) -> None:
    assert uris.forbidden(ipaddress.ip_address(address)) is None


def test_the_operator_names_what_a_numeric_host_means() -> None:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = "http://0xA9FEA9FE/latest"
    with pytest.raises(SpecError, match=r"0xa9fea9fe means 169\.254\.169\.254"):
        parse_spec(manifest["spec"])


def test_the_crd_refuses_the_same_metadata_host_names() -> None:
    rules = spec_schema()["properties"]["model"]["properties"]["uri"]["x-kubernetes-validations"]
    (rule,) = [r["rule"] for r in rules if "metadata" in r["message"] and "host" in r["message"]]
    listed = rule.split("^https?://(", 1)[1].split(")[.]?", 1)[0].split("|")
    expected = [name.replace(".", "[.]") for name in uris.METADATA_HOSTS]
    assert listed == [*expected, r"[^/?#:\[]*[.]localhost"]


# --- file:// only with --allow-file-uris -------------------------------------------------------


def _file_manifest() -> dict[str, object]:
    manifest = valid_manifest()
    manifest["spec"]["model"]["uri"] = "file:///models/iris.joblib"
    return manifest


def test_the_flag_is_off_by_default() -> None:
    assert parse_args([]).allow_file_uris is False
    assert parse_args(["--allow-file-uris"]).allow_file_uris is True


def test_without_the_flag_a_file_uri_is_an_invalid_spec() -> None:
    manifest = _file_manifest()
    with pytest.raises(SpecError, match="--allow-file-uris") as caught:
        parse_spec(manifest["spec"], allow_file_uris=False)  # type: ignore[arg-type]
    assert caught.value.field_path == "spec.model.uri"
    assert parse_spec(manifest["spec"]).model.uri.startswith("file://")  # type: ignore[arg-type]


def test_plan_reports_invalid_spec_for_a_file_uri_unless_allowed() -> None:
    body = {**_file_manifest(), "metadata": {"name": "iris", "namespace": "ml", "uid": "u"}}
    refused = plan(body, {}, default_image="img", now=NOW)
    assert refused.outcome == "invalid" and not refused.apply
    assert refused.status is not None
    said = next(c for c in refused.status["conditions"] if c["type"] == names.COND_INVALID_SPEC)
    assert (said["status"], "--allow-file-uris" in said["message"]) == ("True", True)
    allowed = plan(body, {}, default_image="img", now=NOW, allow_file_uris=True)
    assert allowed.outcome == "ok" and allowed.apply
