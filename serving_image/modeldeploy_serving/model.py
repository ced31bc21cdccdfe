"""Deserialize verified bytes into a scikit-learn estimator, prepare it, and predict.

Knows nothing of HTTP: it takes numpy arrays and returns numpy arrays. Errors are the shared
error classes so the server can answer them without guessing whose fault they were.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from .columns import parse_signature_file
from .config import ModelFormat
from .drift import Profile
from .errors import (
    IncompatibleSklearnVersion,
    InvalidArtifact,
    PredictFailed,
    UntrustedTypes,
)
from .prepare import Runtime, checked_output, describe, prepare
from .signature import ModelSignature

log = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"  # a skops artifact is a zip archive


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified, warmed-up estimator. run() is called from one thread at a time."""

    signature: ModelSignature
    saved_sklearn_version: str
    warmup_seconds: float  # one predict() on one row: a first guess of how slow the model is
    compile_seconds: float  # conversion to the compiled runtime and its parity check
    _methods: dict[str, Callable[[np.ndarray], Any]]
    profile: Profile | None = None  # the reference profile for drift counting, when configured

    def run(self, rows: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, ...]:
        """One array per requested output, each with len(rows) rows."""
        results = []
        for name in outputs:
            try:
                result = self._methods[name](rows)
            except Exception as exc:
                raise PredictFailed(describe(f"{name}() raised", exc)) from exc
            results.append(checked_output(name, result, len(rows)))
        return tuple(results)


def load(
    data: bytes,
    fmt: ModelFormat,
    *,
    trusted_types: Sequence[str] = (),
    allow_version_mismatch: bool = False,
    runtime: Runtime = "auto",
    signature_file: bytes | None = None,
) -> LoadedModel:
    """Deserialize, check the scikit-learn version, derive the signature, warm up on a real row
    and choose the runtime (see prepare.py)."""
    parsed = None if signature_file is None else parse_signature_file(signature_file)
    estimator, saved_version = _deserialize(data, fmt, trusted_types, allow_version_mismatch)
    prepared = prepare(estimator, runtime, parsed)
    return LoadedModel(
        prepared.signature,
        saved_version,
        prepared.warmup_seconds,
        prepared.compile_seconds,
        prepared.methods,
    )


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
    # Logged before unpickling, so the line is there even if the payload never returns.
    log.warning(
        "loading a joblib/pickle artifact: unpickling runs any code it contains, and its sha256 "
        "proves only that these are the bytes the spec named; save the model with skops "
        "(format: skops), which loads trusted types only (docs/security.md)"
    )
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling raises anything: EOFError, ImportError, KeyError...
        raise InvalidArtifact(describe("not a loadable joblib artifact:", exc)) from None


def _load_skops(data: bytes, trusted_types: Sequence[str]) -> Any:
    import skops.io  # imported on first use: it adds ~0.5 s to every joblib server's cold start

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a damaged zip, a missing schema, an unknown protocol
        raise InvalidArtifact(describe("not a readable skops artifact:", exc)) from None
    refused = sorted(set(untrusted) - set(trusted_types))
    if refused:
        raise UntrustedTypes(
            f"skops artifact contains types outside the trusted set: {', '.join(refused)} "
            "(add each with --skops-trusted-type only if you trust who produced the artifact)"
        )
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as exc:
        raise InvalidArtifact(describe("skops artifact failed to load:", exc)) from None


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
