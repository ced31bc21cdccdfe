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


def decoder_crash(data: bytes, tries: int = 3000) -> bytes | None:
    """`data` with one byte changed so that fastparquet's native decoder crashes on it (about 1
    in 100 random one-byte changes do), found by trying seeded random changes in forked
    children; None if none crashes (a fastparquet that checks its bounds)."""
    import io
    import os

    import numpy as np

    from modeldeploy_serving.parquet import read_parquet

    rng = np.random.default_rng(1)
    for _ in range(tries):
        damaged = bytearray(data)
        damaged[int(rng.integers(4, len(data) - 8))] = int(rng.integers(0, 256))
        pid = os.fork()
        if pid == 0:  # the child only decodes, silenced, and exits without cleanup
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            try:
                read_parquet(io.BytesIO(bytes(damaged)))
            finally:
                os._exit(0)
        if os.WIFSIGNALED(os.waitpid(pid, 0)[1]):
            return bytes(damaged)
    return None
