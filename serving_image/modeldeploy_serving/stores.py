"""Object-store downloads (s3://, gs://, azure://) through the stores' own maintained clients.

Runs in the fetcher init container, the only container that sees the credentials (env from the
spec, or the pod's cloud workload identity). Each client finds its credentials the way its
cloud documents (boto3's chain, Application Default Credentials, DefaultAzureCredential), so
nothing here signs requests. What this module adds:

- an endpoint override (AWS_ENDPOINT_URL[_S3], STORAGE_EMULATOR_HOST, a connection string's
  BlobEndpoint) may not point at loopback, link-local or metadata addresses, as a model URI may
  not (`allow_loopback` is for tests);
- the size limit, checked on the object's declared size and again while reading;
- retries with exponential backoff for transient failures only (throttling, 5xx, connection
  trouble); a denied request or a missing object fails at once with a reason a person can act on.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .download import refusal
from .errors import ArtifactTooLarge, FetchFailed

SCHEMES: Final = ("s3", "gs", "azure")
ATTEMPTS: Final = 4
FIRST_DELAY_S: Final = 0.5
_CHUNK: Final = 1024 * 1024
_AWS_ENDPOINTS: Final = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_GCS_EMULATOR: Final = "STORAGE_EMULATOR_HOST"
_AZURE_CONNECTION_STRING: Final = "AZURE_STORAGE_CONNECTION_STRING"
_AZURE_KEY: Final = "AZURE_STORAGE_KEY"
_AZURE_SAS: Final = "AZURE_STORAGE_SAS_TOKEN"
_CREDENTIALS_HINT: Final = (
    "check the credentials given in spec.model.env/envFrom or the cloud identity of "
    "spec.serving.serviceAccountName"
)


class Transient(Exception):
    """A failure worth another attempt (throttled, 5xx, connection reset, timeout)."""


@dataclass(frozen=True)
class ObjectRef:
    scheme: str
    container: str  # bucket (s3, gs) or "<account>/<container>" (azure)
    key: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.container}/{self.key}"


def parse(uri: str) -> ObjectRef:
    """s3://bucket/key, gs://bucket/object, azure://account/container/blob."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    path = parts.path.lstrip("/")
    if scheme == "azure":
        container, _, key = path.partition("/")
        container = f"{parts.netloc}/{container}"
    else:
        container, key = parts.netloc, path
    if scheme not in SCHEMES or not parts.netloc or not key or container.endswith("/"):
        raise FetchFailed(f"{uri}: not an object-store URI ({', '.join(SCHEMES)})")
    return ObjectRef(scheme, container, key)


def fetch(
    uri: str,
    *,
    max_bytes: int,
    timeout: float,
    allow_loopback: bool = False,
    environ: Mapping[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The object's bytes, at most `max_bytes`, with retries for transient failures."""
    ref = parse(uri)
    reader = {"s3": _s3, "gs": _gcs, "azure": _azure}[ref.scheme]
    delay = FIRST_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return reader(ref, max_bytes, timeout, allow_loopback, environ)
        except Transient as exc:
            if attempt == ATTEMPTS:
                raise FetchFailed(f"{uri}: {exc} (gave up after {ATTEMPTS} attempts)") from None
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def check_endpoint(url: str, source: str, *, allow_loopback: bool) -> None:
    """Refuse an endpoint override whose host is, or resolves to, a forbidden address."""
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    try:
        found = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            found = {
                ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            }
        except socket.gaierror as exc:
            raise FetchFailed(f"{source} {url}: cannot resolve {host}: {exc.strerror}") from None
    for address in sorted(found, key=str):
        reason = refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise FetchFailed(f"{source} {url} refused: {host} is {address}, {reason}")


def read_limited(chunks: Iterator[bytes], *, max_bytes: int, source: str) -> bytes:
    """Join chunks, refusing more than max_bytes whatever the store declared."""
    out: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise ArtifactTooLarge(f"{source}: more than {max_bytes} bytes")
        out.append(chunk)
    return b"".join(out)


def _too_large(source: str, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise ArtifactTooLarge(f"{source}: {size} bytes, limit is {max_bytes}")


# --- S3 (boto3) ---------------------------------------------------------------------------------
def _s3(
    ref: ObjectRef, max_bytes: int, timeout: float, allow_loopback: bool, env: Mapping[str, str]
) -> bytes:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = next((env[name] for name in _AWS_ENDPOINTS if env.get(name)), None)
    if endpoint is not None:
        check_endpoint(endpoint, "S3 endpoint", allow_loopback=allow_loopback)
    config = Config(
        connect_timeout=min(timeout, 10),
        read_timeout=timeout,
        retries={"max_attempts": 1},  # our loop retries, once, with backoff
        s3={"addressing_style": "path"} if endpoint else {},
    )
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    try:
        response = s3.get_object(Bucket=ref.container, Key=ref.key)
        _too_large(ref.uri, response.get("ContentLength"), max_bytes)
        body = response["Body"]
        try:
            return read_limited(body.iter_chunks(_CHUNK), max_bytes=max_bytes, source=ref.uri)
        finally:
            body.close()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        raise _classify(ref.uri, status, code, message) from None
    except BotoCoreError as exc:
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise FetchFailed(f"{ref.uri}: no AWS credentials found; {_CREDENTIALS_HINT}") from None
        raise Transient(f"{type(exc).__name__}: {exc}") from None


# --- Google Cloud Storage (google-cloud-storage) ------------------------------------------------
def _gcs(
    ref: ObjectRef, max_bytes: int, timeout: float, allow_loopback: bool, env: Mapping[str, str]
) -> bytes:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud import storage

    emulator = env.get(_GCS_EMULATOR)
    try:
        if emulator:
            check_endpoint(emulator, _GCS_EMULATOR, allow_loopback=allow_loopback)
            client = storage.Client.create_anonymous_client()
        else:
            client = storage.Client()
        blob = client.bucket(ref.container).blob(ref.key)
        blob.reload(timeout=timeout)
        _too_large(ref.uri, blob.size, max_bytes)
        # One byte past the limit (`end` is inclusive) tells "too large" from "exactly the limit".
        data = bytes(blob.download_as_bytes(start=0, end=max_bytes, timeout=timeout))
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"{ref.uri}: more than {max_bytes} bytes")
        return data
    except api.GoogleAPICallError as exc:
        code = int(exc.code or 0)
        raise _classify(ref.uri, code, type(exc).__name__, str(exc.message)) from None
    except auth.DefaultCredentialsError:
        raise FetchFailed(f"{ref.uri}: no Google credentials found; {_CREDENTIALS_HINT}") from None
    except (auth.TransportError, ConnectionError, TimeoutError) as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from None


# --- Azure Blob Storage (azure-storage-blob) ----------------------------------------------------
def _azure(
    ref: ObjectRef, max_bytes: int, timeout: float, allow_loopback: bool, env: Mapping[str, str]
) -> bytes:
    from azure.core import exceptions as az
    from azure.storage.blob import BlobServiceClient

    account, container = ref.container.split("/", 1)
    options: dict[str, Any] = {"connection_timeout": min(timeout, 10), "read_timeout": timeout}
    options["retry_total"] = 0  # our loop retries, with backoff
    try:
        if connection := env.get(_AZURE_CONNECTION_STRING):
            endpoint = _connection_endpoint(connection)
            if endpoint is not None:
                check_endpoint(endpoint, "Azure BlobEndpoint", allow_loopback=allow_loopback)
            service = BlobServiceClient.from_connection_string(connection, **options)
            if service.account_name != account:
                raise FetchFailed(
                    f"{ref.uri}: {_AZURE_CONNECTION_STRING} is for account "
                    f"{service.account_name!r}, the URI names {account!r}"
                )
        else:
            service = BlobServiceClient(
                f"https://{account}.blob.core.windows.net",
                credential=_azure_credential(env),
                **options,
            )
        blob = service.get_blob_client(container, ref.key)
        _too_large(ref.uri, blob.get_blob_properties(timeout=int(timeout)).size, max_bytes)
        stream = blob.download_blob(timeout=int(timeout))
        return read_limited(stream.chunks(), max_bytes=max_bytes, source=ref.uri)
    except az.HttpResponseError as exc:  # ClientAuthenticationError and ResourceNotFound too
        code = getattr(exc, "error_code", "") or ""
        code = str(getattr(code, "value", code))  # a StorageErrorCode enum, or a string
        raise _classify(ref.uri, int(exc.status_code or 0), code, _first(exc)) from None
    except az.ServiceRequestError as exc:
        raise Transient(f"cannot reach the store: {_first(exc)}") from None
    except az.ServiceResponseError as exc:
        raise Transient(f"no answer from the store: {_first(exc)}") from None
    except ValueError as exc:  # a malformed connection string or credential
        raise FetchFailed(f"{ref.uri}: Azure credentials unusable: {exc}") from None


def _azure_credential(env: Mapping[str, str]) -> Any:
    """Account key, SAS token, or the pod's identity (workload identity via azure-identity)."""
    if key := env.get(_AZURE_KEY):
        return key
    if sas := env.get(_AZURE_SAS):
        return sas
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def _connection_endpoint(connection: str) -> str | None:
    fields = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    return fields.get("BlobEndpoint")


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- what a failure means ----------------------------------------------------------------------
def _classify(uri: str, status: int, code: str, message: str) -> Exception:
    """A store's error as one line: denied and missing fail at once, the rest is retried."""
    said = (
        f" ({code}: {message})"
        if code and message
        else f" ({code or message})"
        if code or message
        else ""
    )
    if status in (401, 403) or code in (
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "AuthorizationFailure",
    ):
        return FetchFailed(f"{uri}: access denied{said}; {_CREDENTIALS_HINT}")
    if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "BlobNotFound", "ContainerNotFound"):
        return FetchFailed(f"{uri}: not found{said}")
    if (
        status in (408, 429)
        or status >= 500
        or code in ("SlowDown", "Throttling", "RequestTimeout")
    ):
        return Transient(f"HTTP {status}{said}")
    return FetchFailed(f"{uri}: HTTP {status}{said}")
