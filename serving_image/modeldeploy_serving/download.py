"""HTTP(S) download that cannot be turned against the pod's own network neighbourhood.

The operator refuses loopback, link-local and metadata hosts in the spec, but a name can resolve
anywhere and change between check and use (DNS rebinding), and a server can redirect anywhere.
So: every address a name resolves to is checked before connecting, the socket connects to the
checked address (no second lookup), redirects stay on the same scheme, host and port, and
environment proxies are ignored (a proxy would do its own, unchecked, lookup).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.request
from http.client import HTTPMessage
from typing import IO, Any, Final
from urllib.parse import urljoin, urlsplit

from .errors import FetchFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside the link-local ranges (AWS over IPv6, Alibaba Cloud).
_METADATA: Final = (
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def refusal(address: Address, *, allow_loopback: bool) -> str | None:
    """Why a download must not connect to `address`, or None. IPv4 inside IPv6 (mapped,
    NAT64, compatible) is judged as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped
        if inner is None and (address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1)):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return refusal(inner, allow_loopback=allow_loopback)
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local (cloud metadata) address"
    if allow_loopback:
        return None
    if address.is_loopback:
        return "a loopback address (allowed only with --allow-loopback-downloads, for tests)"
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "an unspecified address, which reaches this machine"
    return None


def connect_checked(
    host: str, port: int, timeout: float | None, *, allow_loopback: bool
) -> socket.socket:
    """Resolve once, refuse if any address is forbidden, connect to the checked addresses."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"cannot resolve {host}: {exc.strerror}") from None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise FetchFailed(f"download refused: {host} resolves to {address}, {reason}")
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, sockaddr in found:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _CheckedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, *, allow_loopback: bool = False, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.allow_loopback = allow_loopback

    def connect(self) -> None:
        self.sock = connect_checked(
            self.host, self.port, self.timeout, allow_loopback=self.allow_loopback
        )


class _CheckedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, *, allow_loopback: bool = False, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.allow_loopback = allow_loopback

    def connect(self) -> None:
        sock = connect_checked(
            self.host, self.port, self.timeout, allow_loopback=self.allow_loopback
        )
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__()
        self.allow_loopback = allow_loopback

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_CheckedHTTP, req, allow_loopback=self.allow_loopback)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__()
        self.allow_loopback = allow_loopback
        self.tls = ssl.create_default_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            _CheckedHTTPS, req, context=self.tls, allow_loopback=self.allow_loopback
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port (a model store moving a path)."""

    def http_error_302(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
    ) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            target = urljoin(req.full_url, location)
            if _origin(target) != _origin(req.full_url):
                raise FetchFailed(
                    f"download refused: {req.full_url} redirects to {target}; only redirects to "
                    "the same scheme, host and port are followed"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def opener(*, allow_loopback: bool) -> urllib.request.OpenerDirector:
    """An opener with checked connections, same-origin redirects and no environment proxy."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _CheckedHTTPHandler(allow_loopback=allow_loopback),
        _CheckedHTTPSHandler(allow_loopback=allow_loopback),
        _SameOriginRedirects(),
    )
