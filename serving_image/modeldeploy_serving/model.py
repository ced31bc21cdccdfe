"""Deserialize verified bytes into a scikit-learn estimator, warm it up, and predict.

Knows nothing of HTTP: it takes numpy arrays and returns numpy arrays. Errors are the shared
error classes so the server can answer them without guessing whose fault they were.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.utils import get_tags

from .config import ModelFormat
from .errors import (
    IncompatibleSklearnVersion,
    InvalidArtifact,
    InvalidOutput,
    PredictFailed,
    UntrustedTypes,
    WarmupFailed,
)
from .signature import PREDICT, PREDICT_PROBA, ModelSignature, OutputSpec

log = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"  # a skops artifact is a zip archive
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified, warmed-up estimator. run() is called from one thread at a time."""

    signature: ModelSignature
    saved_sklearn_version: str
    warmup_seconds: float  # one predict() on one row: a first guess of how slow the model is
    _methods: dict[str, Callable[[np.ndarray], Any]]

    def run(self, rows: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, ...]:
        """One array per requested output, each with len(rows) rows."""
        results = []
        for name in outputs:
            try:
                result = self._methods[name](rows)
            except Exception as exc:
                raise PredictFailed(_describe(f"{name}() raised", exc)) from exc
            results.append(_checked_output(name, result, len(rows)))
        return tuple(results)


def load(
    data: bytes,
    fmt: ModelFormat,
    *,
    trusted_types: Sequence[str] = (),
    allow_version_mismatch: bool = False,
) -> LoadedModel:
    """Deserialize, check the scikit-learn version, and warm up on one row of zeros."""
    estimator, saved_version = _deserialize(data, fmt, trusted_types, allow_version_mismatch)
    return _warm_up(estimator, saved_version)


def _deserialize(
    data: bytes, fmt: ModelFormat, trusted_types: Sequence[str], allow_version_mismatch: bool
) -> tuple[Any, str]:
    looks_like_zip = data.startswith(_ZIP_MAGIC)
    if fmt == "joblib" and looks_like_zip:
        raise InvalidArtifact("format is joblib but the artifact is a zip archive (skops?)")
    if fmt == "skops" and not looks_like_zip:
        raise InvalidArtifact("format is skops but the artifact is not a zip archive (joblib?)")
    with warnings.catch_warnings(record=True) as caught:
        # Unpickling an estimator from another scikit-learn version warns; we want to decide.
        warnings.simplefilter("always", InconsistentVersionWarning)
        estimator = _load_skops(data, trusted_types) if fmt == "skops" else _load_joblib(data)
    saved_version = _check_version(caught, allow_version_mismatch)
    return estimator, saved_version


def _load_joblib(data: bytes) -> Any:
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling raises anything: EOFError, ImportError, KeyError...
        raise InvalidArtifact(_describe("not a loadable joblib artifact:", exc)) from None


def _load_skops(data: bytes, trusted_types: Sequence[str]) -> Any:
    import skops.io  # imported on first use: it adds ~0.5 s to every joblib server's cold start

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a damaged zip, a missing schema, an unknown protocol
        raise InvalidArtifact(_describe("not a readable skops artifact:", exc)) from None
    refused = sorted(set(untrusted) - set(trusted_types))
    if refused:
        raise UntrustedTypes(
            f"skops artifact contains types outside the trusted set: {', '.join(refused)} "
            "(add each with --skops-trusted-type only if you trust who produced the artifact)"
        )
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as exc:
        raise InvalidArtifact(_describe("skops artifact failed to load:", exc)) from None


def _check_version(caught: list[warnings.WarningMessage], allow_mismatch: bool) -> str:
    """The scikit-learn version the artifact was saved with; refuse another minor version."""
    current: str = sklearn.__version__
    saved: set[str] = {
        str(w.message.original_sklearn_version)
        for w in caught
        if isinstance(w.message, InconsistentVersionWarning)
    }
    if not saved:
        return current
    versions = ", ".join(sorted(saved))
    mismatched_minor = any(_minor(version) != _minor(current) for version in saved)
    if mismatched_minor and not allow_mismatch:
        raise IncompatibleSklearnVersion(
            f"artifact was saved with scikit-learn {versions}, this server runs {current}; "
            "re-save the model with the server's version or pass --allow-sklearn-version-mismatch"
        )
    log.warning("artifact was saved with scikit-learn %s, this server runs %s", versions, current)
    return versions


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _warm_up(estimator: Any, saved_version: str) -> LoadedModel:
    if not callable(getattr(estimator, "predict", None)):
        raise InvalidArtifact(
            f"artifact holds a {type(estimator).__name__}, which has no predict()"
        )
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer) or n_features < 1:
        raise InvalidArtifact(
            f"{type(estimator).__name__} has no n_features_in_: not a fitted scikit-learn "
            "estimator, so inputs cannot be checked"
        )
    if hasattr(estimator, "feature_names_in_"):
        log.warning("model was fitted with feature names; inputs are taken by position")
    zeros = np.zeros((1, int(n_features)))
    methods: dict[str, Callable[[np.ndarray], Any]] = {PREDICT: estimator.predict}
    started = time.perf_counter()
    specs = [_warm_up_output(PREDICT, estimator.predict, zeros)]
    warmup_seconds = time.perf_counter() - started
    if hasattr(estimator, PREDICT_PROBA):
        try:
            specs.append(_warm_up_output(PREDICT_PROBA, estimator.predict_proba, zeros))
            methods[PREDICT_PROBA] = estimator.predict_proba
        except WarmupFailed as exc:
            log.warning("predict_proba is not served: %s", exc)
    signature = ModelSignature(
        n_features=int(n_features), allow_nan=_allows_nan(estimator), outputs=tuple(specs)
    )
    return LoadedModel(signature, saved_version, warmup_seconds, methods)


def _warm_up_output(
    name: str, method: Callable[[np.ndarray], Any], zeros: np.ndarray
) -> OutputSpec:
    try:
        result = _checked_output(name, method(zeros), 1)
    except InvalidOutput as exc:
        raise WarmupFailed(f"warm-up on one row of zeros: {exc}") from None
    except Exception as exc:
        raise WarmupFailed(
            _describe(f"warm-up on one row of zeros: {name}() raised", exc)
        ) from None
    return OutputSpec(name=name, dtype=result.dtype, row_shape=tuple(result.shape[1:]))


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # estimators outside scikit-learn may not implement tags
        return False


def _checked_output(name: str, result: Any, n_rows: int) -> np.ndarray:
    array = np.asarray(result)
    if array.ndim == 0 or array.shape[0] != n_rows:
        raise InvalidOutput(f"{name}() returned shape {array.shape} for {n_rows} rows")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InvalidOutput(f"{name}() returned NaN or infinity")
    return array


def _describe(prefix: str, exc: BaseException) -> str:
    text = f"{prefix} {type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
