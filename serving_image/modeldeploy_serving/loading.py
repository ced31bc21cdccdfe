"""The load pipeline shared by the server and init-container mode: fetch, verify, deserialize."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import artifact
from .config import ServerConfig
from .errors import FetchFailed, InvalidArtifact, LoadError

if TYPE_CHECKING:
    from .drift import Profile
    from .model import LoadedModel
    from .signature import ModelSignature

log = logging.getLogger(__name__)
SIGNATURE_SUFFIX = ".signature.json"
# The profile and the signature file describe the model; neither comes near the model's size.
SIDE_FILE_MAX_BYTES = 16 * 1024 * 1024


def fetch_verified(config: ServerConfig) -> bytes:
    return _fetch(config, config.model_uri, config.sha256, config.model_uri)


def _fetch(
    config: ServerConfig, uri: str, sha256: str, source: str, max_bytes: int | None = None
) -> bytes:
    """Any file the server reads (model, profile, signature, validation data): downloaded
    within the limits and verified by its sha256 before anything parses it."""
    data = artifact.fetch(
        uri,
        max_bytes=config.max_artifact_bytes if max_bytes is None else max_bytes,
        timeout=config.download_timeout,
        allow_loopback=config.allow_loopback_downloads,
    )
    artifact.verify(data, sha256, source=source)
    return data


def load_verified(config: ServerConfig) -> LoadedModel:
    """Only bytes whose sha256 matched ever reach the deserializer. With a validation dataset,
    the warmed-up model must also meet its threshold on it (validation.py)."""
    started = time.monotonic()
    data = fetch_verified(config)
    # Before deserializing: a wrong sha256 fails fast.
    signature = read_signature_file(config)
    dataset = _fetch_dataset(config)
    loaded = _deserialize(config, data, signature)
    if config.profile_uri:
        loaded = dataclasses.replace(loaded, profile=load_profile(config, loaded.signature))
    log.info(
        "model %s version %r loaded: %s, %d bytes, sha256 %s, %d features, outputs %s, "
        "saved with scikit-learn %s, runtime %s, %.0f ms (of which compiling %.0f ms)",
        config.model_name,
        config.model_version,
        config.format,
        len(data),
        config.sha256[:12],
        loaded.signature.n_features,
        ",".join(loaded.signature.output_names),
        loaded.saved_sklearn_version,
        loaded.signature.runtime,
        (time.monotonic() - started) * 1000,
        loaded.compile_seconds * 1000,
    )
    if dataset is not None:
        _validate(config, loaded, dataset)
    return loaded


def load_profile(config: ServerConfig, signature: ModelSignature) -> Profile:
    """The reference profile, fetched and verified like the model; one for another model's
    columns is refused (InvalidArtifact): the pod never becomes ready with it."""
    import orjson

    from .drift import ProfileError, parse_profile
    from .drift_counter import check_profile

    uri = config.profile_uri
    data = _fetch(config, uri, config.profile_sha256, uri, SIDE_FILE_MAX_BYTES)
    try:
        profile = parse_profile(orjson.loads(data))
    except (orjson.JSONDecodeError, ProfileError) as exc:
        raise InvalidArtifact(f"profile {config.profile_uri}: {exc}") from None
    check_profile(profile, signature)
    log.info(
        "drift profile loaded: %d features, sha256 %s",
        len(profile.features),
        config.profile_sha256[:12],
    )
    return profile


def _fetch_dataset(config: ServerConfig) -> bytes | None:
    uri, sha256 = config.validation_uri, config.validation_sha256
    if not uri:
        return None
    return _fetch(config, uri, sha256, f"validation dataset {uri}")


def _validate(config: ServerConfig, loaded: LoadedModel, dataset: bytes) -> None:
    from . import validation

    assert config.validation_threshold is not None
    result = validation.check(
        loaded,
        dataset,
        metric=config.validation_metric,
        threshold=config.validation_threshold,
        label_column=config.validation_label_column,
        source=config.validation_uri,
    )
    log.info("validation passed: %s", result)


def fetch_to(config: ServerConfig, destination: Path) -> None:
    """Init-container mode: verified bytes land at destination, test-loaded unless skipped."""
    data = fetch_verified(config)
    if not config.skip_load_check:
        _deserialize(config, data, read_signature_file(config))
    artifact.write_atomically(data, destination)
    log.info(
        "verified artifact written to %s (%d bytes, sha256 %s)",
        destination,
        len(data),
        config.sha256[:12],
    )


def _deserialize(config: ServerConfig, data: bytes, signature: bytes | None) -> LoadedModel:
    # Imported here: scikit-learn takes a second to import, and an init container whose download
    # or checksum failed should say so at once.
    from . import model

    return model.load(
        data,
        config.format,
        trusted_types=config.skops_trusted_types,
        allow_version_mismatch=config.allow_sklearn_version_mismatch,
        runtime=config.runtime,
        signature_file=signature,
    )


def read_signature_file(config: ServerConfig) -> bytes | None:
    """--signature-uri (fetched and verified like the profile), else --signature-file, else
    <artifact>.signature.json beside a local artifact.

    A local file is not covered by a sha256: it only describes inputs (and is parsed as plain
    JSON), so the worst a wrong one does is make the load fail or refuse requests.
    """
    if config.signature_uri:
        uri = config.signature_uri
        data = _fetch(config, uri, config.signature_sha256, f"signature {uri}", SIDE_FILE_MAX_BYTES)
        log.info("signature file %s verified", config.signature_uri)
        return data
    path = config.signature_file
    if path is None:
        local = artifact.local_path(config.model_uri)
        if local is None:
            return None
        path = local.with_name(local.name + SIGNATURE_SUFFIX)
        if not path.is_file():
            return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FetchFailed(f"signature file {path}: {exc.strerror or exc}") from None


def failure_line(exc: LoadError) -> str:
    """The one line a person (and the operator, via the termination log) reads."""
    return f"{exc.cause}: {exc}"


def record_failure(exc: LoadError, termination_log: Path | None) -> str:
    line = failure_line(exc)
    log.error("model load failed: %s", line)
    if termination_log is not None:
        try:
            termination_log.write_text(line + "\n", encoding="utf-8")
        except OSError:
            log.debug("termination log %s is not writable", termination_log)
    return line
