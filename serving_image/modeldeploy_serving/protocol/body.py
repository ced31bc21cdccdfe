"""JSON bodies in and out, with errors that say what was expected."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidInput, MalformedJSON, ServingError


def decode(body: bytes) -> dict[str, Any]:
    """A JSON object. orjson is strict RFC 8259: NaN/Infinity literals and bad UTF-8 are errors."""
    if not body:
        raise MalformedJSON("request body is empty; expected a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"request body: expected a JSON object, got {json_type(value)}")
    return value


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_error(error: ServingError, request_id: str | None = None) -> bytes:
    if request_id is None:
        return orjson.dumps({"error": error.message, "reason": error.reason})
    return orjson.dumps({"error": error.message, "reason": error.reason, "request_id": request_id})


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
