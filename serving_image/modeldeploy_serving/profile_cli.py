"""``modeldeploy-profile``: read training data (CSV or Parquet) and the model, write the JSON
reference profile, print its sha256 for ``spec.model.profile``. Thin: the work is profile.py."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from .drift import ProfileError
from .parquet import read_parquet
from .profile import DEFAULT_BINS, DEFAULT_TOP_K, build_profile


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-profile",
        description="Write a reference profile of the training data and the model's predictions "
        "(for drift detection) and print its sha256.",
    )
    parser.add_argument("--data", type=Path, required=True, help="training data: .csv or .parquet")
    parser.add_argument("--model", type=Path, required=True, help="the model artifact")
    parser.add_argument("--format", choices=("joblib", "skops"), default="joblib")
    parser.add_argument("--target", help="label column in the data, left out of the profile")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="quantile bins per column")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="categories kept")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.data.suffix == ".parquet":
        data = read_parquet(str(args.data))
    else:
        data = pd.read_csv(args.data)
    try:
        profile = build_profile(
            data,
            _load(args.model, args.format),
            target=args.target,
            bins=args.bins,
            top_k=args.top_k,
        )
    except ProfileError as exc:
        print(f"modeldeploy-profile: {exc}", file=sys.stderr)
        return 2
    raw = orjson.dumps(profile, option=orjson.OPT_INDENT_2)
    args.out.write_bytes(raw)
    print(f"{args.out} sha256 {hashlib.sha256(raw).hexdigest()}")
    return 0


def _load(path: Path, fmt: str) -> Any:
    # Your own artifact, on your own machine: loaded as you would in a notebook.
    if fmt == "skops":
        import skops.io

        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    import joblib

    return joblib.load(path)
