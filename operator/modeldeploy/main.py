"""`modeldeploy-operator`: run the kopf operator."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os

import kopf
from prometheus_client import start_http_server

from modeldeploy import __version__, names
from modeldeploy.containment import API_SERVER_PORTS, EgressSettings
from modeldeploy.imagepolicy import ROLLOUTS, ImagePolicy
from modeldeploy.leader import lease_namespace


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-operator",
        description="Reconcile ModelDeployments into model-serving Deployments, Services and HPAs.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    scope.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable); RBAC can then be Roles only",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    parser.add_argument("--metrics-port", type=int, default=8000, help="Prometheus metrics port")
    parser.add_argument(
        "--health-port", type=int, default=8081, help="liveness endpoint port (/healthz)"
    )
    parser.add_argument(
        "--serving-image",
        default=os.environ.get(names.ENV_SERVING_IMAGE, names.DEFAULT_SERVING_IMAGE),
        help="image for model pods whose spec names none (env MODELDEPLOY_SERVING_IMAGE)",
    )
    parser.add_argument(
        "--serving-image-rollout",
        choices=ROLLOUTS,
        default=os.environ.get(names.ENV_SERVING_IMAGE_ROLLOUT, names.IMAGE_ROLLOUT_MANUAL),
        help="how ModelDeployments move to a new --serving-image: manual (only with a new "
        "revision made for another reason; status.image says an upgrade is available) or "
        "progressive (the operator starts image-upgrade canaries itself) "
        "(env MODELDEPLOY_SERVING_IMAGE_ROLLOUT; default: manual)",
    )
    parser.add_argument(
        "--serving-image-max-canaries",
        type=int,
        default=int(os.environ.get(names.ENV_SERVING_IMAGE_MAX_CANARIES, "1")),
        metavar="N",
        help="progressive: image-upgrade canaries in flight at once, across the operator "
        "(env MODELDEPLOY_SERVING_IMAGE_MAX_CANARIES; default: 1)",
    )
    parser.add_argument(
        "--serving-image-sklearn-version",
        default=os.environ.get(names.ENV_SERVING_IMAGE_SKLEARN) or None,
        metavar="VERSION",
        help="the scikit-learn version inside --serving-image (the chart sets it); a model is "
        "never moved to an image of another scikit-learn minor version unless its spec opts in "
        "(env MODELDEPLOY_SERVING_IMAGE_SKLEARN_VERSION; default: undeclared, so no automatic "
        "image upgrade)",
    )
    parser.add_argument(
        "--monitor-image",
        default=os.environ.get(names.ENV_SIDECAR_IMAGE),
        help="image of the monitoring sidecar in every model pod; never the spec's serving image "
        "(env MODELDEPLOY_SIDECAR_IMAGE; default: --serving-image)",
    )
    parser.add_argument(
        "--monitor-cluster-role",
        default=os.environ.get(names.ENV_SIDECAR_CLUSTER_ROLE, names.DEFAULT_MONITOR_CLUSTER_ROLE),
        metavar="NAME",
        help="ClusterRole bound (RoleBinding) to the sidecar's ServiceAccount in each namespace; "
        "the chart creates it as <release>-monitor (env MODELDEPLOY_SIDECAR_CLUSTER_ROLE; "
        f"default: {names.DEFAULT_MONITOR_CLUSTER_ROLE})",
    )
    parser.add_argument(
        "--api-server-cidr",
        action="append",
        default=_env_list(names.ENV_API_SERVER_CIDRS),
        metavar="CIDR",
        help="repeatable: the API server's addresses (after any Service translation: its "
        "endpoints), the only ones model pods' NetworkPolicies let the sidecar report to "
        "(env MODELDEPLOY_API_SERVER_CIDRS, comma-separated; default: any address, on the "
        "--api-server-port ports)",
    )
    parser.add_argument(
        "--api-server-port",
        action="append",
        type=int,
        default=[int(p) for p in _env_list(names.ENV_API_SERVER_PORTS)],
        metavar="PORT",
        help="repeatable: the API server's ports for the same rule "
        "(env MODELDEPLOY_API_SERVER_PORTS; default: 443 and 6443)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a coordination.k8s.io Lease and reconcile only while holding it, so several "
        "replicas can run with one acting (default: on)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else the first --namespace that "
        f"is not a glob, else {names.LEADER_ELECTION_DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--leader-election-id",
        default=names.LEADER_ELECTION_ID,
        metavar="NAME",
        help="name of the Lease; replicas of one operator share it "
        f"(default: {names.LEADER_ELECTION_ID})",
    )
    parser.add_argument(
        "--allow-file-uris",
        action="store_true",
        help="development only: serve models from file:// URIs (paths on the node, readable by "
        "whoever writes a ModelDeployment); without it such specs are reported InvalidSpec",
    )
    parser.add_argument(
        "--mlflow-tracking-uri",
        default=os.environ.get(names.ENV_MLFLOW_TRACKING_URI) or None,
        metavar="URL",
        help="MLflow tracking server that resolves mlflow:// model URIs whose spec names none "
        "(spec.model.registry.trackingUri); the pods fetch proxied artifacts from it too "
        "(env MODELDEPLOY_MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--notify-url",
        default=os.environ.get(names.ENV_NOTIFY_URL) or None,
        metavar="URL",
        help="POST a JSON notice here when a ModelDeployment is Promoted, RolledBack or turns "
        "Failed, retried with backoff (env MODELDEPLOY_NOTIFY_URL, which the chart can fill "
        "from a Secret; default: none)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    if args.serving_image_max_canaries < 1:
        parser.error("--serving-image-max-canaries must be at least 1")
    return args


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def egress_settings(args: argparse.Namespace) -> EgressSettings:
    """Flags to settings; exits with the reason on a malformed CIDR or port."""
    try:
        for cidr in args.api_server_cidr:
            ipaddress.ip_network(cidr, strict=True)
        return EgressSettings(
            api_server_cidrs=tuple(args.api_server_cidr),
            api_server_ports=tuple(args.api_server_port) or API_SERVER_PORTS,
        )
    except ValueError as err:
        flags = "--api-server-cidr/--api-server-port"
        raise SystemExit(f"modeldeploy-operator: {flags}: {err}") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    egress = egress_settings(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kopf logs every handled event at INFO; our controller logs what changed instead.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.kubeconfig:
        # kopf's login and our own client read it from the environment (see handlers.login).
        os.environ["KUBECONFIG"] = args.kubeconfig
    if not egress.api_server_cidrs:
        logging.getLogger("modeldeploy").warning(
            "no --api-server-cidr: model pods' NetworkPolicies let them reach any address on "
            "TCP %s (where the sidecar reports); give the API server's addresses to narrow it",
            ", ".join(map(str, egress.api_server_ports)),
        )
    if args.metrics_port:
        start_http_server(args.metrics_port)

    from modeldeploy import handlers  # noqa: F401  (registers the kopf handlers)

    memo = kopf.Memo(
        serving_image=args.serving_image,
        image_policy=ImagePolicy(
            default_image=args.serving_image,
            rollout=args.serving_image_rollout,
            sklearn_version=args.serving_image_sklearn_version,
            max_canaries=args.serving_image_max_canaries,
        ),
        allow_file_uris=args.allow_file_uris,
        monitor_image=args.monitor_image or args.serving_image,
        monitor_role=args.monitor_cluster_role,
        mlflow_tracking_uri=args.mlflow_tracking_uri,
        egress=egress,
        namespaced=bool(args.namespace),
        namespaces=list(args.namespace),
        leader_election=args.leader_election,
        lease_namespace=lease_namespace(
            args.leader_election_namespace, dict(os.environ), list(args.namespace)
        ),
        lease_name=args.leader_election_id,
        notify_url=args.notify_url,
    )
    kopf.run(
        memo=memo,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
        if args.health_port
        else None,
    )
