"""Parquet test files, written by fastparquet (the image reads Parquet with it and carries no
pyarrow) with snappy compression, as pandas, Spark and pyarrow write by default. fastparquet's
own `write`, not `DataFrame.to_parquet(engine="fastparquet")`, which pandas 3.1 deprecates."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any


def write_parquet(target: Path | IO[bytes], frame: Any) -> None:
    import fastparquet

    where = str(target) if isinstance(target, Path) else target
    fastparquet.write(where, frame, compression="SNAPPY", write_index=False)
