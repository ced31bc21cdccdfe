"""The compiled runtime: the estimator converted by skl2onnx and run by ONNX Runtime.

A tree ensemble's predict() in scikit-learn pays Python and joblib overhead per tree; the same
trees in one ONNX Runtime kernel answer a row in microseconds. A conversion is only trusted once
it agrees with scikit-learn on a parity sample (see `parity_problem`); the caller decides what a
failure means (fall back, or refuse to load).

Graphs are tried in float64 first (a linear model then matches to the last bit), then float32
(scikit-learn's trees cast inputs to float32 too, so inputs agree, and the parity sample probes
values at the split thresholds, where a float32 threshold could send a row the other way).
Tree graphs get scikit-learn's learned direction for missing values (`_set_missing_directions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .columns import fitted_trees
from .signature import PREDICT, PREDICT_PROBA, Column, OutputSpec

log = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-6  # absolute, on predict_proba
# Relative (absolute below 1), on a regressor's predict: a float32 tree graph sums its leaves in
# float32, which drifts by a few 1e-6 over tens of trees.
VALUE_TOLERANCE = 1e-5
# Text vectorizers lowercase through ONNX Runtime's StringNormalizer, which needs a locale the
# slim image has (en_US.UTF-8, skl2onnx's default, is not installed there).
_TEXT_LOCALE = "C.UTF-8"


_ONNX_TENSOR_DTYPES = {
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}


class ConversionFailed(Exception):
    """skl2onnx or ONNX Runtime refused the estimator; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class OnnxModel:
    """One InferenceSession plus how to feed it batches and read its outputs as sklearn would."""

    session: Any
    precision: str  # "float64" | "float32"
    feed: Callable[[np.ndarray], dict[str, np.ndarray]]
    output_names: dict[str, str]  # PREDICT / PREDICT_PROBA -> the graph's output name
    specs: dict[str, OutputSpec]

    def method(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        output, spec, feed = [self.output_names[name]], self.specs[name], self.feed
        # The session's C++ run, past ONNX Runtime's Python wrapper: that wrapper checks the
        # feed's names (ours are the graph's own, fixed at conversion) and retries on another
        # execution provider (there is only the CPU one); on a single row it costs a quarter
        # of the whole call. Any ONNX Runtime without it gets the wrapper.
        # Both take (output names, feed, run options).
        run_graph = getattr(getattr(self.session, "_sess", None), "run", self.session.run)
        if self._as_scikit_learn_answers(name):

            def run_as_is(rows: np.ndarray) -> np.ndarray:
                (result,) = run_graph(output, feed(rows), None)
                return result  # type: ignore[no-any-return]

            return run_as_is

        def run(rows: np.ndarray) -> np.ndarray:
            (result,) = run_graph(output, feed(rows), None)
            return (
                np.asarray(result)
                .reshape((len(rows), *spec.row_shape))
                .astype(spec.dtype, copy=False)
            )

        return run

    def _as_scikit_learn_answers(self, name: str) -> bool:
        """Does the graph's output already have scikit-learn's dtype and row shape (a tree
        ensemble's int64 labels do), so each answer needs no reshape or cast?"""
        graph_output = next(
            o for o in self.session.get_outputs() if o.name == self.output_names[name]
        )
        spec = self.specs[name]
        dtype = _ONNX_TENSOR_DTYPES.get(graph_output.type)
        shape = graph_output.shape
        return (
            dtype == spec.dtype
            and isinstance(shape, list)
            and len(shape) == 1 + len(spec.row_shape)
            and list(shape[1:]) == list(spec.row_shape)
        )


def candidates(
    estimator: Any,
    columns: Sequence[Column],
    n_features: int,
    frame: bool,
    specs: dict[str, OutputSpec],
) -> Iterator[OnnxModel | ConversionFailed]:
    """Each graph precision in turn: a converted model, or why that precision failed."""
    for precision in _precisions(estimator):
        if precision == "float64" and _splits_at_infinity(estimator):
            yield ConversionFailed(
                "float64 graph: not tried: a tree splits at an infinite threshold (missing "
                "values apart from the rest), where skl2onnx 1.20's float64 conversion never ends"
            )
            continue
        try:
            yield _convert(estimator, columns, n_features, frame, specs, precision)
        except Exception as exc:  # skl2onnx raises anything: RuntimeError, ValueError, KeyError
            text = f"{precision} graph: {type(exc).__name__}: {exc}".replace("\n", " ")
            yield ConversionFailed(text[:300])


def foreign_part(estimator: Any) -> str | None:
    """The first part that is not a scikit-learn class: skl2onnx has no converter for it, and
    running it on a synthetic sample could have side effects, so conversion is not attempted."""
    for part in _parts(estimator):
        module = type(part).__module__
        if not module.startswith("sklearn."):
            return f"{module}.{type(part).__name__}"
    return None


def parity_problem(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> str | None:
    """None when the compiled outputs match scikit-learn's, else the first difference.

    Labels must be identical; probabilities within PROBABILITY_TOLERANCE; a regressor's values
    within VALUE_TOLERANCE relative to their size.
    """
    for name, want in expected.items():
        got = actual[name]
        if got.shape != want.shape:
            return f"{name}: shape {got.shape}, scikit-learn {want.shape}"
        if name == PREDICT and want.dtype.kind not in "fc":
            differ = np.flatnonzero(np.asarray(got != want).reshape(len(want), -1).any(axis=1))
            if differ.size:
                row = int(differ[0])
                return (
                    f"labels differ on {differ.size} of {len(want)} rows "
                    f"(row {row}: onnx {got[row]!r}, scikit-learn {want[row]!r})"
                )
            continue
        tolerance = PROBABILITY_TOLERANCE if name == PREDICT_PROBA else VALUE_TOLERANCE
        scale = 1.0 if name == PREDICT_PROBA else np.maximum(1.0, np.abs(want))
        with np.errstate(invalid="ignore"):
            excess = np.abs(got.astype(np.float64) - want) / scale
        if not np.all(excess <= tolerance):
            worst = float(np.nanmax(np.where(np.isnan(excess), np.inf, excess)))
            return f"{name} differs by up to {worst:.3g} (tolerance {tolerance:g})"
    return None


def _convert(
    estimator: Any,
    columns: Sequence[Column],
    n_features: int,
    frame: bool,
    specs: dict[str, OutputSpec],
    precision: str,
) -> OnnxModel:
    import onnxruntime
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number_type = DoubleTensorType if precision == "float64" else FloatTensorType
    dtype = np.float64 if precision == "float64" else np.float32
    if frame:
        initial_types = [
            (c.name, StringTensorType([None, 1]) if c.kind == "string" else number_type([None, 1]))
            for c in columns
        ]
        feed = _frame_feed(columns, dtype)
    else:
        initial_types = [("input", number_type([None, n_features]))]
        feed = _array_feed(dtype)
    graph = convert_sklearn(estimator, initial_types=initial_types, options=_options(estimator))
    _set_missing_directions(graph, estimator)
    options = onnxruntime.SessionOptions()
    # One thread: the server runs one predict at a time per process and scales by replicas;
    # a thread pool would only contend with the event loop for the pod's CPU quota.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    outputs = [output.name for output in session.get_outputs()]
    names = {PREDICT: outputs[0]}
    if PREDICT_PROBA in specs:
        if len(outputs) < 2:
            raise ConversionFailed("the graph has no probabilities output")
        names[PREDICT_PROBA] = outputs[1]
    wanted = {name: spec for name, spec in specs.items() if name in names}
    return OnnxModel(session, precision, feed, names, wanted)


def _set_missing_directions(graph: Any, estimator: Any) -> None:
    """Send a missing value where scikit-learn's trees send it.

    scikit-learn's trees learn, per split, which child a missing value goes to (the side with
    more samples when training saw none); skl2onnx 1.20 leaves every split's
    `nodes_missing_value_tracks_true` at 0, so ONNX Runtime sends NaN to the other child and
    rows with a missing value had to be answered by scikit-learn. Only for a graph with one
    tree ensemble from one fitted tree model whose node layout matches tree for tree; anything
    else is left as converted (the parity sample then says whether missing values agree).
    """
    forests = [trees for part in _parts(estimator) if (trees := _trees(part))]
    ensembles = [node for node in graph.graph.node if node.op_type in _TREE_ENSEMBLES]
    if len(forests) != 1 or len(ensembles) != 1:
        return
    trees = forests[0]
    attributes = {attribute.name: attribute for attribute in ensembles[0].attribute}
    if "nodes_missing_value_tracks_true" not in attributes:
        return
    tree_ids = attributes["nodes_treeids"].ints
    node_ids = attributes["nodes_nodeids"].ints
    features = attributes["nodes_featureids"].ints
    modes = attributes["nodes_modes"].strings
    directions = []
    for tree_id, node_id, feature, mode in zip(tree_ids, node_ids, features, modes, strict=True):
        if tree_id >= len(trees) or node_id >= trees[tree_id].node_count:
            return
        tree = trees[tree_id]
        if mode == b"LEAF":
            directions.append(0)
        elif tree.feature[node_id] == feature:
            directions.append(int(tree.missing_go_to_left[node_id]))
        else:
            return  # not the layout expected: leave the graph as converted
    tracks = attributes["nodes_missing_value_tracks_true"]
    del tracks.ints[:]
    tracks.ints.extend(directions)


def _precisions(estimator: Any) -> tuple[str, str]:
    """scikit-learn's trees compare their inputs cast to float32 (`sklearn.tree`'s DTYPE), so a
    model with trees gets the float32 graph first: it rounds an input as scikit-learn does, where
    a float64 graph parts ways on values that the cast moves across a split, and it converts in
    about a third of the time (docs/serving.md, "Runtime and parity"). Anything else gets float64
    first: its arithmetic is float64 in scikit-learn too."""
    with_trees = next(_every_tree(estimator), None) is not None
    return ("float32", "float64") if with_trees else ("float64", "float32")


def _splits_at_infinity(estimator: Any) -> bool:
    """Does a tree split at an infinite threshold? scikit-learn puts one where a split sends
    the missing values one way and every other value the other; skl2onnx's float64 threshold
    search (`find_switch_point`) then loops forever on a NaN bound."""
    return any(not np.isfinite(tree.threshold).all() for tree in _every_tree(estimator))


def _every_tree(estimator: Any) -> Iterator[Any]:
    """The fitted trees of every part of the model (pipeline steps, transformers, ensembles)."""
    for part in _parts(estimator):
        yield from (tree for tree in fitted_trees(part) if tree is not None)


_TREE_ENSEMBLES = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})


def _trees(part: Any) -> list[Any]:
    """The part's trees when each carries its learned missing-value directions, else []."""
    trees = fitted_trees(part)
    return trees if all(hasattr(tree, "missing_go_to_left") for tree in trees) else []


def _array_feed(dtype: type[np.generic]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    def feed(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"input": rows.astype(dtype, copy=False)}

    return feed


def _frame_feed(
    columns: Sequence[Column], dtype: type[np.generic]
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    layout = [(index, column.name, column.kind == "string") for index, column in enumerate(columns)]

    def feed(rows: np.ndarray) -> dict[str, np.ndarray]:
        tensors = {}
        for index, name, is_string in layout:
            values = rows[:, index : index + 1]
            if is_string:
                values = values.copy()  # contiguous, and ours to change
                # No null in a string tensor: missing becomes "", which the parity sample
                # (with missing values where the column takes them) has shown to be equivalent.
                # `None in list` looks in C; an elementwise == None on objects costs more than
                # the rest of the column, and most batches have nothing missing.
                if None in rows[:, index].tolist():
                    values[values == None] = ""  # noqa: E711
                tensors[name] = values
            else:
                tensors[name] = values.astype(dtype)
        return tensors

    return feed


def _options(estimator: Any) -> dict[int, dict[str, Any]]:
    """Per fitted object: plain probability arrays (no ZipMap), a locale for text vectorizers."""
    options: dict[int, dict[str, Any]] = {}
    for part in _parts(estimator):
        if hasattr(part, "predict_proba") and hasattr(part, "classes_"):
            options[id(part)] = {"zipmap": False}
        elif hasattr(part, "build_analyzer"):
            options[id(part)] = {"locale": _TEXT_LOCALE}
    return options


def _parts(estimator: Any) -> Iterator[Any]:
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _parts(step)
    for _, fitted, _ in getattr(estimator, "transformers_", []):
        if not isinstance(fitted, str):
            yield from _parts(fitted)
