"""Decoded JSON lists -> a validated 2-D numpy array of rows, or a 4xx naming the field.

NaN policy: JSON has no NaN or Infinity (the decoder rejects those literals and numbers that
overflow a double). `null` means "missing" and becomes NaN only for a model that declares it
handles missing values (scikit-learn's allow_nan tag, e.g. HistGradientBoosting); otherwise it
is a 400. FP32 values beyond the float32 range are a 400, never a silent infinity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput, PayloadTooLarge
from .body import json_type

# Datatypes a request may declare, and the numpy type its values are parsed into.
INPUT_DATATYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
}
_NUMBERS = frozenset({int, float})
_INTEGERS = frozenset({int})
_NONE = type(None)


def to_array(values: Any, *, field: str, datatype: str, allow_missing: bool) -> np.ndarray:
    """Nested lists of numbers (at most 2 levels) -> an array of the datatype's numpy type."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field}: expected an array of numbers, got {json_type(values)}")
    target = INPUT_DATATYPES[datatype]
    is_float = target in (np.float32, np.float64)
    kinds = _leaf_types(values, field)
    missing = _NONE in kinds
    allowed = _NUMBERS if is_float else _INTEGERS
    if not kinds <= allowed | {_NONE}:
        raise InvalidInput(_wrong_kind_message(field, datatype, kinds - allowed - {_NONE}))
    if missing and not (is_float and allow_missing):
        why = "this model does not accept missing values" if is_float else f"{datatype} has no NaN"
        raise InvalidInput(f"{field}: null is not a number ({why})")
    try:
        # FP32 is parsed as float64 first so out-of-range values are caught, not turned into inf.
        array = np.array(values, dtype=np.float64 if is_float else target)
    except ValueError:
        raise InvalidInput(f"{field}: rows have different lengths (ragged array)") from None
    except OverflowError:
        raise InvalidInput(f"{field}: a value is out of range for {datatype}") from None
    if target is np.float32:
        array = _to_float32(array, field)
    return array


def check_rows(array: np.ndarray, *, field: str, n_features: int, max_rows: int) -> np.ndarray:
    """The array is a non-empty batch of rows with exactly n_features columns."""
    if array.ndim >= 1 and array.shape[0] == 0:
        raise InvalidInput(f"{field}: empty batch; send at least one row")
    if array.ndim != 2:
        raise InvalidInput(
            f"{field}: expected rows of {n_features} numbers, shape [n, {n_features}]; "
            f"got {array.ndim} dimension(s)"
        )
    n_rows, width = array.shape
    if width != n_features:
        raise InvalidInput(f"{field}: expected {n_features} features per row, got {width}")
    if n_rows > max_rows:
        raise PayloadTooLarge(f"{field}: {n_rows} rows, limit is {max_rows} per request")
    return array


def _leaf_types(values: list[Any], field: str) -> set[type]:
    """The Python types of the scalars, checking the nesting is a rectangular 1-D or 2-D list."""
    kinds = set(map(type, values))
    if list not in kinds:
        return kinds
    if kinds != {list}:
        raise InvalidInput(f"{field}: mixes numbers and arrays at the same level")
    leaves: set[type] = set()
    for row in values:
        leaves.update(map(type, row))
    if list in leaves:
        raise InvalidInput(f"{field}: nested more than 2 levels deep; expected rows of numbers")
    return leaves


def _wrong_kind_message(field: str, datatype: str, wrong: set[type]) -> str:
    if str in wrong:
        found = "strings"
    elif bool in wrong:
        found = "true/false"
    elif dict in wrong:
        found = "objects"
    else:
        found = "non-integer numbers"
    expected = "numbers" if datatype.startswith("FP") else "integers"
    return f"{field}: datatype {datatype} expects {expected}, found {found}"


def _to_float32(array: np.ndarray, field: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        narrowed = array.astype(np.float32)
    if np.isinf(narrowed).any():
        raise InvalidInput(f"{field}: a value is out of range for FP32")
    return narrowed
