"""Score labelled feedback rows against the served model's predictions. Pure: numpy in, numbers out.

What is scored follows the estimator: a classifier counts the rows it predicted correctly, a
regressor sums the absolute errors. Labels are checked against the kind of the model's
predictions (numbers, text or booleans, as its warm-up showed) before any predict() runs, so a
client sending text labels to a numeric model gets a 400 naming the label, never a wrong count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InvalidInput
from .signature import PREDICT, ModelSignature

Task = Literal["classification", "regression"]
LabelKind = Literal["number", "string", "boolean"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a feedback label must be for this model."""

    task: Task
    kind: LabelKind


@dataclass(frozen=True, slots=True)
class Score:
    task: Task
    rows: int
    correct: int = 0  # classification
    absolute_error: float = 0.0  # regression

    def summary(self) -> dict[str, Any]:
        """The batch's answer: rows and accuracy (classification) or MAE (regression)."""
        if self.task == "classification":
            accuracy = self.correct / self.rows if self.rows else None
            return {
                "task": self.task,
                "rows": self.rows,
                "correct": self.correct,
                "accuracy": accuracy,
            }
        mae = self.absolute_error / self.rows if self.rows else None
        return {
            "task": self.task,
            "rows": self.rows,
            "absolute_error": self.absolute_error,
            "mae": mae,
        }


def target(signature: ModelSignature) -> Target:
    """The labels this model's feedback takes; a 400 for a model feedback cannot score."""
    if signature.task is None:
        raise InvalidInput(
            "feedback: this model is neither a classifier nor a regressor; it cannot be scored"
        )
    spec = next(spec for spec in signature.outputs if spec.name == PREDICT)
    if spec.row_shape:
        raise InvalidInput(
            f"feedback: the model predicts {list(spec.row_shape)} values per row; "
            "feedback scores models with one prediction per row"
        )
    if signature.task == "regression":
        return Target("regression", "number")
    kind = spec.dtype.kind
    label: LabelKind = "boolean" if kind == "b" else "number" if kind in "iuf" else "string"
    return Target("classification", label)


def score(predictions: np.ndarray, labels: np.ndarray, want: Target) -> Score:
    """Correct rows, or the sum of absolute errors, of one batch."""
    predicted = predictions.reshape(len(predictions))
    if want.task == "regression":
        error = np.abs(predicted.astype(np.float64) - labels).sum()
        return Score("regression", len(labels), absolute_error=float(error))
    if want.kind == "number":
        correct = int(np.count_nonzero(predicted.astype(np.float64) == labels))
    else:
        correct = sum(p == t for p, t in zip(_plain(predicted), labels.tolist(), strict=True))
    return Score("classification", len(labels), correct=correct)


def _plain(predicted: np.ndarray) -> Sequence[Any]:
    """Text classes as str (numpy str_ and bytes compare unlike JSON strings otherwise)."""
    return [p.decode() if isinstance(p, bytes) else p for p in predicted.tolist()]
