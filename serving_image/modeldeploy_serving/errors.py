"""The two error families of the server.

`ServingError` is what a request can fail with; each class carries its HTTP status and a short
reason code (a metrics label and the `reason` field of the JSON error body). Whose fault it is
decides what it counts against: a `ClientError` never counts as a model error (a bad client must
not be able to trigger a rollback), a `ModelError` always does.

`LoadError` is what loading an artifact can fail with; each class carries the process exit code
of init-container mode and a CamelCase cause, like a Kubernetes condition reason.
"""

from __future__ import annotations

from typing import ClassVar


class ServingError(Exception):
    """A request that cannot be answered with a result. The message names the field and the rule."""

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "internal_error"
    headers: ClassVar[dict[str, str]] = {}
    # The answer ends the connection: the rest of the body is never read.
    closes_connection: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the client's fault: 4xx, counted in CLIENT_ERRORS ---------------------------------------
class ClientError(ServingError):
    status = 400
    reason = "invalid_request"


class MalformedJSON(ClientError):
    reason = "malformed_json"


class InvalidInput(ClientError):
    """Well-formed JSON that does not fit the model: shape, datatype, feature count, values."""

    reason = "invalid_input"


class ModelNotFound(ClientError):
    status = 404
    reason = "model_not_found"


class PayloadTooLarge(ClientError):
    status = 413
    reason = "payload_too_large"
    closes_connection = True


class RequestTimeout(ClientError):
    """The body did not arrive within the body timeout (a slow or stalled upload)."""

    status = 408
    reason = "request_timeout"
    closes_connection = True


class ClientGone(ClientError):
    """The client closed its connection before its body arrived; nobody reads this answer."""

    status = 499  # nginx's "client closed request"
    reason = "client_closed_request"
    closes_connection = True


class UnsupportedMediaType(ClientError):
    status = 415
    reason = "unsupported_media_type"


# --- nobody's fault yet: 503, the client may retry elsewhere ---------------------------------
class Unavailable(ServingError):
    status = 503
    reason = "unavailable"


class ModelNotReady(Unavailable):
    reason = "model_not_ready"


class Overloaded(Unavailable):
    """More rows are waiting for predict() than the queue admits; shed load instead of queueing."""

    reason = "overloaded"
    headers = {"Retry-After": "1"}


# --- the model's fault: 500, counted in MODEL_ERRORS (drives rollback) -----------------------
class ModelError(ServingError):
    status = 500
    reason = "model_error"


class PredictFailed(ModelError):
    reason = "predict_failed"


class InvalidOutput(ModelError):
    """predict() returned something that cannot be a valid answer (NaN, wrong row count, ...)."""

    reason = "invalid_output"


# --- loading an artifact ---------------------------------------------------------------------
class LoadError(Exception):
    """The artifact cannot be served. Never retried in-process: the bytes will not change."""

    exit_code: ClassVar[int] = 1
    cause: ClassVar[str] = "LoadFailed"


class FetchFailed(LoadError):
    """Missing file, permission denied, HTTP error status, timeout, connection refused."""

    exit_code = 3
    cause = "FetchFailed"


class ArtifactTooLarge(LoadError):
    exit_code = 4
    cause = "ArtifactTooLarge"


class Sha256Mismatch(LoadError):
    exit_code = 5
    cause = "Sha256Mismatch"


class InvalidArtifact(LoadError):
    """The verified bytes are not a loadable model of the declared format."""

    exit_code = 6
    cause = "InvalidArtifact"


class UntrustedTypes(LoadError):
    """A skops artifact names types outside the trusted set."""

    exit_code = 7
    cause = "UntrustedTypes"


class IncompatibleSklearnVersion(LoadError):
    exit_code = 8
    cause = "IncompatibleSklearnVersion"


class WarmupFailed(LoadError):
    """The model loaded but could not predict its warm-up row."""

    exit_code = 9
    cause = "WarmupFailed"


class OutputNotWritable(LoadError):
    """Init-container mode could not write the verified artifact to its destination."""

    exit_code = 10
    cause = "OutputNotWritable"


class CompiledRuntimeFailed(LoadError):
    """Runtime onnx was required, but the model did not convert or did not match scikit-learn."""

    exit_code = 11
    cause = "CompiledRuntimeFailed"


class ValidationFailed(LoadError):
    """The model loaded but missed its validation threshold on the labelled dataset, or the
    dataset itself cannot be scored (a missing column, a value the model refuses)."""

    exit_code = 12
    cause = "ValidationFailed"


# Exit code for invalid flags or environment (argparse's own convention).
EXIT_USAGE = 2
