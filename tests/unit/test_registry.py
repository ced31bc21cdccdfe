"""mlflow:// model URIs in pure code: which requests to make, what the MLflow tracking server's
answers mean (shapes as mlflow 3.17 returns them), and how a resolution reaches the plan: the
pods' artifact URI, the ControllerRevision, status and history, and a failure in status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from modeldeploy import names, registry
from modeldeploy.hashing import revision_hash
from modeldeploy.reconcile import plan
from modeldeploy.resolutions import registry_need, served_spec
from modeldeploy.spec import SpecError, parse_spec
from modeldeploy.status import merged as merge
from modeldeploy.status import state_from_status
from tests.unit.test_reconcile import IMAGE, NOW, body

TRACKING = "http://mlflow.ml.svc:5000"
REF = registry.Reference(TRACKING, "iris", version="3")
ALIAS = registry.Reference(TRACKING, "iris", alias="champion")
SKOPS_MLMODEL = """
artifact_path: mlflow-artifacts:/0/models/m-1/artifacts
flavors:
  python_function: {loader_module: mlflow.sklearn, model_path: model.skops}
  sklearn:
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
"""
RESOLVED = registry.Resolution(
    "3",
    "ecbfe6d1395f40e3a23a9af8282c9ec0",
    f"{TRACKING}/api/2.0/mlflow-artifacts/artifacts/0/models/m-1/artifacts/model.skops",
    "skops",
)


def mlflow_body(uri: str = "mlflow://iris/@champion", **model: Any) -> dict[str, Any]:
    md = body()
    md["spec"]["model"] = {**md["spec"]["model"], "uri": uri, **model}
    return md


# --- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mlflow://iris/3", REF),
        ("mlflow://iris/@champion", ALIAS),
        ("mlflow://fraud.v2-model_x/12", registry.Reference(TRACKING, "fraud.v2-model_x", "12")),
        ("mlflow://iris/0", None),
        ("mlflow://iris/@", None),
        ("mlflow://iris/latest", None),
        ("mlflow://iris", None),
        ("https://models.example.com/iris/3", None),
    ],
)
def test_parse(uri: str, expected: registry.Reference | None) -> None:
    assert registry.parse(uri, TRACKING + "/") == expected


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("mlflow://iris/latest", "must have the form 'mlflow://<registered model name>/<version>'"),
        ("mlflow://iris/@champ ion", "must not contain whitespace"),
        ("mlflow://ir..is/1", "path traversal"),
        ("mlflow://iris/1/extra", "must have the form 'mlflow://"),
    ],
)
def test_spec_refuses_malformed_references(uri: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(mlflow_body(uri)["spec"])
    assert err.value.field_path == "spec.model.uri"
    assert says in err.value.message


@pytest.mark.parametrize(
    ("tracking", "says"),
    [
        ("http://127.0.0.1:5000", "loopback"),
        ("http://localhost:5000", "loopback host"),
        ("http://169.254.169.254", "link-local"),
        ("http://mlflow:5000/?x=1", "no credentials, query or fragment"),
        ("http://user@mlflow:5000", "no credentials, query or fragment"),
        ("ftp://mlflow", "must have the form 'http(s)://"),
    ],
)
def test_spec_refuses_tracking_uris_a_fetcher_must_not_reach(tracking: str, says: str) -> None:
    raw = mlflow_body(registry={"trackingUri": tracking})["spec"]
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert err.value.field_path == "spec.model.registry.trackingUri"
    assert says in err.value.message


def test_registry_only_with_an_mlflow_uri() -> None:
    raw = body()["spec"]
    raw["model"]["registry"] = {"trackingUri": TRACKING}
    with pytest.raises(
        SpecError, match=r"spec.model.registry: must be set only with an 'mlflow://'"
    ):
        parse_spec(raw)


def test_an_unset_registry_leaves_existing_spec_hashes_alone() -> None:
    from modeldeploy.hashing import revision_hash

    spec = parse_spec(body()["spec"])
    # The hash of this spec before `registry` existed (kept in tests/unit/test_hashing.py too).
    assert revision_hash(spec, default_image=IMAGE) == revision_hash(
        spec.model_copy(update={"model": spec.model.model_copy(update={"registry": None})}),
        default_image=IMAGE,
    )
    assert "registry" not in spec.model.model_dump(exclude_none=True)


# --- where to resolve ------------------------------------------------------------------------


def test_the_spec_tracking_uri_wins_over_the_operator_flag() -> None:
    found = registry.reference("mlflow://iris/3", TRACKING, "http://other:5000")
    assert found == REF


def test_no_tracking_uri_anywhere_is_a_problem_naming_both_settings() -> None:
    found = registry.reference("mlflow://iris/3", None, None)
    assert isinstance(found, registry.Problem)
    assert found.reason == names.REASON_REGISTRY_NOT_CONFIGURED
    assert "spec.model.registry.trackingUri" in found.message
    assert "--mlflow-tracking-uri" in found.message


def test_requests() -> None:
    assert registry.version_request(REF) == (
        "/api/2.0/mlflow/model-versions/get",
        {"name": "iris", "version": "3"},
    )
    assert registry.version_request(ALIAS) == (
        "/api/2.0/mlflow/registered-models/alias",
        {"name": "iris", "alias": "champion"},
    )
    assert registry.download_request(ALIAS, "3") == (
        "/api/2.0/mlflow/model-versions/get-download-uri",
        {"name": "iris", "version": "3"},
    )


# --- the answers -------------------------------------------------------------------------------


def test_model_version_from_the_answer() -> None:
    answer = {"model_version": {"name": "iris", "version": "3", "run_id": "r1", "status": "READY"}}
    assert registry.model_version(ALIAS, answer) == registry.ModelVersion("3", "r1")


def test_a_version_still_registering_is_not_served() -> None:
    answer = {"model_version": {"version": "3", "status": "PENDING_REGISTRATION"}}
    found = registry.model_version(REF, answer)
    assert isinstance(found, registry.Problem)
    assert "PENDING_REGISTRATION, not READY" in found.message


@pytest.mark.parametrize(
    ("status", "answer", "reason", "says"),
    [
        (
            404,
            {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Model Version (name=iris, "
             "version=7) not found"},
            names.REASON_REGISTRY_MODEL_NOT_FOUND,
            "says: Model Version (name=iris, version=7) not found",
        ),
        (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias nope "
             "not found."},
            names.REASON_REGISTRY_MODEL_NOT_FOUND,
            "alias nope not found",
        ),
        (403, None, names.REASON_REGISTRY_UNAVAILABLE, "refused the operator (HTTP 403"),
        (503, None, names.REASON_REGISTRY_UNAVAILABLE, "answered 503"),
    ],
)  # fmt: skip
def test_errors(status: int, answer: dict[str, Any] | None, reason: str, says: str) -> None:
    problem = registry.error(REF, status, answer)
    assert problem.reason == reason
    assert says in problem.message
    assert problem.message.startswith("mlflow://iris/3: ")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            "mlflow-artifacts:/0/models/m-1/artifacts",
            f"{TRACKING}/api/2.0/mlflow-artifacts/artifacts/0/models/m-1/artifacts",
        ),
        (
            "mlflow-artifacts://mlflow.ml.svc:5000/0/models/m-1/artifacts/",
            f"{TRACKING}/api/2.0/mlflow-artifacts/artifacts/0/models/m-1/artifacts",
        ),
        ("s3://models/0/m-1/artifacts", "s3://models/0/m-1/artifacts"),
        ("gs://models/0/m-1/artifacts", "gs://models/0/m-1/artifacts"),
        (
            "wasbs://models@acct.blob.core.windows.net/0/m-1/artifacts",
            "azure://acct/models/0/m-1/artifacts",
        ),
    ],
)
def test_artifact_base(location: str, expected: str) -> None:
    assert registry.artifact_base(REF, location) == expected


@pytest.mark.parametrize("location", ["/srv/mlruns/0/m-1/artifacts", "file:///srv/mlruns/0/m-1"])
def test_artifacts_on_the_tracking_servers_disk_are_out_of_reach(location: str) -> None:
    problem = registry.artifact_base(REF, location)
    assert isinstance(problem, registry.Problem)
    assert problem.reason == names.REASON_REGISTRY_ARTIFACT_UNSUPPORTED
    assert "--serve-artifacts" in problem.message


def test_model_file_from_mlmodel() -> None:
    assert registry.model_file(REF, SKOPS_MLMODEL, "joblib") == ("model.skops", "skops")
    pickled = SKOPS_MLMODEL.replace("model.skops", "model.pkl").replace("skops\n", "cloudpickle\n")
    assert registry.model_file(REF, pickled, "joblib") == ("model.pkl", "joblib")
    assert registry.model_file(REF, None, "joblib") == ("model.pkl", "joblib")  # not proxied


def test_a_spec_asking_for_skops_never_gets_a_pickle() -> None:
    pickled = SKOPS_MLMODEL.replace("serialization_format: skops", "serialization_format: pickle")
    problem = registry.model_file(REF, pickled.replace("model.skops", "model.pkl"), "skops")
    assert isinstance(problem, registry.Problem)
    assert "spec.model.format is skops, but the registered model is a pickle" in problem.message


@pytest.mark.parametrize(
    ("mlmodel", "says"),
    [
        ("flavors: {python_function: {}}", "no sklearn flavor (flavors: python_function)"),
        ("flavors:\n  sklearn: {pickled_model: ../x.pkl}", "not a file in its directory"),
        ("flavors: [", "bad MLmodel"),
    ],
)
def test_models_the_server_cannot_load(mlmodel: str, says: str) -> None:
    problem = registry.model_file(REF, mlmodel, "joblib")
    assert isinstance(problem, registry.Problem)
    assert says in problem.message


# --- into the plan -----------------------------------------------------------------------------


def test_the_pods_get_the_resolved_artifact_and_its_format() -> None:
    result = plan(mlflow_body(), {}, default_image=IMAGE, now=NOW, resolved=RESOLVED)
    deployment = next(o for o in result.apply if o["kind"] == "Deployment")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[names.ENV_MODEL_URI] == RESOLVED.artifact_uri
    assert env[names.ENV_FORMAT] == "skops"
    history = next(o for o in result.apply if o["kind"] == "ControllerRevision")
    assert history["data"]["resolved"] == RESOLVED.to_dict()
    assert history["data"]["spec"]["model"]["uri"] == "mlflow://iris/@champion"
    event = next(e for e in result.events if e["reason"] == names.REASON_MODEL_RESOLVED)
    assert "mlflow://iris/@champion is registry version 3, run ecbfe6d1" in event["message"]
    assert result.status is not None
    assert result.status["canary"]["registryVersion"] == "3"
    assert result.status["canary"]["runId"] == RESOLVED.run_id


def test_the_registry_version_reaches_history_and_survives_a_status_round_trip() -> None:
    md = mlflow_body()
    seen: dict[str, Any] = {"deployments": [], "pods": []}
    first = plan(md, seen, default_image=IMAGE, now=NOW, resolved=RESOLVED)
    assert first.status is not None
    md["status"] = merge({}, first.status)
    state = state_from_status(md["status"])
    assert state.canary is not None and state.canary.registry is not None
    assert state.canary.registry.version == "3"
    # A finished entry carries it too, and reads back from the status fields.
    entry = {"revision": 1, "specHash": "x", "modelVersion": "1", "sha256": "ab" * 32,
             "outcome": "Promoted", "reason": "Promoted", "message": "", "registryVersion": "3",
             "runId": "r1", "startedAt": "2026-11-24T11:00:00Z",
             "finishedAt": "2026-11-24T11:30:00Z"}  # fmt: skip
    md["status"]["history"] = [entry]
    back = state_from_status(md["status"]).history[0]
    assert back.registry is not None and (back.registry.version, back.registry.run_id) == (
        "3",
        "r1",
    )


def test_a_registry_problem_changes_nothing_that_serves_and_says_why() -> None:
    md = mlflow_body()
    md["status"] = {
        "rolloutState": json.dumps(
            {"stable": {"number": 1, "specHash": "h1", "modelVersion": "1", "sha256": "ab" * 32,
                        "createdAt": "2026-11-24T10:00:00+00:00", "proven": True}}
        )
    }  # fmt: skip
    problem = registry.Problem(
        names.REASON_REGISTRY_MODEL_NOT_FOUND, "mlflow://iris/7: ... Model Version not found"
    )
    result = plan(md, {}, default_image=IMAGE, now=NOW, resolved=problem)
    assert result.apply == () and result.delete == () and not result.scale
    assert result.status is not None
    assert result.status["phase"] == names.PHASE_DEGRADED
    ready = next(c for c in result.status["conditions"] if c["type"] == names.COND_READY)
    assert (ready["status"], ready["reason"]) == ("False", names.REASON_REGISTRY_MODEL_NOT_FOUND)
    degraded = next(c for c in result.status["conditions"] if c["type"] == names.COND_DEGRADED)
    assert "r1 (model 1) keeps serving" in degraded["message"]
    assert result.events == (
        {"type": "Warning", "reason": names.REASON_REGISTRY_MODEL_NOT_FOUND,
         "message": problem.message},
    )  # fmt: skip
    md["status"] = merge(md["status"], result.status)
    again = plan(md, {}, default_image=IMAGE, now=NOW + timedelta(minutes=1), resolved=problem)
    assert again.status is None and again.events == ()  # said once


def test_a_recorded_resolution_is_used_without_asking_the_registry() -> None:
    md = mlflow_body(registry={"trackingUri": TRACKING})
    need = registry_need(md, {}, default_image=IMAGE, default_tracking_uri=None)
    assert need is not None
    spec_hash, found = need
    assert found == ALIAS
    history = {"data": {"specHash": spec_hash, "resolved": RESOLVED.to_dict()}}
    recorded = registry_need(
        md, {"controllerrevisions": [history]}, default_image=IMAGE, default_tracking_uri=None
    )
    assert recorded == (spec_hash, RESOLVED)
    other = {"data": {"specHash": "different", "resolved": RESOLVED.to_dict()}}
    assert registry_need(
        md, {"controllerrevisions": [other]}, default_image=IMAGE, default_tracking_uri=None
    ) == (spec_hash, ALIAS)
    assert registry_need(body(), {}, default_image=IMAGE, default_tracking_uri=TRACKING) is None


def test_a_deleted_revision_is_rendered_from_what_it_resolved_to_then() -> None:
    md = mlflow_body()
    first = plan(md, {}, default_image=IMAGE, now=NOW, resolved=RESOLVED)
    history = next(o for o in first.apply if o["kind"] == "ControllerRevision")
    md["status"] = merge({}, first.status or {})
    # r1 is stable now; the spec moved on (another alias) and r1's Deployment was deleted.
    state = json.loads(md["status"]["rolloutState"])
    state["stable"], state["canary"] = state["canary"], None
    md["status"]["rolloutState"] = json.dumps(state)
    md["spec"]["model"]["uri"] = "mlflow://iris/@challenger"
    later = registry.Resolution("4", "r4", RESOLVED.artifact_uri.replace("m-1", "m-4"), "skops")
    seen = {"controllerrevisions": [history], "deployments": [], "pods": []}
    result = plan(md, seen, default_image=IMAGE, now=NOW, resolved=later)
    r1 = next(o for o in result.apply if o["metadata"]["name"] == "iris-r1" and
              o["kind"] == "Deployment")  # fmt: skip
    env = {
        e["name"]: e.get("value") for e in r1["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[names.ENV_MODEL_URI] == RESOLVED.artifact_uri


def test_served_spec_keeps_other_sources_as_written() -> None:
    spec = parse_spec(body()["spec"])
    assert served_spec(spec, None) is spec


def test_artifacts_in_an_object_store_are_fetched_with_the_specs_credentials() -> None:
    """A registry whose artifacts live in S3 (no --serve-artifacts): the fetcher init container
    downloads the file with spec.model.env, which the model server never sees."""
    secret = {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}},
    }
    md = mlflow_body(env=[secret])
    in_s3 = registry.Resolution("3", "r3", "s3://mlflow-artifacts/1/models/m-1/model.pkl", "joblib")
    result = plan(md, {}, default_image=IMAGE, now=NOW, resolved=in_s3)
    pod = next(o for o in result.apply if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    fetcher = pod["initContainers"][0]
    assert fetcher["name"] == names.CONTAINER_FETCHER
    fetcher_env = {e["name"]: e for e in fetcher["env"]}
    assert fetcher_env[names.ENV_MODEL_URI]["value"] == in_s3.artifact_uri
    assert fetcher_env["AWS_ACCESS_KEY_ID"] == secret
    server_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert server_env[names.ENV_MODEL_URI].startswith(f"file://{names.FETCHED_MODEL_DIR}/")
    assert "AWS_ACCESS_KEY_ID" not in server_env


def test_a_revision_hashed_with_an_older_image_keeps_its_resolution() -> None:
    """Under the image policy the serving revision may run an older image than the operator's
    default (its spec hash was computed with that image): its recorded resolution still
    answers, so an operator upgrade asks the registry nothing and an alias that moved since
    moves nothing."""
    md = mlflow_body(registry={"trackingUri": TRACKING})
    spec = parse_spec(md["spec"])
    old = "registry.example/serving:old"
    data = {"specHash": revision_hash(spec, default_image=old), "defaultImage": old,
            "resolved": RESOLVED.to_dict()}  # fmt: skip
    need = registry_need(
        md, {"controllerrevisions": [{"revision": 1, "data": data}]},
        default_image=IMAGE, default_tracking_uri=None,
    )  # fmt: skip
    assert need == (revision_hash(spec, default_image=IMAGE), RESOLVED)


def test_a_revision_renders_what_it_recorded_whatever_the_registry_says_now() -> None:
    md = mlflow_body()
    first = plan(md, {}, default_image=IMAGE, now=NOW, resolved=RESOLVED)
    history = next(o for o in first.apply if o["kind"] == "ControllerRevision")
    md["status"] = merge({}, first.status or {})
    moved = registry.Resolution("4", "r4", RESOLVED.artifact_uri.replace("m-1", "m-4"), "skops")
    seen = {"controllerrevisions": [history], "deployments": [], "pods": []}
    result = plan(md, seen, default_image=IMAGE, now=NOW, resolved=moved)
    r1 = next(o for o in result.apply if o["kind"] == "Deployment")
    assert r1["metadata"]["name"] == "iris-r1"
    server = r1["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[names.ENV_MODEL_URI] == RESOLVED.artifact_uri


def test_warnings_are_about_what_the_registry_resolved_to() -> None:
    """The spec says `format: joblib` (the default) and mlflow://: the pods get a skops file
    from the tracking server's proxy, so no pickle warning, but the egress one."""
    result = plan(mlflow_body(), {}, default_image=IMAGE, now=NOW, resolved=RESOLVED)
    assert result.status is not None
    warnings = result.status["warnings"]
    assert not any("pickle" in w for w in warnings)
    assert any("no egress to the model's http(s) server" in w for w in warnings)
