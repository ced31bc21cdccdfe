"""The servers under test: how to start each on the same model file, and what it costs to run.

Every server is pinned to one CPU (taskset) and started fresh for each round.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workload import BenchModel

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    role: str  # "ours", "floor" (bare async server) or "peer"
    port: int
    command: Callable[[BenchModel], list[str]]
    env: dict[str, str] = field(default_factory=dict)


def native_env() -> dict[str, str]:
    """Our server with its native modules, as the serving image runs it (scripts/native.py
    builds them for this checkout, or finds the build)."""
    built = subprocess.run(
        [str(BIN / "python"), str(ROOT / "scripts" / "native.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"PYTHONPATH": built.stdout.strip()}


def specs(
    work: Path,
    asgi_python: Path | None,
    mlserver_bin: Path | None,
    kserve_bin: Path | None = None,
) -> list[ServerSpec]:
    bare = str(ROOT / "bench" / "serving" / "bare_server.py")
    native = native_env()

    def ours(*extra: str) -> Callable[[BenchModel], list[str]]:
        return ours_command(18080, *extra)

    result = [
        ServerSpec("modeldeploy", "modeldeploy (batching on)", "ours", 18080, ours(), native),
        ServerSpec(
            "modeldeploy-unbatched",
            "modeldeploy (batching off)",
            "ours",
            18080,
            ours("--no-micro-batching"),
            native,
        ),
        ServerSpec(
            "bare-aiohttp",
            "bare aiohttp + orjson",
            "floor",
            18081,
            lambda m: [str(BIN / "python"), bare, str(m.path), "--port", "18081"],
        ),
    ]
    if asgi_python is not None:
        result.append(
            ServerSpec(
                "bare-starlette",
                "bare uvicorn + starlette + orjson",
                "floor",
                18081,
                lambda m: [
                    str(asgi_python),
                    bare,
                    str(m.path),
                    "--port",
                    "18081",
                    "--framework",
                    "starlette",
                    "--loop",
                    "uvloop",
                ],
            )
        )
    if mlserver_bin is not None:
        ports = {
            "MLSERVER_HTTP_PORT": "18082",
            "MLSERVER_GRPC_PORT": "18083",
            "MLSERVER_METRICS_PORT": "18084",
        }

        def mlserver(m: BenchModel) -> list[str]:
            return [str(mlserver_bin / "mlserver"), "start", str(mlserver_folder(work, m))]

        result += [
            ServerSpec(
                "mlserver",
                "MLServer, tuned (parallel_workers=0, debug off)",
                "peer",
                18082,
                mlserver,
                {**ports, "MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_DEBUG": "false"},
            ),
            ServerSpec("mlserver-defaults", "MLServer, defaults", "peer", 18082, mlserver, ports),
        ]
    if kserve_bin is not None:
        quiet = ("--enable_latency_logging", "false", "--configure_logging", "false")
        result += [
            ServerSpec(
                "kserve", "KServe sklearn server, defaults", "peer", 18085, kserve(kserve_bin)
            ),
            ServerSpec(
                "kserve-quiet",
                "KServe sklearn server, logging off",
                "peer",
                18085,
                kserve(kserve_bin, *quiet),
            ),
        ]
    return result


def kserve(kserve_bin: Path, *extra: str, port: int = 18085) -> Callable[[BenchModel], list[str]]:
    """KServe's scikit-learn server (bench/serving/kserve_sklearn.py, in KServe's own venv) on
    the model's folder, which holds the one model.joblib the others load; it takes the same v2
    body on the same path (KServe serves the Open Inference Protocol's REST API too)."""
    script = str(ROOT / "bench" / "serving" / "kserve_sklearn.py")
    return lambda m: [
        str(kserve_bin / "python"),
        script,
        *("--model_name", m.key, "--model_dir", str(m.path.parent)),
        *("--http_port", str(port), "--grpc_port", str(port + 1)),
        *extra,
    ]


def ours_command(port: int, *extra: str) -> Callable[[BenchModel], list[str]]:
    """modeldeploy-server on 127.0.0.1:`port` serving the benchmark model, plus `extra` flags."""
    return lambda m: [
        str(BIN / "modeldeploy-server"),
        *("--model-uri", str(m.path), "--sha256", m.sha256, "--model-name", m.key),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--termination-log", ""),
        *extra,
    ]


def mlserver_folder(work: Path, model: BenchModel) -> Path:
    """A model-settings.json pointing at the very same model.joblib the others load."""
    folder = work / "mlserver" / model.key
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "name": model.key,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model.path), "version": "1"},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder


class RunningServer:
    def __init__(self, spec: ServerSpec, model: BenchModel, *, cpu: int, log: Path) -> None:
        self.spec = spec
        self.model = model
        self._log = log.open("w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *spec.command(model)],
            env={**os.environ, **spec.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches its workers too
        )

    def wait_first_prediction(self, body: bytes, timeout: float = 180) -> float:
        """Seconds from process start to the first successful inference (the cold start)."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}")
            if self._infer(body) == 200:
                return time.perf_counter() - self.started
            time.sleep(0.01)
        raise RuntimeError(f"{self.spec.name} gave no prediction within {timeout} s")

    def _infer(self, body: bytes) -> int | None:
        connection = http.client.HTTPConnection("127.0.0.1", self.spec.port, timeout=5)
        try:
            connection.request(
                "POST", self.model.infer_path, body, {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError:
            return None
        finally:
            connection.close()

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process it started."""
        return sum(_stat(pid)[0] for pid in _tree(self.process.pid))

    def rss_bytes(self) -> int:
        return sum(_stat(pid)[1] for pid in _tree(self.process.pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def _stat(pid: int) -> tuple[float, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    # After the command name: state is field 3, utime 14, stime 15, rss 24 (1-based).
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    return cpu, int(fields[21]) * _PAGE


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    members, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        members += children
        frontier = children
    return members
