"""A "process kubelet" for KWOK pods, and a load generator that routes like the Service.

KWOK runs a ModelDeployment's pods on fake nodes: they turn Running and Ready, but no container
runs. :class:`PodRuntime` watches those pods and, for every Running pod, starts what its
containers would run, as real processes on 127.0.0.1:

- the ``fetch-model`` init container, when the pod has one (object-store models), to completion
  first, with its env resolved from the pod's Secrets and ConfigMaps as the kubelet would; the
  server then reads the file it wrote;

- ``modeldeploy-server`` with the ``MODELDEPLOY_*`` env of the pod's model-server container;
- ``modeldeploy-monitor`` with the ``MODELDEPLOY_MONITOR_*`` env of its monitor (a native
  sidecar in ``spec.initContainers``), the downward-API values (pod name, namespace) filled in
  from the pod as the kubelet would, and a kubeconfig holding a TokenRequest token of the
  ``modeldeploy-monitor`` ServiceAccount the operator created, bound to that pod as the
  projected volume's token is, so its RBAC and the verdict admission policy are the real ones.

Only what a node provides differently is overridden: the server listens on a free local port,
the monitor scrapes that port, serves its own endpoints on another, and scrapes fast
(``monitor_flags``). The processes stop when the pod is terminating or gone.

:meth:`PodRuntime.service_endpoints` is what the Service would route to: pods listed ready in
its EndpointSlices (so the operator's revision pin counts) whose server passed its readiness
probe. :class:`LoadGenerator` sends v2 infer requests round-robin over such a list, bounded in
count and time, to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kubernetes import client, watch

from modeldeploy import names
from tests.helpers.monitor_proc import token_kubeconfig
from tests.kube import KubeCluster, free_port, wait_until
from tests.serving.process import ServerProcess, server_env

# The monitor's contract defaults are for production; tests want verdicts within a second.
FAST_MONITOR_FLAGS: Mapping[str, str] = {"scrape-interval-seconds": "0.2"}
# The init containers that download an object-store artifact, run before the server in the
# pod's order, and the server variable that points at each one's file.
_FETCHED_FILES = {
    names.CONTAINER_FETCHER: names.ENV_MODEL_URI,
    names.CONTAINER_PROFILE_FETCHER: names.ENV_PROFILE_URI,
    names.CONTAINER_SIGNATURE_FETCHER: names.ENV_SIGNATURE_URI,
    names.CONTAINER_VALIDATION_FETCHER: names.ENV_VALIDATION_URI,
}
STOP_GRACE_S = 0.3  # a retired pod leaves the routing at once; its processes stop after this

Handler = Callable[[str, dict[str, Any], float], None]


class PodGone(Exception):
    """The pod was deleted before its sidecar got a token: a kubelet would not start it."""


class ListWatch:
    """Mirrors one kind of object (name -> dict) in a thread: list, watch for `period`, again.

    `handler(event_type, obj, at)` runs for every change as it arrives (`at` is
    ``time.monotonic()``); each relist replays every object as ``SYNC`` and the vanished ones as
    ``DELETED``, so a handler that reconciles from the whole state never misses anything.
    """

    def __init__(
        self,
        cluster: KubeCluster,
        list_call: Callable[[client.ApiClient], Callable[..., Any]],
        namespace: str,
        selector: str,
        handler: Handler | None = None,
        period: float = 2.0,
    ) -> None:
        self.api = cluster.api()
        self.list = list_call(self.api)
        self.namespace, self.selector, self.period = namespace, selector, period
        self.handler = handler or (lambda *_: None)
        self.items: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.last_error = ""  # the last exception that made it list again (for failure output)
        self._stopping = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ListWatch:
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop (within `period`: the open watch request runs to its timeout)."""
        self._stopping.set()
        self._watch.stop()
        if wait:
            self._thread.join(timeout=self.period + 5)
            self.api.close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items.values())

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._relist()
                self._follow()
            except Exception as err:  # an API hiccup (or 410 Gone): list again
                self.last_error = repr(err)
                self._stopping.wait(0.5)

    def _relist(self) -> None:
        response = self.list(self.namespace, label_selector=self.selector, _preload_content=False)
        body = json.loads(response.data)
        listed = {i["metadata"]["name"]: i for i in body["items"]}
        self.resource_version = body["metadata"]["resourceVersion"]
        with self.lock:
            gone = [obj for name, obj in self.items.items() if name not in listed]
            self.items = listed
        now = time.monotonic()
        for obj in gone:
            self.handler("DELETED", obj, now)
        for obj in listed.values():
            self.handler("SYNC", obj, now)

    def _follow(self) -> None:
        for event in self._watch.stream(
            self.list,
            self.namespace,
            label_selector=self.selector,
            resource_version=self.resource_version,
            timeout_seconds=int(self.period),
            _request_timeout=self.period + 5,
            deserialize=False,
        ):
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                return  # list again
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK
            with self.lock:
                if kind == "DELETED":
                    self.items.pop(obj["metadata"]["name"], None)
                else:
                    self.items[obj["metadata"]["name"]] = obj
            self.handler(kind, obj, time.monotonic())
            if self._stopping.is_set():
                return


# --- one pod's processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A model server the Service could route to."""

    pod: str
    revision: int
    port: int
    model: str  # the served name: /v2/models/<model>/infer


def container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One container of the pod, main or init (the monitor is a native sidecar)."""
    spec = pod["spec"]
    for found in (*spec["containers"], *spec.get("initContainers", [])):
        if found["name"] == name:
            return dict(found)
    raise AssertionError(f"pod {pod['metadata']['name']} has no container {name!r}")


# (kind "secret" or "configmap", name) -> its data as text, as the kubelet would read it.
DataLookup = Callable[[str, str], dict[str, str]]


def _no_lookup(kind: str, name: str) -> dict[str, str]:
    raise AssertionError(f"no {kind} lookup given for {name}")


def container_env(
    pod: Mapping[str, Any], name: str, lookup: DataLookup = _no_lookup
) -> dict[str, str]:
    """The env of one container as the kubelet resolves it: downward API, Secret and
    ConfigMap keys (`lookup`), envFrom (explicit env wins)."""
    spec = container(pod, name)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        kind, ref = ("secret", source["secretRef"]) if "secretRef" in source else (
            "configmap", source["configMapRef"])  # fmt: skip
        for key, value in lookup(kind, ref["name"]).items():
            env[source.get("prefix", "") + key] = value
    for var in spec.get("env", []):
        source = var.get("valueFrom", {})
        if "valueFrom" not in var:
            env[var["name"]] = var.get("value", "")
        elif path := source.get("fieldRef", {}).get("fieldPath"):
            env[var["name"]] = _field(pod, path)
        elif ref := source.get("secretKeyRef") or source.get("configMapKeyRef"):
            kind = "secret" if "secretKeyRef" in source else "configmap"
            env[var["name"]] = lookup(kind, ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"{name}: env {var['name']} has a source we cannot fill")
    return env


def _uid(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"]["uid"])


def _field(pod: Mapping[str, Any], path: str) -> str:
    """`metadata.name`, `metadata.namespace`, `metadata.uid`: what the downward API gives."""
    value: Any = pod
    for part in path.split("."):
        value = value[part]
    return str(value)


class PodProcesses:
    """The model server and the monitor of one pod; started in the background."""

    def __init__(
        self,
        pod: dict[str, Any],
        workdir: Path,
        kubeconfig: Callable[[dict[str, Any]], Path],
        monitor_flags: Mapping[str, str],
        lookup: DataLookup = _no_lookup,
        not_ready: Callable[[dict[str, Any]], None] = lambda _: None,
        server_overrides: Mapping[str, str] | None = None,
    ) -> None:
        meta = pod["metadata"]
        self.name = str(meta["name"])
        self.revision = int(meta["labels"][names.LABEL_REVISION])
        # The server runs as ServerProcess does (modeldeploy-server); the monitor as its
        # container says. Both take their configuration from their container's env.
        assert container(pod, names.CONTAINER_SERVER)["command"] == [names.COMMAND_SERVER]
        self.server_env = {**container_env(pod, names.CONTAINER_SERVER), **(server_overrides or {})}
        self.lookup, self.not_ready = lookup, not_ready
        self.monitor_env = container_env(pod, names.CONTAINER_MONITOR)
        monitor = container(pod, names.CONTAINER_MONITOR)
        self.monitor_command = [*monitor["command"], *monitor.get("args", [])]
        self.model = self.server_env[names.ENV_MODEL_NAME]
        self.pod = pod
        self.workdir, self.kubeconfig, self.monitor_flags = workdir, kubeconfig, monitor_flags
        self.server: ServerProcess | None = None
        self.monitor: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()  # the server answered its readiness probe
        self.retired = threading.Event()  # the pod is leaving: no new traffic
        self.error = ""
        self._stop_lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            for init in self.pod["spec"]["initContainers"]:
                if init["name"] in _FETCHED_FILES:
                    self._fetch(init["name"])
            self.server = ServerProcess(None, name=self.model, env=self.server_env)
            metrics_url = f"http://127.0.0.1:{self.server.port}{names.PATH_METRICS}"
            self._start_monitor(metrics_url)
            if self._wait_ready(self.server):
                self.ready.set()
        except PodGone:
            pass  # its DELETED event stops the server
        except Exception as err:  # reported by PodRuntime.errors
            self.error = f"{self.name}: {err}"

    def _wait_ready(self, server: ServerProcess, timeout: float = 60) -> bool:
        """True once the server is ready; False if the pod leaves first. A server that stays
        live and never ready because its load failed (a missed validation gate, say) is no
        error: the pod is marked not ready, as the kubelet's readiness probe would, and the
        operator takes it from there."""
        deadline = time.monotonic() + timeout
        marked = False
        while not self.retired.is_set():
            try:
                server.wait_ready(timeout=1)
                return True
            except RuntimeError:
                if server.process.poll() is not None:
                    raise
            if not marked and _load_failed(server):
                self.not_ready(self.pod)
                marked = True
            elif not marked and time.monotonic() > deadline:
                raise RuntimeError("server never became ready:\n" + server.log_text)
        return False

    def _fetch(self, name: str) -> None:
        """A fetcher init container, run to completion before the others start. Its
        emptyDir is a local directory; its store is on this machine's loopback, which a pod's
        fetcher refuses, so that one flag is overridden (as the server's port is)."""
        fetcher = container(self.pod, name)
        (pod_target,) = [a for a in fetcher["args"] if a.startswith("--fetch-to=")]
        target = self.workdir / self.name / "fetched" / PurePosixPath(pod_target).name
        args = [a for a in fetcher["args"] if not a.startswith(("--fetch-to", "--no-allow-loop"))]
        termination = self.workdir / f"{self.name}.{name}.termination-log"
        program, *rest = fetcher["command"]
        command = [str(Path(sys.executable).parent / program), *rest, *args]
        command += [f"--fetch-to={target}", "--allow-loopback-downloads"]
        command += [f"--termination-log={termination}"]
        env = server_env(container_env(self.pod, name, self.lookup))
        with (self.workdir / f"{self.name}.{name}.log").open("ab") as log:
            done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            said = termination.read_text() if termination.exists() else ""
            raise RuntimeError(f"{name} exited {done.returncode}: {said.strip()}")
        self.server_env[_FETCHED_FILES[name]] = target.as_uri()

    def _start_monitor(self, metrics_url: str) -> None:
        overrides = {
            "metrics-url": metrics_url,
            "host": "127.0.0.1",
            "port": str(free_port()),
            "kubeconfig": str(self.kubeconfig(self.pod)),
            **self.monitor_flags,
        }
        program, *args = self.monitor_command
        command = [str(Path(sys.executable).parent / program), *args]
        command += [f"--{flag}={value}" for flag, value in overrides.items()]
        env = server_env(self.monitor_env)  # no MODELDEPLOY_* but the pod's own
        with (self.workdir / f"{self.name}.monitor.log").open("ab") as log:
            self.monitor = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def endpoint(self) -> Endpoint | None:
        if not self.ready.is_set() or self.retired.is_set() or self.server is None:
            return None
        return Endpoint(self.name, self.revision, self.server.port, self.model)

    def stop(self) -> None:
        """SIGTERM both (the server drains in-flight requests), then write the server's log."""
        self.retired.set()
        with self._stop_lock:
            self._thread.join(timeout=90)
            self._stop_processes()

    def _stop_processes(self) -> None:
        if self.monitor is not None and self.monitor.poll() is None:
            self.monitor.send_signal(signal.SIGTERM)
        if self.server is not None:
            try:
                self.server.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
            (self.workdir / f"{self.name}.server.log").write_text(self.server.log_text)
        if self.monitor is not None:
            try:
                self.monitor.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.monitor.kill()
                self.monitor.wait()


def _load_failed(server: ServerProcess) -> bool:
    """The server's readiness answer names a load failure (it stays live, never ready)."""
    reply = server.request("GET", "/v2/health/ready")
    cause = reply.json().get("cause") if reply.status == 503 else None
    return cause not in (None, names.REASON_MODEL_LOADING)


# --- the process kubelet ----------------------------------------------------------------------


class PodRuntime:
    """Runs real processes for the Running pods of one ModelDeployment (a context manager)."""

    def __init__(
        self,
        cluster: KubeCluster,
        namespace: str,
        md_name: str,
        workdir: Path,
        monitor_flags: Mapping[str, str] = FAST_MONITOR_FLAGS,
        on_pod: Handler | None = None,
        server_overrides: Mapping[str, str] | None = None,
    ) -> None:
        """`server_overrides`: env the server gets beyond its container's (tests-only flags,
        e.g. MODELDEPLOY_ALLOW_LOOPBACK_DOWNLOADS for an artifact served on 127.0.0.1)."""
        self.cluster, self.namespace, self.workdir = cluster, namespace, workdir
        self.monitor_flags = monitor_flags
        self.server_overrides = dict(server_overrides or {})
        self.on_pod = on_pod or (lambda *_: None)
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, PodProcesses] = {}
        self.retired: list[PodProcesses] = []
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._account_ready = False
        self.pods = ListWatch(
            cluster,
            lambda api: client.CoreV1Api(api).list_namespaced_pod,
            namespace,
            f"{names.LABEL_NAME}={md_name}",
            self._on_pod,
        )
        self.slices = ListWatch(
            cluster,
            lambda api: client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
            namespace,
            f"kubernetes.io/service-name={names.service_name(md_name)}",
        )

    def __enter__(self) -> PodRuntime:
        self.slices.start()
        self.pods.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for watching in (self.pods, self.slices):
            watching.stop(wait=False)  # both at once: each waits out its open request
        for watching in (self.pods, self.slices):
            watching.stop()
        with self._lock:
            leaving, self.procs = list(self.procs.values()), {}
        stopping = [threading.Thread(target=p.stop) for p in [*leaving, *self.retired]]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()

    # --- what the kubelet does ---------------------------------------------------------------
    def _on_pod(self, kind: str, pod: dict[str, Any], at: float) -> None:
        self.on_pod(kind, pod, at)
        name = pod["metadata"]["name"]
        running = (
            kind != "DELETED"
            and pod.get("status", {}).get("phase") == "Running"
            and not pod["metadata"].get("deletionTimestamp")
        )
        with self._lock:
            known = self.procs.get(name)
            if running and known is None:
                self.procs[name] = PodProcesses(
                    pod,
                    self.workdir,
                    self._sidecar_kubeconfig,
                    self.monitor_flags,
                    self._data,
                    self._not_ready,
                    self.server_overrides,
                )
            elif not running and known is not None:
                del self.procs[name]
                known.retired.set()
                self.retired.append(known)
                timer = threading.Timer(STOP_GRACE_S, known.stop)
                timer.daemon = True
                timer.start()

    def _not_ready(self, pod: dict[str, Any]) -> None:
        """What the kubelet writes when the readiness probe fails (KWOK set Ready at start)."""
        conditions = [
            {"type": kind, "status": "False", "reason": "ContainersNotReady"}
            for kind in ("Ready", "ContainersReady")
        ]
        self.cluster.kubectl(
            "patch", "pod", pod["metadata"]["name"], "-n", self.namespace,
            "--subresource=status", "--type=strategic",
            "-p", json.dumps({"status": {"conditions": conditions}}),
            check=False,  # a pod already gone needs no patch
        )  # fmt: skip

    def _data(self, kind: str, name: str) -> dict[str, str]:
        """A Secret's or ConfigMap's data as text (what the kubelet puts into env)."""
        found = self.cluster.get_json(kind, name, "-n", self.namespace)
        if kind == "secret":
            return {k: base64.b64decode(v).decode() for k, v in found.get("data", {}).items()}
        return dict(found.get("data", {}))

    def _sidecar_kubeconfig(self, pod: dict[str, Any]) -> Path:
        """A token of the ServiceAccount the operator made for sidecars, bound to `pod` (what
        the pod mounts)."""
        ns = self.namespace
        with self._token_lock:
            if not self._account_ready:
                get = ("get", "sa", names.SIDECAR_SERVICE_ACCOUNT, "-n", ns)
                wait_until(
                    lambda: self.cluster.kubectl(*get, check=False).returncode == 0,
                    timeout=30,
                    what="the sidecar ServiceAccount",
                )
                self._account_ready = True
        name = pod["metadata"]["name"]
        path = self.workdir / f"{name}.sidecar.kubeconfig"
        try:
            return token_kubeconfig(self.cluster, ns, path, pod=pod)
        except AssertionError:
            # A token can only be bound to a pod that exists (a superseded canary goes fast).
            found = self.cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
            if found.returncode or json.loads(found.stdout)["metadata"]["uid"] != _uid(pod):
                raise PodGone(name) from None
            raise

    # --- what the Service sees ---------------------------------------------------------------
    def endpoints(self, revision: int | None = None) -> list[Endpoint]:
        """Every ready server (Service or not), optionally of one revision only."""
        with self._lock:
            found = [p.endpoint for p in self.procs.values()]
        return sorted(
            (e for e in found if e and revision in (None, e.revision)), key=lambda e: e.pod
        )

    def service_endpoints(self) -> list[Endpoint]:
        """What the Service routes to: ready in its EndpointSlices and past the readiness probe."""
        ready = {
            endpoint["targetRef"]["name"]
            for eps in self.slices.snapshot()
            for endpoint in eps.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready") and endpoint.get("targetRef")
        }
        return [e for e in self.endpoints() if e.pod in ready]

    def errors(self) -> list[str]:
        """Processes that failed to start, and the watches' last trouble (empty when fine)."""
        with self._lock:
            every = [*self.procs.values(), *self.retired]
        watches = [f"watch: {w.last_error}" for w in (self.pods, self.slices) if w.last_error]
        return [p.error for p in every if p.error] + watches


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    sent: float  # time.monotonic()
    done: float
    pod: str
    revision: int
    status: int  # the HTTP status; 0 when there was no HTTP answer (refused, reset, timeout)


def v2_body(rows: Iterable[Iterable[float]]) -> bytes:
    data = [list(map(float, row)) for row in rows]
    tensor = {"name": "input-0", "shape": [len(data), len(data[0])], "datatype": "FP64"}
    return json.dumps({"inputs": [{**tensor, "data": [v for row in data for v in row]}]}).encode()


def good_body(i: int, n_features: int = 6) -> bytes:
    """The i-th request of a well-behaved client: two rows of real-looking data."""
    return v2_body(np.random.default_rng(i).normal(size=(2, n_features)).round(4))


BAD_BODIES: tuple[bytes, ...] = (
    b'{"inputs": [',  # malformed JSON
    v2_body([[0.5] * 5]),  # wrong feature count
    v2_body([[0.5] * 7, [0.1] * 7]),  # wrong feature count
    b'{"inputs": []}',  # no tensor
    b'{"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": [1, 2]}]}',
    b"[1, 2, 3]",  # not an object
)


def bad_body(i: int) -> bytes:
    """The i-th request of a broken client: every one is the client's fault (a 4xx)."""
    return BAD_BODIES[i % len(BAD_BODIES)]


def infer(endpoint: Endpoint, body: bytes, timeout: float = 10, route: str = "infer") -> int:
    """POST one v2 request (`route`: infer, or feedback) on a fresh connection; the HTTP
    status, or 0 without one."""
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            f"/v2/models/{endpoint.model}/{route}",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return int(response.status)
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


class LoadGenerator:
    """`rate` requests per second, round-robin over `targets()`, until stopped or a bound hits.

    Bounded in time (`max_seconds`) and count (`max_requests`); `workers` threads share the
    pace, so a slow server delays its own requests, not the whole schedule.
    """

    def __init__(
        self,
        targets: Callable[[], list[Endpoint]],
        *,
        rate: float = 20.0,
        workers: int = 4,
        max_seconds: float = 120.0,
        max_requests: int = 5000,
        body: Callable[[int], bytes] = good_body,
        route: str = "infer",
    ) -> None:
        self.targets, self.rate, self.body, self.route = targets, rate, body, route
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sent = 0
        self._next_at = 0.0
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def __enter__(self) -> LoadGenerator:
        self._deadline = time.monotonic() + self.max_seconds
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _claim(self) -> tuple[int, float] | None:
        """The next request's number and send time, or None once a bound is reached."""
        with self._lock:
            now = time.monotonic()
            if self._sent >= self.max_requests or now >= self._deadline:
                return None
            at = max(now, self._next_at)
            self._next_at = at + 1 / self.rate
            self._sent += 1
            return self._sent - 1, at

    def _work(self) -> None:
        while not self._stopping.is_set() and (claim := self._claim()):
            number, at = claim
            if self._stopping.wait(max(0.0, at - time.monotonic())):
                return
            targets = self.targets()
            if not targets:
                continue  # nothing to route to yet: this slot is skipped
            target = targets[number % len(targets)]
            sent = time.monotonic()
            status = infer(target, self.body(number), route=self.route)
            result = Result(sent, time.monotonic(), target.pod, target.revision, status)
            with self._lock:
                self.results.append(result)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def statuses(self, revision: int | None = None) -> Counter[int]:
        """HTTP status -> count (0 = no answer), for one revision or all."""
        return Counter(r.status for r in self.snapshot() if revision in (None, r.revision))
