"""A sliding window over cumulative samples of the model server's metrics. Pure: no I/O, no clock.

Each scrape becomes a :class:`Sample` of cumulative counters stamped with the time the caller
passes in. :meth:`Window.stats` sums the increases between consecutive samples inside the window,
so a counter reset (the server restarted) costs nothing: after a reset the new values count from
zero, like Prometheus' ``increase()`` (without its extrapolation to the window edges).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

# Drift: distribution (feature name, or the prediction key) -> count (or share) per bin.
Distributions = Mapping[str, tuple[float, ...]]
# (upper bound in seconds, cumulative count), sorted by bound, the last bound is +Inf.
Buckets = tuple[tuple[float, float], ...]

P99 = 0.99


@dataclass(frozen=True, slots=True)
class Feedback:
    """Labelled feedback rows the server scored (cumulative in a Sample, increases in stats)."""

    classified: float = 0.0  # rows of a classifier
    correct: float = 0.0  # of those, predicted correctly
    regressed: float = 0.0  # rows of a regressor
    absolute_error: float = 0.0  # sum of their absolute errors

    def fell_below(self, before: Feedback) -> bool:
        return (
            self.classified < before.classified
            or self.correct < before.correct
            or self.regressed < before.regressed
            or self.absolute_error < before.absolute_error
        )

    def minus(self, before: Feedback) -> Feedback:
        return Feedback(
            self.classified - before.classified,
            self.correct - before.correct,
            self.regressed - before.regressed,
            self.absolute_error - before.absolute_error,
        )

    def plus(self, other: Feedback) -> Feedback:
        return Feedback(
            self.classified + other.classified,
            self.correct + other.correct,
            self.regressed + other.regressed,
            self.absolute_error + other.absolute_error,
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative values the server exported at time ``t`` (seconds, any monotonic clock)."""

    t: float
    requests: float  # requests that reached the model (every status class except 4xx)
    model_errors: float  # predict() failures
    client_errors: float = 0.0  # requests rejected with a 4xx; never part of the error rate
    buckets: Buckets = ()  # latency histogram, cumulative
    started: float | None = (
        None  # earliest ``_created`` timestamp; changes when the server restarts
    )
    drift: Distributions = field(default_factory=dict)  # cumulative rows per profile bin
    reference: Distributions = field(default_factory=dict)  # the profile's share per bin
    feedback: Feedback = Feedback()


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What happened between the window's baseline sample and its newest sample."""

    window_seconds: float  # the configured window
    span_seconds: float  # time actually covered (shorter while the window fills up)
    requests: float
    model_errors: float
    client_errors: float
    buckets: Buckets  # latency histogram increase over the window
    resets: int  # counter resets seen inside the window
    drift: Distributions = field(default_factory=dict)  # rows per bin over the window
    reference: Distributions = field(default_factory=dict)  # from the newest sample
    feedback: Feedback = Feedback()  # feedback scored over the window

    @property
    def error_rate(self) -> float | None:
        """Model errors per request that reached the model, in [0, 1]; None without requests."""
        if self.requests <= 0:
            return None
        # The server may bump the error counter a moment before the request counter.
        return min(1.0, max(0.0, self.model_errors / self.requests))

    @property
    def latency_p99_seconds(self) -> float | None:
        return histogram_quantile(P99, self.buckets)


class Window:
    """Samples of the last ``seconds``, plus one older sample as the baseline."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"window must be positive, got {seconds}")
        self.seconds = seconds
        self._samples: deque[Sample] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: Sample) -> None:
        if self._samples and sample.t < self._samples[-1].t:
            raise ValueError(f"sample at {sample.t} is older than {self._samples[-1].t}")
        self._samples.append(sample)
        start = sample.t - self.seconds
        # Drop a sample once the next one is old enough to serve as the baseline.
        while len(self._samples) > 1 and self._samples[1].t <= start:
            self._samples.popleft()

    def stats(self) -> WindowStats | None:
        """Increases over the window; None before the first sample."""
        if not self._samples:
            return None
        return window_stats(self._samples, self.seconds)


def feedback_only(sample: Sample) -> Sample:
    """The sample as the feedback window keeps it: the feedback counters and the start time."""
    return Sample(
        t=sample.t, requests=0.0, model_errors=0.0, started=sample.started, feedback=sample.feedback
    )


def window_stats(samples: Iterable[Sample], window_seconds: float) -> WindowStats:
    """Sum the increases between consecutive samples, treating any decrease as a reset."""
    ordered = list(samples)
    requests = model_errors = client_errors = 0.0
    buckets: dict[float, float] = {}
    drift: dict[str, list[float]] = {}
    resets = 0
    feedback = Feedback()
    for prev, cur in pairwise(ordered):
        if is_reset(prev, cur):
            resets += 1
            base = Sample(t=prev.t, requests=0.0, model_errors=0.0)
        else:
            base = prev
        requests += cur.requests - base.requests
        model_errors += cur.model_errors - base.model_errors
        client_errors += cur.client_errors - base.client_errors
        feedback = feedback.plus(cur.feedback.minus(base.feedback))
        if _bounds(cur.buckets) != sorted(buckets) and buckets:
            buckets = {}  # a new bucket layout (new server build): start the histogram over
        _add_drift(drift, base.drift, cur.drift)
        before = dict(base.buckets)
        for bound, count in cur.buckets:
            buckets[bound] = buckets.get(bound, 0.0) + count - before.get(bound, 0.0)
    span = ordered[-1].t - ordered[0].t
    return WindowStats(
        window_seconds=window_seconds,
        span_seconds=span,
        requests=requests,
        model_errors=model_errors,
        client_errors=client_errors,
        buckets=tuple(sorted(buckets.items())),
        resets=resets,
        drift={name: tuple(counts) for name, counts in drift.items()},
        reference=ordered[-1].reference,
        feedback=feedback,
    )


def _add_drift(into: dict[str, list[float]], before: Distributions, after: Distributions) -> None:
    """Add each bin's increase; a distribution whose bins changed (a new profile) starts over."""
    for name, counts in after.items():
        old = before.get(name, (0.0,) * len(counts))
        if len(old) != len(counts):
            old = (0.0,) * len(counts)
        if name not in into or len(into[name]) != len(counts):
            into[name] = [0.0] * len(counts)
        for index, (was, now) in enumerate(zip(old, counts, strict=True)):
            into[name][index] += max(0.0, now - was)


def is_reset(prev: Sample, cur: Sample) -> bool:
    """True when ``cur`` comes from a restarted server: a new start time or any counter fell."""
    if prev.started is not None and cur.started is not None and cur.started != prev.started:
        return True
    if (
        cur.requests < prev.requests
        or cur.model_errors < prev.model_errors
        or cur.client_errors < prev.client_errors
        or cur.feedback.fell_below(prev.feedback)
    ):
        return True
    if _bounds(cur.buckets) != _bounds(prev.buckets):
        return bool(prev.buckets) and bool(cur.buckets)
    return any(c < p for (_, c), (_, p) in zip(cur.buckets, prev.buckets, strict=True))


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly inside the bucket where it
    falls, exactly like PromQL's ``histogram_quantile``. None when there are no observations.

    If the quantile falls in the +Inf bucket the answer is the highest finite bound.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [bound for bound, _ in ordered]
    counts = _monotonic([count for _, count in ordered])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count <= 0:  # only when q == 0 lands on an empty bucket
        return start
    return start + (bounds[b] - start) * (rank / count)


def _monotonic(counts: list[float]) -> list[float]:
    """Cumulative counts never fall; scrape races can make them, so clamp like Prometheus."""
    fixed: list[float] = []
    for count in counts:
        fixed.append(max(count, fixed[-1]) if fixed else count)
    return fixed


def _bounds(buckets: Buckets) -> list[float]:
    return [bound for bound, _ in buckets]
