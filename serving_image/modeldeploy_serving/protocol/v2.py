"""Open Inference Protocol v2 (KServe v2 / Triton / MLServer REST), JSON tensors.

Inputs: one numeric tensor of shape [n, n_features] with row-major `data` (flat or as nested
rows); or, for a model with named columns, one tensor per column named after it (BYTES for
strings, FP32/FP64/INT32/INT64 for numbers, shape [n] or [n, 1]), which is also what
`parameters: {"content_type": "pd"}` (MLServer's pandas codec) announces.
Outputs: `predict` by default; `predict_proba` when asked for by name in `outputs` or with
`parameters: {"probabilities": true}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput, InvalidOutput
from ..signature import PREDICT, PREDICT_PROBA, ModelSignature
from . import body, named, tensors

INPUT_NAME = "input-0"


class InferRequest:
    """A parsed infer body. A plain class, not a frozen dataclass: in the native build
    (setup.py) building a frozen dataclass cost 4.8k of a forest request's 126k instructions.
    Read it, never change it."""

    __slots__ = ("id", "outputs", "rows")

    def __init__(self, id: str | None, rows: np.ndarray, outputs: tuple[str, ...]) -> None:
        self.id, self.rows, self.outputs = id, rows, outputs


def parse_infer(raw: bytes, signature: ModelSignature, *, max_rows: int) -> InferRequest:
    return infer_request(body.decode(raw), signature, max_rows=max_rows)


def infer_request(
    request: dict[str, Any], signature: ModelSignature, *, max_rows: int
) -> InferRequest:
    """An infer body already decoded (feedback bodies are infer bodies plus labels)."""
    plain = plain_request(request, signature, max_rows=max_rows)
    return plain if plain is not None else general_request(request, signature, max_rows=max_rows)


def general_request(
    request: dict[str, Any], signature: ModelSignature, *, max_rows: int
) -> InferRequest:
    """Any infer body: accepted, or refused with a 4xx saying why."""
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"id: expected a string, got {body.json_type(request_id)}")
    inputs = request.get("inputs")
    if _by_column(request, inputs, signature):
        rows = _column_tensors(inputs, signature, max_rows)
    else:
        rows = named.from_numbers(_single_tensor(inputs, signature, max_rows), signature)
    outputs = _requested_outputs(request, signature)
    return InferRequest(id=request_id, rows=rows, outputs=outputs)


def plain_request(
    request: dict[str, Any], signature: ModelSignature, *, max_rows: int
) -> InferRequest | None:
    """The common valid request, checked cheaply: `inputs` (and a string `id`) only, one FP64
    tensor of shape [n, n_features] with a flat array of numbers, for a model that takes
    numbers by position. None for anything else, which the general path accepts or refuses,
    saying why (tests/serving/test_answer_now.py holds both to the same answers)."""
    if signature.frame:
        return None
    request_id = request.get("id")
    if len(request) != (1 if request_id is None else 2) or (
        request_id is not None and type(request_id) is not str
    ):
        return None
    inputs = request.get("inputs")
    if type(inputs) is not list or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if type(tensor) is not dict or tensor.get("datatype") != "FP64":
        return None
    name = tensor.get("name")
    if type(name) is not str or name in signature.column_index:
        return None  # may be one column of a by-name model: the general path decides
    shape, data = tensor.get("shape"), tensor.get("data")
    if type(shape) is not list or len(shape) != 2 or type(data) is not list:
        return None
    n_rows, width = shape
    if type(n_rows) is not int or type(width) is not int:
        return None
    if width != signature.n_features or not 0 < n_rows <= max_rows or len(data) != n_rows * width:
        return None
    for value in data:  # not bool (an int subclass), None, str or list: numpy would take them
        if type(value) is not float and type(value) is not int:
            return None
    try:  # fromiter: 1.5k fewer instructions than np.array for 20 numbers
        rows = np.fromiter(data, np.float64, len(data)).reshape(n_rows, width)
    except (ValueError, OverflowError):
        return None
    return InferRequest(request_id, rows, (signature.default_output,))


def _by_column(request: dict[str, Any], inputs: Any, signature: ModelSignature) -> bool:
    parameters = request.get("parameters")
    if isinstance(parameters, dict) and parameters.get("content_type") == "pd":
        return True
    if not isinstance(inputs, list) or not signature.columns:
        return False
    if len(inputs) > 1:
        return True
    first = inputs[0] if inputs else None
    return (
        isinstance(first, dict)
        and first.get("name") in signature.column_names
        and (len(signature.columns) > 1 or first.get("datatype") == "BYTES")
    )


def _single_tensor(inputs: Any, signature: ModelSignature, max_rows: int) -> np.ndarray:
    tensor = _single_input(inputs)
    shape = _shape(tensor.get("shape"), "inputs[0].shape")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in tensors.INPUT_DATATYPES:
        allowed = ", ".join(tensors.INPUT_DATATYPES)
        raise InvalidInput(f"inputs[0].datatype: expected one of {allowed}, got {datatype!r}")
    if "data" not in tensor:
        raise InvalidInput("inputs[0].data: required")
    array = tensors.to_array(
        tensor["data"], field="inputs[0].data", datatype=datatype, allow_missing=signature.allow_nan
    )
    if array.size != math.prod(shape):
        raise InvalidInput(
            f"inputs[0]: shape {list(shape)} needs {math.prod(shape)} values, data has {array.size}"
        )
    return tensors.check_rows(
        array.reshape(shape),
        field="inputs[0].shape",
        n_features=signature.n_features,
        max_rows=max_rows,
    )


def _column_tensors(inputs: Any, signature: ModelSignature, max_rows: int) -> np.ndarray:
    """One tensor per column -> the batch (named.from_column_lists checks lengths and values;
    from_columns, when some are left out, whether they may be)."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"inputs: expected an array of tensors, got {body.json_type(inputs)}")
    named.require_columns(signature, "inputs")
    positions, columns = signature.column_index, signature.columns
    values: list[list[Any] | None] = [None] * len(columns)  # in the signature's column order
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"inputs[{index}]: expected an object, got {body.json_type(tensor)}")
        name = tensor.get("name")
        position = positions.get(name) if isinstance(name, str) else None
        if position is None:
            raise InvalidInput(
                f"inputs[{index}].name: unknown column {name!r}; columns are "
                f"{', '.join(signature.column_names)}"[:300]
            )
        if values[position] is not None:
            raise InvalidInput(f"inputs[{index}].name: column {name!r} is sent twice")
        kind, data = columns[position].kind, tensor.get("data")
        if not _plain_column(tensor, kind, data):
            data = _column_data(tensor, f"inputs[{index}] ({name})", kind)
        values[position] = data
    if None in values:  # a column left out: from_columns says whether it may be
        sent = {c.name: v for c, v in zip(columns, values, strict=True) if v is not None}
        return named.from_columns(sent, signature, field="inputs", max_rows=max_rows)
    return named.from_column_lists(values, signature, field="inputs", max_rows=max_rows)


_COLUMN_DATATYPES = {"string": frozenset({"BYTES"}), "number": frozenset(tensors.INPUT_DATATYPES)}
_INTEGER_DATATYPES = frozenset(d for d in tensors.INPUT_DATATYPES if d.startswith("INT"))


def _plain_column(tensor: dict[str, Any], kind: str, data: Any) -> bool:
    """The common, valid case, checked cheaply: a flat `data` array of scalars, shape [n] or
    [n, 1], a datatype the column takes and no fraction in an integer tensor. Anything else
    goes through _column_data, which accepts or refuses it, saying why."""
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if type(data) is not list or type(datatype) is not str:
        return False
    n_rows = len(data)
    if datatype not in _COLUMN_DATATYPES[kind] or not (shape == [n_rows, 1] or shape == [n_rows]):
        return False
    if type(shape[0]) is not int or type(shape[-1]) is not int:  # 1.0 and true equal 1 too
        return False
    kinds = {type(data[0])} if n_rows == 1 else set(map(type, data))  # see named.types_of
    return list not in kinds and not (float in kinds and datatype in _INTEGER_DATATYPES)


def _column_data(tensor: dict[str, Any], where: str, kind: str) -> list[Any]:
    datatype = tensor.get("datatype")
    if kind == "string" and datatype != "BYTES":
        raise InvalidInput(f"{where}.datatype: a string column takes BYTES, got {datatype!r}")
    if kind == "number" and (
        not isinstance(datatype, str) or datatype not in tensors.INPUT_DATATYPES
    ):
        allowed = ", ".join(tensors.INPUT_DATATYPES)
        raise InvalidInput(
            f"{where}.datatype: a number column takes one of {allowed}, got {datatype!r}"
        )
    shape = _shape(tensor.get("shape"), f"{where}.shape")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise InvalidInput(f"{where}.shape: a column is [n] or [n, 1], got {list(shape)}")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"{where}.data: expected an array, got {body.json_type(data)}")
    if data and all(isinstance(value, list) for value in data):  # [[v], [v]] for shape [n, 1]
        if not all(len(value) == 1 for value in data):
            raise InvalidInput(f"{where}.data: nested rows must hold one value each")
        data = [value[0] for value in data]
    if len(data) != shape[0]:
        raise InvalidInput(
            f"{where}: shape {list(shape)} needs {shape[0]} values, data has {len(data)}"
        )
    if (
        isinstance(datatype, str)
        and datatype.startswith("INT")
        and any(type(v) is float for v in data)
    ):
        raise InvalidInput(f"{where}.data: datatype {datatype} expects integers, found a fraction")
    return data


def encode_infer(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    names: Sequence[str],
    results: Sequence[np.ndarray],
) -> bytes:
    """The answer to an infer request: `results` are the outputs `names` in that order."""
    response: dict[str, Any] = {"model_name": model_name}
    if model_version:
        response["model_version"] = model_version
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [_output_tensor(names[i], results[i]) for i in range(len(names))]
    try:
        return body.encode(response)
    except TypeError as exc:  # orjson.JSONEncodeError: an output of a type JSON cannot carry
        raise InvalidOutput(f"model output cannot be encoded as JSON: {exc}") from None


def encode_metadata(
    *, model_name: str, model_version: str, platform: str, signature: ModelSignature
) -> bytes:
    return body.encode(
        {
            "name": model_name,
            "versions": [model_version] if model_version else [],
            "platform": platform,
            "inputs": _metadata_inputs(signature),
            "outputs": [
                {
                    "name": spec.name,
                    "datatype": datatype_of(spec.dtype),
                    "shape": [-1, *spec.row_shape],
                }
                for spec in signature.outputs
            ],
            "parameters": {
                "runtime": signature.runtime,
                "content_type": "pd" if signature.frame else "np",
            },
        }
    )


def _metadata_inputs(signature: ModelSignature) -> list[dict[str, Any]]:
    """One tensor per named column (with its rules), else the one numeric tensor."""
    if not signature.columns:
        return [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, signature.n_features]}]
    described = []
    for column in signature.columns:
        entry: dict[str, Any] = {
            "name": column.name,
            "datatype": "BYTES" if column.kind == "string" else "FP64",
            "shape": [-1, 1],
            "parameters": {"nullable": column.nullable},
        }
        if column.categories is not None:
            entry["parameters"]["categories"] = list(column.categories)
        described.append(entry)
    return described


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 tensor datatype for a numpy dtype; labels that are text are BYTES. Remembered by
    the dtype's number (every answer asks; hashing the dtype itself costs more)."""
    known = _DATATYPES.get(dtype.num)
    if known is not None:
        return known
    if dtype.kind == "b":
        datatype = "BOOL"
    elif dtype.kind in "iuf":
        prefix = {"i": "INT", "u": "UINT", "f": "FP"}[dtype.kind]
        datatype = f"{prefix}{dtype.itemsize * 8}"
    else:
        datatype = "BYTES"
    _DATATYPES[dtype.num] = datatype
    return datatype


_DATATYPES: dict[int, str] = {}  # datatype_of's, by dtype number


def _single_input(inputs: Any) -> dict[str, Any]:
    if not isinstance(inputs, list):
        raise InvalidInput(f"inputs: expected an array with 1 tensor, got {body.json_type(inputs)}")
    if len(inputs) != 1:
        raise InvalidInput(f"inputs: expected exactly 1 tensor, got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidInput(f"inputs[0]: expected an object, got {body.json_type(tensor)}")
    return tensor


def _shape(shape: Any, field: str) -> tuple[int, ...]:
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(dim) is int and dim >= 0 for dim in shape)
    ):
        raise InvalidInput(
            f"{field}: expected an array of non-negative integers such as [1, n], got {shape!r}"[
                :200
            ]
        )
    return tuple(shape)


def _requested_outputs(request: dict[str, Any], signature: ModelSignature) -> tuple[str, ...]:
    available = signature.output_names
    parameters = request.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput(f"parameters: expected an object, got {body.json_type(parameters)}")
    probabilities = (parameters or {}).get("probabilities", False)
    if not isinstance(probabilities, bool):
        raise InvalidInput("parameters.probabilities: expected true or false")
    if probabilities and PREDICT_PROBA not in available:
        raise InvalidInput("parameters.probabilities: this model has no predict_proba")
    wanted = request.get("outputs")
    if wanted is None or wanted == []:
        return (PREDICT, PREDICT_PROBA) if probabilities else (signature.default_output,)
    if not isinstance(wanted, list):
        raise InvalidInput(f"outputs: expected an array, got {body.json_type(wanted)}")
    names: list[str] = []
    for index, output in enumerate(wanted):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in available:
            raise InvalidInput(
                f"outputs[{index}].name: expected one of {', '.join(available)}, got {name!r}"[:200]
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _output_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    dtype = array.dtype
    flat = array if array.ndim == 1 else array.ravel()  # a slice of a row's labels: as it is
    return {
        "name": name,
        "shape": array.shape,  # orjson writes a tuple as an array
        "datatype": datatype_of(dtype),
        # orjson writes float arrays natively (float32 as float32: shortest digits); labels
        # (integers or text) go through Python lists, cheaper for a few values.
        "data": flat if dtype.kind == "f" else flat.tolist(),
    }
