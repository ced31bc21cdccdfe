"""Specs that look valid but could break at the API: each one is either refused at admission
with a message naming the field, or deployed by the operator without an API error.

Before this table, an env value with an emoji passed the CRD and then made every server-side
apply fail with 400 (the client sent JSON with surrogate escapes, which the YAML apply body
refuses), visible only in the operator's log.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.operator_proc import OperatorProcess
from tests.integration.conftest import SESSION_PREFIX
from tests.integration.test_operator_core import get_md, manifest
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

Change = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    id: str
    change: Change
    refused: str | None = None  # the field admission must name; None: it must deploy
    says: str = ""  # in the refusal, or in the deployed model-server container (as JSON)
    name: str | None = None


def env(*values: str) -> Change:
    def change(body: dict[str, Any]) -> None:
        body["spec"]["serving"]["env"] = [
            {"name": f"V{i}", "value": value} for i, value in enumerate(values)
        ]

    return change


def resources(kind: str, **quantities: Any) -> Change:
    def change(body: dict[str, Any]) -> None:
        body["spec"]["serving"]["resources"][kind].update(quantities)

    return change


def model(**fields: str) -> Change:
    return lambda body: body["spec"]["model"].update(fields)


YAML_SPECIAL = (
    "key: value",
    "- item",
    "*alias",
    "&anchor x",
    "!!python/object:os.system",
    "null",
    "yes",
    "0x1F",
    '"quoted"',
    "'single'",
    "multi\nline",
    "tab\there",
    "back\\slash",
    "{json: true}",
    "# not a comment",
    "",
    " leading and trailing ",
)
NON_BMP = "\U0001d518\U0001d52b\U0001d526 עברית 中文 \U0001f600"  # Fraktur letters: outside the BMP
LONG_NAME = "a" + "-b" * 25 + "c"  # 52 characters: the longest the CRD allows

CASES = [
    # --- deployed ---
    Case("emoji-in-env", env("🚀 launch ✓ 😀"), says="🚀 launch ✓ 😀"),
    Case("yaml-special-env-values", env(*YAML_SPECIAL), says="!!python/object:os.system"),
    Case("non-bmp-and-rtl-env", env(NON_BMP), says=NON_BMP),
    Case("longest-env-value", env("x" * 4096), says="x" * 4096),
    Case(
        "unicode-uri",
        model(uri="https://models.example.com/modèle/模型.joblib"),
        says="modèle/模型.joblib",
    ),
    Case("control-characters-in-env", env("nul\x00bell\x07esc\x1b"), says="bell"),
    Case(
        "uppercase-image",  # the API accepts it; the kubelet says InvalidImageName (terminal)
        lambda body: body["spec"]["serving"].update(image="Registry.Example.com/IRIS:1"),
        says="Registry.Example.com/IRIS:1",
    ),
    Case("odd-model-name-and-version", model(name="My_Model.v2", version="1.0.0+build.5")),
    Case("longest-name", lambda body: None, name=LONG_NAME),
    Case("largest-cpu", resources("requests", cpu="999999999999999"), says="999999999999999"),
    Case("exponent-quantities", resources("limits", cpu="1e99", memory="1e15")),
    Case("tiny-quantity", resources("requests", cpu="1e-9")),
    Case("integer-quantities", resources("limits", cpu=2, memory=1073741824)),
    # --- refused at admission, naming the field ---
    Case("negative-cpu", resources("requests", cpu="-1"), "spec.serving.resources.requests.cpu"),
    Case("negative-int-cpu", resources("limits", cpu=-1), "spec.serving.resources.limits.cpu"),
    Case(
        "huge-exponent",
        resources("limits", memory="1e9999999"),
        "spec.serving.resources.limits.memory",
    ),
    Case(
        "three-digit-exponent",
        resources("requests", cpu="1e100"),
        "spec.serving.resources.requests.cpu",
    ),
    Case(
        "huge-int-memory",
        resources("requests", memory=10**16),
        "spec.serving.resources.requests.memory",
        "at most 15 digits",
    ),
    Case(
        "quantity-with-spaces",
        resources("requests", cpu="1 "),
        "spec.serving.resources.requests.cpu",
    ),
    Case("env-value-too-long", env("x" * 4097), "spec.serving.env[0].value", "Too long"),
    Case(
        "name-too-long",
        lambda body: None,
        "metadata.name",
        name=LONG_NAME + "d",
    ),
]


@pytest.fixture(scope="module")
def edge_ns(cluster: KubeCluster, operator: OperatorProcess) -> Iterator[str]:
    with cluster.fresh_namespace(prefix=SESSION_PREFIX) as name:
        yield name


def body_for(case: Case, namespace: str, index: int) -> dict[str, Any]:
    body = manifest(case.name or f"edge{index}", namespace)
    body["spec"]["serving"] = {
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {}}
    }
    case.change(body)
    return copy.deepcopy(body)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.id for c in CASES])
def test_edge_case(
    cluster: KubeCluster, operator: OperatorProcess, edge_ns: str, index: int
) -> None:
    case = CASES[index]
    body = body_for(case, edge_ns, index)
    name = body["metadata"]["name"]
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    if case.refused is not None:
        assert result.returncode != 0, f"admitted: {result.stdout}"
        assert case.refused in result.stderr, result.stderr
        assert case.says in result.stderr
        return
    assert result.returncode == 0, result.stderr

    def deployed() -> dict[str, Any] | None:
        got = cluster.kubectl("get", "deployment", f"{name}-r1", "-n", edge_ns, "-o", "json",
                              check=False)  # fmt: skip
        return json.loads(got.stdout) if got.returncode == 0 else None

    deployment = wait_until(deployed, 30, f"Deployment {name}-r1")
    server = next(
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == names.CONTAINER_SERVER
    )
    assert case.says in json.dumps(server, ensure_ascii=False)
    wanted = {e["name"]: e["value"] for e in body["spec"]["serving"].get("env", [])}
    assert {e["name"]: e.get("value", "") for e in server["env"] if e["name"] in wanted} == wanted
    status = wait_until(
        lambda: get_md(cluster, edge_ns, name).get("status"), 30, f"status of {name}"
    )
    assert status["phase"] != names.PHASE_FAILED, status["message"]
    errors = [
        line
        for line in operator.log_tail(lines=1_000_000).splitlines()
        if re.search(rf"{edge_ns}/{name}: API error", line)
    ]
    assert errors == []
