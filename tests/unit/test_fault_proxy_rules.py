"""The fault proxy's rule matching and bookkeeping (pure: no server, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.fault_proxy import (
    Delay,
    Record,
    Reply,
    Rule,
    is_watch,
    parse_body,
    pick,
    write_kubeconfig,
)

STATUS = "/apis/modeldeploy.io/v1alpha1/namespaces/ns/modeldeployments/iris/status"
DEPLOYMENT = "/apis/apps/v1/namespaces/ns/deployments/iris-r2"


def req(method: str, path: str, query: str = "", body: Any = None) -> Record:
    return Record(seq=0, method=method, path=path, query=query, body=body)


@pytest.mark.parametrize(
    ("rule", "record", "expected"),
    [
        (Rule(path="/status$", method="PATCH"), req("PATCH", STATUS), True),
        (Rule(path="/status$", method="PATCH"), req("GET", STATUS), False),
        (Rule(path="/status$", method="patch"), req("PATCH", STATUS), True),  # case-insensitive
        (Rule(path="/status$", method="PATCH|POST"), req("POST", STATUS), True),
        (Rule(path="/status$", method="PAT"), req("PATCH", STATUS), False),  # whole method only
        (Rule(path="/status$"), req("DELETE", STATUS), True),  # any method
        (Rule(path="/deployments/"), req("PATCH", STATUS), False),
        (Rule(path="/deployments/", query="force=true"), req("PATCH", DEPLOYMENT), False),
        (
            Rule(path="/deployments/", query="force=true"),
            req("PATCH", DEPLOYMENT, "fieldManager=m&force=true"),
            True,
        ),
        (
            Rule(path="/status$", body=lambda b: b["status"]["phase"] == "RolledBack"),
            req("PATCH", STATUS, body={"status": {"phase": "RolledBack"}}),
            True,
        ),
        (
            Rule(path="/status$", body=lambda b: b["status"]["phase"] == "RolledBack"),
            req("PATCH", STATUS, body={"status": {"phase": "Stable"}}),
            False,
        ),
        (  # a predicate that cannot read the body does not match, and never raises
            Rule(path="/status$", body=lambda b: b["status"]["phase"] == "RolledBack"),
            req("PATCH", STATUS, body=None),
            False,
        ),
    ],
)
def test_rule_matches(rule: Rule, record: Record, expected: bool) -> None:
    assert rule.matches(record) is expected


def test_times_limits_how_often_a_rule_acts() -> None:
    rule = Rule(path="/status$", action=Reply(503), times=2)
    picked = [pick([rule], req("PATCH", STATUS)) for _ in range(4)]
    assert picked == [rule, rule, None, None]
    assert rule.exhausted


def test_times_none_acts_forever() -> None:
    rule = Rule(path="/status$", action=Reply(500), times=None)
    assert all(pick([rule], req("PATCH", STATUS)) is rule for _ in range(50))
    assert not rule.exhausted


def test_skip_lets_the_first_matches_through_then_acts_on_the_next() -> None:
    rule = Rule(path="", method="PATCH|POST", skip=2, times=1)
    records = [req("PATCH", STATUS), req("GET", STATUS), req("POST", STATUS), req("PATCH", STATUS)]
    assert [pick([rule], r) for r in records] == [None, None, None, rule]
    assert (rule.seen, rule.fired) == (3, 1)  # the GET was not a match at all


def test_first_matching_rule_wins_and_exhausted_rules_step_aside() -> None:
    first = Rule(path="/status$", action=Reply(409), times=1)
    second = Rule(path="/status$", action=Reply(500), times=None)
    assert pick([first, second], req("PATCH", STATUS)) is first
    assert pick([first, second], req("PATCH", STATUS)) is second
    assert pick([first, second], req("PATCH", DEPLOYMENT)) is None


def test_a_skipping_rule_does_not_hide_later_rules() -> None:
    skipping = Rule(path="/status$", skip=1)
    other = Rule(path="/status$", action=Reply(503))
    assert pick([skipping, other], req("PATCH", STATUS)) is other


def test_reply_is_a_kubernetes_status() -> None:
    body = Reply(429, "slow down", retry_after=2).body()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert (body["code"], body["reason"], body["message"]) == (429, "TooManyRequests", "slow down")
    assert body["details"] == {"retryAfterSeconds": 2}
    assert Reply(429, retry_after=2).headers() == {"Retry-After": "2"}
    assert Reply(409).body()["reason"] == "Conflict"
    assert Reply(500).body()["reason"] == "InternalError"
    assert Reply(503).headers() == {}


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/api/v1/pods", "watch=true&resourceVersion=1", True),
        ("/api/v1/pods", "labelSelector=a&watch=1", True),
        ("/api/v1/watch/pods", "", True),
        ("/api/v1/pods", "watch=false", False),
        ("/api/v1/pods", "allowWatchBookmarks=true", False),
    ],
)
def test_is_watch(path: str, query: str, expected: bool) -> None:
    assert is_watch(path, query) is expected
    assert req("GET", path, query).watch is expected


def test_records_know_what_mutates() -> None:
    assert req("PATCH", STATUS).mutating and req("POST", STATUS).mutating
    assert req("DELETE", DEPLOYMENT).mutating and not req("GET", DEPLOYMENT).mutating
    assert str(Record(0, "GET", "/api", "a=1", status=200)) == "GET /api?a=1 -> 200"


def test_parse_body_reads_json_and_yaml_and_tolerates_garbage() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    assert parse_body(b"a: 1\n") == {"a": 1}
    assert parse_body(b"") is None
    assert parse_body(b"\x00: [") is None


def test_delays_default_to_forwarding_and_replies_to_answering_at_once() -> None:
    assert Delay(1.0).reset is False
    assert Reply(503).delay == 0.0


def test_kubeconfig_points_at_the_proxy_without_credentials(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:1234")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:1234"}
    assert config["users"][0]["user"] == {}
