"""The MLflow tracking server's REST API: the only place the operator talks to a registry.

Three or four GETs per resolution (the version by number or alias, its download URI, and the
MLmodel file when the tracking server proxies the artifacts); what they mean is decided in
`modeldeploy.registry`. Every failure becomes a `registry.Problem`, never an exception, so the
reconcile reports it and the stable revision keeps serving.
"""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp

from modeldeploy import registry

TIMEOUT_S: Final = 10.0
MAX_ANSWER_BYTES: Final = 1024 * 1024  # version records and MLmodel files are small


class _Failed(Exception):
    def __init__(self, problem: registry.Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


async def resolve(
    session: aiohttp.ClientSession, ref: registry.Reference, spec_format: str
) -> registry.Resolution | registry.Problem:
    try:
        path, query = registry.version_request(ref)
        version = registry.model_version(ref, await _json(session, ref, path, query))
        if isinstance(version, registry.Problem):
            return version
        path, query = registry.download_request(ref, version.version)
        answer = await _json(session, ref, path, query)
        base = registry.artifact_base(ref, str(answer.get("artifact_uri") or ""))
        if isinstance(base, registry.Problem):
            return base
        mlmodel = None
        if registry.proxied(base, ref):
            mlmodel = await _text(session, ref, f"{base}/{registry.MLMODEL}")
        chosen = registry.model_file(ref, mlmodel, spec_format)
        if isinstance(chosen, registry.Problem):
            return chosen
        return registry.resolution(version, base, *chosen)
    except _Failed as failed:
        return failed.problem


async def _json(
    session: aiohttp.ClientSession, ref: registry.Reference, path: str, query: dict[str, str]
) -> dict[str, Any]:
    status, body = await _get(session, ref, f"{ref.tracking_uri}{path}", query)
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        raise _Failed(registry.error(ref, status, answer if isinstance(answer, dict) else None))
    return answer


async def _text(session: aiohttp.ClientSession, ref: registry.Reference, url: str) -> str:
    status, body = await _get(session, ref, url, None)
    if status != 200:
        raise _Failed(registry.error(ref, status, None))
    return body.decode("utf-8", errors="replace")


async def _get(
    session: aiohttp.ClientSession,
    ref: registry.Reference,
    url: str,
    query: dict[str, str] | None,
) -> tuple[int, bytes]:
    try:
        async with session.get(
            url,
            params=query,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            allow_redirects=False,
        ) as response:
            body = await response.content.read(MAX_ANSWER_BYTES + 1)
            if len(body) > MAX_ANSWER_BYTES:
                raise _Failed(registry.unreachable(ref, f"answer larger than {MAX_ANSWER_BYTES}"))
            return response.status, body
    except (TimeoutError, aiohttp.ClientError) as err:
        raise _Failed(registry.unreachable(ref, str(err) or type(err).__name__)) from None
