"""From a deserialized estimator to something servable: signature, warm-up, runtime.

1. The columns: named and typed from the estimator (or the signature file), see columns.py.
2. The warm-up: predict() on a real row (the file's example, else one synthesised from the
   columns), which also fixes each output's dtype and shape.
3. For a DataFrame model, one probe per column with the value missing: null is accepted where
   the model answered, and refused with a 400 elsewhere.
4. The runtime: unless told `sklearn`, convert to ONNX Runtime and keep it only if it agrees with
   scikit-learn on a parity sample (the example rows plus synthetic rows, see compiled.py).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from sklearn.base import is_classifier, is_regressor
from sklearn.utils import get_tags

from . import columns as columns_module
from .columns import Profile, SignatureFile
from .compiled import ConversionFailed, OnnxModel, candidates, foreign_part, parity_problem
from .errors import CompiledRuntimeFailed, InvalidArtifact, InvalidOutput, WarmupFailed
from .signature import (
    PREDICT,
    PREDICT_PROBA,
    RUNTIME_ONNX,
    RUNTIME_SKLEARN,
    Column,
    ModelSignature,
    OutputSpec,
)

log = logging.getLogger(__name__)

Runtime = Literal["auto", "sklearn", "onnx"]
Method = Callable[[np.ndarray], Any]
PARITY_ROWS = 256
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Prepared:
    signature: ModelSignature
    methods: dict[str, Method]
    warmup_seconds: float  # one predict() on one row with the chosen runtime
    compile_seconds: float  # conversion and parity check, 0 when not attempted


def prepare(estimator: Any, runtime: Runtime, signature_file: SignatureFile | None) -> Prepared:
    n_features = _n_features(estimator)
    profiles = columns_module.derive(estimator, signature_file)
    frame = columns_module.needs_frame(estimator, profiles)
    columns = tuple(profile.column for profile in profiles)
    methods = _sklearn_methods(estimator, columns, frame)
    example = _example_batch(profiles, n_features, signature_file, frame)
    specs = _warm_up_outputs(methods, example)
    methods = {name: method for name, method in methods.items() if name in specs}
    allow_nan = _allows_nan(estimator)
    if frame:
        columns = _probe_missing(methods, example[:1], columns)
    elif columns:
        columns = tuple(replace(column, nullable=allow_nan) for column in columns)
    signature = ModelSignature(
        n_features=n_features,
        allow_nan=allow_nan,
        outputs=tuple(specs.values()),
        columns=columns,
        frame=frame,
        task=_task(estimator),
    )
    started = time.perf_counter()
    warmup_seconds = _time_one(methods[PREDICT], example[:1])
    if runtime == "sklearn":
        log.info("runtime sklearn (chosen by configuration)")
        return Prepared(signature, methods, warmup_seconds, 0.0)
    profiles = tuple(replace(p, column=c) for p, c in zip(profiles, columns, strict=True))
    sample = _parity_sample(estimator, signature, profiles, example)
    compiled, reason = _compile(estimator, signature, methods, sample)
    compile_seconds = time.perf_counter() - started
    if compiled is None:
        if runtime == "onnx":
            raise CompiledRuntimeFailed(f"runtime onnx was required: {reason}"[: _MAX_MESSAGE * 2])
        log.warning(
            "runtime sklearn: the compiled runtime is not used (%.0f ms spent): %s",
            compile_seconds * 1000,
            reason,
        )
        return Prepared(signature, methods, warmup_seconds, compile_seconds)
    log.info(
        "runtime onnx: converted and checked against scikit-learn on %d rows in %.0f ms",
        len(sample),
        compile_seconds * 1000,
    )
    return Prepared(
        replace(signature, runtime=RUNTIME_ONNX),
        compiled,
        _time_one(compiled[PREDICT], example[:1]),
        compile_seconds,
    )


def checked_output(name: str, result: Any, n_rows: int) -> np.ndarray:
    array = np.asarray(result)
    if array.ndim == 0 or array.shape[0] != n_rows:
        raise InvalidOutput(f"{name}() returned shape {array.shape} for {n_rows} rows")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InvalidOutput(f"{name}() returned NaN or infinity")
    return array


def describe(prefix: str, exc: BaseException) -> str:
    text = f"{prefix} {type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


# --- steps ------------------------------------------------------------------------------------


def _task(estimator: Any) -> Literal["classification", "regression"] | None:
    """From the estimator's tags (a Pipeline answers for its last step)."""
    if is_classifier(estimator):
        return "classification"
    return "regression" if is_regressor(estimator) else None


def _n_features(estimator: Any) -> int:
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
    return int(n_features)


def _sklearn_methods(estimator: Any, columns: Sequence[Column], frame: bool) -> dict[str, Method]:
    names = [PREDICT, *([PREDICT_PROBA] if hasattr(estimator, PREDICT_PROBA) else [])]
    bound = {name: getattr(estimator, name) for name in names}
    if not frame:
        return bound
    to_frame = _frame_maker(columns)
    return {name: _composed(method, to_frame) for name, method in bound.items()}


def _composed(method: Method, to_frame: Callable[[np.ndarray], Any]) -> Method:
    return lambda rows: method(to_frame(rows))


def _frame_maker(columns: Sequence[Column]) -> Callable[[np.ndarray], Any]:
    import pandas as pd  # only DataFrame models pay for it

    layout = [(index, c.name, c.kind == "number") for index, c in enumerate(columns)]

    def to_frame(rows: np.ndarray) -> Any:
        return pd.DataFrame(
            {
                name: rows[:, index].astype(np.float64) if numeric else rows[:, index]
                for index, name, numeric in layout
            }
        )

    return to_frame


def _example_batch(
    profiles: Sequence[Profile],
    n_features: int,
    signature_file: SignatureFile | None,
    frame: bool,
) -> np.ndarray:
    """The signature file's example rows, else one synthesised row, as a batch."""
    rows: list[list[Any]] = []
    if signature_file is not None and signature_file.examples:
        for record in signature_file.examples:
            rows.append([record.get(p.column.name) for p in profiles])
    else:
        rows.append(columns_module.example_row(profiles, n_features))
    if frame:
        batch = np.empty((len(rows), len(profiles)), dtype=object)
        for index, row in enumerate(rows):
            batch[index, :] = [
                float("nan") if value is None and p.column.kind == "number" else value
                for value, p in zip(row, profiles, strict=True)
            ]
        return batch
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), n_features)
    except (TypeError, ValueError):
        raise WarmupFailed("the signature file's example rows are not numbers") from None


def _warm_up_outputs(methods: dict[str, Method], example: np.ndarray) -> dict[str, OutputSpec]:
    """predict() must answer the example; predict_proba() is served only if it does too."""
    what = f"warm-up on {len(example)} example row(s)"
    specs = {}
    for name, method in methods.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = checked_output(name, method(example), len(example))
        except InvalidOutput as exc:
            failure = WarmupFailed(f"{what}: {exc}")
        except Exception as exc:
            failure = WarmupFailed(describe(f"{what}: {name}() raised", exc))
        else:
            specs[name] = OutputSpec(name, result.dtype, tuple(result.shape[1:]))
            continue
        if name == PREDICT:
            raise failure
        log.warning("%s is not served: %s", name, failure)
    return specs


def _probe_missing(
    methods: dict[str, Method], row: np.ndarray, columns: tuple[Column, ...]
) -> tuple[Column, ...]:
    """Each column takes null only if every method answered a row with it missing."""
    probed = []
    for index, column in enumerate(columns):
        trial = row.copy()
        trial[0, index] = float("nan") if column.kind == "number" else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name, method in methods.items():
                    checked_output(name, method(trial), 1)
            nullable = True
        except Exception:  # the model cannot take it missing: null there will be a 400
            nullable = False
        probed.append(replace(column, nullable=nullable))
    return tuple(probed)


def _parity_sample(
    estimator: Any, signature: ModelSignature, profiles: Sequence[Profile], example: np.ndarray
) -> np.ndarray:
    rng = np.random.default_rng(0)
    if not profiles:
        profiles = columns_module.positional_profiles(
            estimator, signature.n_features, nullable=signature.allow_nan
        )
    values = [columns_module.random_values(p, rng, PARITY_ROWS) for p in profiles]
    if signature.frame:
        synthetic = np.empty((PARITY_ROWS, len(values)), dtype=object)
        for index, column_values in enumerate(values):
            synthetic[:, index] = column_values
        return np.concatenate([example, synthetic])
    numbers = np.array(values, dtype=np.float64).T
    edges = _threshold_rows(columns_module.tree_thresholds(estimator, signature.n_features), rng)
    return np.concatenate([example, numbers, *([edges] if edges is not None else [])])


def _threshold_rows(thresholds: list[np.ndarray], rng: np.random.Generator) -> np.ndarray | None:
    """Rows whose values sit on a split threshold, on the float32 values either side of it, or
    on the float64 values either side of it: scikit-learn casts those to float32 before it
    compares, which can move them across the split, and a graph must do the same."""
    if not thresholds or not any(len(t) for t in thresholds):
        return None
    rows = np.zeros((PARITY_ROWS, len(thresholds)))
    for feature, values in enumerate(thresholds):
        if not len(values):
            continue
        exact = rng.choice(values, PARITY_ROWS)
        picked = exact.astype(np.float32)
        choices = np.stack(
            [
                np.nextafter(picked, np.float32(-np.inf)),
                picked,
                np.nextafter(picked, np.float32(np.inf)),
                np.nextafter(exact, -np.inf),
                np.nextafter(exact, np.inf),
            ]
        )
        rows[:, feature] = choices[
            rng.integers(0, len(choices), PARITY_ROWS), np.arange(PARITY_ROWS)
        ]
    return rows


def _compile(
    estimator: Any, signature: ModelSignature, methods: dict[str, Method], sample: np.ndarray
) -> tuple[dict[str, Method] | None, str]:
    """The compiled methods, or None and every reason; see the module docstring."""
    foreign = foreign_part(estimator)
    if foreign is not None:
        return None, f"{foreign} is not a scikit-learn class; skl2onnx cannot convert it"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {
                name: checked_output(name, method(sample), len(sample))
                for name, method in methods.items()
            }
    except Exception as exc:
        return None, describe("the parity sample failed in scikit-learn:", exc)
    missing = _missing_rows(sample)
    specs = {spec.name: spec for spec in signature.outputs}
    reasons = []
    for candidate in candidates(
        estimator, signature.columns, signature.n_features, signature.frame, specs
    ):
        if isinstance(candidate, ConversionFailed):
            reasons.append(f"conversion failed: {candidate}")
            continue
        problem = _parity(candidate, expected, sample)
        if problem is None:
            log.info("runtime onnx: %s graph matches, missing values included", candidate.precision)
            return {name: candidate.method(name) for name in methods}, ""
        complete = ~missing
        if missing.any() and complete.any():
            # Trees send a missing value where scikit-learn's learned direction does not: keep
            # the graph for complete rows, hand batches with a missing value to scikit-learn.
            subset = {name: values[complete] for name, values in expected.items()}
            if _parity(candidate, subset, sample[complete]) is None:
                log.info(
                    "runtime onnx: %s graph matches on complete rows; rows with a missing value "
                    "go to scikit-learn (%s)",
                    candidate.precision,
                    problem,
                )
                return _routed(candidate, methods, signature.frame), ""
        reasons.append(f"{candidate.precision} graph: {problem}")
    return None, "; ".join(reasons)


def _parity(
    candidate: OnnxModel, expected: dict[str, np.ndarray], sample: np.ndarray
) -> str | None:
    try:
        actual = {name: candidate.method(name)(sample) for name in expected}
    except Exception as exc:
        return describe("failed on the parity sample:", exc)
    problem = parity_problem(expected, actual)
    return None if problem is None else f"parity miss: {problem}"


def _missing_rows(batch: np.ndarray) -> np.ndarray:
    """Per row: does it hold a missing value (NaN, or None in a string column)?"""
    if batch.dtype != object:
        return np.asarray(np.isnan(batch).any(axis=1))
    import pandas as pd

    return np.asarray(pd.isna(batch).any(axis=1))


def _routed(candidate: OnnxModel, methods: dict[str, Method], frame: bool) -> dict[str, Method]:
    def route(compiled: Method, fallback: Method) -> Method:
        if frame:
            return lambda rows: fallback(rows) if _missing_rows(rows).any() else compiled(rows)
        return lambda rows: fallback(rows) if np.isnan(rows).any() else compiled(rows)

    return {name: route(candidate.method(name), method) for name, method in methods.items()}


def _time_one(method: Method, row: np.ndarray) -> float:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method(row)
    return time.perf_counter() - started


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # estimators outside scikit-learn may not implement tags
        return False


__all__ = ["RUNTIME_SKLEARN", "Prepared", "Runtime", "checked_output", "describe", "prepare"]
