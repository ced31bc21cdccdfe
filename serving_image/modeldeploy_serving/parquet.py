"""Parquet files as pandas frames, through fastparquet, imported only when one is read.

Not pyarrow, pandas' default engine: once it is installed, pandas 3 imports it on every
`import pandas` (about 65 MB more in each model server, whether it reads Parquet or not) and
switches its strings to pyarrow-backed ones. fastparquet is called directly, not through
`pd.read_parquet(engine="fastparquet")`, which pandas 3.1 deprecates.

fastparquet's own errors on a damaged file say little (a corrupt footer surfaces as
"TypeError: 'NoneType' object is not iterable"), so `ParquetUnreadable` also names the part
that failed: the footer (schema and row groups) or the column data. Its native decoders do not
check every bound: some damage inside the column data crashes the process instead (signal 11;
docs/monitor.md says what the operator then sees).
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any


class ParquetUnreadable(Exception):
    """The bytes are not Parquet fastparquet can decode; the message says which part failed."""


def read_parquet(source: str | IO[bytes]) -> Any:
    """The frame in a Parquet file: a path, or an open binary file. Missing values arrive as
    NaN, None or pandas' NA (nullable integer and boolean columns); categoricals stay
    categorical."""
    # fastparquet's thrift decoder prints a line to stdout for every corrupt byte it skips:
    # thousands of log lines for one damaged file; the exception says it once. Swapping
    # sys.stdout is process-wide, but the server logs to stderr and prints nothing else.
    with open(os.devnull, "w") as discard, contextlib.redirect_stdout(discard):
        return _read(source)


def _read(source: str | IO[bytes]) -> Any:
    import fastparquet

    try:
        parquet = fastparquet.ParquetFile(source)
    except OSError:
        raise  # a missing or unreadable path says so itself
    except Exception as exc:
        raise ParquetUnreadable(
            f"its footer (schema and row groups) cannot be decoded: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return parquet.to_pandas()
    except Exception as exc:
        raise ParquetUnreadable(
            f"its column data cannot be decoded: {type(exc).__name__}: {exc}"
        ) from exc
