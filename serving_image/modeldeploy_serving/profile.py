"""Build a reference profile from training data and the model. Pure computation (no files):
usable from a notebook as ``build_profile(frame, model)``; :mod:`profile_cli` is the command.

Columns are profiled in the order the model was fitted on (``feature_names_in_``), which is the
order the server's batch holds them; a column is categorical when its dtype is not numeric. The
prediction distribution is the class frequencies of a classifier (every class, plus "other"),
or quantile bins of a regressor's output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .drift import (
    MAX_BINS,
    MAX_FEATURES,
    Binning,
    Profile,
    ProfileError,
    categorical_binning,
    numeric_binning,
    with_frequencies,
)

DEFAULT_BINS = 10
DEFAULT_TOP_K = 10


def build_profile(
    data: pd.DataFrame | np.ndarray,
    model: Any,
    *,
    target: str | None = None,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """The profile as a JSON-ready dict. ``target`` names a label column to leave out."""
    if not 2 <= bins <= MAX_BINS or not 1 <= top_k < MAX_BINS:
        raise ProfileError(f"bins must be 2..{MAX_BINS} and top_k 1..{MAX_BINS - 1}")
    frame = pd.DataFrame(data) if not isinstance(data, pd.DataFrame) else data
    if target is not None:
        frame = frame.drop(columns=[target])
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        missing = [str(c) for c in fitted if c not in frame.columns]
        if missing:
            raise ProfileError(f"training data lacks the model's columns: {', '.join(missing)}")
        frame = frame[list(fitted)]
    if not 0 < frame.shape[1] <= MAX_FEATURES or len(frame) == 0:
        raise ProfileError(f"need rows and 1 to {MAX_FEATURES} feature columns")
    features = tuple(_feature(str(c), frame[c], bins, top_k) for c in frame.columns)
    model_input = frame if fitted is not None else frame.to_numpy()
    prediction = _prediction(np.asarray(model.predict(model_input)), model, bins)
    return Profile(features, prediction, len(frame)).to_json()


def _feature(name: str, column: pd.Series, bins: int, top_k: int) -> Binning:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return numeric_binning(name, column.to_numpy(dtype=np.float64, na_value=np.nan), bins)
    return categorical_binning(name, column.to_numpy(dtype=object), top_k)


def _prediction(predicted: np.ndarray, model: Any, bins: int) -> Binning:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return numeric_binning("prediction", predicted.reshape(len(predicted), -1)[:, 0], bins)
    if len(classes) >= MAX_BINS:
        raise ProfileError(f"{len(classes)} classes: at most {MAX_BINS - 1} are profiled")
    binning = categorical_binning("prediction", predicted, len(classes))
    # Every class gets its bin, also one the model never predicted on the training data.
    unseen = tuple(str(c) for c in classes if str(c) not in binning.categories)
    if not unseen:
        return binning
    full = Binning("prediction", "categorical", categories=binning.categories + unseen)
    return with_frequencies(full, predicted)
