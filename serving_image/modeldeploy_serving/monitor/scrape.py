"""Fetch the model server's /metrics (and its readiness body) over HTTP. The only place the
monitor talks to the server."""

from __future__ import annotations

from urllib.parse import urljoin

import aiohttp

from modeldeploy.names import PATH_READY


class ScrapeError(Exception):
    """The endpoint could not be read; the message is short enough for a condition."""


class Scraper:
    """One keep-alive HTTP session to the metrics endpoint, with a short timeout."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.url = url
        self.ready_url = urljoin(url, PATH_READY)  # same server, same port
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> str:
        return (await self._get(self.url, ok=(200,))).decode()

    async def fetch_ready(self) -> bytes:
        """The readiness body, ready (200) or not (503): the server says why in it."""
        return await self._get(self.ready_url, ok=(200, 503))

    async def _get(self, url: str, ok: tuple[int, ...]) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as response:
                if response.status not in ok:
                    raise ScrapeError(f"HTTP {response.status}")
                return await response.read()
        except TimeoutError:
            raise ScrapeError(f"timed out after {self._timeout.total:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise ScrapeError(f"cannot connect: {exc.os_error.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
