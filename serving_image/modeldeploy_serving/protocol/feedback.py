"""Feedback bodies: an infer (v2) or predict (v1) body, parsed by the same code, plus `labels`.

`labels` is a JSON array with one true label per row, in row order: numbers for a regressor, the
class values for a classifier (numbers, strings or booleans, like its predictions). Everything
else in the body means what it means for infer; requested outputs are ignored (the score always
uses `predict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ..errors import InvalidInput
from ..feedback import LabelKind, Target
from ..signature import ModelSignature
from . import body, v1, v2

LABELS: Final = "labels"
_JSON_KIND: Final = {"number": "numbers", "string": "strings", "boolean": "true or false"}


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    id: str | None
    rows: np.ndarray
    labels: np.ndarray  # float64 for numbers, object for strings and booleans


def parse_v2(
    raw: bytes, signature: ModelSignature, want: Target, *, max_rows: int
) -> FeedbackRequest:
    request = body.decode(raw)
    labels = parse_labels(request.get(LABELS), want)
    parsed = v2.infer_request(request, signature, max_rows=max_rows)
    check_length(labels, len(parsed.rows))
    return FeedbackRequest(parsed.id, parsed.rows, labels)


def parse_v1(
    raw: bytes, signature: ModelSignature, want: Target, *, max_rows: int
) -> FeedbackRequest:
    request = body.decode(raw)
    labels = parse_labels(request.get(LABELS), want)
    rows = v1.predict_rows(request, signature, max_rows=max_rows)
    check_length(labels, len(rows))
    return FeedbackRequest(None, rows, labels)


def parse_labels(value: Any, want: Target) -> np.ndarray:
    """The JSON `labels` array, checked against the model's kind of prediction (400 on a misfit)."""
    if value is None:
        raise InvalidInput(f'{LABELS}: required; one true label per row, e.g. "{LABELS}": [0, 2]')
    if not isinstance(value, list):
        raise InvalidInput(f"{LABELS}: expected an array, got {body.json_type(value)}")
    for index, label in enumerate(value):
        if _kind(label) != want.kind:
            what = "classes are" if want.task == "classification" else "targets are"
            raise InvalidInput(
                f"{LABELS}[{index}]: expected {_JSON_KIND[want.kind]} (this model's {what} "
                f"{_JSON_KIND[want.kind]}), got {body.json_type(label)}"
            )
    if want.kind == "number":
        return np.asarray(value, dtype=np.float64)
    return np.asarray(value, dtype=object)


def check_length(labels: np.ndarray, rows: int) -> None:
    if len(labels) != rows:
        raise InvalidInput(f"{LABELS}: {len(labels)} labels for {rows} rows; send one per row")


def _kind(value: Any) -> LabelKind | None:
    if isinstance(value, bool):  # before int: True is an int in Python, not in JSON
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None
