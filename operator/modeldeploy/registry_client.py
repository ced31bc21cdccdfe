"""The MLflow tracking server's REST API: the only place the operator talks to a registry.

`Resolver` keeps what each ModelDeployment's mlflow:// URI resolved to (until its revision
records it in a ControllerRevision) and how often it failed (for the retry delay). Three or
four GETs per resolution (the version by number or alias, its download URI, and the
MLmodel file when the tracking server proxies the artifacts); what they mean is decided in
`modeldeploy.registry`. Every failure becomes a `registry.Problem`, never an exception, so the
reconcile reports it and the stable revision keeps serving.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import aiohttp

from modeldeploy import registry
from modeldeploy.resolutions import registry_need

log = logging.getLogger(__name__)

TIMEOUT_S: Final = 10.0
MAX_ANSWER_BYTES: Final = 1024 * 1024  # version records and MLmodel files are small
# An mlflow:// URI that did not resolve is asked again with backoff (it may be registered soon).
RETRY_MIN_S: Final = 5.0
RETRY_MAX_S: Final = 300.0
RESOLUTIONS_KEPT: Final = 1024

Key = tuple[str, str]  # (namespace, name)


class Resolver:
    """What ModelDeployments' mlflow:// URIs mean: recorded with their revision, remembered, or
    asked of the tracking server (once per spec hash while it answers)."""

    def __init__(self, default_image: str, tracking_uri: str | None) -> None:
        self.default_image, self.tracking_uri = default_image, tracking_uri
        self._http: aiohttp.ClientSession | None = None  # made on first use
        # (namespace, name, spec hash, reference) -> what it resolved to, until recorded in a
        # ControllerRevision (read from there afterwards, so a restart asks nothing again).
        self._resolutions: dict[tuple[str, str, str, registry.Reference], registry.Resolution] = {}
        self._failures: dict[Key, tuple[int, str]] = {}  # count, last message

    async def resolve(
        self, key: Key, body: dict[str, Any], observed: dict[str, Any]
    ) -> registry.Resolution | registry.Problem | None:
        need = registry_need(
            body, observed, default_image=self.default_image, default_tracking_uri=self.tracking_uri
        )
        if need is None:
            self._failures.pop(key, None)
            return None
        spec_hash, found = need
        if not isinstance(found, registry.Reference):
            return found
        remembered = (*key, spec_hash, found)
        if (known := self._resolutions.get(remembered)) is not None:
            return known
        if self._http is None:
            self._http = aiohttp.ClientSession()
        spec_format = str(((body.get("spec") or {}).get("model") or {}).get("format", "joblib"))
        result = await resolve(self._http, found, spec_format)
        if isinstance(result, registry.Problem):
            count, said = self._failures.get(key, (0, ""))
            if said != result.message:
                log.warning("%s/%s: %s: %s", *key, result.reason, result.message)
            self._failures[key] = (count + 1, result.message)
            return result
        if self._failures.pop(key, None) is not None:
            log.info("%s/%s: %s resolves again", *key, found)
        log.info(
            "%s/%s: %s is registry version %s (run %s): %s",
            *key, found, result.registry_version, result.run_id or "-", result.artifact_uri,
        )  # fmt: skip
        if len(self._resolutions) >= RESOLUTIONS_KEPT:
            self._resolutions.clear()  # all are recorded in ControllerRevisions by now
        self._resolutions[remembered] = result
        return result

    def retry_after(self, key: Key) -> float:
        """Seconds until a failed resolution is asked again (exponential, capped)."""
        failures = self._failures.get(key, (0, ""))[0]
        return min(RETRY_MAX_S, RETRY_MIN_S * 2.0**failures)

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


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
