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
# Argo CD's default tracking label and its annotation-based tracking key: never on our pods.
LABEL_ARGOCD_INSTANCE: Final = "app.kubernetes.io/instance"
ANNOTATION_ARGOCD_TRACKING_ID: Final = "argocd.argoproj.io/tracking-id"

ANNOTATION_RETRY: Final = f"{GROUP}/retry"
ANNOTATION_ROLLBACK_TO: Final = f"{GROUP}/rollback-to"
ANNOTATION_PROMOTE: Final = f"{GROUP}/promote"
ANNOTATION_PAUSED: Final = f"{GROUP}/paused"
ANNOTATION_ABORT: Final = f"{GROUP}/abort"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"

# --- field manager for server-side apply --------------------------------------------------
FIELD_MANAGER: Final = "modeldeploy-operator"
# Replica counts are written by update, under their own manager, so an HPA can own the field.
SCALE_FIELD_MANAGER: Final = "modeldeploy-operator-scale"

# --- conditions -----------------------------------------------------------------------------
COND_READY: Final = "Ready"
COND_PROGRESSING: Final = "Progressing"
COND_DEGRADED: Final = "Degraded"
COND_AVAILABLE: Final = "Available"
COND_PAUSED: Final = "Paused"
COND_INVALID_SPEC: Final = "InvalidSpec"
# Written by the monitoring sidecar on its own Pod.
POD_COND_METRICS_HEALTHY: Final = f"{GROUP}/MetricsHealthy"
REASON_METRIC_BREACH: Final = "MetricBreach"
REASON_INSUFFICIENT_DATA: Final = "InsufficientData"
REASON_WITHIN_THRESHOLDS: Final = "WithinThresholds"
# Drift against spec.model.profile (PSI over the window; docs/monitor.md#drift).
REASON_PREDICTION_DRIFT: Final = "PredictionDrift"
REASON_FEATURE_DRIFT: Final = "FeatureDrift"
# Labelled feedback over analysis.feedbackWindow (docs/monitor.md#live-accuracy-from-feedback).
REASON_ACCURACY_BELOW_THRESHOLD: Final = "AccuracyBelowThreshold"
REASON_MAE_ABOVE_THRESHOLD: Final = "MAEAboveThreshold"
# Breaches about what the model answers rather than whether it answers (named in `status`).
MODEL_QUALITY_REASONS: Final = (
    REASON_PREDICTION_DRIFT,
    REASON_FEATURE_DRIFT,
    REASON_ACCURACY_BELOW_THRESHOLD,
    REASON_MAE_ABOVE_THRESHOLD,
)
# Also written by the sidecar: whether the model server loaded its model, and if not why (the
# reason is the server's LoadError cause, e.g. Sha256Mismatch), so the operator can say why a
# pod is not ready without talking to it.
POD_COND_MODEL_READY: Final = f"{GROUP}/ModelReady"
REASON_MODEL_LOADED: Final = "ModelLoaded"  # ModelReady=True
# ModelReady=True's message ends with this and the runtime that serves (status.<role>.runtime).
MODEL_RUNTIME_MARK: Final = "; runtime "
RUNTIMES: Final = ("sklearn", "onnx")
REASON_MODEL_LOADING: Final = "Loading"  # ModelReady=False while fetching, verifying, warming up
# Load failures a restart cannot fix: the same bytes fail the same way (serving errors.py causes).
TERMINAL_LOAD_CAUSES: Final = (
    "Sha256Mismatch",
    "InvalidArtifact",
    "UntrustedTypes",
    "IncompatibleSklearnVersion",
    "WarmupFailed",
    "ArtifactTooLarge",
    "ValidationFailed",  # the model missed its threshold on spec.analysis.validation's dataset
)
# A download that failed (denied, missing, unreachable): may fix itself (a Secret created, an
# object uploaded), so the rollout waits for it until its progress deadline.
REASON_FETCH_FAILED: Final = "FetchFailed"

# --- containers and children ------------------------------------------------------------------
CONTAINER_SERVER: Final = "model-server"
CONTAINER_MONITOR: Final = "monitor"
# The init container that downloads an object-store artifact (s3://, gs://, azure://) with the
# credentials of spec.model.env/envFrom; the only container that sees them.
CONTAINER_FETCHER: Final = "fetch-model"
# Its twins for the files the server reads beside an object-store model (validation dataset,
# profile, signature), with the same credentials.
CONTAINER_VALIDATION_FETCHER: Final = "fetch-validation"
CONTAINER_PROFILE_FETCHER: Final = "fetch-profile"
CONTAINER_SIGNATURE_FETCHER: Final = "fetch-signature"
FETCHED_MODEL_DIR: Final = "/mnt/models/fetched"  # an emptyDir, read-only in the model server
# Webhooks of cloud workload identity inject their token into every container unless told to
# skip some (AWS: comma-separated, Azure: semicolon-separated); only the fetcher needs it.
ANNOTATION_EKS_SKIP_CONTAINERS: Final = "eks.amazonaws.com/skip-containers"
ANNOTATION_AZURE_SKIP_CONTAINERS: Final = "azure.workload.identity/skip-containers"
SIDECAR_SERVICE_ACCOUNT: Final = "modeldeploy-monitor"


def revision_name(md_name: str, revision: int) -> str:
    """The Deployment that runs one model revision."""
    return f"{md_name}-r{revision}"


def service_name(md_name: str) -> str:
    return md_name


def hpa_name(md_name: str) -> str:
    return md_name


def network_policy_name(md_name: str) -> str:
    return md_name


# --- status vocabulary (the CRD's enums list the same values; a unit test keeps them equal) ---
PHASE_PENDING: Final = "Pending"  # accepted, nothing is serving yet
PHASE_PROGRESSING: Final = "Progressing"  # a new revision is rolling out (canary steps or bake)
PHASE_STABLE: Final = "Stable"  # one revision serves 100% and is healthy
PHASE_DEGRADED: Final = "Degraded"  # serving, but unhealthy (e.g. stable pods not ready)
PHASE_ROLLED_BACK: Final = "RolledBack"  # the last rollout breached and was rolled back
PHASE_FAILED: Final = "Failed"  # nothing healthy to serve or roll back to
PHASES: Final = (
    PHASE_PENDING,
    PHASE_PROGRESSING,
    PHASE_STABLE,
    PHASE_DEGRADED,
    PHASE_ROLLED_BACK,
    PHASE_FAILED,
)

OUTCOME_PROMOTED: Final = "Promoted"  # became the stable revision
OUTCOME_ROLLED_BACK: Final = "RolledBack"  # breached during analysis; traffic went back
OUTCOME_SUPERSEDED: Final = "Superseded"  # a newer spec replaced it before it finished
OUTCOME_FAILED: Final = "Failed"  # never became ready (e.g. the model failed to load)
OUTCOMES: Final = (OUTCOME_PROMOTED, OUTCOME_ROLLED_BACK, OUTCOME_SUPERSEDED, OUTCOME_FAILED)

# --- the pod's ports, paths and process contract (the serving image follows it) -------------
PORT_NAME_HTTP: Final = "http"
PORT_NAME_MONITOR: Final = "monitor"
MONITOR_PORT: Final = 9090  # reserved: spec.serving.port may not use it
SERVICE_PORT: Final = 80  # the Service's port; it targets the named port `http`
# The serving image's user (serving_image/Dockerfile `USER 65532:65532`, the chart's operator
# pod): model pods run as it, numeric so the kubelet can verify runAsNonRoot.
RUN_AS_USER: Final = 65532
PATH_READY: Final = "/v2/health/ready"
PATH_LIVE: Final = "/v2/health/live"
PATH_METRICS: Final = "/metrics"
PATH_MONITOR_HEALTH: Final = "/healthz"
COMMAND_SERVER: Final = "modeldeploy-server"
COMMAND_MONITOR: Final = "modeldeploy-monitor"
COMMAND_PRESTOP: Final = "modeldeploy-prestop"
SERVICE_ACCOUNT_MOUNT: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
MODEL_MOUNT_ROOT: Final = "/mnt/models"  # pvc://<claim>/<path> is mounted at <root>/<claim>
RESERVED_ENV_PREFIX: Final = "MODELDEPLOY_"  # users may not set env vars with this prefix

ENV_MODEL_URI: Final = "MODELDEPLOY_MODEL_URI"
ENV_MODEL_NAME: Final = "MODELDEPLOY_MODEL_NAME"
ENV_MODEL_VERSION: Final = "MODELDEPLOY_MODEL_VERSION"
ENV_SHA256: Final = "MODELDEPLOY_SHA256"
ENV_PROFILE_URI: Final = "MODELDEPLOY_PROFILE_URI"  # set only with spec.model.profile
ENV_PROFILE_SHA256: Final = "MODELDEPLOY_PROFILE_SHA256"
ENV_SIGNATURE_URI: Final = "MODELDEPLOY_SIGNATURE_URI"  # set only with spec.model.signature
ENV_SIGNATURE_SHA256: Final = "MODELDEPLOY_SIGNATURE_SHA256"
ENV_FORMAT: Final = "MODELDEPLOY_FORMAT"
ENV_PORT: Final = "MODELDEPLOY_PORT"
ENV_DRAIN_SECONDS: Final = "MODELDEPLOY_DRAIN_SECONDS"
ENV_RUNTIME: Final = "MODELDEPLOY_RUNTIME"  # set only when spec.serving.runtime is
# spec.serving.tuning: each set only when its field is (the server's flags of the same name).
ENV_MICRO_BATCHING: Final = "MODELDEPLOY_MICRO_BATCHING"
ENV_BATCH_MAX_ROWS: Final = "MODELDEPLOY_BATCH_MAX_ROWS"
ENV_BATCH_MAX_WAIT_MS: Final = "MODELDEPLOY_BATCH_MAX_WAIT_MS"
ENV_MAX_QUEUED_ROWS: Final = "MODELDEPLOY_MAX_QUEUED_ROWS"
ENV_MAX_REQUEST_BYTES: Final = "MODELDEPLOY_MAX_REQUEST_BYTES"
ENV_MAX_REQUEST_ROWS: Final = "MODELDEPLOY_MAX_REQUEST_ROWS"
ENV_BODY_TIMEOUT: Final = "MODELDEPLOY_BODY_TIMEOUT"
# Set only when spec.serving.allowSklearnUpgrade is true (the server's own switch).
ENV_ALLOW_SKLEARN_MISMATCH: Final = "MODELDEPLOY_ALLOW_SKLEARN_VERSION_MISMATCH"
# The validation gate (spec.analysis.validation), set only when it is configured.
ENV_VALIDATION_URI: Final = "MODELDEPLOY_VALIDATION_URI"
ENV_VALIDATION_SHA256: Final = "MODELDEPLOY_VALIDATION_SHA256"
ENV_VALIDATION_METRIC: Final = "MODELDEPLOY_VALIDATION_METRIC"
ENV_VALIDATION_THRESHOLD: Final = "MODELDEPLOY_VALIDATION_THRESHOLD"
ENV_VALIDATION_LABEL_COLUMN: Final = "MODELDEPLOY_VALIDATION_LABEL_COLUMN"
ENV_MONITOR_METRICS_URL: Final = "MODELDEPLOY_MONITOR_METRICS_URL"
ENV_MONITOR_POD_NAME: Final = "MODELDEPLOY_MONITOR_POD_NAME"
ENV_MONITOR_POD_NAMESPACE: Final = "MODELDEPLOY_MONITOR_POD_NAMESPACE"
ENV_MONITOR_DEPLOYMENT_NAME: Final = "MODELDEPLOY_MONITOR_DEPLOYMENT_NAME"
ENV_MONITOR_WINDOW_SECONDS: Final = "MODELDEPLOY_MONITOR_WINDOW_SECONDS"
ENV_MONITOR_MIN_REQUESTS: Final = "MODELDEPLOY_MONITOR_MIN_REQUESTS"
ENV_MONITOR_ON_NO_DATA: Final = "MODELDEPLOY_MONITOR_ON_NO_DATA"
ENV_MONITOR_MAX_ERROR_RATE: Final = "MODELDEPLOY_MONITOR_MAX_ERROR_RATE"
ENV_MONITOR_MAX_LATENCY_P99_MS: Final = "MODELDEPLOY_MONITOR_MAX_LATENCY_P99_MS"
ENV_MONITOR_MAX_PREDICTION_DRIFT: Final = "MODELDEPLOY_MONITOR_MAX_PREDICTION_DRIFT"
ENV_MONITOR_MAX_FEATURE_DRIFT: Final = "MODELDEPLOY_MONITOR_MAX_FEATURE_DRIFT"
ENV_MONITOR_MIN_ACCURACY: Final = "MODELDEPLOY_MONITOR_MIN_ACCURACY"
ENV_MONITOR_MAX_MAE: Final = "MODELDEPLOY_MONITOR_MAX_MAE"
ENV_MONITOR_FEEDBACK_WINDOW_SECONDS: Final = "MODELDEPLOY_MONITOR_FEEDBACK_WINDOW_SECONDS"
ENV_MONITOR_MIN_FEEDBACK: Final = "MODELDEPLOY_MONITOR_MIN_FEEDBACK"

# --- the sidecar's per-namespace RBAC -------------------------------------------------------
# A RoleBinding of the sidecar's ServiceAccount to a fixed ClusterRole the chart creates
# (`<release>-monitor`); the operator may `bind` that one ClusterRole. Not named like the Role
# of earlier versions: a RoleBinding's roleRef is immutable.
SIDECAR_ROLE_BINDING: Final = "modeldeploy-monitor-reporter"
ENV_SIDECAR_CLUSTER_ROLE: Final = "MODELDEPLOY_SIDECAR_CLUSTER_ROLE"
DEFAULT_MONITOR_CLUSTER_ROLE: Final = "modeldeploy-monitor"  # the chart's, for release modeldeploy
# Not in the original contract: the sidecar needs the owner's uid so its Events show up in
# `kubectl describe md` (describe selects events by involvedObject.uid).
ENV_MONITOR_DEPLOYMENT_UID: Final = "MODELDEPLOY_MONITOR_DEPLOYMENT_UID"

# --- rollout reasons: conditions and Events of the ModelDeployment (rollout*.py, analysis.py) -
REASON_DEPLOYING: Final = "Deploying"  # the first revision is on its way
REASON_DEPLOYED: Final = "Deployed"  # the first revision is ready and serves
REASON_ROLLOUT_STARTED: Final = "RolloutStarted"
REASON_WAITING_FOR_REPLICAS: Final = "WaitingForReplicas"
REASON_WARMING_UP: Final = "WarmingUp"  # Ready pods younger than one analysis window
REASON_NO_READY_REPLICAS: Final = "NoReadyReplicas"
REASON_STEP_PAUSE: Final = "StepPause"
REASON_STEP_ADVANCED: Final = "StepAdvanced"
REASON_PROMOTING: Final = "Promoting"  # pre-scaling the new revision before the cutover
REASON_PROMOTED: Final = "Promoted"
REASON_BAKING: Final = "Baking"
REASON_BAKE_COMPLETED: Final = "BakeCompleted"
REASON_ROLLOUT_COMPLETE: Final = "RolloutComplete"
REASON_SUPERSEDED: Final = "Superseded"
REASON_ROLLED_BACK: Final = "RolledBack"
REASON_MANUAL_ROLLBACK: Final = "ManualRollback"
REASON_ROLLBACK_IN_PROGRESS: Final = "RollbackInProgress"
REASON_ROLLBACK_REFUSED: Final = "RollbackRefused"
REASON_PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
REASON_RETRY_REQUESTED: Final = "RetryRequested"
REASON_PROMOTE_REQUESTED: Final = "PromoteRequested"
REASON_MANUAL_PROMOTION: Final = "ManualPromotion"  # history: promoted by hand during its bake
REASON_ABORTED: Final = "Aborted"  # `kubectl modeldeploy abort`: taken out and quarantined
REASON_PAUSED: Final = "Paused"
REASON_RESUMED: Final = "Resumed"
REASON_AS_EXPECTED: Final = "AsExpected"  # Degraded=False
REASON_APPLY_FAILED: Final = "ApplyFailed"  # the API refused a child (400, 403, 422)
# An mlflow:// model that could not be resolved (registry.py); the stable keeps serving.
REASON_REGISTRY_MODEL_NOT_FOUND: Final = "RegistryModelNotFound"  # no such model/version/alias
REASON_REGISTRY_UNAVAILABLE: Final = "RegistryUnavailable"  # unreachable, 5xx, 401/403, garbage
REASON_REGISTRY_ARTIFACT_UNSUPPORTED: Final = "RegistryArtifactUnsupported"  # pods cannot fetch it
REASON_REGISTRY_NOT_CONFIGURED: Final = "RegistryNotConfigured"  # no tracking URI anywhere
REASON_MODEL_RESOLVED: Final = "ModelResolved"  # Event: a registry reference became an artifact

# --- the operator's own settings -------------------------------------------------------------
ENV_SERVING_IMAGE: Final = "MODELDEPLOY_SERVING_IMAGE"
ENV_NOTIFY_URL: Final = "MODELDEPLOY_NOTIFY_URL"
# The image model pods run when a spec names none (built from serving_image/Dockerfile).
DEFAULT_SERVING_IMAGE: Final = "ghcr.io/modeldeploy/modeldeploy:0.1.0"
# The sidecar's image: the operator's choice (default: its serving image, which holds both
# entrypoints), never the spec's. The sidecar holds the pod's API token.
ENV_SIDECAR_IMAGE: Final = "MODELDEPLOY_SIDECAR_IMAGE"
# The MLflow tracking server for mlflow:// models whose spec names none (--mlflow-tracking-uri).
ENV_MLFLOW_TRACKING_URI: Final = "MODELDEPLOY_MLFLOW_TRACKING_URI"
# Where model pods may reach the API server (the sidecar reports there), for their
# NetworkPolicy: comma-separated CIDRs and ports.
ENV_API_SERVER_CIDRS: Final = "MODELDEPLOY_API_SERVER_CIDRS"
ENV_API_SERVER_PORTS: Final = "MODELDEPLOY_API_SERVER_PORTS"

# The serving image policy (imagepolicy.py): how a new default image reaches existing revisions.
ENV_SERVING_IMAGE_ROLLOUT: Final = "MODELDEPLOY_SERVING_IMAGE_ROLLOUT"
ENV_SERVING_IMAGE_MAX_CANARIES: Final = "MODELDEPLOY_SERVING_IMAGE_MAX_CANARIES"
ENV_SERVING_IMAGE_SKLEARN: Final = "MODELDEPLOY_SERVING_IMAGE_SKLEARN_VERSION"
IMAGE_ROLLOUT_MANUAL: Final = "manual"  # new default image only with a new revision
IMAGE_ROLLOUT_PROGRESSIVE: Final = "progressive"  # the operator starts image-upgrade canaries
# status.image.state: where a ModelDeployment stands with the operator's default image.
IMAGE_UP_TO_DATE: Final = "UpToDate"  # the desired revision runs the default image
IMAGE_PINNED: Final = "Pinned"  # spec.serving.image names the image
IMAGE_UPGRADE_AVAILABLE: Final = "UpgradeAvailable"  # manual: waits for a new revision
IMAGE_WAITING_FOR_SLOT: Final = "WaitingForSlot"  # progressive: all upgrade slots are taken
IMAGE_UPGRADING: Final = "Upgrading"  # an image-upgrade canary (or its bake) is in flight
IMAGE_UPGRADE_ROLLED_BACK: Final = "UpgradeRolledBack"  # quarantined; `retry` tries again
IMAGE_SKLEARN_MISMATCH: Final = "SklearnMismatch"  # the default image's minor differs
IMAGE_SKLEARN_UNKNOWN: Final = "SklearnVersionUnknown"  # one side undeclared: no evidence

# --- the CRD itself ---------------------------------------------------------------------------
# Equal to the CRD's modeldeploy.io/schema-version annotation (a unit test keeps them equal);
# an operator seeing an older value knows the installed CRD may prune fields it relies on.
ANNOTATION_SCHEMA_VERSION: Final = f"{GROUP}/schema-version"
CRD_SCHEMA_VERSION: Final = "9"
# A DNS-1035 label short enough that `<name>-r<revision>` stays a valid 63-character label.
MAX_MD_NAME_LENGTH: Final = 52

# --- leader election (a coordination.k8s.io/v1 Lease; timings as client-go's defaults) --------
ENV_POD_NAMESPACE: Final = "POD_NAMESPACE"  # set by the chart from the downward API
ENV_POD_NAME: Final = "POD_NAME"  # the identity's prefix; the hostname when unset
LEADER_ELECTION_ID: Final = "modeldeploy-operator"  # the Lease's name
LEADER_ELECTION_DEFAULT_NAMESPACE: Final = "default"
LEASE_DURATION_S: Final = 15.0  # a standby may take over this long after the last renewal
RENEW_DEADLINE_S: Final = 10.0  # a leader that cannot renew for this long stops (exits)
RETRY_PERIOD_S: Final = 2.0  # how often the leader renews and a standby looks
EXIT_LEADERSHIP_LOST: Final = 3  # exit status after losing the Lease; the kubelet restarts us
