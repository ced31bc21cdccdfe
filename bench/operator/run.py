"""`make bench-operator`: the operator's speed and API cost, against a peer build, same cluster.

    python bench/operator/run.py                   # ~25 min if 1000 reach Stable in ~2 min each
    python bench/operator/run.py --quick           # small counts, about 5 minutes: a smoke run
    python bench/operator/run.py --peer ../old     # the peer: another checkout of this repo
    python bench/operator/run.py --phases burst --merge --burst 300   # redo one phase

Every phase runs once with this checkout's operator ("new") and once with the peer's ("old",
by default the code at PEER_REV exported with `git archive`), each in its own namespace with a
fresh operator process that watches only that namespace. The peer runs under the same Python,
with PYTHONPATH pointing at its code; the import path each one resolves is recorded.

1. sequential: N ModelDeployments applied one at a time. Per ModelDeployment: time to its
   Deployment + Service + HPA, time to status Stable (KWOK makes pods Ready), and the API
   requests from the create to Stable (+0.5 s for the trailing writes of that reconcile).
2. canary: one Stable ModelDeployment, K version changes in turn (one 50% step, 1 s pause,
   5 s analysis window, onNoData pass, 1 s bake); requests from each change to rN Promoted.
3. waiting: M ModelDeployments per operator (both operators at once, own namespaces); reads
   and writes per minute per ModelDeployment while Stable and idle, inside a 120 s step pause,
   and inside a 2 m bake.
4. burst: B ModelDeployments created at once (16 client threads); time to all Stable, the
   operator's RSS, peak RSS and CPU, the control plane's CPU, requests per ModelDeployment;
   then all deleted in one call: time until every child is gone, RSS after.

Requests are the operator's own counter modeldeploy_api_requests_total{kind=read|write}; kopf's
watch requests are not in it. Times come from watch events seen by this process (no polling).
Results: bench/results/operator.json (operator-quick.json for --quick); full runs also write the
table in README.md between the benchmark markers.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import report
from harness import (
    ROOT,
    Bench,
    Flavor,
    control_plane_cpu,
    counts,
    cpu_seconds,
    export_peer,
    machine,
    md,
    rss_mb,
    spent,
    spread,
    wait_for,
)
from tests.kube import BACKENDS

PEER_REV = "46aef7b"  # before status-first reconciles from watch caches and quiet waiting


# --- the phases ----------------------------------------------------------------------------------
def sequential(bench: Bench, flavor: Flavor, count: int) -> dict[str, Any]:
    ns = f"bench-{flavor.name}-seq"
    bench.fresh_namespace(ns)
    tracker = bench.tracker(ns)
    op = bench.operator(flavor, ns)
    children, stable, reads, writes = [], [], [], []
    try:
        for i in range(count):
            name = f"seq-{i}"
            before = counts(op)
            t0 = time.monotonic()
            bench.create(md(name, ns))
            if not wait_for(partial(tracker.seen, name, "stable"), 60):
                raise RuntimeError(f"[{flavor.name}] {name} not Stable within 60 s")
            time.sleep(0.5)  # the rest of the reconcile that wrote Stable
            r, w = spent(op, before)
            reads.append(r)
            writes.append(w)
            kids = [tracker.when(name, kind) for kind in ("deployments", "services", "hpa")]
            children.append(max(t for t in kids if t is not None) - t0)
            stable.append((tracker.when(name, "stable") or 0) - t0)
    finally:
        op.stop()
        tracker.stop()
    # Which code ran, from the process itself: only the new one keeps ControllerRevisions.
    revisions_logged = "applying ControllerRevision" in op.log_path.read_text()
    print(f"[{flavor.name}] operator log shows ControllerRevisions: {revisions_logged}")
    return {
        "count": count,
        "log_shows_controllerrevisions": revisions_logged,
        "apply_to_children_s": spread(children),
        "apply_to_stable_s": spread(stable),
        "reads_per_md": spread(reads),
        "writes_per_md": spread(writes),
        "requests_per_md": spread([r + w for r, w in zip(reads, writes, strict=True)]),
    }


def canary(bench: Bench, flavor: Flavor, count: int) -> dict[str, Any]:
    ns, name = f"bench-{flavor.name}-canary", "canary"
    bench.fresh_namespace(ns)
    tracker = bench.tracker(ns)
    op = bench.operator(flavor, ns)
    reads, writes, seconds = [], [], []
    try:
        bench.create(md(name, ns, {"pause": "1s", "bake": "1s"}))
        if not wait_for(partial(tracker.seen, name, "stable"), 60):
            raise RuntimeError(f"[{flavor.name}] {name} not Stable within 60 s")
        time.sleep(2)
        for revision in range(2, count + 2):
            before = counts(op)
            t0 = time.monotonic()
            bench.set_version(ns, name, str(revision))
            if not wait_for(partial(tracker.promoted, name, revision), 180, 0.05):
                raise RuntimeError(f"[{flavor.name}] r{revision} not Promoted within 180 s")
            seconds.append(time.monotonic() - t0)
            wait_for(lambda: tracker.mds[name].phase == "Stable", 30, 0.05)
            time.sleep(0.5)
            r, w = spent(op, before)
            reads.append(r)
            writes.append(w)
    finally:
        op.stop()
        tracker.stop()
    return {
        "count": count,
        "change_to_promoted_s": spread(seconds),
        "reads_per_canary": spread(reads),
        "writes_per_canary": spread(writes),
        "requests_per_canary": spread([r + w for r, w in zip(reads, writes, strict=True)]),
    }


def waiting(
    bench: Bench,
    flavor: Flavor,
    count: int,
    window: float,
    pause: int,
    bake: int,
    out: dict[str, Any],
) -> None:
    """Requests per minute per ModelDeployment while nothing should happen. Fills `out`."""
    ns = f"bench-{flavor.name}-wait"
    bench.fresh_namespace(ns)
    tracker = bench.tracker(ns)
    op = bench.operator(flavor, ns)
    names = [f"wait-{i}" for i in range(count)]

    def measure(phase: str, still: Callable[[Any], bool]) -> None:
        before = counts(op)
        time.sleep(window)
        r, w = spent(op, before)
        per_minute = 60 / window / count
        out[phase] = {
            "reads_per_min_per_md": r * per_minute,
            "writes_per_min_per_md": w * per_minute,
            "stayed_in_phase": tracker.count(still) == count,
        }
        print(f"[{flavor.name}] {phase}: {out[phase]}")

    try:
        for name in names:
            bench.create(md(name, ns, {"pause": f"{pause}s", "bake": f"{bake}s"}))
        if not wait_for(lambda: tracker.count(lambda s: s.phase == "Stable") == count, 120, 0.1):
            raise RuntimeError(f"[{flavor.name}] waiting: not all Stable")
        time.sleep(5)
        measure("stable_idle", lambda s: s.phase == "Stable")
        changed = time.monotonic()
        for name in names:
            bench.set_version(ns, name, "2")
        wait_for(lambda: tracker.count(lambda s: s.canary == 2) == count, 60, 0.1)
        # Canary pods Ready and a full 5 s analysis window behind: now it only waits.
        time.sleep(max(0.0, changed + 15 - time.monotonic()))
        measure("step_pause", lambda s: s.canary == 2)

        def baking(s: Any) -> bool:
            return s.stable == 2 and s.canary is None and 2 not in s.promoted

        if not wait_for(lambda: tracker.count(baking) == count, pause + 60, 0.1):
            raise RuntimeError(f"[{flavor.name}] waiting: not all in the bake")
        time.sleep(5)
        measure("bake", baking)
    except Exception as err:  # a thread: the error goes into the results, not into the void
        out["error"] = f"{type(err).__name__}: {err}"
        print(f"[{flavor.name}] waiting failed: {err}")
    finally:
        op.stop()
        tracker.stop()
        bench.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def burst(bench: Bench, flavor: Flavor, count: int, timeout: float) -> dict[str, Any]:
    ns = f"bench-{flavor.name}-burst"
    bench.fresh_namespace(ns)
    tracker = bench.tracker(ns)
    op = bench.operator(flavor, ns)
    assert op.proc is not None
    pid = op.proc.pid
    result: dict[str, Any] = {"count": count, "machine_before": machine()}
    try:
        before, cpu0, plane0 = counts(op), cpu_seconds(pid), control_plane_cpu()
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(bench.create, (md(f"burst-{i}", ns) for i in range(count))))
        result["create_calls_s"] = time.monotonic() - t0
        done = wait_for(lambda: len(tracker.stable_times()) >= count, timeout, 0.1)
        stable = tracker.stable_times()
        result["stable_reached"] = len(stable)
        result["all_stable_s"] = (max(stable) - t0) if done else None
        half = sorted(stable)[count // 2] if len(stable) > count // 2 else None
        result["half_stable_s"] = None if half is None else half - t0
        result["timeout_s"] = timeout
        elapsed = time.monotonic() - t0
        time.sleep(3)  # trailing status writes
        r, w = spent(op, before)
        result["reads_per_md"], result["writes_per_md"] = r / count, w / count
        result["requests_per_md"] = (r + w) / count
        result["operator_rss_mb"], result["operator_peak_rss_mb"] = rss_mb(pid)
        result["operator_cpu_s"] = cpu_seconds(pid) - cpu0
        result["control_plane_cpu_s"] = {
            k: v - plane0.get(k, 0.0) for k, v in control_plane_cpu().items()
        }
        result["wall_s"] = elapsed
        print(
            f"[{flavor.name}] burst: {len(stable)}/{count} Stable"
            f" in {result['all_stable_s'] or elapsed:.1f}s"
        )

        # Deleted like they were created (one DeleteCollection call can outlast the apiserver's
        # 60 s request timeout under load); the garbage collector removes the children.
        before = counts(op)
        t1 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(partial(bench.delete, ns), (f"burst-{i}" for i in range(count))))
        result["delete_calls_s"] = time.monotonic() - t1
        gone = wait_for(
            lambda: tracker.live_children() == 0 and not tracker.live["modeldeployments"], 300, 0.2
        )
        result["delete_to_children_gone_s"] = (time.monotonic() - t1) if gone else None
        time.sleep(5)
        r, w = spent(op, before)
        result["delete_reads"], result["delete_writes"] = r, w
        result["operator_rss_after_delete_mb"] = rss_mb(pid)[0]
        print(
            f"[{flavor.name}] deleted: children gone after "
            f"{result['delete_to_children_gone_s']}s, "
            f"RSS {result['operator_rss_after_delete_mb']:.0f} MB"
        )
    except Exception as err:  # keep what was measured; the next operator still runs
        result["error"] = f"{type(err).__name__}: {err}"
        print(f"[{flavor.name}] burst failed: {result['error']}")
    finally:
        op.stop()
        tracker.stop()
        bench.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return result


# --- main ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--canaries", type=int, default=5)
    parser.add_argument("--waiting", type=int, default=5, help="ModelDeployments per operator")
    parser.add_argument("--window", type=float, default=60, help="seconds measured per phase")
    parser.add_argument("--pause", type=int, default=120, help="step pause, seconds")
    parser.add_argument("--bake", type=int, default=120, help="bakeTime, seconds")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--burst-timeout", type=float, default=600)
    peer = parser.add_mutually_exclusive_group()
    peer.add_argument("--peer", type=Path, help="a checkout of the peer code (default: PEER_REV)")
    peer.add_argument("--peer-rev", default=PEER_REV, help="git revision of the peer code")
    peer.add_argument("--no-peer", action="store_true", help="measure this checkout only")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--phases", default="sequential,canary,waiting,burst", help="comma-separated subset"
    )
    parser.add_argument("--merge", action="store_true", help="keep the other phases in --out")
    if parser.parse_known_args()[0].quick:  # smaller defaults; explicit flags still win
        parser.set_defaults(sequential=5, canaries=2, waiting=2, window=10, pause=40, bake=40)
        parser.set_defaults(burst=50)
    args = parser.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"operator{'-quick' if args.quick else ''}.json"

    started = time.monotonic()
    phases = set(args.phases.split(","))
    result: dict[str, Any] = json.loads(out.read_text()) if args.merge and out.exists() else {}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if args.merge:  # one record per invocation: which phases, when, how loaded the machine was
        result.setdefault("invocations", []).append({"machine_start": machine(), "config": config})
    else:
        result.update({"machine_start": machine(), "config": config})
    with BACKENDS["local"]() as cluster:
        cluster.apply_crds()
        bench = Bench(cluster)
        flavors = [Flavor("new", None)]
        if not args.no_peer:
            flavors.append(
                Flavor("old", args.peer.resolve() if args.peer else export_peer(args.peer_rev))
            )
        result["code"] = {
            f.name: {"path": f.code, "lists_per_reconcile": f.lists_per_reconcile} for f in flavors
        }

        def save() -> None:  # after every phase: a late failure keeps the earlier figures
            record = result["invocations"][-1] if args.merge else result
            record["machine_end"] = machine()
            record["duration_s"] = time.monotonic() - started
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")

        for phase in phases & {"sequential", "canary", "burst"}:
            result[phase] = {}
        for flavor in flavors if "sequential" in phases else []:
            result["sequential"][flavor.name] = sequential(bench, flavor, args.sequential)
            print(f"[{flavor.name}] sequential: {json.dumps(result['sequential'][flavor.name])}")
            save()
        for flavor in flavors if "canary" in phases else []:
            result["canary"][flavor.name] = canary(bench, flavor, args.canaries)
            print(f"[{flavor.name}] canary: {json.dumps(result['canary'][flavor.name])}")
            save()

        if "waiting" in phases:
            # Counts only, so both operators wait at the same time (each in its own namespace).
            result["waiting"] = {
                f.name: {"count": args.waiting, "window_s": args.window} for f in flavors
            }
            threads = [
                threading.Thread(
                    target=waiting,
                    args=(
                        bench,
                        f,
                        args.waiting,
                        args.window,
                        args.pause,
                        args.bake,
                        result["waiting"][f.name],
                    ),
                )
                for f in flavors
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            save()

        for flavor in flavors if "burst" in phases else []:
            result["burst"][flavor.name] = burst(bench, flavor, args.burst, args.burst_timeout)
            save()
    table = report.table(result)
    print(table)
    if not args.quick:
        report.update_readme(ROOT / "README.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
