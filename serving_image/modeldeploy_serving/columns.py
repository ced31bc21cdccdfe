"""Named, typed input columns: derived from a fitted estimator, or read from a signature file.

What scikit-learn keeps after fit is enough to say what each column is: `feature_names_in_`
names them, a ColumnTransformer says which transformer reads which column, and the fitted
transformer says what it saw (an encoder's categories, a vectorizer's vocabulary, an imputer's
statistics, a scaler's mean). A signature file shipped beside the artifact overrides the kinds
and supplies an example row; its shape follows MLflow's model signature (column specs with a
`type` and `required`, plus an input example as records).

Besides the columns, each profile keeps what it takes to synthesise plausible rows: the warm-up
row and the parity sample of the compiled runtime are made from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import InvalidArtifact
from .signature import Column, ColumnKind

_NUMBER_TYPES = frozenset({"double", "float", "long", "integer", "int", "boolean", "number"})
_STRING_TYPES = frozenset({"string", "str", "binary", "category", "text"})
# Text that lowercases or tokenises differently outside ASCII, and odd spacing: a compiled
# text pipeline must agree with scikit-learn on these too, or it is not used.
_TEXT_NOISE = ("", "Éclair", "ÜBER", "naïve", "x", "a-b", "  ", "42")


@dataclass(frozen=True, slots=True)
class Profile:
    """A column plus what it takes to synthesise values for it."""

    column: Column
    center: float = 0.0
    scale: float = 1.0
    vocabulary: tuple[str, ...] = ()  # text columns: words the vectorizer knows
    frequent: Any = None  # the most frequent value when known (an imputer's mode)
    known: tuple[Any, ...] = ()  # values seen in training (an encoder's categories)
    text: bool = False


@dataclass(frozen=True, slots=True)
class SignatureFile:
    """The parsed signature file: column kinds by name and example rows as records."""

    kinds: dict[str, tuple[ColumnKind, bool]]  # name -> (kind, nullable)
    examples: tuple[dict[str, Any], ...]


def parse_signature_file(raw: bytes) -> SignatureFile:
    """{"inputs": [{"name", "type", "required"?}], "example": {...} | [{...}]}; MLflow's string-
    encoded `inputs` is accepted too."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArtifact(f"signature file is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArtifact("signature file: expected a JSON object")
    inputs = document.get("inputs")
    if isinstance(inputs, str):  # MLflow's MLmodel stores the column specs as a JSON string
        try:
            inputs = orjson.loads(inputs)
        except orjson.JSONDecodeError:
            raise InvalidArtifact("signature file: inputs is a string but not JSON") from None
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArtifact("signature file: inputs must be a non-empty array of columns")
    kinds: dict[str, tuple[ColumnKind, bool]] = {}
    for index, spec in enumerate(inputs):
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidArtifact(f"signature file: inputs[{index}].name must be a string")
        declared = str(spec.get("type", "")).lower()
        if declared in _NUMBER_TYPES:
            kind: ColumnKind = "number"
        elif declared in _STRING_TYPES:
            kind = "string"
        else:
            raise InvalidArtifact(
                f"signature file: inputs[{index}] ({name}): type {declared!r} is not served; "
                "use string, double, float, long, integer or boolean"
            )
        kinds[name] = (kind, spec.get("required", True) is False)
    example = document.get("example", document.get("input_example"))
    examples = example if isinstance(example, list) else [] if example is None else [example]
    if not all(isinstance(row, dict) for row in examples):
        raise InvalidArtifact("signature file: example must be an object or an array of objects")
    return SignatureFile(kinds, tuple(examples))


def derive(estimator: Any, signature_file: SignatureFile | None) -> tuple[Profile, ...]:
    """One profile per named input column, in the estimator's order; () when it has no names."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        if signature_file is not None:
            raise InvalidArtifact(
                "a signature file names columns, but the model was fitted without column names"
            )
        return ()
    names = [str(name) for name in names]
    profiles = dict.fromkeys(names, Profile(Column("", "number")))
    transformer = _column_transformer(estimator)
    if transformer is not None:
        indices = getattr(transformer, "_transformer_to_input_indices", {})
        for key, fitted, _ in transformer.transformers_:
            columns = [names[i] for i in indices.get(key, [])]
            for name, profile in zip(columns, _inspect(fitted, len(columns)), strict=False):
                profiles[name] = profile
    else:
        for name, profile in zip(names, _inspect(_first_step(estimator), len(names)), strict=False):
            profiles[name] = profile
    derived = tuple(_named(profile, name) for name, profile in profiles.items())
    return derived if signature_file is None else _apply_file(derived, signature_file)


def positional_profiles(estimator: Any, n_features: int, *, nullable: bool) -> tuple[Profile, ...]:
    """Profiles of unnamed numeric inputs (for synthetic rows): a leading scaler's statistics."""
    return tuple(
        Profile(Column(f"{index}", "number", nullable), center=p.center, scale=p.scale)
        for index, p in enumerate(_inspect(_first_step(estimator), n_features))
    )


def needs_frame(estimator: Any, profiles: Sequence[Profile]) -> bool:
    """A DataFrame is needed for string columns, or for a ColumnTransformer selecting by name."""
    if any(profile.column.kind == "string" for profile in profiles):
        return True
    return bool(profiles) and _column_transformer(estimator) is not None


def example_row(profiles: Sequence[Profile], n_features: int) -> list[Any]:
    """The warm-up row: the most frequent category, a known word, the training mean (or zero)."""
    if not profiles:
        return [0.0] * n_features
    return [_typical(profile) for profile in profiles]


def random_values(profile: Profile, rng: np.random.Generator, n_rows: int) -> list[Any]:
    """Plausible values for one column, with some missing where the column is nullable."""
    column = profile.column
    values: list[Any]
    known = profile.known
    if column.kind == "number":
        if known:
            values = [float(v) for v in rng.choice(np.asarray(known, dtype=np.float64), n_rows)]
        else:
            values = rng.normal(profile.center, profile.scale, n_rows).tolist()
    elif known:
        values = [str(v) for v in rng.choice(np.asarray(known, dtype=object), n_rows)]
    elif profile.text:
        values = [_sentence(profile.vocabulary, rng) for _ in range(n_rows)]
    else:
        values = [str(v) for v in rng.choice(np.array(["a", "b", "other"], dtype=object), n_rows)]
    if column.nullable:
        missing = float("nan") if column.kind == "number" else None
        values = [missing if rng.random() < 0.1 else v for v in values]
    return values


def tree_thresholds(estimator: Any, n_features: int) -> list[np.ndarray]:
    """Per feature, the split thresholds of a tree model fitted on raw inputs ([] otherwise).

    Values at and beside a threshold are where a graph can part ways with scikit-learn (a
    float32 graph by its rounded thresholds, a float64 one by not rounding the input as
    scikit-learn's trees do), so the parity sample puts rows exactly there. An infinite
    threshold (a split that parts the missing values from every other value) is left out: no
    input sits at it, and scikit-learn refuses infinity.
    """
    trees = [tree for tree in fitted_trees(estimator) if tree is not None]
    if not trees:
        return []
    per_feature: list[list[np.ndarray]] = [[] for _ in range(n_features)]
    for tree in trees:
        split = (tree.feature >= 0) & np.isfinite(tree.threshold)
        for feature, threshold in zip(tree.feature[split], tree.threshold[split], strict=True):
            if feature < n_features:
                per_feature[feature].append(threshold)
    return [np.unique(np.asarray(values, dtype=np.float64)) for values in per_feature]


def fitted_trees(part: Any) -> list[Any]:
    """Per member of an ensemble (its `estimators_` in order, skl2onnx's tree ids), or of a
    single estimator, the fitted `tree_`, or None for a member that is not a tree."""
    members = np.ravel(np.asarray(getattr(part, "estimators_", [part]), dtype=object))
    trees = [getattr(member, "tree_", None) for member in members]
    return [tree if hasattr(tree, "threshold") else None for tree in trees]


# --- inspecting fitted transformers -----------------------------------------------------------


def _column_transformer(estimator: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, ColumnTransformer):
        return estimator
    if isinstance(estimator, Pipeline) and estimator.steps:
        return _column_transformer(estimator.steps[0][1])
    return None


def _first_step(estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(estimator, Pipeline) and estimator.steps:
        estimator = estimator.steps[0][1]
    return estimator


def _inspect(transformer: Any, n_columns: int) -> list[Profile]:
    """What one fitted transformer says about each of its input columns."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    plain = [Profile(Column("", "number"))] * n_columns
    if isinstance(transformer, str):  # "drop" / "passthrough"
        return plain
    if isinstance(transformer, Pipeline):
        steps = [step for _, step in transformer.steps if step not in (None, "passthrough")]
        if not steps:
            return plain
        first = _inspect(steps[0], n_columns)
        if isinstance(steps[0], SimpleImputer) and len(steps) > 1:
            # The imputer says the kind and the mode; the next step (an encoder) the categories.
            after = _inspect(steps[1], n_columns)
            return [_merged(a, b) for a, b in zip(first, after, strict=True)]
        return first
    if hasattr(transformer, "categories_") and hasattr(transformer, "handle_unknown"):
        return [_encoder_profile(transformer, cats) for cats in transformer.categories_]
    if hasattr(transformer, "build_analyzer"):  # CountVectorizer, TfidfVectorizer, Hashing...
        vocabulary = tuple(sorted(getattr(transformer, "vocabulary_", {}) or ()))[:64]
        return [Profile(Column("", "string"), vocabulary=vocabulary, text=True)] * n_columns
    if isinstance(transformer, SimpleImputer) and hasattr(transformer, "statistics_"):
        statistics = transformer.statistics_
        kind: ColumnKind = "string" if statistics.dtype.kind in "OUS" else "number"
        return [_imputer_profile(kind, value) for value in list(statistics)[:n_columns]]
    mean, scale = getattr(transformer, "mean_", None), getattr(transformer, "scale_", None)
    if mean is not None and scale is not None and len(mean) == n_columns:
        return [
            Profile(Column("", "number"), center=float(m), scale=float(s) or 1.0)
            for m, s in zip(mean, scale, strict=True)
        ]
    return plain


def _encoder_profile(encoder: Any, categories: np.ndarray) -> Profile:
    kind: ColumnKind = "string" if categories.dtype.kind in "OUS" else "number"
    known = tuple(_plain(value) for value in categories if not _is_missing(value))
    closed = encoder.handle_unknown == "error"
    column = Column("", kind, categories=known if closed else None)
    return Profile(column, frequent=known[0] if known else None, known=known)


def _imputer_profile(kind: ColumnKind, value: Any) -> Profile:
    if kind == "number":
        number = float(value)
        return Profile(Column("", kind), center=number if math.isfinite(number) else 0.0)
    return Profile(Column("", kind), frequent=None if _is_missing(value) else str(value))


def _merged(imputed: Profile, encoded: Profile) -> Profile:
    column = Column("", imputed.column.kind, categories=encoded.column.categories)
    return Profile(
        column,
        center=imputed.center,
        scale=imputed.scale,
        vocabulary=encoded.vocabulary,
        frequent=imputed.frequent if imputed.frequent is not None else encoded.frequent,
        text=encoded.text,
        known=encoded.known,
    )


def _named(profile: Profile, name: str) -> Profile:
    column = profile.column
    return Profile(
        Column(name, column.kind, column.nullable, column.categories),
        center=profile.center,
        scale=profile.scale,
        vocabulary=profile.vocabulary,
        frequent=profile.frequent,
        known=profile.known,
        text=profile.text,
    )


def _apply_file(
    profiles: tuple[Profile, ...], signature_file: SignatureFile
) -> tuple[Profile, ...]:
    names = [profile.column.name for profile in profiles]
    unknown = sorted(set(signature_file.kinds) - set(names))
    if unknown:
        raise InvalidArtifact(
            f"signature file names columns the model was not fitted on: {', '.join(unknown)}"
        )
    result = []
    for profile in profiles:
        column = profile.column
        kind, nullable = signature_file.kinds.get(column.name, (column.kind, column.nullable))
        categories = column.categories if kind == column.kind else None
        replaced = Column(column.name, kind, nullable or column.nullable, categories)
        result.append(
            Profile(
                replaced,
                center=profile.center,
                scale=profile.scale,
                vocabulary=profile.vocabulary,
                frequent=profile.frequent if kind == column.kind else None,
                known=profile.known if kind == column.kind else (),
                text=profile.text or (kind == "string" and not profile.known),
            )
        )
    return tuple(result)


def _typical(profile: Profile) -> Any:
    if profile.frequent is not None:
        return profile.frequent
    if profile.known:
        return profile.known[0]
    if profile.column.kind == "number":
        return profile.center
    if profile.vocabulary:
        return profile.vocabulary[0]
    return "a"


def _sentence(vocabulary: Sequence[str], rng: np.random.Generator) -> str:
    words = list(vocabulary) or ["a", "b"]
    chosen = [str(words[int(i)]) for i in rng.integers(0, len(words), int(rng.integers(1, 5)))]
    if rng.random() < 0.3:
        chosen.append(_TEXT_NOISE[int(rng.integers(0, len(_TEXT_NOISE)))])
    shaped = [
        w.upper() if rng.random() < 0.2 else w.title() if rng.random() < 0.2 else w for w in chosen
    ]
    return (", " if rng.random() < 0.2 else " ").join(shaped)


def _cased(word: str, draw: float) -> str:
    return word.upper() if draw < 0.2 else word.title() if draw < 0.4 else word


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON, set membership)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
