"""Containment of what runs in a model pod: its NetworkPolicy, and the risks a spec carries.

Pure: plain dicts and strings. NetworkPolicy selects pods and matches addresses and ports; it
cannot tell the model container from the sidecar, nor match host names, so the policy is one
per ModelDeployment and every egress rule holds for both containers (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from modeldeploy import names
from modeldeploy.builders import Owner, child_labels, owner_reference
from modeldeploy.spec import ModelDeploymentSpec

# Without configured addresses, the sidecar may reach any address on the API server's usual
# ports: broad, but the sidecar keeps reporting on every cluster (docs/security.md).
ANYWHERE: Final = ("0.0.0.0/0", "::/0")
API_SERVER_PORTS: Final = (443, 6443)


@dataclass(frozen=True)
class EgressSettings:
    """The operator's own knowledge of where model pods must reach (from its flags)."""

    api_server_cidrs: tuple[str, ...] = ()
    api_server_ports: tuple[int, ...] = API_SERVER_PORTS

    def __post_init__(self) -> None:
        if not self.api_server_ports or not all(0 < p < 65536 for p in self.api_server_ports):
            raise ValueError("api_server_ports must be one or more ports in 1..65535")


def network_policy(
    owner: Owner, spec: ModelDeploymentSpec, settings: EgressSettings
) -> dict[str, Any] | None:
    """The ModelDeployment's NetworkPolicy, or None when its spec turns it off.

    Ingress: only the named serving port of every revision (the Service, and Prometheus,
    which scrapes /metrics there); the kubelet's probes come from the node, which NetworkPolicy
    never blocks. Egress: DNS, the API server, and the spec's own destinations."""
    if not spec.network_policy.enabled:
        return None
    tcp = [{"protocol": "TCP", "port": port} for port in settings.api_server_ports]
    egress: list[dict[str, Any]] = [
        # Any resolver: cluster DNS, a node-local cache or the node's own (host names only
        # reach the network through one, so this is the one egress DNS exfiltration needs).
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"to": _blocks(settings.api_server_cidrs or ANYWHERE), "ports": tcp},
    ]
    for rule in spec.network_policy.egress:
        allowed: dict[str, Any] = {"to": _blocks((rule.cidr,))}
        if rule.ports:
            allowed["ports"] = [{"protocol": "TCP", "port": port} for port in rule.ports]
        egress.append(allowed)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.network_policy_name(owner.name),
            "namespace": owner.namespace,
            "labels": child_labels(owner.name),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "podSelector": {"matchLabels": {names.LABEL_NAME: owner.name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": names.PORT_NAME_HTTP}]}],
            "egress": egress,
        },
    }


def _blocks(cidrs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def spec_warnings(spec: ModelDeploymentSpec) -> list[str]:
    """Risks the operator serves anyway, for `status.warnings`: said once per spec, in status,
    where `kubectl describe` and Argo CD show them."""
    warnings: list[str] = []
    # The format decides how the server loads the bytes, whatever the file is called.
    if spec.model.format == "joblib":
        warnings.append(
            "the model is a joblib/pickle artifact: loading it runs any code it contains, and "
            "the sha256 proves only that these are the bytes you named, not that they are safe; "
            "save the model with skops (format: skops), which loads trusted types only"
        )
    scheme_http = spec.model.uri.startswith(("http://", "https://"))
    if spec.network_policy.enabled and scheme_http and not spec.network_policy.egress:
        warnings.append(
            "the NetworkPolicy allows no egress to the model's http(s) server: where the network "
            "plugin enforces NetworkPolicy the download is blocked; list the server's addresses "
            "in spec.networkPolicy.egress"
        )
    return warnings
