"""The served model's lifecycle and the one way to run it.

Knows neither HTTP (routes call it) nor scikit-learn (it holds a LoadedModel and a queue).
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import numpy as np

from .batching import OnPredicted, PredictQueue, Queued
from .config import ServerConfig
from .drift_counter import DriftCounter
from .errors import ModelNotFound, ModelNotReady
from .metrics import ServerMetrics
from .signature import ModelSignature

if TYPE_CHECKING:  # the service runs whatever model it is given; it imports no estimator code
    from .model import LoadedModel

log = logging.getLogger(__name__)

CAUSE_LOADING = "Loading"  # equal to modeldeploy.names.REASON_MODEL_LOADING (a test checks)
CAUSE_DRAINING = "Draining"


class ModelState(enum.Enum):
    LOADING = "loading"  # fetching, verifying, deserializing or warming up
    READY = "ready"  # warmed up and serving; the only state in which readiness is true
    FAILED = "failed"  # the artifact cannot be served; stays so until restarted with another
    DRAINING = "draining"  # SIGTERM: still answers, but tells the load balancer to go elsewhere


class InferenceService:
    def __init__(self, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.name = config.model_name
        self.version = config.model_version
        self._config = config
        self._metrics = metrics
        self._state = ModelState.LOADING
        self._reason = "model is loading"
        self._cause = CAUSE_LOADING  # CamelCase, like a condition reason (a LoadError's cause)
        self._model: LoadedModel | None = None
        self._queue: PredictQueue | None = None

    @property
    def ready(self) -> bool:
        return self._state is ModelState.READY

    @property
    def runtime(self) -> str | None:
        """What predicts: "sklearn" or "onnx" (None until loaded)."""
        return self._model.signature.runtime if self._model is not None else None

    @property
    def not_ready_reason(self) -> str:
        return self._reason

    @property
    def not_ready_cause(self) -> str:
        return self._cause

    def model_loaded(self, model: LoadedModel) -> None:
        config = self._config
        self._model = model
        self._queue = PredictQueue(
            model.run,
            max_batch_rows=config.batch_max_rows if config.micro_batching else 1,
            max_wait_seconds=config.batch_max_wait_ms / 1000,
            max_queued_rows=config.max_queued_rows,
            inline_below_seconds=config.inline_predict_below_ms / 1000,
            initial_predict_seconds=model.warmup_seconds,
            on_batch=self._metrics.observe_batch,
            on_predicted=self._drift_observer(model),
        )
        self._queue.start()
        self._metrics.set_runtime(model.signature.runtime)
        if self._state is ModelState.LOADING:  # a SIGTERM during loading wins
            self._state = ModelState.READY
            self._metrics.set_ready(True)
            log.info("ready: serving %s on /v2/models/%s/infer", self.name, self.name)

    def _drift_observer(self, model: LoadedModel) -> OnPredicted | None:
        if model.profile is None:
            return None
        counter = DriftCounter(model.profile)
        self._metrics.registry.register(counter)
        return counter.observe

    def load_failed(self, cause: str, line: str) -> None:
        self._state = ModelState.FAILED
        self._reason = f"model failed to load: {line}"
        self._cause = cause
        self._metrics.set_load_failure(cause)

    @property
    def draining(self) -> bool:
        return self._state is ModelState.DRAINING

    def begin_drain(self) -> None:
        self._state = ModelState.DRAINING
        self._reason = "server is shutting down"
        self._cause = CAUSE_DRAINING
        self._metrics.set_ready(False)

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()

    def require_model(self, name: str, version: str | None = None) -> ModelSignature:
        """The signature of the served model; 404 for another name or version, 503 if not loaded."""
        if name != self.name:
            raise ModelNotFound(
                f"model {name!r} is not served here; this server serves {self.name!r}"
            )
        if version is not None and version != self.version:
            raise ModelNotFound(
                f"model {name!r} version {version!r} is not served; the version is {self.version!r}"
            )
        if self._model is None:
            raise ModelNotReady(f"model {name!r} is not ready: {self._reason}")
        return self._model.signature

    async def predict(
        self, rows: np.ndarray, outputs: tuple[str, ...], *, observed: bool = True
    ) -> tuple[np.ndarray, ...]:
        """Raises ModelError (the routes log it with the request id), Overloaded, Unavailable.
        `observed=False`: feedback rows, kept out of the drift counters."""
        assert self._queue is not None, "require_model() is called first"
        return await self._queue.submit(rows, outputs, observed=observed)

    def put(self, request: Queued) -> None:
        """predict() without awaiting: the request's `done` gets the results or the error (see
        PredictQueue.put). Raises Overloaded."""
        assert self._queue is not None, "require_model() is called first"
        self._queue.put(request)
