"""Count served rows per profile bin, for the sidecar's drift scores. The hot path is a few
numpy calls per batch into count arrays (all numeric columns binned at once; each categorical
column and the predictions through a lookup built at load); Prometheus series are built only
when /metrics is scraped (a custom collector), never per request."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import metric_names as names
from .drift import PREDICTION, Binning, CategoryIndex, Profile
from .errors import InvalidArtifact
from .signature import PREDICT, ModelSignature


class DriftCounter(Collector):
    """Called from the event loop only (after each predict() batch, and by the scrape)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._features = [np.zeros(b.bins, dtype=np.int64) for b in profile.features]
        p = profile.prediction
        self._prediction = None if p is None else np.zeros(p.bins, dtype=np.int64)
        # All numeric columns are binned at once (a handful of numpy calls per batch, whatever
        # the column count): edges padded with +inf into one matrix, bins offset into one flat
        # count array.
        numeric = [i for i, b in enumerate(profile.features) if b.kind == "numeric"]
        self._numeric = np.asarray(numeric, dtype=np.intp)
        width = max((len(profile.features[i].edges) for i in numeric), default=0)
        self._edges = np.full((len(numeric), width), np.inf)
        for row, i in enumerate(numeric):
            edges = profile.features[i].edges
            self._edges[row, : len(edges)] = edges
        self._top = np.asarray([len(profile.features[i].edges) for i in numeric], dtype=np.intp)
        sizes = [profile.features[i].bins for i in numeric]
        self._offsets = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        self._numeric_total = int(sum(sizes))
        # One count array for every numeric column; each column's counts are a view into it,
        # so a batch adds to all of them in one operation.
        self._numeric_counts = np.zeros(self._numeric_total, dtype=np.int64)
        for index, start, size in zip(numeric, self._offsets.tolist(), sizes, strict=True):
            self._features[index] = self._numeric_counts[start : start + size]
        self._all_numeric = numeric == list(range(len(profile.features)))
        self._categorical = [
            (i, _Bins(b)) for i, b in enumerate(profile.features) if b.kind != "numeric"
        ]
        self._predicted = None if p is None else _Bins(p)
        self._prediction_binning = None if p is None else _named(p, PREDICTION)

    def observe(
        self, rows: np.ndarray, outputs: Sequence[str], results: Sequence[np.ndarray]
    ) -> None:
        if len(self._numeric):
            picked = rows if self._all_numeric else rows[:, self._numeric]
            values = np.asarray(picked, dtype=np.float64)
            # Edges <= value, like searchsorted(side="right"); NaN counts every edge: top bin.
            below = ~(values[:, :, None] < self._edges[None, :, :])
            bins = np.minimum(below.sum(axis=2), self._top) + self._offsets
            self._numeric_counts += np.bincount(bins.ravel(), minlength=self._numeric_total)
        for column, bins in self._categorical:
            self._features[column] += bins.counts(rows[:, column])
        if self._prediction is not None and self._predicted is not None and PREDICT in outputs:
            predicted = results[outputs.index(PREDICT)]
            self._prediction += self._predicted.counts(predicted.reshape(len(predicted), -1)[:, 0])

    def collect(self) -> Iterator[Metric]:
        labels = [names.LABEL_FEATURE, names.LABEL_BIN]
        rows = CounterMetricFamily(
            names.DRIFT_ROWS, "Served rows per reference-profile bin.", labels=labels
        )
        reference = GaugeMetricFamily(
            names.DRIFT_REFERENCE, "Reference share of each profile bin.", labels=labels
        )
        for binning, counts in self._distributions():
            for index, (count, share) in enumerate(
                zip(counts.tolist(), binning.frequencies, strict=True)
            ):
                rows.add_metric([binning.name, str(index)], count)
                reference.add_metric([binning.name, str(index)], share)
        yield rows
        yield reference

    def _distributions(self) -> Iterator[tuple[Binning, np.ndarray]]:
        yield from zip(self.profile.features, self._features, strict=True)
        if self._prediction_binning is not None and self._prediction is not None:
            yield self._prediction_binning, self._prediction


class _Bins:
    """One binning's per-batch counter; a categorical lookup (the sort) is built once."""

    def __init__(self, binning: Binning) -> None:
        self._binning = binning
        self._categories = None if binning.kind == "numeric" else CategoryIndex(binning.categories)

    def counts(self, values: np.ndarray) -> np.ndarray:
        if self._categories is None:
            return self._binning.counts(values)
        return np.bincount(self._categories.bins(values), minlength=self._binning.bins)


def check_profile(profile: Profile, signature: ModelSignature) -> None:
    """A profile for another model is refused at load, like a wrong artifact."""
    if len(profile.features) != signature.n_features:
        raise InvalidArtifact(
            f"profile has {len(profile.features)} features, the model takes {signature.n_features}"
        )
    if signature.columns:
        expected = list(signature.column_names)
        got = [b.name for b in profile.features]
        if got != expected:
            raise InvalidArtifact(f"profile columns {got} differ from the model's {expected}")


def _named(binning: Binning, name: str) -> Binning:
    return Binning(name, binning.kind, binning.edges, binning.categories, binning.frequencies)
