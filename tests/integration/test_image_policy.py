"""An operator upgrade that changes the default serving image, on the real control plane.

Each test runs its own operator process (its flags are the subject) on a namespace of its own,
creates ModelDeployments with one image, then restarts the operator with another default image:
under `manual` nothing rolls out, under `progressive` at most one image-upgrade canary runs at a
time, and a scikit-learn minor mismatch moves nothing. KWOK runs the pods (no image is pulled);
with `onNoData: pass` and no sidecar, a revision is healthy after one 5 s window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from modeldeploy import names
from tests.helpers.operator_proc import OperatorProcess
from tests.integration.test_cli import cli
from tests.kube import KubeCluster, wait_until

pytestmark = pytest.mark.kwok

OLD, NEW = "modeldeploy.invalid/serving:1", "modeldeploy.invalid/serving:2"
SHA = "ab" * 32


@contextmanager
def operator(
    cluster: KubeCluster, rollout: str, sklearn: str = "1.5.0"
) -> Iterator[tuple[str, OperatorProcess]]:
    """A namespace and an operator watching only it, default image OLD."""
    with cluster.fresh_namespace(prefix="imgpol") as namespace:
        env = {
            names.ENV_SERVING_IMAGE: OLD,
            names.ENV_SERVING_IMAGE_ROLLOUT: rollout,
            names.ENV_SERVING_IMAGE_SKLEARN: sklearn,
            names.ENV_SERVING_IMAGE_MAX_CANARIES: "1",
        }
        proc = OperatorProcess(cluster, [namespace], extra_env=env, name="imagepolicy")
        proc.start()
        try:
            yield namespace, proc
        finally:
            proc.stop()


def upgrade(proc: OperatorProcess, image: str = NEW, sklearn: str = "1.5.1") -> None:
    """What a helm upgrade does to the operator: new flags, a new process."""
    proc.env[names.ENV_SERVING_IMAGE] = image
    proc.env[names.ENV_SERVING_IMAGE_SKLEARN] = sklearn
    proc.restart()


def apply(
    cluster: KubeCluster, namespace: str, name: str, version: str = "1", **serving: Any
) -> None:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": name,
                "version": version,
                "uri": f"https://models.example.com/{name}/{version}.joblib",
                "sha256": SHA,
            },
            "serving": serving,
            "replicas": 1,
            "rollout": {"steps": [], "bakeTime": "1s"},
            "analysis": {"window": "5s", "onNoData": "pass"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_md(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("md", name, "-n", namespace))


def settled(cluster: KubeCluster, namespace: str, name: str, revision: int) -> dict[str, Any]:
    """Wait until `revision` serves alone, Stable, for the current generation."""

    def done() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        status = md.get("status") or {}
        ok = (
            status.get("observedGeneration") == md["metadata"]["generation"]
            and status.get("phase") == names.PHASE_STABLE
            and (status.get("stable") or {}).get("revision") == revision
            and not status.get("previous")
        )
        return md if ok else None

    return dict(wait_until(done, 90, f"{name} r{revision} Stable", interval=0.3))


def image_state(cluster: KubeCluster, namespace: str, name: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        return md if ((md.get("status") or {}).get("image") or {}).get("state") == state else None

    return dict(wait_until(reached, 60, f"{name} status.image.state {state}", interval=0.3))


def deployment(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("deployment", name, "-n", namespace))


def server_image(obj: dict[str, Any]) -> str:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == names.CONTAINER_SERVER)["image"])


def revisions(cluster: KubeCluster, namespace: str, name: str) -> list[str]:
    items = cluster.get_json("deployments", "-n", namespace, "-l", f"{names.LABEL_NAME}={name}")
    return sorted(d["metadata"]["name"] for d in items["items"])


def test_manual_starts_no_canary_and_says_an_upgrade_is_available(cluster: KubeCluster) -> None:
    with operator(cluster, names.IMAGE_ROLLOUT_MANUAL) as (ns, proc):
        apply(cluster, ns, "a")
        settled(cluster, ns, "a", 1)
        before = deployment(cluster, ns, "a-r1")
        assert server_image(before) == OLD

        upgrade(proc)
        md = image_state(cluster, ns, "a", names.IMAGE_UPGRADE_AVAILABLE)
        assert md["status"]["image"]["serving"] == OLD
        assert md["status"]["image"]["default"] == NEW
        assert md["status"]["phase"] == names.PHASE_STABLE and not md["status"].get("canary")
        after = deployment(cluster, ns, "a-r1")
        # The same pods: neither the server nor the sidecar image moved.
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["template"] == before["spec"]["template"]
        assert revisions(cluster, ns, "a") == ["a-r1"]
        wide = cluster.kubectl("get", "md", "a", "-n", ns, "-o", "wide").stdout
        assert names.IMAGE_UPGRADE_AVAILABLE in wide

        # A new revision made for another reason (a new model version) takes the new image.
        apply(cluster, ns, "a", version="2")
        md = settled(cluster, ns, "a", 2)
        assert server_image(deployment(cluster, ns, "a-r2")) == NEW
        assert md["status"]["image"]["state"] == names.IMAGE_UP_TO_DATE


def test_progressive_upgrades_one_modeldeployment_at_a_time(cluster: KubeCluster) -> None:
    with operator(cluster, names.IMAGE_ROLLOUT_PROGRESSIVE) as (ns, proc):
        for name in ("a", "b"):
            apply(cluster, ns, name)
        for name in ("a", "b"):
            settled(cluster, ns, name, 1)

        upgrade(proc)
        seen: set[str] = set()

        def both_upgraded() -> bool:
            states = {
                name: (get_md(cluster, ns, name).get("status") or {}).get("image") or {}
                for name in ("a", "b")
            }
            upgrading = [n for n, s in states.items() if s.get("state") == names.IMAGE_UPGRADING]
            assert len(upgrading) <= 1, states
            seen.update(str(s.get("state")) for s in states.values())
            return all(
                s.get("serving") == NEW and s.get("state") == names.IMAGE_UP_TO_DATE
                for s in states.values()
            )

        wait_until(both_upgraded, 120, "both ModelDeployments on the new image", interval=0.2)
        assert {names.IMAGE_UPGRADING, names.IMAGE_WAITING_FOR_SLOT} <= seen
        entries = {}
        for name in ("a", "b"):
            md = settled(cluster, ns, name, 2)
            assert server_image(deployment(cluster, ns, f"{name}-r2")) == NEW
            (entry,) = [h for h in md["status"]["history"] if h["revision"] == 2]
            assert entry["outcome"] == names.OUTCOME_PROMOTED
            entries[name] = entry
        # One after the other: the second canary started once the first had finished its bake.
        first, second = sorted(entries.values(), key=lambda h: h["startedAt"])
        assert second["startedAt"] >= first["finishedAt"]


def test_a_scikit_learn_minor_mismatch_moves_nothing_unless_the_spec_opts_in(
    cluster: KubeCluster,
) -> None:
    with operator(cluster, names.IMAGE_ROLLOUT_PROGRESSIVE) as (ns, proc):
        apply(cluster, ns, "a")
        settled(cluster, ns, "a", 1)
        before = deployment(cluster, ns, "a-r1")

        upgrade(proc, sklearn="1.6.0")
        md = image_state(cluster, ns, "a", names.IMAGE_SKLEARN_MISMATCH)
        message = md["status"]["image"]["message"]
        assert "1.6.0" in message and "1.5.0" in message and "allowSklearnUpgrade" in message
        assert revisions(cluster, ns, "a") == ["a-r1"]
        assert deployment(cluster, ns, "a-r1")["spec"]["template"] == before["spec"]["template"]
        status = cli(cluster, "status", "a", "-n", ns)
        assert status.returncode == 0, status.stderr
        assert "Image:" in status.stdout and names.IMAGE_SKLEARN_MISMATCH in status.stdout

        apply(cluster, ns, "a", allowSklearnUpgrade=True)
        settled(cluster, ns, "a", 2)
        r2 = deployment(cluster, ns, "a-r2")
        assert server_image(r2) == NEW
        server = r2["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in server["env"]}
        assert env[names.ENV_ALLOW_SKLEARN_MISMATCH] == "true"
