"""One table of invalid ModelDeployments, shared by the unit tests (the operator's own checks in
modeldeploy.spec) and the admission tests (the CRD's schema and CEL rules on a real API server),
so both layers are held to the same cases and name the same field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modeldeploy import names

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def valid_manifest(name: str = "iris", namespace: str = "default") -> dict[str, Any]:
    """The smallest valid ModelDeployment: everything else comes from defaults."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": "iris",
                "version": "3",
                "uri": "https://models.example.com/iris/3/model.joblib",
                "sha256": SHA,
            }
        },
    }


@dataclass(frozen=True)
class Invalid:
    """An invalid manifest: `change` breaks a valid one; `field` is the path both layers must
    name; `says` is what the API server's message must contain."""

    id: str
    change: Callable[[dict[str, Any]], None]
    field: str
    says: str
    # The operator's message contains `says` too (its own rules, and wordings pydantic shares).
    operator_says_too: bool = False
    # False for problems only the operator can see (the CRD cannot compare quantities).
    admission: bool = True

    def manifest(self, name: str = "iris", namespace: str = "default") -> dict[str, Any]:
        manifest = valid_manifest(name, namespace)
        self.change(manifest)
        return manifest


def _spec(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"].update(copy.deepcopy(fields))


def _model(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"]["model"].update(fields)


def _validation(**fields: Any) -> Callable[[dict[str, Any]], None]:
    gate = {"uri": "https://data.example.com/v.csv", "sha256": SHA, "metric": "f1"}
    return _spec(analysis={"validation": {**gate, "threshold": 0.8, **fields}})


def _drop_model_field(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["spec"]["model"].pop(name)


def _name(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["metadata"].update(name=name)


_AUTOSCALING = {"maxReplicas": 4}


def _uri(case_id: str, uri: str, says: str, *, admission: bool = True) -> Invalid:
    return Invalid(case_id, _model(uri=uri), "spec.model.uri", says, True, admission=admission)


_NUMERIC = "must write a numeric host as four decimal octets"
_ADDRESS = "must not point at a loopback, link-local or cloud metadata address"
_WRAPPED = "must not wrap an IPv4 address in IPv6"
_NAMED = "must not name a cloud metadata or loopback host"
_PORT = "must have a port between 1 and 65535"
_TRAVERSAL = "path traversal"

# Every spelling of a host a fetcher must not reach, and the other URI tricks. admission=False:
# CEL cannot normalise that spelling; the operator's check (modeldeploy.uris) refuses it.
URI_CASES: list[Invalid] = [
    _uri("uri-ipv4-integer", "http://2852039166/m.joblib", _NUMERIC),
    _uri("uri-ipv4-hex", "http://0xA9FEA9FE/m.joblib", _NUMERIC),
    _uri("uri-ipv4-octal", "http://0251.0376.0251.0376/m.joblib", _NUMERIC),
    _uri("uri-ipv4-dotted-hex", "http://0xa9.0xfe.0xa9.0xfe/m.joblib", _NUMERIC),
    _uri("uri-ipv4-mixed-octal-hex", "http://0251.0xfe.169.254/m.joblib", _NUMERIC),
    _uri("uri-ipv4-short-loopback", "http://127.1/m.joblib", _NUMERIC),
    _uri("uri-ipv4-leading-zero", "http://127.000.000.001/m.joblib", _NUMERIC),
    _uri("uri-ipv4-five-parts", "http://1.2.3.4.5/m.joblib", _NUMERIC),
    _uri("uri-loopback", "http://127.0.0.1:8080/m.joblib", _ADDRESS),
    _uri("uri-loopback-high", "http://127.254.0.9/m.joblib", _ADDRESS),
    _uri("uri-loopback-trailing-dot", "http://127.0.0.1./m.joblib", _ADDRESS),
    _uri("uri-unspecified", "http://0.0.0.0/m.joblib", _ADDRESS),
    _uri("uri-link-local", "https://169.254.1.1/m.joblib", _ADDRESS),
    _uri("uri-alibaba-metadata", "http://100.100.100.200/m.joblib", _ADDRESS),
    _uri("uri-ipv6-loopback", "http://[::1]/m.joblib", _ADDRESS),
    _uri("uri-ipv6-unspecified", "http://[::]/m.joblib", _ADDRESS),
    _uri("uri-ipv6-link-local", "http://[fe80::1]/m.joblib", _ADDRESS),
    _uri("uri-ipv6-link-local-upper", "http://[FEBF::a]:8080/m.joblib", _ADDRESS),
    _uri("uri-ipv6-aws-metadata", "http://[fd00:ec2::254]/latest/meta-data", _ADDRESS),
    _uri("uri-ipv6-mapped", "http://[::ffff:169.254.169.254]/m.joblib", _WRAPPED),
    _uri("uri-ipv6-mapped-hex", "http://[::FFFF:a9fe:a9fe]/m.joblib", _WRAPPED),
    _uri("uri-ipv6-mapped-long", "http://[0:0:0:0:0:ffff:a9fe:a9fe]/m", _WRAPPED, admission=False),
    _uri("uri-ipv6-compatible", "http://[::169.254.169.254]/m.joblib", _WRAPPED, admission=False),
    _uri("uri-ipv6-nat64", "http://[64:ff9b::a9fe:a9fe]/m.joblib", _WRAPPED, admission=False),
    _uri("uri-ipv6-loopback-long", "http://[0:0:0:0:0:0:0:1]/m.joblib", _ADDRESS, admission=False),
    _uri("uri-ipv6-aws-long", "http://[fd00:0ec2:0::254]/m.joblib", _ADDRESS, admission=False),
    _uri("uri-ipv6-zone", "http://[fe80::1%eth0]/m.joblib", "must not percent-encode the host"),
    _uri("uri-ipv6-not-an-address", "http://[v1.x]/m.joblib", "bracketed host as an IPv6 address"),
    _uri("uri-ipv6-bad-groups", "http://[1:2:3]/m.joblib", "bracketed host", admission=False),
    _uri("uri-host-percent-encoded", "http://%6cocalhost/m.joblib", "must not percent-encode"),
    _uri("uri-gcp-metadata", "http://metadata.google.internal/computeMetadata/v1/", _NAMED),
    _uri("uri-gcp-metadata-fqdn", "http://Metadata.Google.Internal./v1/", _NAMED),
    _uri("uri-gcp-metadata-short", "http://metadata/computeMetadata/v1/", _NAMED),
    _uri("uri-aws-instance-data", "http://instance-data/latest/meta-data", _NAMED),
    _uri("uri-azure-metadata", "http://metadata.azure.com:80/metadata/instance", _NAMED),
    _uri("uri-localhost", "http://localhost:8080/m.joblib", _NAMED),
    _uri("uri-localhost-subdomain", "http://models.localhost/m.joblib", _NAMED),
    _uri("uri-port-too-large", "https://h.example:65536/m.joblib", _PORT),
    _uri("uri-port-huge", "https://h.example:4294967377/m.joblib", _PORT),
    _uri("uri-port-zero", "https://h.example:0/m.joblib", _PORT),
    _uri("uri-port-empty", "https://h.example:/m.joblib", _PORT),
    _uri("uri-port-not-a-number", "https://h.example:8o/m.joblib", _PORT),
    _uri("uri-no-host", "https://:443/m.joblib", "http(s)://<host>/<path>"),
    _uri("uri-double-encoded-dot", "https://h.example/a/%252e%252e/m.joblib", _TRAVERSAL),
    _uri("uri-encoded-backslash", "https://h.example/a%5Cm.joblib", _TRAVERSAL),
    _uri("uri-backslash", "https://h.example/a\\m.joblib", _TRAVERSAL),
    _uri("uri-pvc-backslash", "pvc://models/a\\m.joblib", _TRAVERSAL),
]

INVALID: list[Invalid] = [
    # --- metadata.name (the root CEL rule) ---
    Invalid("name-starts-with-digit", _name("3iris"), "metadata.name", "DNS-1035 label", True),
    Invalid("name-uppercase", _name("Iris"), "metadata.name", "DNS-1035 label", True),
    Invalid("name-too-long", _name("a" * 53), "metadata.name", "Too long"),
    # --- model ---
    Invalid("model-missing", lambda m: m["spec"].pop("model"), "spec.model", "Required value"),
    Invalid("sha256-missing", _drop_model_field("sha256"), "spec.model.sha256", "Required value"),
    Invalid("uri-missing", _drop_model_field("uri"), "spec.model.uri", "Required value"),
    Invalid("sha256-uppercase", _model(sha256=SHA.upper()), "spec.model.sha256", "should match"),
    Invalid("sha256-short", _model(sha256=SHA[:63]), "spec.model.sha256", "should match"),
    Invalid("sha256-not-hex", _model(sha256="g" * 64), "spec.model.sha256", "should match"),
    Invalid("format-unknown", _model(format="onnx"), "spec.model.format", "Unsupported value"),
    Invalid("model-name-slash", _model(name="a/b"), "spec.model.name", "should match"),
    Invalid("version-empty", _model(version=""), "spec.model.version", "at least 1 chars long"),
    Invalid(
        "profile-uri-metadata-host",
        _model(profile={"uri": "http://169.254.169.254/p.json", "sha256": SHA}),
        "spec.model.profile.uri",
        _ADDRESS,
        True,
    ),
    # The profile and signature follow the validation dataset's rules: never a registry, and an
    # object store only beside an object-store model (its fetcher's credentials fetch them).
    *(
        Invalid(
            f"{field}-uri-mlflow",
            _model(**{field: {"uri": "mlflow://reference/3", "sha256": SHA}}),
            f"spec.model.{field}.uri",
            "must not be an mlflow:// URI",
            True,
        )
        for field in ("profile", "signature")
    ),
    *(
        Invalid(
            f"{field}-uri-{scheme}-beside-https-model",
            _model(**{field: {"uri": f"{scheme}://models-bucket/{field}.json", "sha256": SHA}}),
            f"spec.model.{field}.uri",
            "may name an object store (s3://, gs://, azure://) only when spec.model.uri does",
            True,
        )
        for field in ("profile", "signature")
        for scheme in ("s3", "gs")
    ),
    Invalid(
        "profile-sha256-missing",
        _model(profile={"uri": "https://h.example/p.json"}),
        "spec.model.profile.sha256",
        "Required value",
    ),
    Invalid(
        "signature-uri-metadata-host",
        _model(signature={"uri": "http://169.254.169.254/s.json", "sha256": SHA}),
        "spec.model.signature.uri",
        _ADDRESS,
        True,
    ),
    Invalid(
        "signature-uri-traversal",
        _model(signature={"uri": "https://h.example/a/../s.json", "sha256": SHA}),
        "spec.model.signature.uri",
        _TRAVERSAL,
        True,
    ),
    Invalid(
        "signature-sha256-missing",
        _model(signature={"uri": "https://h.example/s.json"}),
        "spec.model.signature.sha256",
        "Required value",
    ),
    Invalid(
        "signature-sha256-uppercase",
        _model(signature={"uri": "https://h.example/s.json", "sha256": SHA.upper()}),
        "spec.model.signature.sha256",
        "should match",
    ),
    Invalid(
        "feature-drift-zero",
        _spec(analysis={"thresholds": {"featureDrift": 0}}),
        "spec.analysis.thresholds.featureDrift",
        "greater than 0",
    ),
    Invalid(
        "uri-scheme-ftp",
        _model(uri="ftp://host/model.joblib"),
        "spec.model.uri",
        "allowed schemes",
        True,
    ),
    Invalid(
        "uri-scheme-hdfs",
        _model(uri="hdfs://namenode/m.joblib"),
        "spec.model.uri",
        "allowed schemes",
        True,
    ),
    Invalid(
        "uri-traversal",
        _model(uri="pvc://models/a/../b.joblib"),
        "spec.model.uri",
        "path traversal",
        True,
    ),
    Invalid(
        "uri-encoded-traversal",
        _model(uri="https://h.example/a/%2E%2E/b.joblib"),
        "spec.model.uri",
        "path traversal",
        True,
    ),
    Invalid(
        "uri-credentials",
        _model(uri="https://user:secret@h.example/m.joblib"),
        "spec.model.uri",
        "no credentials",
        True,
    ),
    Invalid(
        "uri-metadata-endpoint",
        _model(uri="http://169.254.169.254/latest/meta-data"),
        "spec.model.uri",
        "link-local",
        True,
    ),
    Invalid(
        "uri-file-relative",
        _model(uri="file://models/m.joblib"),
        "spec.model.uri",
        "file:///",
        True,
    ),
    Invalid(
        "uri-pvc-no-path",
        _model(uri="pvc://models"),
        "spec.model.uri",
        "pvc://<claim>/<path>",
        True,
    ),
    Invalid(
        "uri-whitespace",
        _model(uri="https://h.example/m .joblib"),
        "spec.model.uri",
        "whitespace",
        True,
    ),
    Invalid(
        "uri-too-long", _model(uri="https://h.example/" + "a" * 2048), "spec.model.uri", "Too long"
    ),
    *URI_CASES,
    # --- replicas and autoscaling ---
    Invalid(
        "replicas-zero", _spec(replicas=0), "spec.replicas", "greater than or equal to 1", True
    ),
    Invalid("replicas-string", _spec(replicas="three"), "spec.replicas", "must be of type integer"),
    Invalid(
        "replicas-with-autoscaling",
        _spec(replicas=3, autoscaling=_AUTOSCALING),
        "spec.replicas",
        "the HorizontalPodAutoscaler owns the replica count",
        True,
    ),
    Invalid(
        "min-above-max",
        _spec(autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "must be less than or equal to `maxReplicas`",
        True,
    ),
    Invalid(
        "max-replicas-missing",
        _spec(autoscaling={"minReplicas": 2}),
        "spec.autoscaling.maxReplicas",
        "Required value",
    ),
    Invalid(
        "cpu-target-above-100",
        _spec(autoscaling={"maxReplicas": 3, "targetCPUUtilizationPercentage": 150}),
        "spec.autoscaling.targetCPUUtilizationPercentage",
        "less than or equal to 100",
        True,
    ),
    Invalid(
        "autoscaling-without-cpu-request",
        _spec(autoscaling=_AUTOSCALING, serving={"resources": {"requests": {"memory": "1Gi"}}}),
        "spec.serving.resources.requests",
        "must set `cpu`",
        True,
    ),
    Invalid(
        "scale-policy-type-unknown",
        _spec(
            autoscaling={
                "maxReplicas": 3,
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 60}]}
                },
            }
        ),
        "spec.autoscaling.behavior.scaleUp.policies[0].type",
        "Unsupported value",
    ),
    # --- rollout ---
    Invalid(
        "weights-decreasing",
        _spec(rollout={"steps": [{"weight": 50}, {"weight": 10}]}),
        "spec.rollout.steps",
        "weights must be strictly increasing",
        True,
    ),
    Invalid(
        "weights-repeated",
        _spec(rollout={"steps": [{"weight": 20}, {"weight": 20}]}),
        "spec.rollout.steps",
        "weights must be strictly increasing",
        True,
    ),
    Invalid(
        "weight-zero",
        _spec(rollout={"steps": [{"weight": 0}]}),
        "spec.rollout.steps[0].weight",
        "greater than or equal to 1",
        True,
    ),
    Invalid(
        "weight-above-100",
        _spec(rollout={"steps": [{"weight": 10}, {"weight": 101}]}),
        "spec.rollout.steps[1].weight",
        "less than or equal to 100",
        True,
    ),
    Invalid(
        "too-many-steps",
        _spec(rollout={"steps": [{"weight": w} for w in range(1, 22)]}),
        "spec.rollout.steps",
        "at most 20 items",
        True,
    ),
    Invalid(
        "pause-not-a-duration",
        _spec(rollout={"steps": [{"weight": 10, "pause": "ten seconds"}]}),
        "spec.rollout.steps[0].pause",
        "should match",
        True,
    ),
    Invalid(
        "pause-too-long",
        _spec(rollout={"steps": [{"weight": 10, "pause": "25h"}]}),
        "spec.rollout.steps[0].pause",
        "must be between 0s and 24h",
        True,
    ),
    Invalid(
        "bake-time-too-long",
        _spec(rollout={"bakeTime": "24h1s"}),
        "spec.rollout.bakeTime",
        "must be between 0s and 24h",
        True,
    ),
    Invalid(
        "progress-deadline-too-short",
        _spec(rollout={"progressDeadline": "10s"}),
        "spec.rollout.progressDeadline",
        "must be between 30s and 24h",
        True,
    ),
    Invalid(
        "progress-deadline-not-a-duration",
        _spec(rollout={"progressDeadline": "ten minutes"}),
        "spec.rollout.progressDeadline",
        "should match",
        True,
    ),
    # --- analysis ---
    Invalid(
        "window-too-short",
        _spec(analysis={"window": "1s"}),
        "spec.analysis.window",
        "must be between 5s and 1h",
        True,
    ),
    Invalid(
        "min-accuracy-above-one",
        _spec(analysis={"thresholds": {"minAccuracy": 1.5}}),
        "spec.analysis.thresholds.minAccuracy",
        "less than or equal to 1",
        True,
    ),
    Invalid(
        "max-mae-negative",
        _spec(analysis={"thresholds": {"maxMAE": -1}}),
        "spec.analysis.thresholds.maxMAE",
        "greater than or equal to 0",
        True,
    ),
    Invalid(
        "feedback-window-too-long",
        _spec(analysis={"feedbackWindow": "7h"}),
        "spec.analysis.feedbackWindow",
        "must be between 5s and 6h",
        True,
    ),
    Invalid(
        "window-negative",
        _spec(analysis={"window": "-30s"}),
        "spec.analysis.window",
        "should match",
        True,
    ),
    Invalid(
        "error-rate-zero",
        _spec(analysis={"thresholds": {"errorRate": 0}}),
        "spec.analysis.thresholds.errorRate",
        "greater than 0",
        True,
    ),
    Invalid(
        "error-rate-above-one",
        _spec(analysis={"thresholds": {"errorRate": 1.5}}),
        "spec.analysis.thresholds.errorRate",
        "less than or equal to 1",
        True,
    ),
    Invalid(
        "latency-negative",
        _spec(analysis={"thresholds": {"latencyP99Ms": -5}}),
        "spec.analysis.thresholds.latencyP99Ms",
        "greater than 0",
        True,
    ),
    Invalid(
        "on-no-data-unknown",
        _spec(analysis={"onNoData": "ignore"}),
        "spec.analysis.onNoData",
        "Unsupported value",
    ),
    Invalid(
        "min-requests-zero",
        _spec(analysis={"minRequests": 0}),
        "spec.analysis.minRequests",
        "greater than or equal to 1",
        True,
    ),
    Invalid(
        "validation-accuracy-above-1",
        _validation(metric="accuracy", threshold=1.5),
        "spec.analysis.validation.threshold",
        "out of range for the metric",
        True,
    ),
    Invalid(
        "validation-mae-negative",
        _validation(metric="mae", threshold=-0.1),
        "spec.analysis.validation.threshold",
        "out of range for the metric",
        True,
    ),
    Invalid(
        "validation-metric-unknown",
        _validation(metric="auc"),
        "spec.analysis.validation.metric",
        "Unsupported value",
    ),
    Invalid(
        "validation-sha256-short",
        _validation(sha256=SHA[:10]),
        "spec.analysis.validation.sha256",
        "should match",
    ),
    # The model's URI rules, reused: one case per kind is enough here.
    Invalid(
        "validation-uri-scheme",
        _validation(uri="ftp://data.example.com/v.csv"),
        "spec.analysis.validation.uri",
        "must start with one of the allowed schemes",
        True,
    ),
    Invalid(
        "validation-uri-metadata",
        _validation(uri="http://169.254.169.254/v.csv"),
        "spec.analysis.validation.uri",
        "loopback, link-local or cloud metadata",
        True,
    ),
    # The shared URI rules admit mlflow:// for the model; a dataset is never resolved.
    Invalid(
        "validation-uri-mlflow",
        _validation(uri="mlflow://holdout/3"),
        "spec.analysis.validation.uri",
        "must not be an mlflow:// URI",
        True,
    ),
    # An object-store dataset is fetched with the model's fetcher credentials: only beside an
    # object-store model.
    Invalid(
        "validation-uri-store-beside-https-model",
        _validation(uri="s3://holdout-data/iris/v.csv"),
        "spec.analysis.validation.uri",
        "may name an object store (s3://, gs://, azure://) only when spec.model.uri does",
        True,
    ),
    # --- rollback ---
    Invalid(
        "history-limit-above-50",
        _spec(rollback={"historyLimit": 100}),
        "spec.rollback.historyLimit",
        "less than or equal to 50",
        True,
    ),
    # --- networkPolicy ---
    Invalid(
        "egress-not-a-cidr",
        _spec(networkPolicy={"egress": [{"cidr": "models.example.com"}]}),
        "spec.networkPolicy.egress[0].cidr",
        "must be a CIDR with no host bits set",
        True,
    ),
    Invalid(
        "egress-host-bits",
        _spec(networkPolicy={"egress": [{"cidr": "10.1.2.3/8"}]}),
        "spec.networkPolicy.egress[0].cidr",
        "must be a CIDR with no host bits set",
        True,
    ),
    Invalid(
        "egress-no-prefix-length",
        _spec(networkPolicy={"egress": [{"cidr": "10.1.2.3"}]}),
        "spec.networkPolicy.egress[0].cidr",
        "must be a CIDR",
    ),
    Invalid(
        "egress-ipv6-not-canonical",
        _spec(networkPolicy={"egress": [{"cidr": "2001:DB8::/32"}]}),
        "spec.networkPolicy.egress[0].cidr",
        "canonical",
    ),
    Invalid(
        "egress-port-zero",
        _spec(networkPolicy={"egress": [{"cidr": "10.0.0.0/8", "ports": [0]}]}),
        "spec.networkPolicy.egress[0].ports[0]",
        "greater than or equal to 1",
        True,
    ),
    # --- serving ---
    Invalid(
        "port-monitor",
        _spec(serving={"port": 9090}),
        "spec.serving.port",
        "monitoring sidecar",
        True,
    ),
    Invalid(
        "port-privileged",
        _spec(serving={"port": 80}),
        "spec.serving.port",
        "greater than or equal to 1024",
        True,
    ),
    Invalid(
        "image-with-space",
        _spec(serving={"image": "repo/img :1"}),
        "spec.serving.image",
        "should match",
        True,
    ),
    Invalid(
        "env-reserved",
        _spec(serving={"env": [{"name": "MODELDEPLOY_SHA256", "value": "x"}]}),
        "spec.serving.env[0].name",
        "reserved for the operator",
        True,
    ),
    Invalid(
        "env-duplicate",
        _spec(serving={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        "spec.serving.env[1]",
        "Duplicate value",
        True,
    ),
    Invalid(
        "cpu-not-a-quantity",
        _spec(serving={"resources": {"requests": {"cpu": "lots"}}}),
        "spec.serving.resources.requests.cpu",
        "should match",
        True,
    ),
    Invalid(
        "cpu-negative",
        _spec(serving={"resources": {"requests": {"cpu": "-1"}}}),
        "spec.serving.resources.requests.cpu",
        "should match",
        True,
    ),
    Invalid(
        "cpu-negative-integer",
        _spec(serving={"resources": {"limits": {"cpu": -1}}}),
        "spec.serving.resources.limits.cpu",
        "non-negative quantity",
    ),
    Invalid(
        "memory-huge-exponent",
        _spec(serving={"resources": {"limits": {"memory": "1e9999999"}}}),
        "spec.serving.resources.limits.memory",
        "should match",
        True,
    ),
    Invalid(
        "memory-huge-integer",
        _spec(serving={"resources": {"requests": {"memory": 10**16}}}),
        "spec.serving.resources.requests.memory",
        "at most 15 digits",
    ),
    Invalid(
        "storage-too-many-digits",
        _spec(serving={"resources": {"limits": {"ephemeral-storage": "9" * 20 + "Ei"}}}),
        "spec.serving.resources.limits.ephemeral-storage",
        "should match",
        True,
    ),
    Invalid(
        "resource-unknown",
        _spec(serving={"resources": {"requests": {"nvidia.com/gpu": 1}}}),
        "spec.serving.resources.requests.nvidia.com/gpu",
        "unknown field",
    ),
    Invalid("unknown-field", _spec(modle={"name": "typo"}), "spec.modle", "unknown field", True),
    # --- only the operator can see these ---
    Invalid(
        "cpu-request-above-limit",
        _spec(serving={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}),
        "spec.serving.resources.requests.cpu",
        "must be less than or equal to `limits.cpu`",
        True,
        admission=False,
    ),
]

# Pod settings, server tuning and disruption budgets have their own table (it needs `Invalid`).
from tests.helpers.pod_setting_cases import POD_SETTING_CASES  # noqa: E402

INVALID += POD_SETTING_CASES
