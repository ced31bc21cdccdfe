"""The validation gate: score the loaded model on a labelled dataset before it turns ready.

The dataset (CSV with a header row, or Parquet, told apart by content) is verified by sha256
like the model, turned into a batch by the same column checks requests go through
(protocol/named.py), and predicted by the same `LoadedModel.run` that serves, so a DataFrame
pipeline or the compiled runtime is judged exactly as it will answer. A miss is a
`ValidationFailed` load error: the server stays live and never ready, and the sidecar carries
the one-line reason to the operator, which fails the canary before it receives traffic.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from .config import ValidationMetric
from .errors import InvalidInput, ServingError, ValidationFailed
from .parquet import ParquetUnreadable, read_parquet_isolated
from .protocol import named
from .signature import PREDICT, ModelSignature

if TYPE_CHECKING:
    from .model import LoadedModel

log = logging.getLogger(__name__)

# mae is an error (lower is better); the others are scores (higher is better).
LOWER_IS_BETTER: Final = frozenset({"mae"})
_CHUNK_ROWS: Final = 10_000  # predict in slices: a large dataset must not double peak memory
_PARQUET_MAGIC: Final = b"PAR1"
# The smallest Parquet file: the magic, a 4-byte footer length, the magic again.
_PARQUET_MIN_BYTES: Final = 12

Format = Literal["csv", "parquet", "cut-parquet"]


@dataclass(frozen=True, slots=True)
class Result:
    metric: ValidationMetric
    value: float
    threshold: float
    rows: int

    @property
    def passed(self) -> bool:
        return meets(self.metric, self.value, self.threshold)

    def __str__(self) -> str:
        if self.passed:
            relation = "meets"
        else:
            relation = "is above" if self.metric in LOWER_IS_BETTER else "is below"
        return (
            f"{self.metric} {self.value:.4g} {relation} the threshold {self.threshold:g} "
            f"on {self.rows} validation rows"
        )


def meets(metric: ValidationMetric, value: float, threshold: float) -> bool:
    """Whether `value` passes; NaN (e.g. r2 of a constant target) never does."""
    if math.isnan(value):
        return False
    return value <= threshold if metric in LOWER_IS_BETTER else value >= threshold


def score(metric: ValidationMetric, truth: np.ndarray, predicted: np.ndarray) -> float:
    """accuracy: share of exact matches; f1: macro average over the classes in either array
    (every class counts alike, so a constant predictor scores low); mae: mean absolute error;
    r2: coefficient of determination."""
    from sklearn import metrics

    if metric == "accuracy":
        return float(metrics.accuracy_score(truth, predicted))
    if metric == "f1":
        return float(metrics.f1_score(truth, predicted, average="macro", zero_division=0))
    if metric == "mae":
        return float(metrics.mean_absolute_error(truth, predicted))
    return float(metrics.r2_score(truth, predicted))


def check(
    model: LoadedModel,
    data: bytes,
    *,
    metric: ValidationMetric,
    threshold: float,
    label_column: str,
    source: str,
) -> Result:
    """Score the model on the dataset; raise ValidationFailed if it misses the threshold."""
    frame = _read(data, source)
    if label_column not in frame.columns:
        raise ValidationFailed(
            f"validation dataset {source}: no label column {label_column!r}; "
            f"columns are {', '.join(map(str, frame.columns[:20]))}"
        )
    if len(frame) == 0:
        raise ValidationFailed(f"validation dataset {source}: no rows")
    labels = frame[label_column]
    if labels.isna().any():  # NaN, None and pandas' NA alike (nullable Parquet columns)
        raise ValidationFailed(f"validation dataset {source}: a label is missing")
    features = frame.drop(columns=[label_column])
    try:
        batch = _batch(features, model.signature)
    except ServingError as exc:
        raise ValidationFailed(f"validation dataset {source}: {exc.message}") from None
    predicted = np.concatenate(
        [
            model.run(batch[i : i + _CHUNK_ROWS], (PREDICT,))[0]
            for i in range(0, len(batch), _CHUNK_ROWS)
        ]
    )
    truth, predicted = _comparable(labels.to_numpy(), predicted, source)
    result = Result(metric, score(metric, truth, predicted), threshold, len(truth))
    if not result.passed:
        raise ValidationFailed(str(result))
    return result


def dataset_format(data: bytes) -> Format:
    """What the dataset is, by its bytes: a fetched object-store dataset lands at a fixed path
    without an extension, and a URI's name may lie. Parquet begins and ends with PAR1; bytes
    that begin with it but end otherwise are a cut-off (or corrupt) Parquet file, which read as
    CSV would fail with a misleading message."""
    if not data.startswith(_PARQUET_MAGIC):
        return "csv"
    if len(data) >= _PARQUET_MIN_BYTES and data.endswith(_PARQUET_MAGIC):
        return "parquet"
    return "cut-parquet"


def _read(data: bytes, source: str) -> Any:
    kind = dataset_format(data)
    if kind == "cut-parquet":
        raise ValidationFailed(
            f"validation dataset {source} is not readable Parquet: it begins with PAR1 but "
            f"does not end with it ({len(data)} bytes; cut off or corrupt)"
        )
    if kind == "parquet":
        try:
            return read_parquet_isolated(data)
        except ParquetUnreadable as exc:  # which part failed, or that the decoder crashed
            said = str(exc)
        except Exception as exc:  # not expected from bytes in memory, but never a crash
            said = f"{type(exc).__name__}: {exc}"
        raise ValidationFailed(f"validation dataset {source} is not readable Parquet: {said}"[:300])
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # pandas raises many kinds: ParserError, UnicodeDecodeError, ...
        said = f"{type(exc).__name__}: {exc}"
    raise ValidationFailed(f"validation dataset {source} is neither Parquet nor CSV: {said}"[:300])


def _batch(features: Any, signature: ModelSignature) -> np.ndarray:
    """The request path's batch: named columns checked like a request's, else all columns
    (label dropped) by position."""
    rows = len(features)
    if not signature.columns:
        try:
            array: np.ndarray = features.to_numpy(dtype=np.float64, na_value=np.nan)
        except (ValueError, TypeError):
            raise InvalidInput(_not_numbers(features)) from None
        if array.shape[1] != signature.n_features:
            raise ValidationFailed(
                f"the dataset has {array.shape[1]} feature columns besides the label, "
                f"the model takes {signature.n_features}"
            )
        return array
    columns = {
        column.name: _values(features[column.name], column.kind == "string")
        for column in signature.columns
        if column.name in features.columns
    }
    return named.from_columns(columns, signature, field="columns", max_rows=max(rows, 1))


def _not_numbers(features: Any) -> str:
    """Which column of a dataset for a numbers-only model holds something else, with an example."""
    for name in features.columns:
        for value in features[name].dropna():
            try:
                float(value)
            except (ValueError, TypeError):
                kind = "text" if isinstance(value, str) else f"{type(value).__name__} values"
                return (
                    f"column {name} holds {kind} (e.g. {str(value)[:40]!r}), but the model was "
                    "fitted on numbers only, without column names"
                )
    return "a column holds values that are not numbers; the model takes numbers only"


def _values(series: Any, strings: bool) -> list[Any]:
    """Plain Python values as a JSON request would carry them: None for missing (NaN, None, and
    pandas' NA of nullable Int64/string columns, which Parquet written by pandas keeps)."""
    values: Sequence[Any] = series.astype(object).where(series.notna(), None).tolist()
    if strings:
        return [None if v is None else str(v) for v in values]
    return list(values)


def _comparable(truth: np.ndarray, predicted: np.ndarray, source: str) -> tuple[Any, Any]:
    """Labels and predictions of one kind: text when the model predicts text, else numbers."""
    if predicted.dtype.kind in "OUS":
        return truth.astype(str), predicted.astype(str)
    try:
        return truth.astype(np.float64), predicted.astype(np.float64)
    except ValueError:
        raise ValidationFailed(
            f"validation dataset {source}: labels are text but the model predicts numbers"
        ) from None
