"""Object-store sources and the fetcher's environment: valid and invalid specs, shared by the
unit tests (modeldeploy.spec) and the admission tests (the CRD's CEL on a real API server)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.helpers.spec_cases import Invalid

S3_URI = "s3://models-bucket/iris/3/model.joblib"

VALID_URIS = (
    S3_URI,
    "s3://my.bucket-1/deep/path/m.skops",
    "gs://models_bucket/iris/3/model.joblib",
    "gs://a.b-c_d/m.joblib",
    "azure://mlstore01/models/iris/3/model.joblib",
    "azure://devstoreaccount1/model-container/m.joblib",
)

SECRET_ENV = [
    {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "access-key"}},
    },
    {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "secret-key"}},
    },
    {
        "name": "AWS_ENDPOINT_URL",
        "valueFrom": {"configMapKeyRef": {"name": "s3-endpoint", "key": "url", "optional": True}},
    },
    {"name": "AWS_REGION", "value": "us-east-1"},
]
ENV_FROM = [{"secretRef": {"name": "more-creds"}}, {"configMapRef": {"name": "s"}, "prefix": "P_"}]
# The fetcher's environment also goes with an mlflow:// model (its registry's artifacts may
# live in an object store).
ENV_URIS = (*VALID_URIS, "mlflow://fraud-detector/@champion")


def model_change(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"]["model"].update(copy.deepcopy(fields))


def _uri(case_id: str, uri: str, says: str) -> Invalid:
    return Invalid(case_id, model_change(uri=uri), "spec.model.uri", says, True)


def _s3(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return model_change(uri=S3_URI, **fields)


STORAGE_INVALID: list[Invalid] = [
    _uri("s3-no-key", "s3://models-bucket/", "s3://<bucket>/<key>"),
    _uri("s3-bucket-upper", "s3://Models/m.joblib", "s3://<bucket>/<key>"),
    _uri("s3-bucket-short", "s3://ab/m.joblib", "s3://<bucket>/<key>"),
    _uri("s3-query", "s3://models-bucket/m.joblib?versionId=1", "s3://<bucket>/<key>"),
    _uri("s3-traversal", "s3://models-bucket/a/../m.joblib", "path traversal"),
    _uri("s3-credentials", "s3://key:secret@models-bucket/m.joblib", "s3://<bucket>/<key>"),
    _uri("gs-no-object", "gs://models", "gs://<bucket>/<object>"),
    _uri("gs-fragment", "gs://models/m.joblib#x", "gs://<bucket>/<object>"),
    _uri("azure-no-container", "azure://account/m", "azure://<account>/<container>/<blob>"),
    _uri("azure-account-dash", "azure://my-account/c0n/m.joblib", "azure://<account>/<container>"),
    _uri("azure-whitespace", "azure://acct/models/m .joblib", "whitespace"),
    Invalid(
        "env-with-https",
        model_change(env=[{"name": "TOKEN", "value": "x"}]),
        "spec.model.env",
        "must only be set with an object-store URI",
        True,
    ),
    Invalid(
        "registry-with-s3",
        _s3(registry={"trackingUri": "http://mlflow.example:5000"}),
        "spec.model.registry",
        "must be set only with an 'mlflow://' uri",
        True,
    ),
    Invalid(
        "env-from-with-pvc",
        model_change(uri="pvc://models/m.joblib", envFrom=[{"secretRef": {"name": "c"}}]),
        "spec.model.env",
        "must only be set with an object-store URI",
        True,
    ),
    Invalid(
        "env-reserved",
        _s3(env=[{"name": "MODELDEPLOY_MODEL_URI", "value": "file:///etc/passwd"}]),
        "spec.model.env[0].name",
        "must not start with 'MODELDEPLOY_'",
        True,
    ),
    Invalid(
        "env-value-and-value-from",
        _s3(env=[{"name": "A", "value": "x", "valueFrom": SECRET_ENV[0]["valueFrom"]}]),
        "spec.model.env[0]",
        "either `value` or `valueFrom`, not both",
        True,
    ),
    Invalid(
        "env-two-sources",
        _s3(
            env=[
                {
                    "name": "A",
                    "valueFrom": {
                        "secretKeyRef": {"name": "s", "key": "k"},
                        "configMapKeyRef": {"name": "c", "key": "k"},
                    },
                }
            ]
        ),
        "spec.model.env[0].valueFrom",
        "exactly one of `secretKeyRef`, `configMapKeyRef`",
        True,
    ),
    Invalid(
        "env-field-ref",
        _s3(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        "spec.model.env[0].valueFrom",
        "fieldRef",
    ),
    Invalid(
        "env-secret-name-invalid",
        _s3(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}]),
        "spec.model.env[0].valueFrom.secretKeyRef.name",
        "should match",
        True,
    ),
    Invalid(
        "env-secret-key-missing",
        _s3(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
        "spec.model.env[0].valueFrom.secretKeyRef.key",
        "Required value",
    ),
    Invalid(
        "env-duplicate",
        _s3(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.model.env[1]",
        "Duplicate value",
        True,
    ),
    Invalid(
        "env-from-both",
        _s3(envFrom=[{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]),
        "spec.model.envFrom[0]",
        "exactly one of `secretRef`, `configMapRef`",
        True,
    ),
    Invalid(
        "env-from-reserved-prefix",
        _s3(envFrom=[{"secretRef": {"name": "s"}, "prefix": "MODELDEPLOY_"}]),
        "spec.model.envFrom[0].prefix",
        "must not start with 'MODELDEPLOY_'",
        True,
    ),
    Invalid(
        "service-account-invalid",
        lambda m: m["spec"].update(serving={"serviceAccountName": "Not_A_Name"}),
        "spec.serving.serviceAccountName",
        "should match",
        True,
    ),
]
