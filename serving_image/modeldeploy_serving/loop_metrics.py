"""The series every inference request updates, kept as plain numbers for the event loop.

prometheus_client's metrics take a lock on every update and a histogram walks its buckets in
Python: five such updates were 45k instructions of a 640k-instruction request. The server
updates these series only from its event loop (requests, batches, and the /metrics scrape all
run there), so they need no lock: a counter is an int, a histogram a list of bucket counts
found by a binary search of its own (compiled, a third of the cost of calling `bisect`). A
collector turns them into the same exposition prometheus_client would write
(tests/unit/test_loop_metrics.py compares the two)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class LoopCounter:
    """A counter with fixed label values, one int per label tuple. A caller that counts one
    label tuple per request looks up its `slot` once: hashing the tuple each time cost more
    than the count."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        values: Sequence[tuple[str, ...]],
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._slots = {labels: slot for slot, labels in enumerate(values)}
        self._counts = [0] * len(self._slots)

    def slot(self, labels: tuple[str, ...]) -> int:
        return self._slots[labels]

    def inc(self, labels: tuple[str, ...]) -> None:
        self._counts[self._slots[labels]] += 1

    def inc_slot(self, slot: int) -> None:
        self._counts[slot] += 1

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, slot in self._slots.items():
            family.add_metric(list(values), self._counts[slot])
        return family


class LoopGauge:
    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, value=self.value)


class LoopHistogram:
    """Buckets as prometheus_client's Histogram has them (`le`: value <= bound, +Inf last)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = [float(bound) for bound in buckets]
        if self._bounds[-1] != math.inf:
            self._bounds.append(math.inf)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._sum += amount
        if amount != amount:  # NaN is in no bucket, as prometheus_client has it
            return
        bounds = self._bounds  # the first bound >= amount; the last is +Inf, so one always is
        low, high = 0, len(bounds) - 1
        while low < high:
            middle = (low + high) // 2
            if bounds[middle] < amount:
                low = middle + 1
            else:
                high = middle
        self._counts[low] += 1

    def family(self) -> Metric:
        cumulative, total = [], 0
        for bound, count in zip(self._bounds, self._counts, strict=True):
            total += count
            cumulative.append((floatToGoString(bound), total))  # type: ignore[no-untyped-call]
        return HistogramMetricFamily(
            self.name, self.documentation, buckets=cumulative, sum_value=self._sum
        )


class LoopSeries(Collector):
    """The loop's series, exposed in the order given."""

    def __init__(self, *series: LoopCounter | LoopGauge | LoopHistogram) -> None:
        self._series = series

    def collect(self) -> Iterator[Metric]:
        for series in self._series:
            yield series.family()
