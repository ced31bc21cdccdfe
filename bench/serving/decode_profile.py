"""Where a single-row request's CPU goes, v1 records against v2 per-column tensors, on the
pipeline benchmark's model (bench/serving/pipeline_model.py): deterministic counts in one
process, no load generator, no sockets. Not a test: it measures, it does not assert.

    python bench/serving/decode_profile.py              # CPU µs per stage (median of 7 runs)
    python bench/serving/decode_profile.py --callgrind  # instructions per stage (valgrind)
    python bench/serving/decode_profile.py --calls      # Python function calls per stage

Stages, each run alone on the same body many times: `parse` (JSON bytes → dict), `decode` (dict
→ the model's batch array, every column checked), `predict` (the served runtime's predict(),
ONNX Runtime unless --runtime sklearn), `encode` (outputs → response bytes), and `request`: the
whole request through the real aiohttp app (HTTP bytes in → response bytes out, via an
in-memory transport: routing, middleware, queue, metrics), of which the four stages are a part.

Run it with the project's virtualenv (.venv/bin/python); it builds the model in bench/.work.
--callgrind (needs valgrind and `cc`) re-runs this script under `valgrind --tool=callgrind`,
instrumentation off until the stages start (loading the model under valgrind would take
minutes), and counts each stage between two client requests from a 4-line C helper built
against valgrind's callgrind.h; each count is per call, minus as many calls of nothing.
Instruction counts do not depend on other work on the machine (two runs agree within 0.5%);
CPU µs do, by tens of percent on a busy machine. The `request`
row includes this script's in-memory transport and one event-loop turn per request, the same
for both forms: compare its difference, not its size, with a real server's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import gc
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipeline_model

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "decode_profile"
STAGES = ("parse", "decode", "predict", "encode", "request")
MAX_ROWS = 1000
_MARKER_C = r"""
#include <valgrind/callgrind.h>
void marker_start(void) { CALLGRIND_ZERO_STATS; }
void marker_stop(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
void marker_instrument(void) { CALLGRIND_START_INSTRUMENTATION; }
"""


@dataclass(frozen=True)
class Form:
    """One way to send the row: the URL, the body, and the protocol functions for each stage."""

    name: str
    path: str
    body: bytes
    decode: Callable[[dict[str, Any]], tuple[Any, tuple[str, ...]]]
    encode: Callable[[Any], bytes]


def main() -> None:
    args = _arguments()
    if args.callgrind and os.environ.get("DECODE_PROFILE_MARKER") is None:
        sys.exit(_rerun_under_callgrind(args))
    logging.disable(logging.WARNING)  # the joblib warning, once per load
    from modeldeploy_serving import model as model_module

    saved = pipeline_model.build_model(WORK / "model")
    loaded = model_module.load(saved.path.read_bytes(), "joblib", runtime=args.runtime)
    forms = _forms(loaded.signature, saved.key)
    gc.freeze()  # as the server does once the model is loaded (server._load)
    print(f"model: {saved.label}, runtime {loaded.signature.runtime}")
    for form in forms:
        print(f"  {form.name}: {form.path}, {len(form.body)} bytes: {form.body[:90]!r}...")
    marker = _Marker.from_environment()
    results: dict[str, dict[str, float]] = {}
    for form in forms:
        stages = _stage_calls(form, loaded, saved)
        results[form.name] = {
            stage: _count(call, args, marker, f"{form.name}-{stage}")
            for stage, call in stages.items()
        }
    _print_table(results, _unit(args))


def _forms(signature: Any, key: str) -> list[Form]:
    from modeldeploy_serving.protocol import v1, v2

    row = pipeline_model.request_row()

    def v1_decode(request: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        rows = v1.predict_rows(request, signature, max_rows=MAX_ROWS)
        return rows, (signature.default_output,)

    def v2_decode(request: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        parsed = v2.infer_request(request, signature, max_rows=MAX_ROWS)
        return parsed.rows, parsed.outputs

    def v2_encode(outputs: Any) -> bytes:
        names, results = [name for name, _ in outputs], [array for _, array in outputs]
        return v2.encode_infer(
            model_name=key, model_version="", request_id=None, names=names, results=results
        )

    return [
        Form(
            "v1",
            f"/v1/models/{key}:predict",
            pipeline_model.v1_records_body(row),
            v1_decode,
            lambda outputs: v1.encode_predict(outputs[0][1]),
        ),
        Form(
            "v2",
            f"/v2/models/{key}/infer",
            pipeline_model.v2_pandas_body(row),
            v2_decode,
            v2_encode,
        ),
    ]


def _stage_calls(form: Form, loaded: Any, saved: Any) -> dict[str, Callable[[], object]]:
    from modeldeploy_serving.protocol import body

    request = body.decode(form.body)
    rows, outputs = form.decode(request)
    results = loaded.run(rows, outputs)
    named = list(zip(outputs, results, strict=True))
    app = _InProcessApp(saved, loaded)
    raw = (
        f"POST {form.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(form.body)}\r\n\r\n"
    ).encode() + form.body
    return {
        "parse": lambda: body.decode(form.body),
        "decode": lambda: form.decode(request),
        "predict": lambda: loaded.run(rows, outputs),
        "encode": lambda: form.encode(named),
        "request": lambda: app.answer(raw),
    }


class _InProcessApp:
    """The server's app behind its own HTTP layer on an in-memory transport: request bytes in,
    response bytes out, on one event loop, with nothing between them but the server's code."""

    def __init__(self, saved: Any, loaded: Any) -> None:
        from modeldeploy_serving.config import parse_config
        from modeldeploy_serving.metrics import ServerMetrics
        from modeldeploy_serving.server import http_server
        from modeldeploy_serving.service import InferenceService

        argv = ["--model-uri", str(saved.path), "--sha256", saved.sha256]
        # One connection for every request: the transport cannot close.
        argv += ["--max-requests-per-connection", "0"]
        config = parse_config([*argv, "--model-name", saved.key], {})
        self._loop = asyncio.new_event_loop()
        metrics = ServerMetrics()
        self._service = InferenceService(config, metrics)
        http = http_server(config, self._service, metrics)
        self._transport = _Transport()

        async def connect() -> asyncio.Protocol:
            self._service.model_loaded(loaded)  # starts the predict queue on this loop
            protocol = http.protocol()
            protocol.connection_made(self._transport)
            return protocol

        self._protocol = self._loop.run_until_complete(connect())

    def answer(self, raw: bytes) -> bytes:
        self._transport.reset(self._loop.create_future())
        self._protocol.data_received(raw)
        response = self._loop.run_until_complete(self._transport.done)
        if not response.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not answered with 200: {response[:300]!r}")
        return response


class _Transport(asyncio.Transport):
    """Collects one response; `done` resolves once its Content-Length bytes are in."""

    def __init__(self) -> None:
        super().__init__()
        self.done: asyncio.Future[bytes] | None = None
        self._buffer = bytearray()

    def reset(self, done: asyncio.Future[bytes]) -> None:
        self.done, self._buffer = done, bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        head, separator, content = bytes(self._buffer).partition(b"\r\n\r\n")
        if not separator or self.done is None or self.done.done():
            return
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(content) >= length:
            self.done.set_result(bytes(self._buffer))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0


class _Marker:
    """Callgrind client requests (zero, dump) from the helper library, when run under it."""

    def __init__(self, library: ctypes.CDLL | None) -> None:
        self._library = library

    @classmethod
    def from_environment(cls) -> _Marker:
        path = os.environ.get("DECODE_PROFILE_MARKER")
        if path is None:
            return cls(None)
        library = ctypes.CDLL(path)
        library.marker_instrument()
        return cls(library)

    @property
    def active(self) -> bool:
        return self._library is not None

    def start(self) -> None:
        if self._library is not None:
            self._library.marker_start()

    def stop(self, name: str) -> None:
        if self._library is not None:
            self._library.marker_stop(name.encode())


def _count(
    call: Callable[[], object], args: argparse.Namespace, marker: _Marker, name: str
) -> float:
    """Per call: instructions (under callgrind), Python function calls, or CPU µs."""
    for _ in range(20):  # warm: first-call caches, the predict queue's timing estimate
        call()
    if marker.active:
        return _instructions(call, args.callgrind_calls, marker, name)
    if args.calls:
        profile = cProfile.Profile()
        profile.runcall(_repeat, call, 100)
        return float(pstats.Stats(profile).total_calls) / 100  # type: ignore[attr-defined]
    samples = []
    for _ in range(7):
        started = time.process_time()
        _repeat(call, args.repeat)
        samples.append((time.process_time() - started) / args.repeat * 1e6)
    return statistics.median(samples)


def _instructions(call: Callable[[], object], calls: int, marker: _Marker, name: str) -> float:
    """Instructions of `calls` calls minus those of as many calls of nothing, per call."""
    marker.start()
    _repeat(call, calls)
    marker.stop(name)
    marker.start()
    _repeat(_nothing, calls)
    marker.stop(f"{name}-baseline")
    return float("nan")  # read from the dump files by the parent process


def _nothing() -> None:
    return None


def _repeat(call: Callable[[], object], times: int) -> None:
    for _ in range(times):
        call()


def callgrind_totals(script: str, callgrind_calls: int) -> dict[str, float] | int:
    """`script` run again (same arguments) under valgrind with the marker helper; the stages'
    instructions per call, each minus its baseline of as many calls of nothing, keyed by the
    stage's name; or the run's exit code if it failed."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        library = directory / "marker.so"
        source = directory / "marker.c"
        source.write_text(_MARKER_C)
        subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
        env = {**os.environ, "DECODE_PROFILE_MARKER": str(library), "PYTHONHASHSEED": "0"}
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={directory}/callgrind.out.%p",
            sys.executable,
            script,
            *sys.argv[1:],
        ]
        completed = subprocess.run(command, env=env, stderr=subprocess.DEVNULL, check=False)
        if completed.returncode:
            return completed.returncode
        totals = _dump_totals(directory)
    return {
        name: (count - totals[f"{name}-baseline"]) / callgrind_calls
        for name, count in totals.items()
        if not name.endswith("-baseline")
    }


def _rerun_under_callgrind(args: argparse.Namespace) -> int:
    per_call = callgrind_totals(__file__, args.callgrind_calls)
    if isinstance(per_call, int):
        return per_call
    results: dict[str, dict[str, float]] = {}
    for name, value in per_call.items():
        form, stage = name.split("-", 1)
        results.setdefault(form, {})[stage] = value
    _print_table(results, "instructions")
    return 0


def _dump_totals(directory: Path) -> dict[str, int]:
    """The dump name ("v2-decode") → its instruction total, from callgrind's out files."""
    totals = {}
    for path in sorted(directory.glob("callgrind.out.*")):
        trigger, total = None, None
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("desc: Trigger: Client Request: "):
                trigger = line.removeprefix("desc: Trigger: Client Request: ")
            elif line.startswith("totals: ") or (total is None and line.startswith("summary: ")):
                total = int(line.split()[1])
        if trigger is not None and total is not None:
            totals[trigger] = total
    return totals


def _print_table(results: dict[str, dict[str, float]], unit: str) -> None:
    if not all(v == v for stages in results.values() for v in stages.values()):  # NaN: child
        return
    forms = list(results)
    for stages in results.values():  # what the request costs beyond the four stages
        stages["other"] = stages["request"] - sum(stages[s] for s in STAGES[:4])
    print(f"\nper request, {unit}:")
    print(f"  {'stage':<10}" + "".join(f"{form:>14}" for form in forms) + f"{'difference':>14}")
    for stage in (*STAGES[:4], "other", "request"):
        values = [results[form][stage] for form in forms]
        cells = "".join(f"{value:>14,.1f}" for value in values)
        print(f"  {stage:<10}{cells}{values[-1] - values[0]:>+14,.1f}")
    print("  (other: HTTP parsing, routing, the predict queue, metrics, the response)")


def _unit(args: argparse.Namespace) -> str:
    return "Python function calls" if args.calls else "CPU µs (median of 7 runs)"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The options both profiling scripts take (request_profile.py adds its own)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--callgrind", action="store_true", help="count instructions (valgrind)")
    parser.add_argument("--calls", action="store_true", help="count Python function calls")
    parser.add_argument("--repeat", type=int, default=2000, help="calls per CPU-time run")
    parser.add_argument(
        "--callgrind-calls", type=int, default=200, help="calls per stage under callgrind"
    )
    parser.add_argument("--runtime", choices=("auto", "sklearn", "onnx"), default="auto")
    return parser


def _arguments() -> argparse.Namespace:
    return argument_parser(__doc__).parse_args()


if __name__ == "__main__":
    main()
