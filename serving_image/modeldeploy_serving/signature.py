"""What a loaded model accepts and returns, in plain numpy terms.

The model module fills this in from the estimator (and an optional signature file); the protocol
module reads it to validate requests and describe outputs. Neither needs to know the other.

A batch of rows travels from protocol to model as one 2-D numpy array, so the predict queue can
stack and slice it without knowing what it holds: float64 (n, n_features) for a numeric model
(`frame` false, today's path, no pandas), object (n, n_columns) holding str / float / None in
column order for a model that takes a DataFrame (`frame` true).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
RUNTIME_SKLEARN = "sklearn"
RUNTIME_ONNX = "onnx"
ColumnKind = Literal["number", "string"]


@dataclass(frozen=True, slots=True)
class Column:
    """One named input column, as the estimator was fitted on it."""

    name: str
    kind: ColumnKind
    # JSON null is accepted (as NaN or None) only where the estimator was seen to handle it.
    nullable: bool = False
    # A closed set (an encoder that errors on unknown values): anything else is a 400, not a
    # predict() failure a client could use to trigger a rollback. None: any value of the kind.
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    dtype: np.dtype[np.generic]
    # Trailing dimensions of one row's output: () for one label per row, (3,) for 3 classes.
    row_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelSignature:
    n_features: int
    # True when the estimator handles missing values (NaN) itself, e.g. HistGradientBoosting.
    allow_nan: bool
    # The first output is the default answer; the others are returned when asked for.
    outputs: tuple[OutputSpec, ...]
    # Named columns, in the order the batch holds them; () when the model only knows positions.
    columns: tuple[Column, ...] = ()
    # True when predict() needs a DataFrame (text columns, or a ColumnTransformer by name).
    frame: bool = False
    # What computes predictions: RUNTIME_SKLEARN or RUNTIME_ONNX.
    runtime: str = RUNTIME_SKLEARN
    # What feedback scores (accuracy or absolute error); None: neither, feedback is refused.
    task: Literal["classification", "regression"] | None = None

    # Derived from the fields above once, not per request (the decoders read them every time).
    default_output: str = field(init=False, repr=False, compare=False)
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    column_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # Each column's name -> its position in the batch.
    column_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(column.name for column in self.columns)
        derived = {
            "default_output": self.outputs[0].name,
            "output_names": tuple(spec.name for spec in self.outputs),
            "column_names": names,
            "column_index": {name: index for index, name in enumerate(names)},
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here
