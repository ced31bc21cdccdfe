"""Which hosts a model URI may name: the operator's full check behind the CRD's CEL rules.

A fetcher that reaches loopback, link-local or a cloud metadata service can read credentials,
so such hosts are refused in every spelling a resolver accepts: integer, hex and octal IPv4
forms (`inet_aton` takes them all), IPv4 inside IPv6, zone ids, FQDN trailing dots. CEL can
only match text, so the CRD refuses the forms regexes can see (any numeric host not written as
four decimal octets, the forbidden IPv4 ranges, the plain IPv6 spellings, the names below);
this module normalises with `ipaddress` and also catches the other IPv6 spellings. The server
checks the resolved address again at connect time (DNS can point anywhere).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

# Names that reach a cloud metadata service or this machine. The CRD's rule lists the same
# names (tests/unit/test_uris.py checks it).
METADATA_HOSTS: Final = (
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "localhost",
)
# Metadata services outside link-local ranges (AWS over IPv6, Alibaba Cloud).
METADATA_ADDRESSES: Final = (
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")  # 0.0.0.0 connects to this host

# The authority of an http(s) URI already known to have the form http(s)://<authority>/...
AUTHORITY: Final = re.compile(r"https?://(?P<host>\[[^\]/?#]*\]|[^/?#:\[]*)(?::(?P<port>[^/]*))?/")
PORT: Final = (
    r"[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
)
# A host whose last label is a number is an IPv4 address to every resolver.
_NUMERIC_HOST: Final = re.compile(r"(?:[^\[]*\.)?(?:0x[0-9a-f]*|[0-9]+)\.?")
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_DOTTED_DECIMAL: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\.?")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Authority:
    host: str  # lowercased, as written (brackets kept)
    port: str | None


def authority(uri: str) -> Authority | None:
    """Host and port of an http(s) URI, or None for other schemes."""
    match = AUTHORITY.match(uri)
    if match is None:
        return None
    return Authority(match["host"].lower(), match["port"])


def port_problem(uri: str) -> str | None:
    found = authority(uri)
    if found is None or found.port is None or re.fullmatch(PORT, found.port):
        return None
    return f"must have a port between 1 and 65535, got {found.port!r}"


def numeric_host_problem(uri: str) -> str | None:
    found = authority(uri)
    if found is None or not _NUMERIC_HOST.fullmatch(found.host):
        return None
    if _DOTTED_DECIMAL.fullmatch(found.host):
        return None
    meaning = inet_aton(found.host.rstrip("."))
    means = f"means {meaning}" if meaning is not None else "is not an address"
    return (
        "must write a numeric host as four decimal octets, no integer, hex or octal forms "
        f"({found.host} {means})"
    )


def encoded_host_problem(uri: str) -> str | None:
    found = authority(uri)
    if found is None or "%" not in found.host:
        return None
    return "must not percent-encode the host (nor give an IPv6 zone)"


def bracket_problem(uri: str) -> str | None:
    found = authority(uri)
    if found is None or not found.host.startswith("["):
        return None
    inside = found.host[1:-1]
    if re.fullmatch(r"[0-9a-f:.]+", inside):
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            pass
        else:
            return None
    return f"must write a bracketed host as an IPv6 address, got {found.host}"


def wrapped_ipv4_problem(uri: str) -> str | None:
    address = _address(uri)
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is None:
        return None
    return f"must not wrap an IPv4 address in IPv6 ({address} is {inner}); write {inner}"


def address_problem(uri: str) -> str | None:
    """The host as an address, if it is one no fetcher may reach."""
    address = _address(uri)
    reason = None if address is None else forbidden(address)
    if reason is None:
        return None
    return (
        f"must not point at a loopback, link-local or cloud metadata address ({address}: {reason})"
    )


def _address(uri: str) -> Address | None:
    """The host as an address (rules above made every numeric form canonical), else None."""
    found = authority(uri)
    if found is None:
        return None
    try:
        return ipaddress.ip_address(found.host.rstrip(".").removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches: mapped, NAT64 or (deprecated) compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def metadata_host_problem(uri: str) -> str | None:
    found = authority(uri)
    if found is None:
        return None
    name = found.host.rstrip(".")
    if name in METADATA_HOSTS or name.endswith(".localhost"):
        return f"must not name a cloud metadata or loopback host ({name})"
    return None


def forbidden(address: Address) -> str | None:
    """Why a fetcher must not connect to this address, or None. IPv4 carried in IPv6 (mapped,
    compatible, NAT64) is judged as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = forbidden(inner)
            return None if reason is None else f"IPv4 {inner} in IPv6, {reason}"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "an unspecified address, which reaches this machine"
    return None


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The address a C resolver makes of a numeric host: 1 to 4 parts, each decimal, 0x-hex or
    0-octal, the last filling the remaining bytes (127.1 is 127.0.0.1)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if not re.fullmatch(r"0x[0-9a-f]*|[0-9]+", part):
            return None
        try:
            if part.startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif part.startswith("0") and len(part) > 1:
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)
