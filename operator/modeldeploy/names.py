"""Every name shared between the CRD, the operator, the sidecar, the chart and the CLI.

One source of truth: other modules import these, never retype them.
"""

from __future__ import annotations

from typing import Final

# --- the API ------------------------------------------------------------------------------
GROUP: Final = "modeldeploy.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
SINGULAR: Final = "modeldeployment"
SHORT_NAME: Final = "md"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# --- labels and annotations on everything the operator creates ------------------------------
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "modeldeploy"
LABEL_NAME: Final = f"{GROUP}/name"
LABEL_REVISION: Final = f"{GROUP}/revision"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"

ANNOTATION_RETRY: Final = f"{GROUP}/retry"
ANNOTATION_ROLLBACK_TO: Final = f"{GROUP}/rollback-to"
ANNOTATION_PROMOTE: Final = f"{GROUP}/promote"
ANNOTATION_PAUSED: Final = f"{GROUP}/paused"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"

# --- field manager for server-side apply --------------------------------------------------
FIELD_MANAGER: Final = "modeldeploy-operator"

# --- conditions -----------------------------------------------------------------------------
COND_READY: Final = "Ready"
COND_PROGRESSING: Final = "Progressing"
COND_DEGRADED: Final = "Degraded"
# Written by the monitoring sidecar on its own Pod.
POD_COND_METRICS_HEALTHY: Final = f"{GROUP}/MetricsHealthy"
REASON_METRIC_BREACH: Final = "MetricBreach"
REASON_INSUFFICIENT_DATA: Final = "InsufficientData"
REASON_WITHIN_THRESHOLDS: Final = "WithinThresholds"

# --- containers and children ------------------------------------------------------------------
CONTAINER_SERVER: Final = "model-server"
CONTAINER_MONITOR: Final = "monitor"
SIDECAR_SERVICE_ACCOUNT: Final = "modeldeploy-monitor"


def revision_name(md_name: str, revision: int) -> str:
    """The Deployment that runs one model revision."""
    return f"{md_name}-r{revision}"


def service_name(md_name: str) -> str:
    return md_name


def hpa_name(md_name: str) -> str:
    return md_name
