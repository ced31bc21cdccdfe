"""The server's Prometheus series (names from metric_names, the one source of truth)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from . import metric_names as names
from .errors import ClientError, ModelError, ServingError
from .feedback import Score
from .loop_metrics import LoopCounter, LoopGauge, LoopHistogram, LoopSeries

# Sub-millisecond resolution: a linear model answers in ~0.2 ms, a forest in a few ms.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Uploads are the client's network: from a millisecond to past the default 30 s body timeout.
UPLOAD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
PROTOCOLS = ("v1", "v2")
STATUS_CLASSES = ("2xx", "4xx", "5xx")


class ServerMetrics:
    """One registry per server, so tests can run several in one process."""

    def __init__(self) -> None:
        # Process-wide: the *_created series would only double the size of every scrape.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # RSS, CPU seconds, open fds
        # Updated by every request: plain numbers for the event loop (loop_metrics.py).
        self._requests = LoopCounter(
            names.REQUESTS,
            "Inference requests answered, by protocol and HTTP status class.",
            [names.LABEL_PROTOCOL, names.LABEL_STATUS_CLASS],
            [(protocol, status) for protocol in PROTOCOLS for status in STATUS_CLASSES],
        )
        self._answered = {p: self._requests.slot((p, "2xx")) for p in PROTOCOLS}
        self._latency = LoopHistogram(
            names.REQUEST_LATENCY,
            "Inference latency in seconds from the complete request body to the encoded "
            "response (queue, predict, encode), for answered and model-failed requests.",
            LATENCY_BUCKETS,
        )
        self._upload = LoopHistogram(
            names.UPLOAD_DURATION,
            "Seconds to receive an inference request's body, also when cut off by a 408 or 413.",
            UPLOAD_BUCKETS,
        )
        self.in_flight = LoopGauge(names.IN_FLIGHT, "Inference requests being processed.")
        self._batch_size = LoopHistogram(
            names.BATCH_SIZE, "Rows per predict() call.", BATCH_BUCKETS
        )
        self.registry.register(
            LoopSeries(
                self._requests, self._latency, self._upload, self.in_flight, self._batch_size
            )
        )
        self._model_errors = Counter(
            names.MODEL_ERRORS,
            "Inference requests the model failed (predict() raised or returned an invalid "
            "output). Client errors never count here.",
            registry=self.registry,
        )
        self._client_errors = Counter(
            names.CLIENT_ERRORS,
            "Inference requests rejected as the client's fault (4xx), by reason.",
            [names.LABEL_REASON],
            registry=self.registry,
        )
        self._model_info = Gauge(
            names.MODEL_INFO,
            "The configured model (always 1).",
            ["name", "version", "sha256", "format"],
            registry=self.registry,
        )
        self._ready = Gauge(
            names.MODEL_READY,
            "1 once the model is verified, loaded and warmed up.",
            registry=self.registry,
        )
        self._load_failure = Gauge(
            names.MODEL_LOAD_FAILURE,
            "1, labelled with the reason the model could not be loaded.",
            [names.LABEL_REASON],
            registry=self.registry,
        )
        self._runtime = Gauge(
            names.MODEL_RUNTIME,
            "1, labelled with what computes the model's predictions (sklearn or onnx).",
            [names.LABEL_RUNTIME],
            registry=self.registry,
        )
        self._feedback_requests = Counter(
            names.FEEDBACK_REQUESTS,
            "Feedback requests answered, by HTTP status class (never inference traffic).",
            [names.LABEL_STATUS_CLASS],
            registry=self.registry,
        )
        self._feedback_rows = Counter(
            names.FEEDBACK_ROWS,
            "Labelled feedback rows scored, by task (classification or regression).",
            [names.LABEL_TASK],
            registry=self.registry,
        )
        self._feedback_correct = Counter(
            names.FEEDBACK_CORRECT,
            "Feedback rows the model predicted correctly (classification).",
            registry=self.registry,
        )
        self._feedback_error = Counter(
            names.FEEDBACK_ABSOLUTE_ERROR,
            "Sum of the absolute errors of feedback rows (regression).",
            registry=self.registry,
        )

    def describe_model(self, *, name: str, version: str, sha256: str, fmt: str) -> None:
        self._model_info.labels(name, version, sha256[:12], fmt).set(1)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def set_runtime(self, runtime: str) -> None:
        self._runtime.labels(runtime).set(1)

    def set_load_failure(self, cause: str) -> None:
        self._load_failure.labels(cause).set(1)

    def observe_batch(self, rows: int) -> None:
        self._batch_size.observe(rows)

    def observe_upload(self, seconds: float) -> None:
        self._upload.observe(seconds)

    def observe_request(
        self, protocol: str, seconds: float, error: ServingError | None = None
    ) -> None:
        if error is None:
            self._requests.inc_slot(self._answered[protocol])
            self._latency.observe(seconds)
            return
        self._requests.inc((protocol, f"{error.status // 100}xx"))
        if isinstance(error, ClientError):
            self._client_errors.labels(error.reason).inc()
            return
        if isinstance(error, ModelError):
            self._model_errors.inc()
            self._latency.observe(seconds)

    def observe_feedback(self, score: Score | None, error: ServingError | None = None) -> None:
        status = 200 if error is None else error.status
        self._feedback_requests.labels(f"{status // 100}xx").inc()
        if score is None:
            return
        self._feedback_rows.labels(score.task).inc(score.rows)
        if score.task == names.TASK_CLASSIFICATION:
            self._feedback_correct.inc(score.correct)
        else:
            self._feedback_error.inc(score.absolute_error)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
