"""`mlflow://<name>/<version | @alias>`: from a registry reference to the file the pods fetch.

Pure: the requests to make, and what their answers mean, are functions of data here; the HTTP
calls live in `modeldeploy.registry_client`. A reference is resolved once per revision (per spec
hash): the answer (registry version, run id, artifact URI, format) is recorded in the revision's
ControllerRevision and status, so a restart, a restore or a `rollback --to N` renders the same
artifact even after the alias moved. The spec's sha256 still pins the bytes: an alias that points
at another artifact than the digest describes makes a revision the pods refuse to load.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from modeldeploy import names

SCHEME: Final = "mlflow://"
# Registered model names are restricted to what needs no escaping in a URI path; MLflow's own
# `models:/` URIs have the same limit in practice. Aliases follow MLflow's rule (\w and '-').
NAME_PATTERN: Final = r"[A-Za-z0-9][-A-Za-z0-9_.]{0,255}"
VERSION_PATTERN: Final = r"[1-9][0-9]{0,9}"
ALIAS_PATTERN: Final = r"[A-Za-z0-9_-]{1,255}"
URI_PATTERN: Final = rf"mlflow://({NAME_PATTERN})/({VERSION_PATTERN}|@{ALIAS_PATTERN})"
# The tracking server proxies artifacts stored under `mlflow-artifacts:` (`--serve-artifacts`).
ARTIFACT_PROXY: Final = "/api/2.0/mlflow-artifacts/artifacts"
MLMODEL: Final = "MLmodel"
# What mlflow.sklearn writes when the operator cannot read MLmodel (artifacts outside the proxy).
DEFAULT_FILE: Final = "model.pkl"
_PICKLES: Final = ("pickle", "cloudpickle")  # served as `joblib` (joblib.load reads pickles)
_CLOUD_SCHEMES: Final = ("s3://", "gs://", "https://", "http://")


@dataclass(frozen=True)
class Reference:
    """A registered model version, by number or by alias, on one tracking server."""

    tracking_uri: str  # without a trailing slash
    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{SCHEME}{self.name}/{self.version or '@' + str(self.alias)}"


@dataclass(frozen=True)
class Resolution:
    """What a reference pointed at when its revision was made."""

    registry_version: str
    run_id: str  # "" when the version has no run
    artifact_uri: str  # the model file the pods fetch
    format: str  # joblib | skops

    def to_dict(self) -> dict[str, str]:
        return {
            "registryVersion": self.registry_version,
            "runId": self.run_id,
            "artifactUri": self.artifact_uri,
            "format": self.format,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resolution:
        return cls(
            registry_version=str(data["registryVersion"]),
            run_id=str(data.get("runId") or ""),
            artifact_uri=str(data["artifactUri"]),
            format=str(data["format"]),
        )


@dataclass(frozen=True)
class Problem:
    """Why a reference could not be resolved: a reason (for conditions and Events) and words."""

    reason: str
    message: str


@dataclass(frozen=True)
class ModelVersion:
    version: str
    run_id: str


def parse(uri: str, tracking_uri: str) -> Reference | None:
    """The reference an `mlflow://` URI names, or None for any other URI."""
    match = re.fullmatch(URI_PATTERN, uri)
    if match is None:
        return None
    name, which = match.groups()
    base = tracking_uri.rstrip("/")
    if which.startswith("@"):
        return Reference(base, name, alias=which[1:])
    return Reference(base, name, version=which)


def reference(
    uri: str, spec_tracking_uri: str | None, default_tracking_uri: str | None
) -> Reference | Problem | None:
    """The reference to resolve (the spec's tracking server first, else the operator's), a
    Problem when there is no tracking server to ask, or None for a URI of another scheme."""
    if not uri.startswith(SCHEME):
        return None
    tracking = spec_tracking_uri or default_tracking_uri
    if not tracking:
        return Problem(
            names.REASON_REGISTRY_NOT_CONFIGURED,
            f"{uri} names an MLflow registry, but neither spec.model.registry.trackingUri nor "
            "the operator's --mlflow-tracking-uri says where it is",
        )
    found = parse(uri, tracking)
    assert found is not None, "parse_spec checked the form"
    return found


# --- the requests ----------------------------------------------------------------------------


def version_request(ref: Reference) -> tuple[str, dict[str, str]]:
    """Path and query of the call that finds the model version (by number or by alias)."""
    if ref.alias is not None:
        return "/api/2.0/mlflow/registered-models/alias", {"name": ref.name, "alias": ref.alias}
    assert ref.version is not None
    return "/api/2.0/mlflow/model-versions/get", {"name": ref.name, "version": ref.version}


def download_request(ref: Reference, version: str) -> tuple[str, dict[str, str]]:
    return "/api/2.0/mlflow/model-versions/get-download-uri", {"name": ref.name, "version": version}


# --- the answers -------------------------------------------------------------------------------


def model_version(ref: Reference, answer: Mapping[str, Any]) -> ModelVersion | Problem:
    """The `model_version` object both version calls return."""
    found = answer.get("model_version")
    if not isinstance(found, Mapping) or not found.get("version"):
        return Problem(names.REASON_REGISTRY_UNAVAILABLE, f"{ref}: unexpected answer {answer!r}")
    status = found.get("status", "READY")
    if status != "READY":
        return Problem(
            names.REASON_REGISTRY_MODEL_NOT_FOUND,
            f"{ref}: model version {found['version']} is {status}, not READY "
            f"({found.get('status_message') or 'registration unfinished or failed'})",
        )
    return ModelVersion(str(found["version"]), str(found.get("run_id") or ""))


def error(ref: Reference, status: int, answer: Mapping[str, Any] | None) -> Problem:
    """An MLflow error answer. Unknown names, versions and aliases come back as
    RESOURCE_DOES_NOT_EXIST (404), except an unknown alias: INVALID_PARAMETER_VALUE (400)."""
    code = str((answer or {}).get("error_code") or "")
    said = str((answer or {}).get("message") or f"HTTP {status}")
    where = f"the MLflow registry at {ref.tracking_uri}"
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or status == 404:
        return Problem(names.REASON_REGISTRY_MODEL_NOT_FOUND, f"{ref}: {where} says: {said}")
    if status in (401, 403):
        return Problem(
            names.REASON_REGISTRY_UNAVAILABLE,
            f"{ref}: {where} refused the operator (HTTP {status}: {said}); the operator sends "
            "no credentials, so the registry must allow reading model versions anonymously",
        )
    return Problem(names.REASON_REGISTRY_UNAVAILABLE, f"{ref}: {where} answered {status}: {said}")


def unreachable(ref: Reference, detail: str) -> Problem:
    return Problem(
        names.REASON_REGISTRY_UNAVAILABLE,
        f"{ref}: cannot reach the MLflow registry at {ref.tracking_uri}: {detail}",
    )


def artifact_base(ref: Reference, download_uri: str) -> str | Problem:
    """Where the pods can fetch the model directory from: the tracking server's artifact
    proxy for `mlflow-artifacts:` locations, the store itself for cloud locations. A location
    on the tracking server's own disk is out of the pods' reach."""
    location = download_uri.rstrip("/")
    if location.startswith("mlflow-artifacts:"):
        parsed = urllib.parse.urlsplit(location)
        path = parsed.path.lstrip("/")
        return f"{ref.tracking_uri}{ARTIFACT_PROXY}/{path}"
    if location.startswith(_CLOUD_SCHEMES):
        return location
    if azure := _azure(location):
        return azure
    return Problem(
        names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED,
        f"{ref}: the model's artifacts are at {location!r}, which the pods cannot fetch; run the "
        "tracking server with --serve-artifacts (locations `mlflow-artifacts:/...`) or keep "
        "artifacts in s3://, gs:// or Azure Blob storage",
    )


def _azure(location: str) -> str | None:
    """wasbs://<container>@<account>.blob.core.windows.net/<path> as azure://account/container/path."""
    match = re.fullmatch(r"(?:wasbs?|abfss?)://([^@/]+)@([^./]+)\.[^/]+/(.+)", location)
    return None if match is None else f"azure://{match[2]}/{match[1]}/{match[3]}"


def proxied(base: str, ref: Reference) -> bool:
    """Whether the operator can read the model directory itself (through the tracking server)."""
    return base.startswith(f"{ref.tracking_uri}{ARTIFACT_PROXY}/")


def model_file(ref: Reference, mlmodel: str | None, spec_format: str) -> tuple[str, str] | Problem:
    """The file to serve and its format, from the MLmodel file of the model directory (None:
    unreadable from here, so mlflow.sklearn's defaults). A spec that asks for `skops` never
    gets a pickle: skops is how a spec says "load trusted types only"."""
    if mlmodel is None:
        file, fmt = DEFAULT_FILE, "joblib"
    else:
        try:
            document = yaml.safe_load(mlmodel)
        except yaml.YAMLError as err:
            return Problem(names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED, f"{ref}: bad MLmodel: {err}")
        flavors = document.get("flavors") if isinstance(document, Mapping) else None
        sklearn = flavors.get("sklearn") if isinstance(flavors, Mapping) else None
        if not isinstance(sklearn, Mapping) or not sklearn.get("pickled_model"):
            found = sorted(flavors) if isinstance(flavors, Mapping) else []
            return Problem(
                names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED,
                f"{ref}: the model has no sklearn flavor (flavors: {', '.join(found) or 'none'}); "
                "log it with mlflow.sklearn.log_model",
            )
        file = str(sklearn["pickled_model"])
        serialization = str(sklearn.get("serialization_format") or "cloudpickle")
        if serialization not in (*_PICKLES, "skops"):
            return Problem(
                names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED,
                f"{ref}: unknown sklearn serialization_format {serialization!r}",
            )
        fmt = "skops" if serialization == "skops" else "joblib"
        if "/" in file or file in ("", ".", ".."):
            return Problem(
                names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED,
                f"{ref}: MLmodel names the model file {file!r}, not a file in its directory",
            )
    if spec_format == "skops" and fmt != "skops":
        return Problem(
            names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED,
            f"{ref}: spec.model.format is skops, but the registered model is a pickle ({file}); "
            "log it with serialization_format='skops' or set format: joblib if you trust it",
        )
    return file, fmt


def resolution(version: ModelVersion, base: str, file: str, fmt: str) -> Resolution:
    return Resolution(version.version, version.run_id, f"{base}/{file}", fmt)
