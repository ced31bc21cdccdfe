"""Ports for the processes the project starts (control plane, object stores, test servers).

Binding port 0 and releasing it hands out a port from the kernel's ephemeral range, which is
also where every outgoing connection's local port comes from: between the pick and the
process's own bind, any connection on the machine can take it. SeaweedFS, given eight such
ports, once failed a whole test run with "bind: address already in use". So ports are drawn
below both the ephemeral range and Kubernetes' NodePort range (30000-32767: the real node's
kube-proxy rewrites traffic to those), checked free, and never handed out twice by a process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_NODE_PORTS_START = 30000
_SPAN = 10000  # ports to draw from, just below both ranges
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now on `host`, outside the ephemeral and NodePort
    ranges, not given out before by this process."""
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    ephemeral_start = int(range_file.read_text().split()[0])
    high = min(ephemeral_start, _NODE_PORTS_START)
    for _ in range(1000):
        port = random.randrange(high - _SPAN, high)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in [{high - _SPAN}, {high}) on {host}")
