"""Parquet files as pandas frames, through fastparquet, imported only when one is read.

Not pyarrow, pandas' default engine: once it is installed, pandas 3 imports it on every
`import pandas` (about 65 MB more in each model server, whether it reads Parquet or not) and
switches its strings to pyarrow-backed ones. fastparquet is called directly, not through
`pd.read_parquet(engine="fastparquet")`, which pandas 3.1 deprecates.

fastparquet's own errors on a damaged file say little (a corrupt footer surfaces as
"TypeError: 'NoneType' object is not iterable"), so `ParquetUnreadable` also names the part
that failed: the footer (schema and row groups) or the column data. Its native decoders do not
check every bound: some damage inside the column data crashes the process (signal 11). So the
model server reads Parquet in a child process (`read_parquet_isolated`): a crash there is a clear
load failure, not a crash-looping pod, and fastparquet never enters the server's own memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

# The child: this module run as a program, reading Parquet bytes on stdin.
_CHILD: tuple[str, ...] = (sys.executable, "-m", __name__)
_CHILD_TIMEOUT_SECONDS = 300.0
_EXIT_UNREADABLE = 3


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


def read_parquet_isolated(
    data: bytes, *, command: Sequence[str] = _CHILD, timeout: float = _CHILD_TIMEOUT_SECONDS
) -> Any:
    """The frame in these Parquet bytes, decoded by a child process (`command`: this module as
    a program, the default) and handed back pickled: the child is ours and runs only this
    module, so its pickle is trusted. Raises ParquetUnreadable for any failure of the child,
    a crash included."""
    try:
        done = subprocess.run(
            list(command), input=data, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ParquetUnreadable(f"decoding it took longer than {timeout:g} s") from None
    if done.returncode == 0:
        return pickle.loads(done.stdout)  # our own child's frame: trusted
    said = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode == _EXIT_UNREADABLE and said:
        raise ParquetUnreadable(said[-1])
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ParquetUnreadable(f"the Parquet decoder crashed ({name}): its column data is damaged")
    last = said[-1] if said else "no message"
    raise ParquetUnreadable(f"the Parquet decoder failed (exit {done.returncode}): {last}")


def _child() -> int:
    """Parquet bytes on stdin, the pickled frame on stdout; exit 3 with the reason as the last
    line of stderr when they are not readable Parquet."""
    data = sys.stdin.buffer.read()
    # The frame goes out on a copy of stdout; file descriptor 1 itself points at /dev/null, so
    # nothing a decoder prints (from Python or native code) can corrupt the pickle.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        frame = read_parquet(io.BytesIO(data))
    except ParquetUnreadable as exc:
        print(exc, file=sys.stderr)
        return _EXIT_UNREADABLE
    with out:
        out.write(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
