"""Get an artifact's bytes and prove they are the ones the user named.

The bytes are read once into memory, hashed, and only those bytes are deserialized later: no
second read of the file that could see different content (time-of-check/time-of-use).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from . import download, stores
from .errors import ArtifactTooLarge, FetchFailed, OutputNotWritable, Sha256Mismatch

_CHUNK = 1024 * 1024


def fetch(uri: str, *, max_bytes: int, timeout: float, allow_loopback: bool = False) -> bytes:
    """The artifact's bytes from a local path, file://, http(s):// or object-store URI
    (downloads never reach loopback, link-local or metadata addresses; `allow_loopback` is for
    tests)."""
    if urlsplit(uri).scheme.lower() in stores.SCHEMES:
        return stores.fetch(
            uri,
            max_bytes=max_bytes,
            timeout=timeout,
            allow_loopback=allow_loopback,
            environ=os.environ,
        )
    path = local_path(uri)
    if path is None:
        return _download(uri, max_bytes=max_bytes, timeout=timeout, allow_loopback=allow_loopback)
    return _read_file(path, max_bytes=max_bytes)


def local_path(uri: str) -> Path | None:
    """The file a local path or file:// URI names; None for http(s) and object stores."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https", *stores.SCHEMES):
        return None
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise FetchFailed(f"{uri}: a file:// URI names no host; use file:///absolute/path")
    return Path(unquote(parts.path) if parts.scheme == "file" else uri)


def verify(data: bytes, expected_sha256: str, *, source: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256):
        raise Sha256Mismatch(
            f"{source}: sha256 is {actual}, expected {expected_sha256} ({len(data)} bytes read)"
        )


def write_atomically(data: bytes, destination: Path) -> None:
    """Write to a temporary file beside the destination, then rename: readers never see half."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".partial-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o444)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputNotWritable(f"{destination}: {exc.strerror or exc}") from None


def _read_file(path: Path, *, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise ArtifactTooLarge(f"{path}: {size} bytes, limit is {max_bytes}")
            return _read_limited(handle, max_bytes=max_bytes, source=str(path), deadline=None)
    except OSError as exc:
        raise FetchFailed(f"{path}: {exc.strerror or exc}") from None


def _download(uri: str, *, max_bytes: int, timeout: float, allow_loopback: bool) -> bytes:
    opener = download.opener(allow_loopback=allow_loopback)
    request = urllib.request.Request(uri, headers={"User-Agent": "modeldeploy-server"})
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ArtifactTooLarge(f"{uri}: Content-Length {declared}, limit is {max_bytes}")
            return _read_limited(response, max_bytes=max_bytes, source=uri, deadline=deadline)
    except urllib.error.HTTPError as exc:
        raise FetchFailed(f"{uri}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchFailed(f"{uri}: {exc.reason}") from None
    except TimeoutError:
        raise FetchFailed(f"{uri}: no data for {timeout:g} s") from None
    except OSError as exc:
        raise FetchFailed(f"{uri}: {exc.strerror or exc}") from None


def _read_limited(
    handle: IO[bytes], *, max_bytes: int, source: str, deadline: float | None
) -> bytes:
    """Read in chunks so a lying Content-Length or a growing file cannot exceed the limit."""
    chunks: list[bytes] = []
    total = 0
    while chunk := handle.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ArtifactTooLarge(f"{source}: more than {max_bytes} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise FetchFailed(f"{source}: download did not finish in time ({total} bytes read)")
        chunks.append(chunk)
    return b"".join(chunks)
