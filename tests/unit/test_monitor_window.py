"""The sliding window and the parser: rates, p99 interpolation, counter resets, 4xx excluded."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from modeldeploy_serving import metric_names
from modeldeploy_serving.monitor.parse import ParseError, parse_sample
from modeldeploy_serving.monitor.window import (
    Buckets,
    Sample,
    Window,
    WindowStats,
    histogram_quantile,
    is_reset,
    window_stats,
)

INF = math.inf


def s(t: float, requests: float, errors: float = 0, buckets: Buckets = (), **kw: float) -> Sample:
    return Sample(t=t, requests=requests, model_errors=errors, buckets=buckets, **kw)


def stats_of(*samples: Sample, window: float = 30) -> WindowStats:
    w = Window(window)
    for sample in samples:
        w.add(sample)
    result = w.stats()
    assert result is not None
    return result


# --- rates over the window --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "requests", "errors", "rate"),
    [
        pytest.param([s(0, 0)], 0, 0, None, id="one sample: nothing yet"),
        pytest.param([s(0, 100, 5), s(2, 100, 5)], 0, 0, None, id="no traffic"),
        pytest.param([s(0, 0), s(2, 100, 1)], 100, 1, 0.01, id="one percent"),
        pytest.param([s(0, 50, 0), s(2, 150, 25)], 100, 25, 0.25, id="cumulative baseline"),
        pytest.param([s(0, 0), s(2, 10, 10)], 10, 10, 1.0, id="all failing"),
        pytest.param([s(0, 0), s(2, 10, 12)], 10, 12, 1.0, id="errors counted first: clamp"),
        pytest.param(
            [s(0, 0), s(10, 100, 50), s(40, 200, 50), s(45, 300, 50)],
            200,
            0,
            0.0,
            id="old errors slid out",
        ),
    ],
)
def test_error_rate_over_the_window(
    samples: list[Sample], requests: float, errors: float, rate: float | None
) -> None:
    stats = stats_of(*samples)
    assert (stats.requests, stats.model_errors, stats.error_rate) == (requests, errors, rate)


def test_the_window_keeps_one_baseline_sample_at_or_before_its_start() -> None:
    w = Window(30)
    for t in range(0, 101, 2):
        w.add(s(t, requests=t * 10))
    stats = w.stats()
    assert stats is not None
    assert stats.span_seconds == 30 and stats.requests == 300
    assert len(w) == 16


def test_samples_must_come_in_time_order() -> None:
    w = Window(30)
    w.add(s(5, 0))
    with pytest.raises(ValueError, match="older"):
        w.add(s(4, 0))


@pytest.mark.parametrize("seconds", [0, -1])
def test_window_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Window(seconds)


# --- counter resets (the model server restarted) ----------------------------------------------


@pytest.mark.parametrize(
    ("samples", "requests", "errors", "resets"),
    [
        pytest.param([s(0, 100, 1), s(2, 150, 2), s(4, 10, 1)], 60, 2, 1, id="counter fell"),
        pytest.param(
            [s(0, 100, 1, started=1.0), s(2, 150, 2, started=1.0), s(4, 200, 9, started=3.0)],
            250,
            10,
            1,
            id="new start time, counters already higher",
        ),
        pytest.param([s(0, 100, 1), s(2, 0, 0), s(4, 30, 3)], 30, 3, 1, id="reset to zero"),
        pytest.param(
            [s(0, 5, 0), s(2, 10, 0), s(4, 3, 0), s(6, 8, 0)], 13, 0, 1, id="reset mid-window"
        ),
        pytest.param(
            [s(0, 10, 0, client_errors=50), s(2, 20, 0, client_errors=5)],
            20,
            0,
            1,
            id="4xx counter fell: a reset too",
        ),
    ],
)
def test_counter_resets_count_from_zero(
    samples: list[Sample], requests: float, errors: float, resets: int
) -> None:
    stats = stats_of(*samples)
    assert (stats.requests, stats.model_errors, stats.resets) == (requests, errors, resets)


def test_histogram_reset_is_a_reset() -> None:
    before = s(0, 10, buckets=((0.1, 10), (INF, 10)))
    after = s(2, 10, buckets=((0.1, 2), (INF, 2)))
    assert is_reset(before, after)
    assert stats_of(before, after).buckets == ((0.1, 2), (INF, 2))


def test_new_bucket_layout_starts_the_histogram_over() -> None:
    stats = stats_of(
        s(0, 0, buckets=((0.1, 0), (INF, 0))),
        s(2, 10, buckets=((0.1, 10), (INF, 10))),
        s(4, 5, buckets=((0.05, 4), (0.5, 5), (INF, 5))),
    )
    assert stats.buckets == ((0.05, 4.0), (0.5, 5.0), (INF, 5.0))
    assert stats.requests == 15


# --- p99 from the histogram -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        pytest.param(0.99, ((0.1, 50), (0.2, 100), (INF, 100)), 0.198, id="interpolate in bucket"),
        pytest.param(0.99, ((0.01, 100), (INF, 100)), 0.0099, id="first bucket starts at 0"),
        pytest.param(0.5, ((0.1, 0), (0.2, 100), (INF, 100)), 0.15, id="median"),
        pytest.param(0.99, ((0.1, 0), (0.2, 0), (INF, 10)), 0.2, id="+Inf: highest finite"),
        pytest.param(0.99, ((0.1, 98), (0.2, 99), (INF, 100)), 0.2, id="exactly at a bound"),
        pytest.param(0.99, ((-1.0, 10), (INF, 10)), -1.0, id="non-positive first bound"),
        pytest.param(0.99, ((0.1, 60), (0.2, 50), (INF, 100)), 0.2, id="non-monotonic fixed"),
        pytest.param(0.99, ((0.1, 0), (INF, 0)), None, id="no observations"),
        pytest.param(0.99, ((0.1, 5), (0.2, 5)), None, id="no +Inf bucket"),
        pytest.param(0.99, (), None, id="no histogram"),
    ],
)
def test_histogram_quantile_matches_promql(
    q: float, buckets: Buckets, expected: float | None
) -> None:
    result = histogram_quantile(q, buckets)
    assert result == (None if expected is None else pytest.approx(expected))


def test_p99_comes_from_the_increase_of_the_buckets() -> None:
    # 1000 fast requests happened before the window; inside it, 100 slow ones.
    before = s(0, 1000, buckets=((0.01, 1000), (0.5, 1000), (1.0, 1000), (INF, 1000)))
    after = s(2, 1100, buckets=((0.01, 1000), (0.5, 1000), (1.0, 1100), (INF, 1100)))
    stats = stats_of(before, after)
    assert stats.latency_p99_seconds == pytest.approx(0.995)


def test_quantile_out_of_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, ((0.1, 1), (INF, 1)))


# --- parsing the server's exposition: 4xx never reach the model -------------------------------


def _exposition(ok: int, server_errors: int, client_errors: int, latencies: list[float]) -> str:
    r = CollectorRegistry()
    requests = Counter(metric_names.REQUESTS, "", ["protocol", "status_class"], registry=r)
    errors = Counter(metric_names.MODEL_ERRORS, "", registry=r)
    Counter(metric_names.CLIENT_ERRORS, "", ["reason"], registry=r).labels("bad").inc(client_errors)
    latency = Histogram(metric_names.REQUEST_LATENCY, "", buckets=(0.01, 0.1), registry=r)
    requests.labels("v1", "2xx").inc(ok)
    requests.labels("v2", "5xx").inc(server_errors)
    requests.labels("v2", "4xx").inc(client_errors)
    errors.inc(server_errors)
    for seconds in latencies:
        latency.observe(seconds)
    return generate_latest(r).decode()


def test_parse_reads_the_server_metric_names_and_excludes_4xx() -> None:
    sample = parse_sample(_exposition(7, 3, 500, [0.005, 0.05, 0.5]), t=12.0)
    assert sample.t == 12.0
    assert (sample.requests, sample.model_errors, sample.client_errors) == (10, 3, 500)
    assert sample.buckets == ((0.01, 1.0), (0.1, 2.0), (INF, 3.0))


@pytest.mark.parametrize(
    ("extra", "started"),
    [
        pytest.param("", None, id="neither"),
        pytest.param(
            f"{metric_names.MODEL_ERRORS}_created 1700000050.0\n"
            f"{metric_names.REQUEST_LATENCY}_created 1700000040.0\n",
            1700000040.0,
            id="earliest _created",
        ),
        pytest.param(
            "process_start_time_seconds 1700000000.5\n"
            f"{metric_names.MODEL_ERRORS}_created 1700000050.0\n",
            1700000000.5,
            id="process start wins",
        ),
    ],
)
def test_parse_finds_when_the_server_started(extra: str, started: float | None) -> None:
    text = f"{metric_names.MODEL_ERRORS}_total 3\n{extra}"
    assert parse_sample(text, t=0).started == started


def test_a_flood_of_client_errors_leaves_the_error_rate_alone() -> None:
    before = parse_sample(_exposition(0, 0, 0, []), t=0)
    after = parse_sample(_exposition(100, 0, 10_000, [0.001] * 100), t=2)
    stats = stats_of(before, after)
    assert (stats.requests, stats.client_errors, stats.error_rate) == (100, 10_000, 0.0)


def test_parse_of_an_empty_exposition_is_all_zero() -> None:
    sample = parse_sample("", t=1)
    assert (sample.requests, sample.model_errors, sample.buckets, sample.started) == (
        0,
        0,
        (),
        None,
    )


def test_parse_rejects_what_is_not_an_exposition() -> None:
    with pytest.raises(ParseError):
        parse_sample("<html>502 Bad Gateway</html>\n", t=1)


# --- properties -------------------------------------------------------------------------------

BOUNDS = (0.005, 0.05, 0.5)
step = st.one_of(
    st.just("restart"),
    st.tuples(
        st.integers(0, 50),  # successes
        st.integers(0, 50),  # model errors
        st.integers(0, 50),  # client errors
        st.lists(st.sampled_from(range(len(BOUNDS) + 1)), max_size=5),  # latency buckets hit
    ),
)


@given(st.lists(step, min_size=1, max_size=30), st.integers(1, 30))
def test_window_counts_exactly_what_happened_across_restarts(
    steps: list[object], window: int
) -> None:
    """Cumulative counters with restarts, one sample per second: the window's increase equals
    the traffic of its last ``window`` seconds, the error rate stays in [0, 1], and p99 stays
    within the bucket bounds."""
    ok = err = client = 0
    hits = [0] * (len(BOUNDS) + 1)
    epoch = 0
    samples: list[Sample] = []
    traffic: list[tuple[int, int, int]] = []  # what each step added
    for t, item in enumerate(steps):
        if item == "restart":
            ok = err = client = 0
            hits = [0] * (len(BOUNDS) + 1)
            epoch += 1
            traffic.append((0, 0, 0))
        else:
            assert isinstance(item, tuple)
            d_ok, d_err, d_client, latencies = item
            ok, err, client = ok + d_ok, err + d_err, client + d_client
            for index in latencies:
                hits[index] += 1
            traffic.append((d_ok + d_err, d_err, d_client))
        cumulative = [sum(hits[: i + 1]) for i in range(len(hits))]
        buckets = tuple(zip((*BOUNDS, INF), map(float, cumulative), strict=True))
        samples.append(Sample(t, ok + err, err, client, buckets=buckets, started=float(epoch)))
    w = Window(window)
    for sample in samples:
        w.add(sample)
    stats = w.stats()
    assert stats is not None
    first = max(0, len(samples) - 1 - window)  # the baseline's index
    inside = traffic[first + 1 :]
    assert stats.requests == sum(r for r, _, _ in inside)
    assert stats.model_errors == sum(e for _, e, _ in inside)
    assert stats.client_errors == sum(c for _, _, c in inside)
    rate = stats.error_rate
    assert rate is None or 0.0 <= rate <= 1.0
    p99 = stats.latency_p99_seconds
    assert p99 is None or 0.0 <= p99 <= BOUNDS[-1]


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=6),
    st.floats(0, 1),
)
def test_histogram_quantile_stays_within_the_finite_bounds(counts: list[float], q: float) -> None:
    bounds = [0.001 * 2**i for i in range(len(counts) - 1)] + [INF]
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
    result = histogram_quantile(q, tuple(zip(bounds, cumulative, strict=True)))
    if cumulative[-1] == 0:
        assert result is None
    else:
        assert result is not None and 0.0 <= result <= bounds[-2]


def test_window_stats_of_a_single_sample_is_empty() -> None:
    stats = window_stats([s(3, 42, 1)], 30)
    assert (stats.requests, stats.span_seconds, stats.error_rate) == (0, 0, None)
