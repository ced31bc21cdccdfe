"""The event loop's lock-free series write what prometheus_client's own metrics would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from modeldeploy_serving.loop_metrics import LoopCounter, LoopGauge, LoopHistogram, LoopSeries
from modeldeploy_serving.metrics import LATENCY_BUCKETS

LABELS = [("v1", "2xx"), ("v1", "4xx"), ("v2", "2xx"), ("v2", "5xx")]
amounts = st.one_of(
    st.floats(min_value=-1, max_value=100, allow_nan=False),
    st.sampled_from([*LATENCY_BUCKETS, 0.0, math.inf, math.nan]),  # on a bound, beyond, NaN
)


@given(
    st.lists(amounts, max_size=60),
    st.lists(st.sampled_from(LABELS), max_size=30),
    st.lists(st.booleans(), max_size=30),
)
def test_the_exposition_is_prometheus_clients(
    observed: list[float], requests: list[tuple[str, str]], gauge_steps: list[bool]
) -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as the server does
    theirs = CollectorRegistry()
    histogram = Histogram("h_seconds", "A histogram.", buckets=LATENCY_BUCKETS, registry=theirs)
    counter = Counter("r", "A counter.", ["protocol", "status"], registry=theirs)
    gauge = Gauge("g", "A gauge.", registry=theirs)
    loop_histogram = LoopHistogram("h_seconds", "A histogram.", LATENCY_BUCKETS)
    loop_counter = LoopCounter("r", "A counter.", ["protocol", "status"], LABELS)
    loop_gauge = LoopGauge("g", "A gauge.")
    for values in LABELS:  # prometheus_client shows a labelled child once it is created
        counter.labels(*values)
    for amount in observed:
        histogram.observe(amount)
        loop_histogram.observe(amount)
    for values in requests:
        counter.labels(*values).inc()
        loop_counter.inc(values)
    for up in gauge_steps:
        (gauge.inc if up else gauge.dec)()
        (loop_gauge.inc if up else loop_gauge.dec)()
    ours = CollectorRegistry()
    ours.register(LoopSeries(loop_histogram, loop_counter, loop_gauge))
    assert generate_latest(ours) == generate_latest(theirs)
