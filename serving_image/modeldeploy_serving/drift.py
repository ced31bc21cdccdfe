"""The reference profile and the binning both sides of it share. Pure: numpy in, numpy out.

A profile (JSON, written by ``modeldeploy-profile``) holds, for each input column in the order
the server's batch holds them, a :class:`Binning` and the reference frequency of each bin, and
the same for the model's predictions. Numeric values fall into quantile bins (interior edges,
``searchsorted`` right: bin i holds edges[i-1] <= x < edges[i]; NaN falls into the top bin);
categorical values into one bin per top-k category plus a last "other" bin. Cardinality is
bounded by construction: at most ``MAX_FEATURES`` x (``MAX_BINS`` + 1) series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

PROFILE_VERSION: Final = 1
MAX_BINS: Final = 50
MAX_FEATURES: Final = 200
PREDICTION: Final = "__prediction__"  # the key of the prediction distribution in counts maps


class ProfileError(ValueError):
    """A profile document that cannot be used (the message says which part)."""


@dataclass(frozen=True, slots=True)
class Binning:
    """How values of one distribution map to bins, and the reference frequency of each bin."""

    name: str
    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...] = ()  # numeric: interior quantile edges, sorted, unique
    categories: tuple[str, ...] = ()  # categorical: top-k values as strings; "other" is last
    frequencies: tuple[float, ...] = ()  # reference share of each bin, sums to 1

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def assign(self, values: np.ndarray) -> np.ndarray:
        """The bin index of each value (vectorised)."""
        if self.kind == "numeric":
            numbers = np.asarray(values, dtype=np.float64)
            return np.searchsorted(np.asarray(self.edges), numbers, side="right")
        return CategoryIndex(self.categories).bins(values)

    def counts(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.assign(values), minlength=self.bins)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        out["edges" if self.kind == "numeric" else "categories"] = list(
            self.edges if self.kind == "numeric" else self.categories
        )
        out["frequencies"] = list(self.frequencies)
        return out


@dataclass(frozen=True, slots=True)
class Profile:
    features: tuple[Binning, ...]
    prediction: Binning | None
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "features": [f.to_json() for f in self.features],
            "prediction": None if self.prediction is None else self.prediction.to_json(),
        }


def numeric_binning(name: str, values: np.ndarray, bins: int) -> Binning:
    """Quantile edges of the finite values (ties merge bins, so a column may get fewer)."""
    numbers = np.asarray(values, dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        edges: tuple[float, ...] = ()
    else:
        qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = tuple(float(e) for e in np.unique(qs))
    draft = Binning(name, "numeric", edges=edges)
    return with_frequencies(draft, numbers)


def categorical_binning(name: str, values: np.ndarray, top_k: int) -> Binning:
    strings = np.asarray([str(v) for v in values], dtype=object)
    uniques, counts = np.unique(strings.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top_k]
    draft = Binning(name, "categorical", categories=tuple(str(uniques[i]) for i in order))
    return with_frequencies(draft, strings)


def parse_profile(document: Mapping[str, Any]) -> Profile:
    """Check a profile's JSON and build it; ProfileError names the first problem."""
    if document.get("version") != PROFILE_VERSION:
        raise ProfileError(f"version must be {PROFILE_VERSION}, got {document.get('version')!r}")
    features = document.get("features")
    if not isinstance(features, list) or not 0 < len(features) <= MAX_FEATURES:
        raise ProfileError(f"features must be a list of 1 to {MAX_FEATURES} binnings")
    parsed = tuple(_parse_binning(f, f"features[{i}]") for i, f in enumerate(features))
    raw_prediction = document.get("prediction")
    prediction = None if raw_prediction is None else _parse_binning(raw_prediction, "prediction")
    rows = document.get("rows", 0)
    return Profile(parsed, prediction, int(rows) if isinstance(rows, int) else 0)


def _parse_binning(raw: Any, where: str) -> Binning:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected an object")
    kind, name = raw.get("kind"), str(raw.get("name", where))
    try:
        if kind == "numeric":
            edges = tuple(float(e) for e in raw.get("edges", []))
            if list(edges) != sorted(set(edges)):
                raise ProfileError(f"{where}: edges must be sorted and unique")
            binning = Binning(name, "numeric", edges=edges)
        elif kind == "categorical":
            categories = tuple(str(c) for c in raw.get("categories", []))
            binning = Binning(name, "categorical", categories=categories)
        else:
            raise ProfileError(f"{where}: kind must be numeric or categorical, got {kind!r}")
        frequencies = tuple(float(f) for f in raw.get("frequencies", []))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"{where}: {exc}") from None
    if binning.bins > MAX_BINS + 1:
        raise ProfileError(f"{where}: {binning.bins} bins, at most {MAX_BINS + 1}")
    if len(frequencies) != binning.bins or any(not 0 <= f <= 1 for f in frequencies):
        raise ProfileError(f"{where}: frequencies must be {binning.bins} shares in [0, 1]")
    return Binning(name, binning.kind, binning.edges, binning.categories, frequencies)


def with_frequencies(draft: Binning, values: np.ndarray) -> Binning:
    counts = draft.counts(values)
    total = max(int(counts.sum()), 1)
    shares = tuple(round(float(c) / total, 6) for c in counts)
    return Binning(draft.name, draft.kind, draft.edges, draft.categories, shares)


class CategoryIndex:
    """Maps values to category bins: len(categories) ("other") for anything unlisted. Built
    once per binning (the sort), then one searchsorted per batch."""

    def __init__(self, categories: Sequence[str]) -> None:
        known = np.asarray(categories, dtype=str)
        self._order = np.argsort(known)
        self._sorted = known[self._order]
        self._other = len(categories)
        # Integer class labels (the usual predictions) skip the conversion to strings: the same
        # answer, since an integer's str() is the canonical form checked here.
        integers = [int(c) for c in categories if _canonical_int(c)]
        self._int_order: np.ndarray | None = None
        if integers and len(integers) == len(categories):
            order = np.argsort(integers)
            self._int_sorted = np.asarray(integers, dtype=np.int64)[order]
            self._int_order = order

    def bins(self, values: np.ndarray) -> np.ndarray:
        if not self._other:
            return np.full(len(values), 0, dtype=np.intp)
        values = np.asarray(values)
        if self._int_order is not None and values.dtype.kind in "iu":
            at = np.minimum(np.searchsorted(self._int_sorted, values), self._other - 1)
            return np.where(self._int_sorted[at] == values, self._int_order[at], self._other)
        strings = values.astype(str)
        at = np.minimum(np.searchsorted(self._sorted, strings), self._other - 1)
        return np.where(self._sorted[at] == strings, self._order[at], self._other)


def _canonical_int(text: str) -> bool:
    """'3', '-1', '0': what str() of an integer gives (not '03', '+3', ' 3' or '1.0')."""
    try:
        return str(int(text)) == text
    except ValueError:
        return False
