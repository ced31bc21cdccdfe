"""The v1 protocol (TensorFlow Serving / KServe v1 row format).

Request {"instances": [[f1, f2, ...], ...]} (rows by position), {"instances": [{"city": ...,
"age": ...}, ...]} (rows keyed by column) or {"inputs": {"city": [...], "age": [...]}} (columnar);
response {"predictions": [...]}: one prediction per row, from the model's default output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput, InvalidOutput
from ..signature import ModelSignature
from . import body, named, tensors


def parse_predict(raw: bytes, signature: ModelSignature, *, max_rows: int) -> np.ndarray:
    return predict_rows(body.decode(raw), signature, max_rows=max_rows)


def predict_rows(
    request: dict[str, Any], signature: ModelSignature, *, max_rows: int
) -> np.ndarray:
    """The rows of a predict body already decoded (feedback bodies add labels)."""
    field = "instances" if "instances" in request else "inputs"
    if field not in request:
        example = f'{{"instances": [[{signature.n_features} numbers], ...]}}'
        raise InvalidInput(f"instances: required; expected {example}")
    data = request[field]
    if isinstance(data, dict):
        return named.from_columns(data, signature, field=field, max_rows=max_rows)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return named.from_records(data, signature, field=field, max_rows=max_rows)
    if signature.frame:
        return named.from_rows(data, signature, field=field, max_rows=max_rows)
    array = tensors.to_array(
        data,
        field=field,
        datatype="FP64",
        allow_missing=signature.allow_nan,
    )
    return tensors.check_rows(
        array, field=field, n_features=signature.n_features, max_rows=max_rows
    )


def encode_predict(predictions: np.ndarray) -> bytes:
    # orjson writes numeric numpy arrays natively (C-contiguous only); text labels go via lists.
    numeric = predictions.dtype.kind in "biuf"
    data = np.ascontiguousarray(predictions) if numeric else predictions.tolist()
    try:
        return body.encode({"predictions": data})
    except TypeError as exc:
        raise InvalidOutput(f"model output cannot be encoded as JSON: {exc}") from None
