"""What the benchmark sees of the cluster: raw API watches, timestamped as events arrive.

`kubectl get --raw '<path>?watch=1'` streams one JSON event per line, so this process only
parses lines (no polling, no typed client models): the CPU it takes from the 2 shared cores
stays small even while 1000 ModelDeployments change status.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL_NAME = "modeldeploy.io/name"
PATHS = {
    "modeldeployments": "/apis/modeldeploy.io/v1alpha1/namespaces/{ns}/modeldeployments",
    "deployments": "/apis/apps/v1/namespaces/{ns}/deployments",
    "services": "/api/v1/namespaces/{ns}/services",
    "hpa": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "pods": "/api/v1/namespaces/{ns}/pods",
}
CHILDREN = ("deployments", "services", "hpa")


@dataclass
class MdState:
    """The few status fields the phases wait on."""

    phase: str = ""
    stable: int | None = None
    canary: int | None = None
    promoted: set[int] = field(default_factory=set)


class Tracker:
    """One namespace: first-seen times of children and Stable, live objects, status summaries."""

    def __init__(self, kubectl: Path, env: dict[str, str], namespace: str) -> None:
        self.lock = threading.Lock()
        self.first: dict[tuple[str, str], float] = {}  # (owner, "stable" | resource) -> time
        self.live: dict[str, set[str]] = {r: set() for r in PATHS}
        self.mds: dict[str, MdState] = {}
        self.emptied: dict[str, float] = {}  # resource -> when its live set last became empty
        self._procs: list[subprocess.Popen[str]] = []
        for resource, path in PATHS.items():
            url = path.format(ns=namespace) + "?watch=1&timeoutSeconds=3600"
            proc = subprocess.Popen(
                [str(kubectl), "get", "--raw", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            self._procs.append(proc)
            threading.Thread(target=self._read, args=(resource, proc), daemon=True).start()

    def _read(self, resource: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._on_event(
                resource, event.get("type", ""), event.get("object") or {}, time.monotonic()
            )

    def _on_event(self, resource: str, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        owner = (meta.get("labels") or {}).get(LABEL_NAME) or name
        with self.lock:
            live = self.live[resource]
            if kind == "DELETED":
                live.discard(name)
                if not live:
                    self.emptied[resource] = now
            elif kind in ("ADDED", "MODIFIED"):
                live.add(name)
                self.first.setdefault((owner, resource), now)
            if resource != "modeldeployments" or kind not in ("ADDED", "MODIFIED"):
                return
            status = obj.get("status") or {}
            state = self.mds.setdefault(name, MdState())
            state.phase = status.get("phase") or ""
            state.stable = (status.get("stable") or {}).get("revision")
            state.canary = (status.get("canary") or {}).get("revision")
            state.promoted = {
                h["revision"] for h in status.get("history") or [] if h.get("outcome") == "Promoted"
            }
            if state.phase == "Stable":
                self.first.setdefault((name, "stable"), now)

    def count(self, check: Callable[[MdState], bool]) -> int:
        with self.lock:
            return sum(1 for state in self.mds.values() if check(state))

    def when(self, owner: str, what: str) -> float | None:
        with self.lock:
            return self.first.get((owner, what))

    def seen(self, owner: str, what: str) -> bool:
        return self.when(owner, what) is not None

    def promoted(self, name: str, revision: int) -> bool:
        with self.lock:
            return revision in self.mds.get(name, MdState()).promoted

    def stable_times(self) -> list[float]:
        with self.lock:
            return [t for (_, what), t in self.first.items() if what == "stable"]

    def live_children(self) -> int:
        with self.lock:
            return sum(len(self.live[r]) for r in (*CHILDREN, "pods"))

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.wait(timeout=10)
