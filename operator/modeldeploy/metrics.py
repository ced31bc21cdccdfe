"""The operator's own Prometheus metrics (served on --metrics-port)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

PREFIX: Final = "modeldeploy"

RECONCILES = Counter(
    f"{PREFIX}_reconciles", "Reconciles of ModelDeployments, by result.", ["result"]
)
RECONCILE_SECONDS = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MANAGED = Gauge(
    f"{PREFIX}_modeldeployments", "ModelDeployments managed by this operator, by phase.", ["phase"]
)
ROLLBACKS = Counter(f"{PREFIX}_rollbacks", "Automatic and manual rollbacks, by reason.", ["reason"])
TIME_TO_ROLLBACK = Histogram(
    f"{PREFIX}_time_to_rollback_seconds",
    "From the operator seeing a pod's MetricsHealthy turn False to the rollback applied.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
API_REQUESTS = Counter(
    f"{PREFIX}_api_requests",
    "Requests this operator made to the Kubernetes API (kopf's watches excluded), by kind.",
    ["kind"],  # read | write | lease (leader election's own reads and renewals)
)
LEADER = Gauge(f"{PREFIX}_leader", "1 while this operator process holds the leader Lease.")

# Per ModelDeployment, for alerts on one object. Exported by the leader only (a standby's
# copies would be stale), and removed with the object.
OBJECT_LABELS: Final = ("namespace", "name")
INFO = Gauge(
    f"{PREFIX}_modeldeployment_info",
    "1 per ModelDeployment, its phase and revisions in the labels (revision '' when none).",
    [*OBJECT_LABELS, "phase", "stable_revision", "canary_revision"],
)
CANARY_WEIGHT = Gauge(
    f"{PREFIX}_canary_weight",
    "The canary's configured traffic weight in percent (0 without a canary).",
    list(OBJECT_LABELS),
)
CANARY_TRAFFIC = Gauge(
    f"{PREFIX}_canary_traffic",
    "The canary's share of the Service's ready endpoints in percent: the traffic it can get.",
    list(OBJECT_LABELS),
)
