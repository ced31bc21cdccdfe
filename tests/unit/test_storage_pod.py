"""The pod of an object-store model: a fetcher init container first, the only container with
the spec's environment; the model server reads the emptyDir and holds no token, no credential."""

from __future__ import annotations

from typing import Any

from modeldeploy import names
from modeldeploy.pod import PodSettings, pod_template
from modeldeploy.spec import parse_spec
from tests.helpers.spec_cases import valid_manifest
from tests.helpers.storage_cases import ENV_FROM, S3_URI, SECRET_ENV

IMAGE = "serving:1"


def _pod(serving: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    manifest = valid_manifest()
    manifest["spec"]["model"].update(model)
    if serving:
        manifest["spec"]["serving"] = serving
    return pod_template(
        parse_spec(manifest["spec"]),
        md_name="iris",
        md_uid="uid-1",
        labels={names.LABEL_NAME: "iris"},
        default_image=IMAGE,
        settings=PodSettings(),
    )


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container.get("env", [])}


def test_the_fetcher_runs_first_and_alone_sees_the_credentials() -> None:
    pod = _pod(uri=S3_URI, env=SECRET_ENV, envFrom=ENV_FROM)
    first, monitor = pod["spec"]["initContainers"]
    assert (first["name"], monitor["name"]) == (names.CONTAINER_FETCHER, names.CONTAINER_MONITOR)
    assert "restartPolicy" not in first  # a plain init container: it must finish first
    env = _env(first)
    assert env[names.ENV_MODEL_URI] == S3_URI
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-creds", "key": "access-key"}}
    assert env["AWS_REGION"] == "us-east-1"
    assert first["envFrom"] == ENV_FROM
    assert first["image"] == IMAGE
    assert "--skip-load-check" in first["args"]  # never deserialized where credentials are
    assert "--no-allow-loopback-downloads" in first["args"]
    server = _containers(pod)[names.CONTAINER_SERVER]
    for other in (server, monitor):
        assert "envFrom" not in other
        assert not set(_env(other)) & {v["name"] for v in SECRET_ENV}


def test_the_server_loads_the_fetched_file_from_a_read_only_empty_dir() -> None:
    pod = _pod(uri=S3_URI, env=SECRET_ENV)
    containers = _containers(pod)
    server, fetcher = containers[names.CONTAINER_SERVER], containers[names.CONTAINER_FETCHER]
    target = f"{names.FETCHED_MODEL_DIR}/model.joblib"
    assert f"--fetch-to={target}" in fetcher["args"]
    assert _env(server)[names.ENV_MODEL_URI] == f"file://{target}"
    assert _env(server)[names.ENV_SHA256] == _env(fetcher)[names.ENV_SHA256]  # checked twice
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["model"] == {
        "name": "model",
        "mountPath": names.FETCHED_MODEL_DIR,
        "readOnly": True,
    }
    assert {m["name"]: m.get("readOnly", False) for m in fetcher["volumeMounts"]}["model"] is False
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes["model"]


def test_no_container_but_the_sidecar_mounts_a_token() -> None:
    pod = _pod(uri=S3_URI, serving={"serviceAccountName": "models-reader"})
    assert pod["spec"]["serviceAccountName"] == "models-reader"
    assert pod["spec"]["automountServiceAccountToken"] is False
    token_volumes = {
        v["name"]
        for v in pod["spec"]["volumes"]
        if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))
    }
    for name, container in _containers(pod).items():
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        assert bool(mounted & token_volumes) == (name == names.CONTAINER_MONITOR), name


def test_workload_identity_webhooks_skip_the_server_and_the_sidecar() -> None:
    annotations = _pod(uri=S3_URI, serving={"serviceAccountName": "r"})["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_EKS_SKIP_CONTAINERS] == "model-server,monitor"
    assert annotations[names.ANNOTATION_AZURE_SKIP_CONTAINERS] == "model-server;monitor"


def test_without_a_service_account_the_pod_is_unchanged() -> None:
    pod = _pod()
    assert pod["spec"]["serviceAccountName"] == names.SIDECAR_SERVICE_ACCOUNT
    assert "annotations" not in pod["metadata"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [names.CONTAINER_MONITOR]
    assert _env(pod["spec"]["containers"][0])[names.ENV_MODEL_URI].startswith("https://")


def test_profile_and_signature_in_the_store_are_fetched_beside_the_model() -> None:
    profile = {"uri": "s3://models-bucket/iris/3/profile.json", "sha256": "a" * 64}
    signature = {"uri": "s3://models-bucket/iris/3/signature.json", "sha256": "b" * 64}
    pod = _pod(uri=S3_URI, env=SECRET_ENV, profile=profile, signature=signature)
    containers = _containers(pod)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [
        names.CONTAINER_FETCHER,
        names.CONTAINER_PROFILE_FETCHER,
        names.CONTAINER_SIGNATURE_FETCHER,
        names.CONTAINER_MONITOR,
    ]
    model_fetcher = containers[names.CONTAINER_FETCHER]
    server = _env(containers[names.CONTAINER_SERVER])
    for fetcher, artifact, uri_env, sha_env in (
        (names.CONTAINER_PROFILE_FETCHER, profile, names.ENV_PROFILE_URI, names.ENV_PROFILE_SHA256),
        (
            names.CONTAINER_SIGNATURE_FETCHER,
            signature,
            names.ENV_SIGNATURE_URI,
            names.ENV_SIGNATURE_SHA256,
        ),
    ):
        container = containers[fetcher]
        env = _env(container)
        assert (env[names.ENV_MODEL_URI], env[names.ENV_SHA256]) == (
            artifact["uri"],
            artifact["sha256"],
        )
        # The model fetcher's credentials, volumes and arguments; only the target differs.
        assert container["env"][-len(SECRET_ENV) :] == model_fetcher["env"][-len(SECRET_ENV) :]
        assert container["volumeMounts"] == model_fetcher["volumeMounts"]
        target = container["args"][0].removeprefix("--fetch-to=")
        assert container["args"][1:] == model_fetcher["args"][1:]
        # The server reads the verified copy from the emptyDir, with the digest to check again.
        assert server[uri_env] == f"file://{target}"
        assert server[sha_env] == artifact["sha256"]
    assert "envFrom" not in containers[names.CONTAINER_SERVER]


def test_profile_and_signature_over_http_need_no_fetcher() -> None:
    profile = {"uri": "https://models.example.com/iris/3/profile.json", "sha256": "a" * 64}
    pod = _pod(uri=S3_URI, env=SECRET_ENV, profile=profile)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [
        names.CONTAINER_FETCHER,
        names.CONTAINER_MONITOR,
    ]
    assert _env(_containers(pod)[names.CONTAINER_SERVER])[names.ENV_PROFILE_URI] == profile["uri"]
