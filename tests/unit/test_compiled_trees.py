"""The compiled runtime on tree models: where a missing value goes, and answers taken as is.

Real estimators trained here, converted by skl2onnx and run by ONNX Runtime in process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modeldeploy_serving.compiled import OnnxModel, candidates
from modeldeploy_serving.prepare import prepare
from modeldeploy_serving.signature import PREDICT, PREDICT_PROBA, OutputSpec


def _with_missing(features: np.ndarray, share: float, seed: int) -> np.ndarray:
    holed = features.copy()
    holed[np.random.default_rng(seed).random(holed.shape) < share] = np.nan
    return holed


def _classification() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=400, n_features=6, n_informative=4, random_state=3)


def _compiled(estimator: Any, specs: dict[str, OutputSpec]) -> OnnxModel:
    converted = [
        candidate
        for candidate in candidates(estimator, (), 6, False, specs)
        if isinstance(candidate, OnnxModel)
    ]
    assert converted, "the estimator did not convert"
    return converted[0]


def _classifier_specs(classes: int) -> dict[str, OutputSpec]:
    return {
        PREDICT: OutputSpec(PREDICT, np.dtype(np.int64), ()),
        PREDICT_PROBA: OutputSpec(PREDICT_PROBA, np.dtype(np.float64), (classes,)),
    }


@pytest.mark.parametrize("trained_with_missing", [True, False])
@pytest.mark.parametrize("in_pipeline", [False, True])
def test_a_forest_sends_a_missing_value_where_scikit_learn_does(
    trained_with_missing: bool, in_pipeline: bool
) -> None:
    """Each split of a scikit-learn tree learned which child takes a missing value (the larger
    one when training saw none); the graph must agree on rows with NaN, not only complete ones."""
    features, labels = _classification()
    if trained_with_missing:
        features = _with_missing(features, 0.15, seed=1)
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    estimator: Any = Pipeline([("scale", StandardScaler()), ("forest", forest)])
    if not in_pipeline:
        estimator = forest
    estimator.fit(features, labels)
    fresh = make_classification(n_samples=300, n_features=6, random_state=9)[0]
    rows = _with_missing(fresh, 0.3, seed=2)
    assert np.isnan(rows).any(axis=1).sum() > 200

    compiled = _compiled(estimator, _classifier_specs(2))
    labels_onnx = compiled.method(PREDICT)(rows)
    proba_onnx = compiled.method(PREDICT_PROBA)(rows)

    assert labels_onnx.tolist() == estimator.predict(rows).tolist()
    assert np.abs(proba_onnx - estimator.predict_proba(rows)).max() <= 1e-6


def test_a_tree_regressor_and_a_single_tree_agree_on_missing_values() -> None:
    features, target = make_regression(n_samples=300, n_features=6, random_state=4)
    rows = _with_missing(features[:200], 0.3, seed=5)
    regressor = ExtraTreesRegressor(n_estimators=15, max_depth=6, random_state=0)
    regressor.fit(_with_missing(features, 0.1, seed=6), target)
    values = _compiled(regressor, {PREDICT: OutputSpec(PREDICT, np.dtype(np.float64), ())})
    expected = regressor.predict(rows)
    got = values.method(PREDICT)(rows)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.all(np.abs(got - expected) <= 1e-5 * np.maximum(1.0, np.abs(expected)))

    classes = np.digitize(target, np.quantile(target, [0.33, 0.66]))
    tree = DecisionTreeClassifier(max_depth=8, random_state=0).fit(features, classes)
    compiled = _compiled(tree, _classifier_specs(3))
    assert compiled.method(PREDICT)(rows).tolist() == tree.predict(rows).tolist()


def test_answers_come_in_scikit_learn_dtypes_and_shapes() -> None:
    """Labels are taken from the graph as they are (int64, one per row); probabilities are
    cast from the graph's float32 to scikit-learn's float64."""
    features, labels = _classification()
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)
    forest.fit(features, labels)
    compiled = _compiled(forest, _classifier_specs(2))
    for rows in (features[:1], features[:64]):
        predicted = compiled.method(PREDICT)(rows)
        proba = compiled.method(PREDICT_PROBA)(rows)
        assert (predicted.dtype, predicted.shape) == (np.dtype(np.int64), (len(rows),))
        assert (proba.dtype, proba.shape) == (np.dtype(np.float64), (len(rows), 2))
        assert predicted.tolist() == forest.predict(rows).tolist()


def test_a_forest_fitted_with_missing_values_loads_on_the_compiled_runtime() -> None:
    """Such a forest splits some nodes at an infinite threshold (missing values one way, the
    rest the other). skl2onnx's float64 conversion never returned on it, and the parity sample
    put infinity in rows; `runtime: onnx` must load it and answer as scikit-learn does."""
    features, labels = _classification()
    forest = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)
    forest.fit(_with_missing(features, 0.1, seed=0), labels)
    assert any(np.isinf(tree.tree_.threshold).any() for tree in forest.estimators_)

    prepared = prepare(forest, "onnx", None)

    assert prepared.signature.runtime == "onnx"
    rows = _with_missing(features[:100], 0.3, seed=7)
    assert prepared.methods[PREDICT](rows).tolist() == forest.predict(rows).tolist()


def test_a_value_rounded_across_a_split_is_answered_as_scikit_learn_does() -> None:
    """scikit-learn's trees cast every input to float32 before they compare it with a (float64)
    threshold. The float64 value just above this forest's only threshold rounds to a float32
    below it, so scikit-learn answers as for the left child; a float64 graph compared the value
    unrounded, answered as for the right child, and passed the parity sample all the same."""
    features, labels = make_classification(
        n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=4
    )
    forest = RandomForestClassifier(
        n_estimators=3, max_depth=1, bootstrap=False, max_features=None, random_state=0
    )
    forest.fit(features, labels)
    root = forest.estimators_[0].tree_
    threshold, feature = float(root.threshold[0]), int(root.feature[0])
    row = features[:1].copy()
    row[0, feature] = np.nextafter(threshold, np.inf)
    assert np.float32(row[0, feature]) <= threshold  # the case: rounding crosses the split
    left, right = row.copy(), row.copy()
    left[0, feature], right[0, feature] = threshold - 0.01, threshold + 0.01
    assert forest.predict(left).tolist() != forest.predict(right).tolist()

    prepared = prepare(forest, "onnx", None)

    assert prepared.methods[PREDICT](row).tolist() == forest.predict(row).tolist()
    assert prepared.methods[PREDICT](row).tolist() == forest.predict(left).tolist()
