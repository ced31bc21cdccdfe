"""The operator's in-cluster login names the API server as client-go does (no cluster DNS)."""

from __future__ import annotations

from modeldeploy.handlers import in_cluster_server


def test_the_kubelet_given_address_is_used() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_server(env) == "https://10.96.0.1:443"


def test_ipv6_addresses_are_bracketed() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_server(env) == "https://[fd00::1]:443"


def test_outside_a_pod_there_is_none() -> None:
    assert in_cluster_server({}) is None
