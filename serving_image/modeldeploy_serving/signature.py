"""What a loaded model accepts and returns, in plain numpy terms.

The model module fills this in from the estimator; the protocol module reads it to validate
requests and describe outputs. Neither needs to know the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


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

    @property
    def default_output(self) -> str:
        return self.outputs[0].name

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)
