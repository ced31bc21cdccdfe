"""Inputs by column name -> the model's batch array, or a 4xx naming the column.

Three shapes arrive here: records (v1 `instances` as objects keyed by column), columns (v1
`inputs` as an object of arrays, v2 one tensor per column) and positional rows of mixed values.
Each becomes one list of values per signature column, checked against the column's kind, then
the batch: float64 (n, k) for a numeric model, object (n, k) for a DataFrame model (see
signature.py). A value the model would choke on is refused here, so predict() never fails on
the client's account: a wrong type, null where the model cannot take it, a category outside a
closed set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput, PayloadTooLarge
from ..signature import Column, ModelSignature
from .body import json_type

_NAN = float("nan")
_INFINITIES = (float("inf"), float("-inf"))
_NONE = type(None)
_NUMBERS = frozenset({int, float, _NONE})
_STRINGS = frozenset({str, _NONE})
# The message's field for column i: built only when a value is refused.
FieldOf = Callable[[int], str]


def require_columns(signature: ModelSignature, field: str) -> None:
    if not signature.columns:
        raise InvalidInput(
            f"{field}: this model was fitted without column names; send rows of "
            f"{signature.n_features} numbers"
        )


def from_records(
    records: Any, signature: ModelSignature, *, field: str, max_rows: int
) -> np.ndarray:
    """[{"city": "paris", "age": 31}, ...] -> the batch."""
    require_columns(signature, field)
    rows = _batch_list(records, field, max_rows)
    names = signature.column_names
    known = signature.column_index.keys()
    values: list[list[Any]] = [[] for _ in names]
    for index, record in enumerate(rows):
        if not isinstance(record, dict):
            raise InvalidInput(
                f"{field}[{index}]: expected an object keyed by column, got {json_type(record)}"
            )
        if not record.keys() <= known:
            unknown = sorted(record.keys() - known)[0]
            raise InvalidInput(
                f"{field}[{index}]: unknown column {unknown!r}; columns are {_listed(names)}"
            )
        for slot, column in zip(values, signature.columns, strict=True):
            if column.name in record:
                slot.append(record[column.name])
            elif column.nullable:
                slot.append(None)
            else:
                raise InvalidInput(f"{field}[{index}]: column {column.name!r} is missing")
    return assemble(values, signature, lambda i: f"{field}[*].{names[i]}")


def from_columns(
    columns: Mapping[str, Any], signature: ModelSignature, *, field: str, max_rows: int
) -> np.ndarray:
    """{"city": ["paris", ...], "age": [31, ...]} -> the batch."""
    require_columns(signature, field)
    if columns.keys() != signature.column_index.keys():  # else: every column, none unknown
        columns = _completed(columns, signature, field)
    values = [columns[name] for name in signature.column_names]
    return from_column_lists(values, signature, field=field, max_rows=max_rows)


def from_column_lists(
    values: Sequence[Any], signature: ModelSignature, *, field: str, max_rows: int
) -> np.ndarray:
    """One array of values per column, in the signature's order -> the batch."""
    names = signature.column_names
    if set(map(type, values)) != {list}:
        for name, column_values in zip(names, values, strict=True):
            if not isinstance(column_values, list):
                raise InvalidInput(
                    f"{field}.{name}: expected an array of values, got {json_type(column_values)}"
                )
    if len(set(map(len, values))) > 1:
        counts = ", ".join(f"{n}: {len(v)}" for n, v in zip(names, values, strict=True))
        raise InvalidInput(f"{field}: columns have different lengths (ragged): {counts}")
    _check_count(len(values[0]), field, max_rows)
    return assemble(values, signature, lambda i: f"{field}.{names[i]}")


def _completed(
    columns: Mapping[str, Any], signature: ModelSignature, field: str
) -> Mapping[str, Any]:
    """Columns that are not exactly the signature's: a 400 for an unknown or a required one
    left out; a nullable one left out is missing in every row."""
    names = signature.column_names
    unknown = sorted(columns.keys() - set(names))
    if unknown:
        raise InvalidInput(f"{field}: unknown column {unknown[0]!r}; columns are {_listed(names)}")
    required = [c.name for c in signature.columns if c.name not in columns and not c.nullable]
    if required:
        raise InvalidInput(f"{field}: column {required[0]!r} is missing")
    if not columns:
        raise InvalidInput(f"{field}: no columns; columns are {_listed(names)}")
    length = next(len(v) if isinstance(v, list) else 0 for v in columns.values())
    return {name: columns[name] if name in columns else [None] * length for name in names}


def from_rows(rows: Any, signature: ModelSignature, *, field: str, max_rows: int) -> np.ndarray:
    """[["paris", 31], ...]: mixed values by position, for a model with string columns."""
    batch = _batch_list(rows, field, max_rows)
    width = len(signature.columns)
    values: list[list[Any]] = [[] for _ in signature.columns]
    for index, row in enumerate(batch):
        if not isinstance(row, list):
            raise InvalidInput(
                f"{field}[{index}]: expected a row of {width} values or an object, "
                f"got {json_type(row)}"
            )
        if len(row) != width:
            raise InvalidInput(f"{field}[{index}]: expected {width} values, got {len(row)}")
        for slot, value in zip(values, row, strict=True):
            slot.append(value)
    return assemble(values, signature, lambda i: f"{field}[*][{i}]")


def from_numbers(array: np.ndarray, signature: ModelSignature) -> np.ndarray:
    """A checked numeric (n, k) array -> the batch (object for a DataFrame model)."""
    if not signature.frame:
        return array
    strings = [column.name for column in signature.columns if column.kind == "string"]
    if strings:
        raise InvalidInput(
            f"inputs: this model has string columns ({_listed(strings)}); send one tensor per "
            'column (BYTES for strings) or parameters.content_type "pd"'
        )
    columns = signature.columns
    for index, column in enumerate(columns):
        _check_numbers(
            array[:, index].tolist(), column, index, lambda i: f"column {columns[i].name!r}"
        )
    return array.astype(object)


def assemble(values: Sequence[list[Any]], signature: ModelSignature, field: FieldOf) -> np.ndarray:
    """One list per column (equal lengths) -> the batch, each value checked against its column."""
    checked = [
        _check_strings(column_values, column, index, field)
        if column.kind == "string"
        else _check_numbers(column_values, column, index, field)
        for index, (column_values, column) in enumerate(zip(values, signature.columns, strict=True))
    ]
    if not signature.frame:
        return np.array(checked, dtype=np.float64).T.copy()
    batch = np.empty((len(checked[0]), len(checked)), dtype=object)
    batch.T[...] = checked  # one assignment, not one per column
    return batch


def _check_numbers(values: list[Any], column: Column, index: int, field: FieldOf) -> list[Any]:
    kinds = types_of(values)
    if not kinds <= _NUMBERS:
        found = next(json_type(v) for v in values if type(v) not in _NUMBERS)
        raise InvalidInput(f"{field(index)}: column {column.name!r} takes numbers, found {found}")
    result = values
    if _NONE in kinds:
        if not column.nullable:
            raise InvalidInput(
                f"{field(index)}: null in column {column.name!r}, which this model cannot take "
                "missing"
            )
        result = [_NAN if v is None else v for v in values]
    # `in` compares in C: only an infinite float equals infinity (a huge int does not).
    if _INFINITIES[0] in result or _INFINITIES[1] in result:
        raise InvalidInput(f"{field(index)}: a value in column {column.name!r} is out of range")
    if column.categories is not None:
        allowed = set(column.categories)
        for value in result:
            if value not in allowed and not (isinstance(value, float) and math.isnan(value)):
                raise InvalidInput(
                    f"{field(index)}: {value!r} is not a category of column {column.name!r} "
                    f"({_listed(column.categories)})"
                )
    # Python ints beyond a double's range would overflow silently later; refuse them here.
    if int in kinds and any(isinstance(v, int) and abs(v) > 2**53 for v in result):
        raise InvalidInput(f"{field(index)}: an integer in column {column.name!r} is out of range")
    return result


def _check_strings(values: list[Any], column: Column, index: int, field: FieldOf) -> list[Any]:
    kinds = types_of(values)
    if not kinds <= _STRINGS:
        found = next(json_type(v) for v in values if type(v) not in _STRINGS)
        raise InvalidInput(f"{field(index)}: column {column.name!r} takes strings, found {found}")
    if _NONE in kinds and not column.nullable:
        raise InvalidInput(
            f"{field(index)}: null in column {column.name!r}, which this model cannot take missing"
        )
    if column.categories is not None:
        allowed = set(column.categories)
        for value in values:
            if value is not None and value not in allowed:
                raise InvalidInput(
                    f"{field(index)}: {value[:50]!r} is not a category of column "
                    f"{column.name!r} ({_listed(column.categories)})"
                )
    return values


def types_of(values: list[Any]) -> set[type]:
    """The types of the values. One row is the common request, and set(map(...)) on one value
    costs as much as the rest of a column's checks."""
    return {type(values[0])} if len(values) == 1 else set(map(type, values))


def _batch_list(rows: Any, field: str, max_rows: int) -> list[Any]:
    if not isinstance(rows, list):
        raise InvalidInput(f"{field}: expected an array of rows, got {json_type(rows)}")
    _check_count(len(rows), field, max_rows)
    return rows


def _check_count(n_rows: int, field: str, max_rows: int) -> None:
    if n_rows == 0:
        raise InvalidInput(f"{field}: empty batch; send at least one row")
    if n_rows > max_rows:
        raise PayloadTooLarge(f"{field}: {n_rows} rows, limit is {max_rows} per request")


def _listed(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")
