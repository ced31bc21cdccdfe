"""The CRD on a real API server: what admission rejects (with a message naming the field), what
it accepts, what it defaults, and that the builders' objects pass Pod Security "restricted"."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldeploy import names
from modeldeploy.builders import Owner, hpa, revision_deployment, service, sidecar_rbac
from modeldeploy.spec import parse_spec
from tests.helpers.crd import apply_defaults, spec_schema
from tests.helpers.spec_cases import INVALID, Invalid, valid_manifest
from tests.helpers.storage_cases import STORAGE_INVALID
from tests.kube import KubeCluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
IMAGE = "registry.invalid/modeldeploy-serving:1.0"


@pytest.fixture(scope="module")
def ns(cluster: KubeCluster) -> Iterator[str]:
    """One namespace for the module (dry runs persist nothing), enforcing "restricted"."""
    with cluster.fresh_namespace(prefix="adm", enforce=True) as name:
        yield name


def dry_run(cluster: KubeCluster, obj: dict[str, Any], *extra: str) -> Any:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", *extra, input=json.dumps(obj), check=False
    )


# --- rejected, naming the field ------------------------------------------------------------------

ADMISSION_CASES = [c for c in (*INVALID, *STORAGE_INVALID) if c.admission]


def test_the_table_is_large_enough() -> None:
    assert len(ADMISSION_CASES) >= 20


@pytest.mark.parametrize("case", ADMISSION_CASES, ids=[c.id for c in ADMISSION_CASES])
def test_invalid_spec_is_rejected_naming_the_field(
    cluster: KubeCluster, ns: str, case: Invalid
) -> None:
    result = dry_run(cluster, case.manifest(namespace=ns))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert case.field in result.stderr
    assert case.says in result.stderr


@pytest.mark.parametrize("case", [c for c in INVALID if not c.admission], ids=lambda c: str(c.id))
def test_what_only_the_operator_can_see_passes_admission(
    cluster: KubeCluster, ns: str, case: Invalid
) -> None:
    """Documents the division of labour: these reach the operator, which reports them."""
    result = dry_run(cluster, case.manifest(namespace=ns))
    assert result.returncode == 0, result.stderr


def test_unknown_fields_are_refused_not_pruned(cluster: KubeCluster, ns: str) -> None:
    manifest = valid_manifest(namespace=ns)
    manifest["spec"]["model"]["checksum"] = "x"
    result = dry_run(cluster, manifest)
    assert result.returncode != 0
    assert 'unknown field "spec.model.checksum"' in result.stderr


# --- accepted, and defaulted like the operator defaults -----------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_accepted_without_warnings(cluster: KubeCluster, ns: str, path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    manifest["metadata"]["namespace"] = ns
    result = dry_run(cluster, manifest, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    served = json.loads(result.stdout)["spec"]
    assert parse_spec(served) == parse_spec(manifest["spec"])


def test_server_defaults_equal_the_operators(cluster: KubeCluster, ns: str) -> None:
    manifest = valid_manifest(namespace=ns)
    result = dry_run(cluster, manifest, "-o", "json")
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)["spec"]
    # The Python rendition of defaulting used by the unit tests is the server's.
    assert served == apply_defaults(spec_schema(), manifest["spec"])
    assert parse_spec(served) == parse_spec(manifest["spec"])
    assert served["rollout"]["steps"] == [
        {"weight": 10, "pause": "30s"},
        {"weight": 50, "pause": "60s"},
    ]


durations = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 59), st.sampled_from("sm"))
steps = st.lists(st.integers(1, 100), max_size=6, unique=True).map(
    lambda ws: [{"weight": w, "pause": "10s"} for w in sorted(ws)]
)
valid_specs = st.fixed_dictionaries(
    {},
    optional={
        "replicas": st.integers(1, 1000),
        "rollout": st.fixed_dictionaries({"steps": steps}, optional={"bakeTime": durations}),
        "analysis": st.fixed_dictionaries(
            {},
            optional={
                "window": st.builds(lambda n: f"{n}s", st.integers(5, 3600)),
                "minRequests": st.integers(1, 1_000_000),
                "onNoData": st.sampled_from(["hold", "pass", "fail"]),
                "thresholds": st.fixed_dictionaries(
                    {},
                    optional={
                        "errorRate": st.floats(0.0001, 1),
                        "latencyP99Ms": st.integers(1, 600_000),
                    },
                ),
            },
        ),
        "rollback": st.fixed_dictionaries(
            {}, optional={"automatic": st.booleans(), "historyLimit": st.integers(1, 50)}
        ),
        "serving": st.fixed_dictionaries(
            {}, optional={"port": st.integers(1024, 65535).filter(lambda p: p != 9090)}
        ),
    },
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(changes=valid_specs)
def test_generated_valid_specs_are_accepted_and_read_back_alike(
    cluster: KubeCluster, ns: str, changes: dict[str, Any]
) -> None:
    manifest = valid_manifest(namespace=ns)
    manifest["spec"].update(copy.deepcopy(changes))
    result = dry_run(cluster, manifest, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert parse_spec(json.loads(result.stdout)["spec"]) == parse_spec(manifest["spec"])


# --- status subresource and printer columns ------------------------------------------------------

FULL_STATUS = {
    "phase": "Progressing",
    "observedGeneration": 1,
    "message": "canary at step 1 of 2 (10%)",
    "canaryWeight": "10%",
    "canaryTraffic": "33%",
    "readyPods": "3/3",
    "readyReplicas": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "StableServing",
            "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "CanaryStep",
            "message": "step 1",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        },
    ],
    "stable": {
        "revision": 1,
        "modelVersion": "2",
        "sha256": "a" * 64,
        "specHash": "0123456789",
        "weight": 90,
        "traffic": 67,
        "readyReplicas": 2,
    },
    "canary": {
        "revision": 2,
        "modelVersion": "3",
        "sha256": "b" * 64,
        "specHash": "abcdef0123",
        "weight": 10,
        "traffic": 33,
        "step": 0,
        "stepStartedAt": "2026-01-01T00:00:00Z",
        "readyReplicas": 1,
    },
    "previous": {"revision": 1, "specHash": "0123456789", "weight": 0, "traffic": 0},
    "rolloutState": '{"step":0,"weight":10}',
    "image": {
        "serving": "example.org/modeldeploy:1",
        "default": "example.org/modeldeploy:2",
        "state": "UpgradeAvailable",
        "message": "example.org/modeldeploy:2 is available",
    },
    "quarantinedSpecHashes": ["fedcba9876"],
    "history": [
        {
            "revision": 1,
            "modelVersion": "2",
            "sha256": "a" * 64,
            "specHash": "0123456789",
            "outcome": "Promoted",
            "reason": "all steps passed",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:05:00Z",
        }
    ],
    "lastBreach": {
        "revision": 2,
        "pod": "iris-r2-abc",
        "reason": "MetricBreach",
        "message": "errorRate 0.2 > 0.01 over 30s (120 requests)",
        "time": "2026-01-01T00:01:00Z",
    },
}


def test_status_is_a_subresource_with_printer_columns(cluster: KubeCluster, ns: str) -> None:
    manifest = valid_manifest(name="columns", namespace=ns)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "patch",
        f"{names.SHORT_NAME}/columns",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": FULL_STATUS}),
    )
    stored = cluster.get_json(f"{names.PLURAL}.{names.GROUP}/columns", "-n", ns)
    assert stored["status"] == FULL_STATUS  # nothing pruned
    table = cluster.kubectl("get", names.SHORT_NAME, "columns", "-n", ns).stdout.split("\n")
    header = ["NAME", "PHASE", "VERSION", "CANARY", "TRAFFIC", "READY", "AGE"]
    assert table[0].split() == header
    assert table[1].split()[:6] == ["columns", "Progressing", "3", "10%", "33%", "3/3"]
    wide = cluster.kubectl("get", names.SHORT_NAME, "columns", "-n", ns, "-o", "wide").stdout
    header = ["MODEL", "STABLE-REV", "CANARY-REV", "IMAGE", "MESSAGE"]
    assert wide.split("\n")[0].split()[-5:] == header
    assert wide.split("\n")[1].split()[7:11] == ["iris", "1", "2", "UpgradeAvailable"]


def test_status_schema_rejects_an_unknown_phase(cluster: KubeCluster, ns: str) -> None:
    manifest = valid_manifest(name="badphase", namespace=ns)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    result = cluster.kubectl(
        "patch",
        f"{names.SHORT_NAME}/badphase",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Healthy"}}),
        check=False,
    )
    assert result.returncode != 0
    assert "status.phase" in result.stderr and "Unsupported value" in result.stderr


# --- the builders' objects under Pod Security "restricted" enforcement --------------------------


def _children(ns: str) -> list[dict[str, Any]]:
    owner = Owner(name="iris", namespace=ns, uid=str(uuid.uuid4()))
    spec = parse_spec(
        {**valid_manifest()["spec"], "autoscaling": {"minReplicas": 2, "maxReplicas": 5}}
    )
    deployment = revision_deployment(
        owner, spec, revision=1, spec_hash="h", default_image=IMAGE, replicas=None
    )
    autoscaler = hpa(owner, spec, revision=1)
    assert autoscaler is not None
    return [
        *sidecar_rbac(ns, names.DEFAULT_MONITOR_CLUSTER_ROLE),
        deployment,
        service(owner),
        autoscaler,
    ]


def test_builders_objects_are_accepted_without_warnings(cluster: KubeCluster, ns: str) -> None:
    for child in _children(ns):
        result = dry_run(cluster, child)
        assert result.returncode == 0, f"{child['kind']}: {result.stderr}"
        assert "Warning" not in result.stderr, f"{child['kind']}: {result.stderr}"


@pytest.fixture(scope="module")
def sidecar_account(cluster: KubeCluster, ns: str) -> None:
    """Pods are admitted only once their ServiceAccount exists."""
    for obj in sidecar_rbac(ns, names.DEFAULT_MONITOR_CLUSTER_ROLE):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.mark.usefixtures("sidecar_account")
def test_the_pod_is_admitted_where_restricted_is_enforced(cluster: KubeCluster, ns: str) -> None:
    deployment = next(c for c in _children(ns) if c["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restricted-check", "namespace": ns, **template["metadata"]},
        "spec": template["spec"],
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr


@pytest.mark.usefixtures("sidecar_account")
def test_the_restricted_namespace_does_reject_an_unsafe_pod(cluster: KubeCluster, ns: str) -> None:
    """Negative control: enforcement is on, so the acceptance above means something."""
    deployment = next(c for c in _children(ns) if c["kind"] == "Deployment")
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    spec["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unsafe", "namespace": ns},
        "spec": spec,
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode != 0
    assert "restricted" in result.stderr
