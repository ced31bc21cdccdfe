"""Prometheus metric names exported by the model server and read by the monitoring sidecar.

One source of truth: the server registers these names, the sidecar parses them, the README
documents them. Change a name here and both sides follow.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "modeldeploy"

# prometheus-client exposes counters with a `_total` suffix: modeldeploy_requests_total.
# Counter, labels: protocol (v1|v2), status_class (2xx|4xx|5xx). Inference requests only.
REQUESTS: Final = f"{PREFIX}_requests"
# Counter: predict() failures (the model's fault, never a client's). Drives rollback.
MODEL_ERRORS: Final = f"{PREFIX}_model_errors"
# Counter, label reason: malformed requests rejected with a 4xx. Never drives rollback.
CLIENT_ERRORS: Final = f"{PREFIX}_client_errors"
# Histogram (seconds), sub-millisecond buckets: the SLO latency the sidecar's p99 reads, for
# successful and model-failed requests, from the complete body to the encoded response (queue,
# predict, encode). The client's upload is not in it: a slow uploader cannot move the p99.
REQUEST_LATENCY: Final = f"{PREFIX}_request_duration_seconds"
# Histogram (seconds): time to receive an inference request's body, from complete headers to the
# last byte (or to the 408/413 that cut it off). The client's network, never the model's speed.
UPLOAD_DURATION: Final = f"{PREFIX}_request_upload_duration_seconds"
# Gauge: requests being processed now.
IN_FLIGHT: Final = f"{PREFIX}_requests_in_flight"
# Histogram: rows per predict() call (micro-batching).
BATCH_SIZE: Final = f"{PREFIX}_batch_size"
# Info/gauge =1, labels: name, version, sha256 (prefix), format
MODEL_INFO: Final = f"{PREFIX}_model_info"
# Gauge: 1 once the model is verified, loaded and warmed up.
MODEL_READY: Final = f"{PREFIX}_model_ready"
# Gauge =1, label reason (a LoadError cause such as Sha256Mismatch): why the model never loaded.
MODEL_LOAD_FAILURE: Final = f"{PREFIX}_model_load_failure"
# Gauge =1, label runtime (sklearn|onnx): what computes the loaded model's predictions.
MODEL_RUNTIME: Final = f"{PREFIX}_model_runtime"

# Label names, for code that builds or parses the series above.
LABEL_PROTOCOL: Final = "protocol"
LABEL_STATUS_CLASS: Final = "status_class"
LABEL_REASON: Final = "reason"
LABEL_RUNTIME: Final = "runtime"

# Drift (only with a reference profile, see drift.py). Counter, labels feature, bin: rows of
# served batches per bin of each input column, and of the predictions under feature
# DRIFT_PREDICTION. Gauge, same labels: the profile's reference share of each bin.
DRIFT_ROWS: Final = f"{PREFIX}_drift_rows"
DRIFT_REFERENCE: Final = f"{PREFIX}_drift_reference_share"
LABEL_FEATURE: Final = "feature"
LABEL_BIN: Final = "bin"

# Feedback (POST .../feedback, labelled rows; never inference traffic, never in the series
# above). Counters: rows scored, labelled task (classification|regression, from the estimator);
# rows predicted correctly (classification); the sum of absolute errors (regression). The
# sidecar's accuracy is correct / rows and its MAE absolute error / rows, over its feedback
# window. Counter, label status_class: feedback requests answered.
FEEDBACK_ROWS: Final = f"{PREFIX}_feedback_rows"
FEEDBACK_CORRECT: Final = f"{PREFIX}_feedback_correct_rows"
FEEDBACK_ABSOLUTE_ERROR: Final = f"{PREFIX}_feedback_absolute_error"
FEEDBACK_REQUESTS: Final = f"{PREFIX}_feedback_requests"
LABEL_TASK: Final = "task"
TASK_CLASSIFICATION: Final = "classification"
TASK_REGRESSION: Final = "regression"
