"""Where a revision's model and the files beside it come from, for its pod template
(modeldeploy.pod): the model's location, claim mounts, the files beside the model (profile,
signature, validation data) and the fetcher init containers, and the identity-webhook skips.

Pure: returns plain dicts. A pvc:// URI becomes a read-only claim mount and a file:// URI.
An object-store artifact (s3://, gs://, azure://) is downloaded by a first init container, the
fetcher, into an emptyDir the model server reads. The fetcher alone gets spec.model.env and
envFrom (store credentials); it verifies the sha256 but never deserializes the artifact, so no
model code runs where credentials are.

The container basics the pod template shares with the fetchers (security context, env list,
the server's resources) are here too, so the two modules import one way only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from modeldeploy import names
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.uri_rules import FETCHED_SCHEMES

TMP_MOUNT: Final = "/tmp"


def model_fetched(spec: ModelDeploymentSpec) -> bool:
    return spec.model.uri.startswith(FETCHED_SCHEMES)


def _fetched_path(spec: ModelDeploymentSpec) -> str:
    return f"{names.FETCHED_MODEL_DIR}/model.{spec.model.format}"


@dataclass(frozen=True)
class BesideModel:
    """A file the server reads beside the model (profile, signature, validation data): from
    an object store a fetcher init container of its own downloads it into the model's emptyDir
    with the model's credentials; from a claim, the claim is mounted; else the server fetches
    it."""

    uri: str
    sha256: str
    volume: str  # the claim's volume name, and the fetched file's name
    fetcher: str  # the init container, when fetched
    uri_env: str  # where the server finds it
    sha256_env: str

    @property
    def fetched(self) -> bool:
        return self.uri.startswith(FETCHED_SCHEMES)

    @property
    def target(self) -> str:
        return f"{names.FETCHED_MODEL_DIR}/{self.volume}"

    @property
    def server_uri(self) -> str:
        return (
            f"file://{self.target}" if self.fetched else _claim_location(self.uri, self.volume)[0]
        )


def beside_model(spec: ModelDeploymentSpec) -> list[BesideModel]:
    """The spec's files beside the model, in the order their fetchers run."""
    validation = validation_file(spec)
    return [*model_files(spec), *([validation] if validation else [])]


def model_files(spec: ModelDeploymentSpec) -> list[BesideModel]:
    found = []
    if (profile := spec.model.profile) is not None:
        found.append(
            BesideModel(
                profile.uri,
                profile.sha256,
                "profile",
                names.CONTAINER_PROFILE_FETCHER,
                names.ENV_PROFILE_URI,
                names.ENV_PROFILE_SHA256,
            )
        )
    if (signature := spec.model.signature) is not None:
        found.append(
            BesideModel(
                signature.uri,
                signature.sha256,
                "signature",
                names.CONTAINER_SIGNATURE_FETCHER,
                names.ENV_SIGNATURE_URI,
                names.ENV_SIGNATURE_SHA256,
            )
        )
    return found


def validation_file(spec: ModelDeploymentSpec) -> BesideModel | None:
    if (validation := spec.analysis.validation) is None:
        return None
    return BesideModel(
        validation.uri,
        validation.sha256,
        "validation-data",
        names.CONTAINER_VALIDATION_FETCHER,
        names.ENV_VALIDATION_URI,
        names.ENV_VALIDATION_SHA256,
    )


def model_fetcher(spec: ModelDeploymentSpec, image: str) -> dict[str, Any]:
    return fetch_container(
        spec, image, names.CONTAINER_FETCHER, spec.model.uri, spec.model.sha256, _fetched_path(spec)
    )


def fetch_container(
    spec: ModelDeploymentSpec, image: str, name: str, uri: str, sha256: str, target: str
) -> dict[str, Any]:
    """Download, verify the sha256, write to the emptyDir, exit. The security-relevant choices
    are flags, which win over any MODELDEPLOY_* variable an envFrom Secret might carry."""
    model = spec.model
    env = env_list(
        {
            names.ENV_MODEL_URI: uri,
            names.ENV_MODEL_NAME: model.name,
            names.ENV_MODEL_VERSION: model.version,
            names.ENV_SHA256: sha256,
            names.ENV_FORMAT: model.format,
        }
    )
    user_env = [var.model_dump(by_alias=True, exclude_none=True) for var in model.env or ()]
    env_from = [
        source.model_dump(by_alias=True, exclude_none=True) for source in model.env_from or ()
    ]
    resources = server_resources(spec)
    return {
        "name": name,
        "image": image,
        "command": [names.COMMAND_SERVER],
        # Never deserialize here: the artifact may be code (joblib), and credentials are here.
        "args": [
            f"--fetch-to={target}",
            "--skip-load-check",
            "--no-allow-loopback-downloads",
        ],
        "env": [*env, *user_env],
        **({"envFrom": env_from} if env_from else {}),
        "resources": resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "fetcher-tmp", "mountPath": TMP_MOUNT},
            {"name": "model", "mountPath": names.FETCHED_MODEL_DIR},
        ],
    }


def identity_skips() -> dict[str, str]:
    """Workload-identity webhooks: inject the cloud token into the fetcher only (GKE's metadata
    server answers the whole pod; docs/storage.md says so)."""
    others = [names.CONTAINER_SERVER, names.CONTAINER_MONITOR]
    return {
        names.ANNOTATION_EKS_SKIP_CONTAINERS: ",".join(others),
        names.ANNOTATION_AZURE_SKIP_CONTAINERS: ";".join(others),
    }


def model_location(
    spec: ModelDeploymentSpec, fetched_model_size_limit: str
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """pvc://claim/path becomes a read-only mount and a file:// URI; an object-store URI the
    fetcher's emptyDir, read-only here; other URIs pass through."""
    uri = spec.model.uri
    if model_fetched(spec):
        volumes = [
            {"name": "model", "emptyDir": {"sizeLimit": fetched_model_size_limit}},
            {"name": "fetcher-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ]
        fetched = {"name": "model", "mountPath": names.FETCHED_MODEL_DIR, "readOnly": True}
        return f"file://{_fetched_path(spec)}", volumes, [fetched]
    return _claim_location(uri, "model")


def _claim_location(
    uri: str, volume_name: str
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """pvc://claim/path becomes a read-only mount and a file:// URI; other URIs pass through."""
    if not uri.startswith("pvc://"):
        return uri, [], []
    claim, path = uri.removeprefix("pvc://").split("/", 1)
    mount = f"{names.MODEL_MOUNT_ROOT}/{claim}"
    volume = {"name": volume_name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    return (
        f"file://{mount}/{path}",
        [volume],
        [{"name": volume_name, "mountPath": mount, "readOnly": True}],
    )


def mount_claim(
    uri: str, volume_name: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]
) -> None:
    """Mount the claim of a pvc:// URI (profile, signature, validation data) unless it is
    mounted already (the model's claim, say): one volume per claim."""
    _, new_volumes, new_mounts = _claim_location(uri, volume_name)
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }
    for volume, mount in zip(new_volumes, new_mounts, strict=True):
        if volume["persistentVolumeClaim"]["claimName"] not in claims:
            volumes.append(volume)
            mounts.append(mount)


def server_resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The model server's; the fetcher gets the same (it holds the same bytes in memory, and an
    init container's request adds nothing to the pod's when it is not larger)."""
    serving = spec.serving
    return {
        key: value.as_dict()
        for key, value in (
            ("requests", serving.resources.requests),
            ("limits", serving.resources.limits),
        )
        if value is not None and value.as_dict()
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env_list(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in values.items()]
