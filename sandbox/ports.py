"""Loopback TCP ports for a sandbox's ARI and AMI (and for the peers tests start beside it).

A port is chosen, probed and released, and Asterisk binds it about half a
second later.  A port from the kernel's ephemeral range (what ``bind(0)``
hands out) could be taken in that moment: by another process's ``bind(0)``,
or as the source port of any outgoing connection -- and with one sandbox per
test worker there are several sandboxes starting and thousands of short ARI
requests at once.  So the port is drawn at random from below that range,
where the kernel never picks on its own; only another caller of this function
could pick the same one, once in many thousand.
"""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

#: The lowest port drawn: above the well-known and most registered service ports.
LOWEST = 20000
_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux default 32768-60999)."""
    try:
        low, high = (int(v) for v in _PORT_RANGE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the ephemeral range when there is room."""
    low, high = ephemeral_range()
    ranges = [r for r in ((LOWEST, low - 1), (high + 1, 65535)) if r[1] - r[0] >= 1000]
    chooser = random.SystemRandom()
    for _ in range(200 if ranges else 0):
        first, last = chooser.choice(ranges)
        port = chooser.randint(first, last)
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
        return True
