"""`modeldeploy-operator`: run the kopf operator."""

from __future__ import annotations

import argparse
import logging
import os

import kopf
from prometheus_client import start_http_server

from modeldeploy import __version__, names
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
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=__version__)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kopf logs every handled event at INFO; our controller logs what changed instead.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.kubeconfig:
        # kopf's login and our own client read it from the environment (see handlers.login).
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.metrics_port:
        start_http_server(args.metrics_port)

    from modeldeploy import handlers  # noqa: F401  (registers the kopf handlers)

    memo = kopf.Memo(
        serving_image=args.serving_image,
        allow_file_uris=args.allow_file_uris,
        monitor_image=args.monitor_image or args.serving_image,
        monitor_role=args.monitor_cluster_role,
        mlflow_tracking_uri=args.mlflow_tracking_uri,
        namespaced=bool(args.namespace),
        namespaces=list(args.namespace),
        leader_election=args.leader_election,
        lease_namespace=lease_namespace(
            args.leader_election_namespace, dict(os.environ), list(args.namespace)
        ),
        lease_name=args.leader_election_id,
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
