"""Progressive rollout and automatic rollback, end to end on the real control plane.

KWOK runs the pods; for each Running pod, `PodRuntime` runs the real model server and the real
monitoring sidecar on 127.0.0.1, configured from that pod's own container env (the sidecar with
a token of the ServiceAccount the operator made, so with its real RBAC). Models are trained here
and served from `file://` URIs with their real sha256. A `LoadGenerator` sends v2 infer
requests the way the Service would route them (round-robin over the pods ready in its
EndpointSlices), so the revision pin and the canary split are the operator's real ones.

Settings are short so the whole file runs in about two minutes: a 5 s window (the CRD's
minimum), minRequests 5, step pauses of 1 s, bakes of 2 s, the sidecar scraping every 0.2 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.status import state_from_status
from tests.helpers.operator_proc import OperatorProcess
from tests.helpers.pod_runtime import (
    LoadGenerator,
    PodRuntime,
    bad_body,
    infer,
    v2_body,
)
from tests.kube import KubeCluster, wait_until
from tests.serving.models import (
    SavedModel,
    train_classifier,
    train_degrading,
    train_failing,
    train_forest,
)

pytestmark = pytest.mark.kwok  # KWOK runs the pods; this file runs their processes

MD = "iris"
TRIGGER = 12345.0  # the first feature that makes the degrading model slow
ROLLBACKS = "modeldeploy_rollbacks_total"


# --- the ModelDeployment and its status -------------------------------------------------------


def spec_for(
    model: SavedModel,
    version: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    bake: str = "2s",
    on_no_data: str = "hold",
    replicas: int = 1,
    latency_ms: int = 2000,
) -> dict[str, Any]:
    """A small, fast rollout. The latency threshold is loose unless a test is about latency:
    this machine's two cores also run the control plane, and a spurious breach is a failure."""
    return {
        "model": {
            "name": MD,
            "version": version,
            "uri": model.uri,
            "sha256": model.sha256,
            "format": model.format,
        },
        "replicas": replicas,
        "rollout": {
            "steps": [{"weight": 50, "pause": "1s"}] if steps is None else steps,
            "bakeTime": bake,
        },
        "analysis": {
            "window": "5s",
            "minRequests": 5,
            "onNoData": on_no_data,
            "thresholds": {"errorRate": 0.1, "latencyP99Ms": latency_ms},
        },
    }


def apply(cluster: KubeCluster, namespace: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": MD, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_md(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    return dict(cluster.get_json("md", MD, "-n", namespace))


def settled(md: dict[str, Any]) -> bool:
    return bool(md.get("status", {}).get("observedGeneration") == md["metadata"]["generation"])


def wait_md(
    cluster: KubeCluster,
    namespace: str,
    what: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    """Poll the ModelDeployment until `check(md)` holds for its current generation."""

    def reached() -> dict[str, Any] | None:
        md = get_md(cluster, namespace)
        return md if settled(md) and check(md) else None

    return dict(wait_until(reached, timeout, f"{namespace}/{MD}: {what}", interval=0.2))


def wait_phase(cluster: KubeCluster, namespace: str, phase: str) -> dict[str, Any]:
    return wait_md(cluster, namespace, f"phase {phase}", lambda md: md["status"]["phase"] == phase)


def condition(md: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in md["status"]["conditions"] if c["type"] == type_)


def progressing_reason(md: dict[str, Any]) -> str:
    return str(condition(md, names.COND_PROGRESSING)["reason"])


def wait_proven(cluster: KubeCluster, namespace: str, revision: int) -> None:
    """The stable revision has shown a Healthy verdict: a valid automatic rollback target."""

    def proven(md: dict[str, Any]) -> bool:
        stable = state_from_status(md["status"]).stable
        return bool(stable and stable.number == revision and stable.proven)

    wait_md(cluster, namespace, f"r{revision} proven healthy", proven)


def history(md: dict[str, Any], revision: int) -> list[tuple[str, str]]:
    return [
        (h["outcome"], h["reason"])
        for h in md["status"].get("history", [])
        if h["revision"] == revision
    ]


def recorded(revision: int) -> Callable[[dict[str, Any]], bool]:
    """Its rollout is over: the revision has an entry in the history."""
    return lambda md: bool(history(md, revision))


def in_flight(revision: int) -> Callable[[dict[str, Any]], bool]:
    return lambda md: (md["status"].get("canary") or {}).get("revision") == revision


def replicas(cluster: KubeCluster, namespace: str, revision: int) -> int:
    deployment = cluster.get_json("deployment", names.revision_name(MD, revision), "-n", namespace)
    return int(deployment["spec"]["replicas"])


def service_pin(cluster: KubeCluster, namespace: str) -> str | None:
    """The revision the Service is pinned to, if any (None: it selects every revision)."""
    service = cluster.get_json("service", names.service_name(MD), "-n", namespace)
    pin = service["spec"]["selector"].get(names.LABEL_REVISION)
    return None if pin is None else str(pin)


def event_messages(cluster: KubeCluster, namespace: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={MD},reason={reason}"
    items = cluster.get_json("events", "-n", namespace, "--field-selector", selector)["items"]
    return [e["message"] for e in items]


def pod_condition(
    cluster: KubeCluster, namespace: str, revision: int, missing_ok: bool = False
) -> Any:
    selector = f"{names.LABEL_NAME}={MD},{names.LABEL_REVISION}={revision}"
    pods = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
    conditions = [c for p in pods for c in p["status"].get("conditions", [])]
    found = (c for c in conditions if c["type"] == names.POD_COND_METRICS_HEALTHY)
    return next(found, None) if missing_ok else next(found)


def only_2xx(load: LoadGenerator, revision: int | None = None) -> bool:
    statuses = load.statuses(revision)
    return sum(statuses.values()) > 0 and all(200 <= s < 300 for s in statuses)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def runtime(
    cluster: KubeCluster, op_namespace: str, operator: OperatorProcess, tmp_path: Path
) -> Iterator[PodRuntime]:
    """Real server and monitor processes for the pods of `MD` (stopped afterwards)."""
    with PodRuntime(cluster, op_namespace, MD, tmp_path / "pods") as pods:
        try:
            yield pods
        finally:
            # Shown by pytest only when the test fails.
            print(f"--- process errors: {pods.errors()}")
            print(f"--- operator log ---\n{operator.log_tail(60)}")
            for log in sorted((tmp_path / "pods").glob("*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


def serving(cluster: KubeCluster, namespace: str, model: SavedModel, **spec: Any) -> None:
    """Deploy r1 and wait until it is Stable."""
    apply(cluster, namespace, spec_for(model, "1", **spec))
    wait_phase(cluster, namespace, names.PHASE_STABLE)


# --- (a) a failing canary ---------------------------------------------------------------------


def test_failing_canary_rolls_back_quarantines_and_retries_on_request(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = op_namespace
    good, bad = train_classifier(tmp_path), train_failing(tmp_path, failure_rate=1.0)
    other = train_forest(tmp_path)
    with LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=150) as load:
        serving(cluster, ns, good)
        wait_proven(cluster, ns, 1)
        rollbacks = operator.metric(ROLLBACKS, {"reason": names.REASON_METRIC_BREACH})

        apply(cluster, ns, spec_for(bad, "2"))
        md = wait_phase(cluster, ns, names.PHASE_ROLLED_BACK)
        status = md["status"]
        degraded = condition(md, names.COND_DEGRADED)
        assert (degraded["status"], degraded["reason"]) == ("True", names.REASON_METRIC_BREACH)
        assert "errorRate" in degraded["message"]
        breach = status["lastBreach"]
        assert (breach["revision"], breach["reason"]) == (2, names.REASON_METRIC_BREACH)
        assert breach["pod"].startswith(f"{MD}-r2-") and "errorRate" in breach["message"]
        assert history(md, 2) == [(names.OUTCOME_ROLLED_BACK, names.REASON_METRIC_BREACH)]
        assert status["stable"]["revision"] == 1 and not status.get("canary")
        # Scaled before the status was written; the Service is pinned back to r1.
        assert replicas(cluster, ns, 2) == 0
        assert service_pin(cluster, ns) == "1"
        # The sidecar's own Event, with its real credentials, and the operator's.
        assert any(
            "errorRate" in m for m in event_messages(cluster, ns, names.REASON_METRIC_BREACH)
        )
        assert event_messages(cluster, ns, names.REASON_ROLLED_BACK)
        assert operator.metric(ROLLBACKS, {"reason": names.REASON_METRIC_BREACH}) == rollbacks + 1
        assert load.statuses(2)[500] >= 5  # the breach came from real failed requests

        # Quarantine: going back to r1's spec and then re-applying the failed one starts nothing.
        apply(cluster, ns, spec_for(good, "1"))
        wait_phase(cluster, ns, names.PHASE_STABLE)
        apply(cluster, ns, spec_for(bad, "2"))
        md = wait_phase(cluster, ns, names.PHASE_ROLLED_BACK)
        assert not md["status"].get("canary") and "quarantined" in md["status"]["message"]
        assert state_from_status(md["status"]).next_revision == 3
        absent = cluster.kubectl("get", "deployment", f"{MD}-r3", "-n", ns, check=False)
        assert absent.returncode != 0

        # Any other spec starts a new rollout at once.
        apply(cluster, ns, spec_for(other, "3"))
        wait_md(cluster, ns, "r3 in flight", in_flight(3))

        # The retry annotation releases the quarantined spec on purpose: a new revision, r4.
        apply(cluster, ns, spec_for(bad, "2"))
        md = wait_md(cluster, ns, "r3 superseded", recorded(3))
        assert history(md, 3) == [(names.OUTCOME_SUPERSEDED, names.REASON_SUPERSEDED)]
        assert md["status"]["phase"] == names.PHASE_ROLLED_BACK and not md["status"].get("canary")
        retry = f"{names.ANNOTATION_RETRY}=1"
        cluster.kubectl("annotate", "md", MD, "-n", ns, retry, "--overwrite")
        md = wait_md(cluster, ns, "r4 rolled back too", recorded(4))
        assert history(md, 4) == [(names.OUTCOME_ROLLED_BACK, names.REASON_METRIC_BREACH)]
        retried = next(h for h in md["status"]["history"] if h["revision"] == 4)
        assert retried["sha256"] == bad.sha256
    # r1 answered every request it got, through both rollbacks.
    assert only_2xx(load, revision=1), load.statuses(1)
    assert not runtime.errors()


# --- (b) a good canary ------------------------------------------------------------------------


def test_good_revision_promotes_through_every_step_to_stable(
    cluster: KubeCluster, op_namespace: str, runtime: PodRuntime, tmp_path: Path
) -> None:
    ns = op_namespace
    steps = [{"weight": 25, "pause": "1s"}, {"weight": 50, "pause": "1s"}]
    canary_sizes: list[int] = []
    conditions_seen: list[tuple[str | None, ...]] = []  # (Ready, Available, Degraded)
    with LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=90) as load:
        serving(cluster, ns, train_classifier(tmp_path), replicas=2, steps=steps)
        wait_proven(cluster, ns, 1)
        apply(cluster, ns, spec_for(train_forest(tmp_path), "2", replicas=2, steps=steps))

        def promoted(md: dict[str, Any]) -> bool:
            canary = md["status"].get("canary") or {}
            seen = {c["type"]: c["status"] for c in md["status"].get("conditions") or []}
            if canary.get("revision") == 2 or md["status"].get("previous"):
                conditions_seen.append(
                    (seen.get("Ready"), seen.get("Available"), seen.get("Degraded"))
                )
            size = None
            if canary.get("revision") == 2:
                # Status records the canary before its Deployment exists (decide, record, act).
                with suppress(AssertionError):
                    size = replicas(cluster, ns, 2)
            if size is not None and canary_sizes[-1:] != [size]:
                canary_sizes.append(size)
            return bool(history(md, 2))

        md = wait_md(cluster, ns, "r2 through its bake", promoted, timeout=90)
    status = md["status"]
    assert history(md, 2) == [(names.OUTCOME_PROMOTED, names.REASON_PROMOTED)]
    assert status["phase"] == names.PHASE_STABLE and status["stable"]["revision"] == 2
    assert canary_sizes[:2] == [1, 2]  # sized from 25% and 50% of two stable pods
    # A healthy canary and bake: not Ready yet, but Available and never Degraded.
    assert ("False", "True", "False") in conditions_seen, conditions_seen
    assert all(degraded == "False" for _, _, degraded in conditions_seen), conditions_seen
    ready = {c["type"]: c for c in status["conditions"]}
    assert (ready["Ready"]["status"], ready["Ready"]["message"]) == (
        "True",
        "r2 (model 2) serves 100%",
    )
    assert len({c["message"] for c in status["conditions"]}) == len(status["conditions"])
    advanced = event_messages(cluster, ns, names.REASON_STEP_ADVANCED)
    assert any("healthy at 25%: now 50% (step 2/2)" in m for m in advanced), advanced
    for reason in (names.REASON_PROMOTING, names.REASON_PROMOTED, names.REASON_BAKE_COMPLETED):
        assert event_messages(cluster, ns, reason), reason
    assert service_pin(cluster, ns) == "2"
    wait_until(lambda: replicas(cluster, ns, 1) == 0, 30, "r1 scaled to zero after the bake")
    # Both revisions served, and no request failed during the whole rollout.
    assert load.statuses(1) and load.statuses(2)
    assert only_2xx(load), load.statuses()
    assert not runtime.errors()


# --- (c) no data ------------------------------------------------------------------------------


def test_no_data_hold_holds_the_step_until_traffic_comes(
    cluster: KubeCluster, op_namespace: str, runtime: PodRuntime, tmp_path: Path
) -> None:
    ns = op_namespace
    serving(cluster, ns, train_classifier(tmp_path))
    apply(cluster, ns, spec_for(train_forest(tmp_path), "2", on_no_data="hold"))

    def holding(md: dict[str, Any]) -> bool:
        return progressing_reason(md) == names.REASON_INSUFFICIENT_DATA

    md = wait_md(cluster, ns, "r2 held for lack of data", holding)
    assert "onNoData=hold" in md["status"]["message"]
    # Held for several pauses: no step, no weight change, no promotion.
    for _ in range(15):
        time.sleep(0.2)
        md = get_md(cluster, ns)
        assert md["status"]["phase"] == names.PHASE_PROGRESSING
        assert (md["status"]["canary"]["revision"], md["status"]["canary"]["step"]) == (2, 0)
        assert md["status"]["canaryWeight"] == "50%"
    assert not event_messages(cluster, ns, names.REASON_PROMOTING)
    # The same rollout moves on as soon as there is evidence.
    with LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=60) as load:
        md = wait_md(cluster, ns, "r2 promoted", recorded(2))
    assert history(md, 2) == [(names.OUTCOME_PROMOTED, names.REASON_PROMOTED)]
    assert only_2xx(load, revision=2)


def test_no_data_fail_rolls_back(
    cluster: KubeCluster, op_namespace: str, runtime: PodRuntime, tmp_path: Path
) -> None:
    """Keep-alive clients stay on r1's pods: the canary gets no request at all."""
    ns = op_namespace
    with LoadGenerator(lambda: runtime.endpoints(revision=1), rate=20, max_seconds=60) as load:
        serving(cluster, ns, train_classifier(tmp_path))
        wait_proven(cluster, ns, 1)
        apply(cluster, ns, spec_for(train_forest(tmp_path), "2", on_no_data="fail"))
        md = wait_phase(cluster, ns, names.PHASE_ROLLED_BACK)
    degraded = condition(md, names.COND_DEGRADED)
    assert degraded["reason"] == names.REASON_INSUFFICIENT_DATA
    assert "onNoData=fail" in md["status"]["lastBreach"]["message"]
    assert history(md, 2) == [(names.OUTCOME_ROLLED_BACK, names.REASON_INSUFFICIENT_DATA)]
    assert replicas(cluster, ns, 2) == 0
    assert only_2xx(load, revision=1) and not load.statuses(2)


def test_no_data_pass_promotes(
    cluster: KubeCluster, op_namespace: str, runtime: PodRuntime, tmp_path: Path
) -> None:
    ns = op_namespace
    serving(cluster, ns, train_classifier(tmp_path), on_no_data="pass")
    apply(cluster, ns, spec_for(train_forest(tmp_path), "2", on_no_data="pass"))
    md = wait_md(cluster, ns, "r2 promoted", recorded(2))
    assert history(md, 2) == [(names.OUTCOME_PROMOTED, names.REASON_PROMOTED)]
    assert md["status"]["stable"]["revision"] == 2
    # Promoted without a single request, as onNoData=pass allows. The sidecar says the same,
    # on its own clock: the operator may act at the window's end before the sidecar's write.
    verdict = wait_until(
        lambda: pod_condition(cluster, ns, 2, missing_ok=True),
        timeout=30,
        what="r2's MetricsHealthy condition",
    )
    assert (verdict["status"], verdict["reason"]) == ("True", names.REASON_INSUFFICIENT_DATA)
    assert "onNoData=pass" in verdict["message"]


# --- (d) a breach in the bake -----------------------------------------------------------------


def test_breach_during_the_bake_rolls_back_to_the_warm_previous(
    cluster: KubeCluster, op_namespace: str, runtime: PodRuntime, tmp_path: Path
) -> None:
    ns = op_namespace
    slow_later = train_degrading(tmp_path, trigger_value=TRIGGER, delay_seconds=1.0)
    with LoadGenerator(runtime.service_endpoints, rate=20, max_seconds=90) as load:
        serving(cluster, ns, train_classifier(tmp_path), latency_ms=500)
        wait_proven(cluster, ns, 1)
        apply(cluster, ns, spec_for(slow_later, "2", bake="30s", latency_ms=500))

        def baking(md: dict[str, Any]) -> bool:
            return progressing_reason(md) == names.REASON_BAKING

        wait_md(cluster, ns, "r2 at 100%, baking", baking)
        assert service_pin(cluster, ns) == "2" and replicas(cluster, ns, 1) == 1  # warm
        for endpoint in runtime.endpoints(revision=2):  # from now on r2 is slow
            assert infer(endpoint, v2_body([[TRIGGER] * 6])) == 200
        md = wait_phase(cluster, ns, names.PHASE_ROLLED_BACK)
    status = md["status"]
    assert status["stable"]["revision"] == 1
    assert (status["lastBreach"]["revision"], status["lastBreach"]["reason"]) == (
        2,
        names.REASON_METRIC_BREACH,
    )
    assert "latencyP99Ms" in status["lastBreach"]["message"]
    assert history(md, 2) == [(names.OUTCOME_ROLLED_BACK, names.REASON_METRIC_BREACH)]
    assert any("in its bake" in m for m in event_messages(cluster, ns, names.REASON_ROLLED_BACK))
    assert service_pin(cluster, ns) == "1" and replicas(cluster, ns, 2) == 0
    assert only_2xx(load, revision=1)


# --- (e) a bad client -------------------------------------------------------------------------


def test_a_flood_of_client_errors_never_causes_a_rollback(
    cluster: KubeCluster,
    op_namespace: str,
    runtime: PodRuntime,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = op_namespace
    rollbacks = operator.metric(ROLLBACKS)
    good = LoadGenerator(runtime.service_endpoints, rate=10, max_seconds=90)
    flood = LoadGenerator(runtime.service_endpoints, rate=30, max_seconds=90, body=bad_body)
    with good, flood:
        serving(cluster, ns, train_classifier(tmp_path))
        wait_proven(cluster, ns, 1)
        apply(cluster, ns, spec_for(train_forest(tmp_path), "2"))
        md = wait_md(cluster, ns, "r2 promoted", recorded(2))
        verdict = pod_condition(cluster, ns, 2)
    assert history(md, 2) == [(names.OUTCOME_PROMOTED, names.REASON_PROMOTED)]
    assert md["status"]["phase"] == names.PHASE_STABLE and not md["status"].get("lastBreach")
    assert operator.metric(ROLLBACKS) == rollbacks
    assert (verdict["status"], verdict["reason"]) == ("True", names.REASON_WITHIN_THRESHOLDS)
    assert verdict["message"].startswith("errorRate 0 <= 0.1")
    # The flood reached both revisions and was answered as the client's fault, every time.
    for revision in (1, 2):
        statuses = flood.statuses(revision)
        assert sum(statuses.values()) >= 20 and all(400 <= s < 500 for s in statuses), statuses
    assert only_2xx(good)
