"""The model pods' NetworkPolicy and the spec's risk warnings, in pure code."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.builders import Owner
from modeldeploy.containment import EgressSettings, network_policy, spec_warnings
from modeldeploy.hashing import revision_hash
from modeldeploy.reconcile import plan
from modeldeploy.spec import parse_spec
from tests.unit.test_reconcile import IMAGE, NOW, body

OWNER = Owner(name="iris", namespace="ml", uid="uid-1")
URI = "https://models.example.com/iris.joblib"


def spec(**fields: Any) -> Any:
    model = {"name": "iris", "version": "1", "uri": URI, "sha256": "ab" * 32}
    return parse_spec({"model": {**model, **fields.pop("model", {})}, **fields})


def policy(settings: EgressSettings | None = None, **fields: Any) -> dict[str, Any]:
    result = network_policy(OWNER, spec(**fields), settings or EgressSettings())
    assert result is not None
    return result


def test_on_by_default_selecting_every_revision_of_the_modeldeployment() -> None:
    obj = policy()
    assert obj["metadata"]["name"] == names.network_policy_name("iris")
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert obj["metadata"]["labels"] == {names.LABEL_MANAGED_BY: names.MANAGED_BY,
                                         names.LABEL_NAME: "iris"}  # fmt: skip
    assert obj["spec"]["podSelector"] == {"matchLabels": {names.LABEL_NAME: "iris"}}
    assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_ingress_only_to_the_named_serving_port_whatever_port_a_revision_uses() -> None:
    obj = policy(serving={"port": 9000})
    assert obj["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]


def test_egress_is_dns_and_the_api_server_and_nothing_else_by_default() -> None:
    egress = policy()["spec"]["egress"]
    assert egress[0] == {
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    }
    assert egress[1]["ports"] == [{"protocol": "TCP", "port": p} for p in (443, 6443)]
    assert len(egress) == 2
    assert all("to" in rule for rule in egress[1:]), "an egress rule without `to` allows all"


def test_configured_api_server_addresses_replace_anywhere() -> None:
    settings = EgressSettings(api_server_cidrs=("10.0.0.5/32",), api_server_ports=(6443,))
    rule = policy(settings)["spec"]["egress"][1]
    assert rule == {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}],
                    "ports": [{"protocol": "TCP", "port": 6443}]}  # fmt: skip
    anywhere = policy()["spec"]["egress"][1]["to"]
    assert anywhere == [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]


def test_the_specs_egress_destinations_with_and_without_ports() -> None:
    rules = [{"cidr": "203.0.113.7/32", "ports": [443]}, {"cidr": "2001:db8::/48"}]
    egress = policy(networkPolicy={"egress": rules})["spec"]["egress"][2:]
    assert egress == [
        {"to": [{"ipBlock": {"cidr": "203.0.113.7/32"}}],
         "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "2001:db8::/48"}}]},
    ]  # fmt: skip


def test_disabled_renders_nothing() -> None:
    assert network_policy(OWNER, spec(networkPolicy={"enabled": False}), EgressSettings()) is None


@pytest.mark.parametrize("ports", [(), (0,), (70000,)])
def test_operator_settings_refuse_bad_ports(ports: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="api_server_ports"):
        EgressSettings(api_server_ports=ports)


def test_the_policy_is_not_part_of_a_revision() -> None:
    # Changing who the pods may reach must not restart a rollout or escape a quarantine.
    before = revision_hash(spec(), default_image=IMAGE)
    after = spec(networkPolicy={"enabled": False, "egress": [{"cidr": "10.0.0.0/8"}]})
    assert revision_hash(after, default_image=IMAGE) == before


def test_plan_applies_it_and_deletes_it_once_disabled() -> None:
    seen = {"deployments": [], "pods": [], "hpas": []}
    applied = plan(body(), seen, default_image=IMAGE, now=NOW)
    assert [o for o in applied.apply if o["kind"] == "NetworkPolicy"]
    off = body(networkPolicy={"enabled": False})
    observed = {**seen, "networkpolicies": [policy()]}
    deleted = plan(off, observed, default_image=IMAGE, now=NOW)
    assert ("NetworkPolicy", "iris") in deleted.delete
    assert not [o for o in deleted.apply if o["kind"] == "NetworkPolicy"]
    assert ("NetworkPolicy", "iris") not in plan(off, seen, default_image=IMAGE, now=NOW).delete


def test_a_joblib_model_is_warned_about_and_a_skops_model_is_not() -> None:
    (warning,) = spec_warnings(spec(networkPolicy={"egress": [{"cidr": "10.0.0.0/8"}]}))
    assert "runs any code" in warning and "skops" in warning
    safe = spec(model={"format": "skops"}, networkPolicy={"egress": [{"cidr": "10.0.0.0/8"}]})
    assert spec_warnings(safe) == []


def test_an_http_model_without_egress_is_warned_about_unless_the_policy_is_off() -> None:
    skops = {"format": "skops"}
    assert any("egress" in w for w in spec_warnings(spec(model=skops)))
    assert spec_warnings(spec(model=skops, networkPolicy={"enabled": False})) == []
    pvc = spec(model={**skops, "uri": "pvc://models/iris.skops"})
    assert spec_warnings(pvc) == []


def test_warnings_reach_status_and_leave_it_when_resolved() -> None:
    seen = {"deployments": [], "pods": [], "hpas": []}
    first = plan(body(), seen, default_image=IMAGE, now=NOW)
    assert first.status is not None and len(first.status["warnings"]) == 2
    md = body()
    md["status"] = first.status
    md["spec"]["model"]["format"] = "skops"
    md["spec"]["networkPolicy"] = {"enabled": False}
    later = plan(md, seen, default_image=IMAGE, now=NOW)
    assert later.status is not None and later.status["warnings"] is None  # merge patch: delete


def test_operator_flags_and_env_give_the_api_server_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeploy.main import egress_settings, parse_args

    assert egress_settings(parse_args([])) == EgressSettings()
    args = ["--api-server-cidr=10.0.0.5/32", "--api-server-port=6443"]
    assert egress_settings(parse_args(args)) == EgressSettings(("10.0.0.5/32",), (6443,))
    monkeypatch.setenv(names.ENV_API_SERVER_CIDRS, "10.0.0.5/32, fd00::/64")
    assert egress_settings(parse_args([])).api_server_cidrs == ("10.0.0.5/32", "fd00::/64")
    with pytest.raises(SystemExit, match="--api-server-cidr"):
        egress_settings(parse_args(["--api-server-cidr=10.0.0.5/8"]))  # host bits set
