"""The forms an artifact URI may take: the operator's check behind the CRD's CEL rules on
`spec.model.uri` and the files beside the model (which hosts are allowed: modeldeploy.uris).

Checked in the CRD's order with the same regexes, so both layers give the same first message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from modeldeploy import registry, uris

# Object stores: downloaded by the fetcher init container, the only one that sees the
# credentials of spec.model.env/envFrom (modeldeploy.model_source).
FETCHED_SCHEMES: Final = ("s3://", "gs://", "azure://")
URI_SCHEMES: Final = ("pvc://", "http://", "https://", "file://", *FETCHED_SCHEMES, "mlflow://")
# spec.model.env/envFrom: an mlflow:// model whose registry keeps artifacts in an object store
# is fetched by the same init container, with the same credentials.
ENV_SCHEMES: Final = (*FETCHED_SCHEMES, "mlflow://")
# The files beside the model (profile, signature, validation data).
STORE_NEEDS_MODEL_STORE: Final = (
    "may name an object store (s3://, gs://, azure://) only when spec.model.uri does: the "
    "file is fetched with the model's fetcher credentials"
)
NOT_MLFLOW: Final = "must not be an mlflow:// URI: only the model is resolved through a registry"
FILE_URIS_OFF: Final = (
    "file:// URIs are allowed only when the operator runs with --allow-file-uris "
    "(development); use pvc://, http(s):// or an object store"
)
# Bucket and account names as the stores define them (the CRD's CEL uses the same regexes).
S3_URI: Final = r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9]/[^?#]+"
GS_URI: Final = r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]/[^?#]+"
AZURE_URI: Final = r"azure://[a-z0-9]{3,24}/[a-z0-9][-a-z0-9]{1,61}[a-z0-9]/[^?#]+"


def _rule(holds: Callable[[str], object], message: str) -> Callable[[str], str | None]:
    return lambda uri: None if holds(uri) else message


_HOST_RULES: Final = (
    uris.port_problem,
    uris.encoded_host_problem,
    uris.numeric_host_problem,
    uris.bracket_problem,
    uris.wrapped_ipv4_problem,
    uris.address_problem,
    uris.metadata_host_problem,
)
_TRAVERSAL: Final = _rule(
    lambda uri: (
        ".." not in uri
        and "\\" not in uri
        and not any(code in uri.lower() for code in ("%2e", "%25", "%5c"))
    ),
    "must not contain '..', a backslash, or an encoded '.', '%' or backslash (path traversal)",
)

# Checked in the CRD's order with the same regexes (CEL there, Python here). The host rules
# normalise fully in modeldeploy.uris; the CRD's CEL refuses the spellings it can see.
_URI_RULES: Final[tuple[Callable[[str], str | None], ...]] = (
    _rule(
        lambda uri: uri.startswith(URI_SCHEMES),
        "must start with one of the allowed schemes 'pvc://', 'http://', 'https://', "
        "'file://', 's3://', 'gs://', 'azure://', 'mlflow://'",
    ),
    _rule(lambda uri: re.fullmatch(r"[^\s]+", uri), "must not contain whitespace"),
    _TRAVERSAL,
    _rule(
        lambda uri: (
            not uri.startswith("pvc://")
            or re.fullmatch(r"pvc://[a-z0-9]([-.a-z0-9]*[a-z0-9])?/[^?#]+", uri)
        ),
        "must have the form 'pvc://<claim>/<path>'",
    ),
    _rule(
        lambda uri: (
            not re.match(r"https?://", uri) or re.fullmatch(r"https?://[^/@?#:][^/@?#]*/[^#]+", uri)
        ),
        "must have the form 'http(s)://<host>/<path>', with no credentials and no fragment",
    ),
    *_HOST_RULES,
    _rule(
        lambda uri: not uri.startswith("file://") or re.fullmatch(r"file:///[^?#]+", uri),
        "must have the form 'file:///<absolute path>'",
    ),
    _rule(
        lambda uri: not uri.startswith("s3://") or re.fullmatch(S3_URI, uri),
        "must have the form 's3://<bucket>/<key>' (bucket: 3-63 lowercase letters, digits, "
        "'.' and '-'; no query or fragment)",
    ),
    _rule(
        lambda uri: not uri.startswith("gs://") or re.fullmatch(GS_URI, uri),
        "must have the form 'gs://<bucket>/<object>' (bucket: 3-222 lowercase letters, digits, "
        "'.', '_' and '-'; no query or fragment)",
    ),
    _rule(
        lambda uri: not uri.startswith("azure://") or re.fullmatch(AZURE_URI, uri),
        "must have the form 'azure://<account>/<container>/<blob>' (account: 3-24 lowercase "
        "letters and digits; container: 3-63 lowercase letters, digits and '-')",
    ),
    _rule(
        lambda uri: not uri.startswith(registry.SCHEME) or re.fullmatch(registry.URI_PATTERN, uri),
        "must have the form 'mlflow://<registered model name>/<version>' or "
        "'mlflow://<registered model name>/@<alias>'",
    ),
)

# A tracking server URI: http(s), a host and an optional path; the host rules of model URIs.
TRACKING_URI_PATTERN: Final = r"https?://[^/@?#:][^/@?#]*(/[^?#]*)?"


def check_tracking_uri(uri: str) -> str:
    if not re.fullmatch(TRACKING_URI_PATTERN, uri) or re.search(r"\s", uri):
        raise ValueError(
            "must have the form 'http(s)://<host>[:<port>][/<path>]', with no credentials, "
            "query or fragment"
        )
    with_path = uri if "/" in uri.split("://", 1)[1] else f"{uri}/"
    for rule in (_TRAVERSAL, *_HOST_RULES):
        if (problem := rule(with_path)) is not None:
            raise ValueError(problem)
    return uri.rstrip("/")


def check_uri(uri: str) -> str:
    for rule in _URI_RULES:
        if (problem := rule(uri)) is not None:
            raise ValueError(problem)
    return uri
