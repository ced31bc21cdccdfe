"""Run modeldeploy-server as a real process on 127.0.0.1 and talk to it over HTTP.

Importable from other test folders (the rollback tests start servers the same way).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.models import SavedModel

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(sys.executable).parent / "modeldeploy-server"
_LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def server_command(
    saved: SavedModel | None = None, *args: str, name: str = "model", sha256: str | None = None
) -> list[str]:
    command = [str(SERVER), "--host", "127.0.0.1", "--port", "0", "--model-name", name]
    if saved is not None:
        command += ["--model-uri", str(saved.path), "--format", saved.format]
        command += ["--sha256", sha256 or saved.sha256]
    return command + list(args)


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test environment minus MODELDEPLOY_* (flags must come from the test), plus the repo
    root on PYTHONPATH so pickled test estimators (tests.serving.models) can be imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDEPLOY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


class ServerProcess:
    """One server process. Its stderr is collected line by line into `.log`."""

    def __init__(
        self,
        saved: SavedModel | None,
        *args: str,
        name: str = "model",
        sha256: str | None = None,
        env: Mapping[str, str] | None = None,
        termination_log: Path | None = None,
    ) -> None:
        self.name = name
        extra = ["--termination-log", str(termination_log) if termination_log else ""]
        self.command = server_command(saved, *args, *extra, name=name, sha256=sha256)
        self.log: list[str] = []
        self._port: int | None = None
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.command,
            env=server_env(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._collect_log, daemon=True).start()

    def _collect_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.log.append(line.rstrip("\n"))
                if match := _LISTENING.search(line):
                    self._port = int(match[1])
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def port(self) -> int:
        with self._changed:
            finished = self._changed.wait_for(
                lambda: self._port is not None or self.process.poll() is not None, timeout=60
            )
        if self._port is None:
            raise RuntimeError(f"server did not start (exited: {finished}):\n" + self.log_text)
        return self._port

    @property
    def log_text(self) -> str:
        return "\n".join(self.log)

    def wait_for_log(self, pattern: str, timeout: float = 60) -> str:
        regex = re.compile(pattern)
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    any(regex.search(line) for line in self.log) or self.process.poll() is not None
                ),
                timeout=timeout,
            )
            for line in self.log:
                if regex.search(line):
                    return line
        raise AssertionError(f"no log line matches {pattern!r}:\n{self.log_text}")

    def wait_ready(self, timeout: float = 60) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request("GET", "/v2/health/ready").status == 200:
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server never became ready:\n" + self.log_text)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request on a fresh connection. Non-bytes bodies are sent as JSON."""
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Reply(response.status, dict(response.headers), response.read())
        finally:
            connection.close()

    def infer(self, rows: Sequence[Sequence[float]], **extra: Any) -> Reply:
        flat = [value for row in rows for value in row]
        tensor = {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64"}
        return self.request(
            "POST", f"/v2/models/{self.name}/infer", {"inputs": [{**tensor, "data": flat}], **extra}
        )

    def metrics(self) -> dict[str, float]:
        """Every sample as {'name{label="value",...}': value}, labels sorted."""
        text = self.request("GET", "/metrics").body.decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def post_concurrently(
    port: int, path: str, bodies: Sequence[Any], *, connections: int | None = None
) -> list[tuple[int, Any]]:
    """POST every body at once (one connection each unless limited); (status, JSON) in order."""
    limit = aiohttp.TCPConnector(limit=connections or len(bodies))
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=limit) as session:

        async def post(body: Any) -> tuple[int, Any]:
            async with session.post(path, json=body) as response:
                return response.status, await response.json(content_type=None)

        return list(await asyncio.gather(*(post(body) for body in bodies)))
