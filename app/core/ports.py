"""Free loopback TCP ports for servers started a moment later (SeaweedFS, the loopback cluster,
test and benchmark servers).

A port the kernel hands out for ``bind(0)`` lies in its ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), from which it also takes the local port of every
outgoing connection: between choosing such a port and a server binding it, any connection may
take it and the server fails to start. The ports here are drawn at random below that range and
checked free when drawn.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000
_draw = random.SystemRandom()


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(count: int = 1, highest: int | None = None) -> int:
    """The first of ``count`` consecutive free ports, all below ``highest`` (default: the
    ephemeral range)."""
    top = ephemeral_start() if highest is None else min(highest, ephemeral_start())
    if top - count <= LOWEST:
        raise RuntimeError(f"no room for {count} ports between {LOWEST} and {top}")
    for _ in range(1000):
        start = _draw.randrange(LOWEST, top - count)
        if all(bindable(port) for port in range(start, start + count)):
            return start
    raise RuntimeError(f"no {count} consecutive free ports found between {LOWEST} and {top}")


def free_port() -> int:
    """One free port outside the ephemeral range."""
    return free_port_run(1)


def free_ports(n: int, highest: int | None = None) -> list[int]:
    """``n`` distinct free ports outside the ephemeral range, each below ``highest``."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port_run(1, highest)
        if port not in ports:
            ports.append(port)
    return ports
