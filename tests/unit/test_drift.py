"""Drift: profile binning, PSI against hand-computed values and its properties, the sidecar's
parse/window/verdict path for PredictionDrift and FeatureDrift. Pure, no processes."""

from __future__ import annotations

import hashlib
import math
import weakref
from pathlib import Path

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy.names import (
    REASON_FEATURE_DRIFT,
    REASON_PREDICTION_DRIFT,
    REASON_WITHIN_THRESHOLDS,
)
from modeldeploy_serving import profile_cli
from modeldeploy_serving.drift import (
    PREDICTION,
    Binning,
    CategoryIndex,
    ProfileError,
    parse_profile,
)
from modeldeploy_serving.drift_counter import FLUSH_ROWS, DriftCounter
from modeldeploy_serving.monitor.parse import parse_sample
from modeldeploy_serving.monitor.psi import drift_score, psi, reference_shares, window_shares
from modeldeploy_serving.monitor.verdict import OnNoData, Status, Thresholds, evaluate
from modeldeploy_serving.monitor.window import Sample, window_stats
from modeldeploy_serving.profile import build_profile
from tests.helpers.parquet_files import write_parquet


def test_psi_matches_hand_computed_values() -> None:
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5) = 0.10217 + 0.06729
    assert psi([0.3, 0.7], [0.5, 0.5]) == pytest.approx(0.169459, abs=1e-6)
    # (0.1-0.25)ln(0.4) + (0.4-0.25)ln(1.6) + 2 * 0
    assert psi([0.1, 0.4, 0.25, 0.25], [0.25] * 4) == pytest.approx(0.207944, abs=1e-6)
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_smoothing_keeps_empty_bins_finite() -> None:
    assert window_shares([0, 3]) == pytest.approx([0.5 / 4, 3.5 / 4])
    assert reference_shares([0.0, 1.0]) == pytest.approx([1e-4 / 1.0001, 1 / 1.0001])
    assert math.isfinite(drift_score([100, 0], [0.0, 1.0]))


shares = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12).map(
    lambda xs: [x / sum(xs) for x in xs]
)


@given(shares)
def test_identical_distributions_score_zero(p: list[float]) -> None:
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)


@given(shares, st.data())
def test_psi_is_symmetric_and_non_negative(p: list[float], data: st.DataObject) -> None:
    q = data.draw(shares.filter(lambda q: len(q) == len(p)))
    assert psi(p, q) >= -1e-12
    assert psi(p, q) == pytest.approx(psi(q, p))


@given(st.floats(0.0, 0.45), st.floats(0.01, 0.04))
def test_larger_shift_scores_higher(shift: float, more: float) -> None:
    def moved(s: float) -> list[float]:
        return [0.5 - s, 0.5 + s]

    assert psi(moved(shift + more), [0.5, 0.5]) > psi(moved(shift), [0.5, 0.5])


def test_numeric_and_categorical_binning() -> None:
    numeric = Binning("x", "numeric", edges=(1.0, 2.0), frequencies=(0.2, 0.3, 0.5))
    assert numeric.assign(np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [0, 1, 1, 2, 2]
    colour = Binning("c", "categorical", categories=("red", "blue"), frequencies=(0.5, 0.4, 0.1))
    values = np.array(["blue", "green", "red", None], dtype=object)
    assert colour.assign(values).tolist() == [1, 2, 0, 2]
    assert colour.counts(values).tolist() == [1, 1, 2]


def training_frame(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 10, size=n)})
    return frame, (frame["a"] > 0).astype(int).to_numpy()


def test_profile_of_a_classifier() -> None:
    frame, labels = training_frame()
    model = LogisticRegression().fit(frame, labels)
    profile = parse_profile(build_profile(frame, model, bins=10))
    assert [f.name for f in profile.features] == ["a", "b"]
    assert all(f.bins == 10 for f in profile.features)
    for feature in profile.features:  # quantile bins: each holds about a tenth
        assert feature.frequencies == pytest.approx([0.1] * 10, abs=0.01)
    assert profile.prediction is not None
    assert profile.prediction.categories in (("0", "1"), ("1", "0"))
    assert sum(profile.prediction.frequencies) == pytest.approx(1.0)


def test_profile_of_a_regressor_and_categorical_column() -> None:
    frame, _ = training_frame()
    model = LinearRegression().fit(frame.to_numpy(), frame["a"] * 3)
    with_colour = frame.assign(colour=np.where(frame["a"] > 0, "red", "blue"))
    document = build_profile(with_colour.drop(columns=["colour"]), model, bins=5)
    assert document["prediction"]["kind"] == "numeric"
    assert len(document["prediction"]["edges"]) == 4
    colour = build_profile(with_colour, _Constant(), top_k=1)["features"][2]
    assert colour["kind"] == "categorical" and len(colour["categories"]) == 1
    assert colour["frequencies"][1] == pytest.approx(0.5, abs=0.1)  # "other"


class _Constant:
    def predict(self, rows: object) -> np.ndarray:
        return np.zeros(len(rows))  # type: ignore[arg-type]


def test_a_bad_profile_is_refused() -> None:
    with pytest.raises(ProfileError, match="version"):
        parse_profile({"version": 9})
    bad = {"version": 1, "features": [{"name": "x", "kind": "numeric", "edges": [1.0]}]}
    with pytest.raises(ProfileError, match="frequencies"):
        parse_profile(bad)


def exposition(feature_counts: list[int], prediction_counts: list[int], requests: int) -> str:
    lines = [f'modeldeploy_requests_total{{protocol="v2",status_class="2xx"}} {requests}']
    for name, counts, reference in (
        ("a", feature_counts, [0.25] * 4),
        (PREDICTION, prediction_counts, [0.5, 0.5, 0.0]),
    ):
        for i, (count, share) in enumerate(zip(counts, reference, strict=True)):
            lines.append(f'modeldeploy_drift_rows_total{{feature="{name}",bin="{i}"}} {count}')
            lines.append(f'modeldeploy_drift_reference_share{{feature="{name}",bin="{i}"}} {share}')
    return "\n".join(lines) + "\n"


THRESHOLDS = Thresholds(max_prediction_drift=0.25, max_feature_drift=0.25)


def judge(first: Sample, second: Sample, thresholds: Thresholds = THRESHOLDS) -> tuple[str, str]:
    verdict = evaluate(window_stats([first, second], 30), thresholds, 20, OnNoData.HOLD, 30)
    return verdict.reason, verdict.message


def test_window_counts_only_the_increase_and_reference_passes() -> None:
    first = parse_sample(exposition([100] * 4, [200, 200, 0], 40), 0)
    second = parse_sample(exposition([150] * 4, [300, 300, 0], 80), 10)
    stats = window_stats([first, second], 30)
    assert stats.drift == {"a": (50.0,) * 4, PREDICTION: (100.0, 100.0, 0.0)}
    assert judge(first, second)[0] == REASON_WITHIN_THRESHOLDS


def test_a_healthy_verdict_shows_the_drift_scores() -> None:
    """What `kubectl modeldeploy status` shows for a healthy pod: both scores, with their
    thresholds when set, beside the error rate."""
    first = parse_sample(exposition([100] * 4, [200, 200, 0], 40), 0)
    second = parse_sample(exposition([150, 150, 150, 170], [310, 290, 0], 80), 10)
    prediction = drift_score([110, 90, 0], [0.5, 0.5, 0.0])
    feature = drift_score([50, 50, 50, 70], [0.25] * 4)
    assert judge(first, second)[1] == (
        f"predictionDrift PSI {prediction:.4g} <= 0.25, featureDrift 'a' PSI {feature:.4g} "
        "<= 0.25 over 30s (40 requests)"
    )
    unset = judge(first, second, Thresholds(max_error_rate=0.01))[1]
    assert unset == (
        f"errorRate 0 <= 0.01, predictionDrift PSI {prediction:.4g}, "
        f"featureDrift 'a' PSI {feature:.4g} over 30s (40 requests)"
    )


def test_feature_drift_names_the_feature_score_and_rows() -> None:
    first = parse_sample(exposition([0] * 4, [0, 0, 0], 0), 0)
    second = parse_sample(exposition([0, 0, 0, 200], [100, 100, 0], 40), 10)
    reason, message = judge(first, second)
    assert reason == REASON_FEATURE_DRIFT
    assert "feature 'a'" in message and "200 rows" in message and "> 0.25" in message
    expected = drift_score([0, 0, 0, 200], [0.25] * 4)
    assert f"PSI {expected:.4g}" in message


def test_prediction_drift_comes_first_and_unset_thresholds_ignore_drift() -> None:
    first = parse_sample(exposition([0] * 4, [0, 0, 0], 0), 0)
    second = parse_sample(exposition([0, 0, 0, 200], [200, 0, 0], 40), 10)
    reason, message = judge(first, second)
    assert reason == REASON_PREDICTION_DRIFT and "200 rows" in message
    assert judge(first, second, Thresholds())[0] == REASON_WITHIN_THRESHOLDS


def test_min_requests_applies_to_drift() -> None:
    first = parse_sample(exposition([0] * 4, [0, 0, 0], 0), 0)
    second = parse_sample(exposition([0, 0, 0, 200], [200, 0, 0], 5), 10)
    verdict = evaluate(window_stats([first, second], 30), THRESHOLDS, 20, OnNoData.HOLD, 30)
    assert verdict.status == Status.UNKNOWN


def test_profile_command_writes_json_and_prints_its_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame, labels = training_frame()
    frame.assign(label=labels).to_csv(tmp_path / "train.csv", index=False)
    joblib.dump(LogisticRegression().fit(frame, labels), tmp_path / "model.joblib")
    out = tmp_path / "profile.json"
    argv = ["--data", str(tmp_path / "train.csv"), "--model", str(tmp_path / "model.joblib")]
    assert profile_cli.main([*argv, "--target", "label", "--out", str(out)]) == 0
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert capsys.readouterr().out.strip() == f"{out} sha256 {digest}"
    assert [f.name for f in parse_profile(orjson.loads(out.read_bytes())).features] == ["a", "b"]
    frame[["a"]].to_csv(tmp_path / "narrow.csv", index=False)
    narrow = ["--data", str(tmp_path / "narrow.csv"), "--model", str(tmp_path / "model.joblib")]
    assert profile_cli.main([*narrow, "--out", str(out)]) == 2  # column b is missing


def test_profile_command_reads_parquet_training_data_with_its_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The profile of a Parquet file (typed columns: float with NaN, a categorical) is the one
    the same frame gives in memory, so its sha256 is the one to put in the spec."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = training_frame()
    frame = frame.assign(c=np.where(labels == 1, "x", "y"))
    frame.loc[::9, "b"] = np.nan
    encode = ColumnTransformer([("c", OneHotEncoder(), ["c"]), ("ab", SimpleImputer(), ["a", "b"])])
    model = Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(frame, labels)
    joblib.dump(model, tmp_path / "model.joblib")
    write_parquet(tmp_path / "train.parquet", frame.astype({"c": "category"}).assign(label=labels))
    out = tmp_path / "profile.json"
    argv = ["--data", str(tmp_path / "train.parquet"), "--model", str(tmp_path / "model.joblib")]
    assert profile_cli.main([*argv, "--target", "label", "--out", str(out)]) == 0
    expected = build_profile(frame.assign(label=labels), model, target="label")
    assert out.read_bytes() == orjson.dumps(expected, option=orjson.OPT_INDENT_2)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert capsys.readouterr().out.strip() == f"{out} sha256 {digest}"
    kinds = {f.name: f.kind for f in parse_profile(orjson.loads(out.read_bytes())).features}
    assert kinds == {"a": "numeric", "b": "numeric", "c": "categorical"}


def test_the_server_counter_bins_like_the_profile() -> None:
    """The counter bins all numeric columns in one pass; it must agree with each Binning."""
    frame, labels = training_frame()
    frame = frame.assign(c=np.where(labels == 1, "x", "y"))
    profile = parse_profile(build_profile(frame, _Constant()))
    counter = DriftCounter(profile)
    rows = frame.to_numpy(dtype=object)[:50]
    rows[0, 0], rows[1, 1] = np.nan, -1e9
    for batch in (rows[:1], rows[1:8], rows[8:]):  # served in batches, binned together
        counter.observe(batch, ("predict",), (np.zeros(len(batch)),))
    scraped = {m.name: m for m in counter.collect()}  # a scrape bins whatever is waiting
    for index, binning in enumerate(profile.features):
        assert counter._features[index].tolist() == binning.counts(rows[:, index]).tolist()
    assert counter._prediction is not None and counter._prediction.sum() == 50
    served = [
        s.value for s in scraped["modeldeploy_drift_rows"].samples if s.name.endswith("_total")
    ]
    assert sum(served) == 50 * (len(profile.features) + 1)


def test_rows_are_binned_at_the_threshold_without_a_scrape() -> None:
    frame, _ = training_frame()
    profile = parse_profile(build_profile(frame, _Constant()))
    counter = DriftCounter(profile)
    rows = frame.to_numpy(dtype=float)[:8]
    for _ in range(FLUSH_ROWS // 8 - 1):
        counter.observe(rows, ("predict",), (np.zeros(8),))
    assert counter._features[0].sum() == 0  # waiting: nothing binned per batch
    counter.observe(rows, ("predict",), (np.zeros(8),))
    assert counter._features[0].sum() == FLUSH_ROWS


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, FLUSH_ROWS + 300), st.booleans(), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_every_row_is_counted_once_whatever_the_batches(
    batches: list[tuple[int, bool, bool]],
) -> None:
    """Batches of any size (across the buffer's edge, larger than it), with or without the
    predict output, float or object rows (the buffer changes dtype): after a scrape, every
    feature counts each row once and the predictions count the rows that asked for them, as
    the profile's own binning does."""
    frame, _ = training_frame()
    profile = parse_profile(build_profile(frame, _Constant()))
    counter = DriftCounter(profile)
    served, predicted = [], []
    for size, with_predict, as_objects in batches:
        rows = frame.to_numpy(dtype=object if as_objects else float)[np.arange(size) % len(frame)]
        labels = np.arange(size) % 2
        counter.observe(rows, ("predict",) if with_predict else ("predict_proba",), (labels,))
        served.append(rows.astype(float))
        if with_predict:
            predicted.append(labels)
    list(counter.collect())
    every = np.concatenate(served)
    for index, binning in enumerate(profile.features):
        assert counter._features[index].tolist() == binning.counts(every[:, index]).tolist()
    assert counter._prediction is not None
    assert counter._prediction.sum() == sum(len(p) for p in predicted)


def test_the_counter_keeps_no_request_array_alive() -> None:
    """Waiting rows are copies: a request's arrays (and whatever they are views of) are freed
    once it is answered, so what waits is one buffer of bounded size."""
    frame, _ = training_frame()
    counter = DriftCounter(parse_profile(build_profile(frame, _Constant())))
    rows, predictions = frame.to_numpy(dtype=float)[:3].copy(), np.zeros(3)
    counter.observe(rows, ("predict",), (predictions,))
    gone = [weakref.ref(rows), weakref.ref(predictions)]
    del rows, predictions
    assert [ref() for ref in gone] == [None, None]


@given(
    st.lists(st.sampled_from(["0", "1", "2", "-3", "07", "+4", "1.0", "x"]), unique=True),
    st.lists(st.integers(-5, 9), max_size=20),
)
def test_integer_labels_bin_as_their_strings_do(categories: list[str], labels: list[int]) -> None:
    """The integer fast path (class labels) gives the string path's answer: '07' or '1.0' is
    not the category of 7 or 1, and an unlisted label is "other"."""
    index = CategoryIndex(categories)
    values = np.asarray(labels, dtype=np.int64)
    assert index.bins(values).tolist() == index.bins(values.astype(str)).tolist()
