"""Free TCP ports for a throwaway stack (tests, benches), picked outside the kernel's ephemeral range.

A port from `bind(("127.0.0.1", 0))` is one the kernel may hand again, a moment later, as the
local port of any outgoing connection, before the server it was picked for binds it: the
first-hour walkthrough test failed that way in CI (the forecast process, `[Errno 98] Address
already in use`, on a port picked a minute earlier). Ports below the ephemeral range are never
handed out implicitly, so once a bind test says one is free it stays free until somebody asks
for that number.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port", "port_is_free"]

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # well above the registered services a developer machine runs
_given: set[int] = set()
_guard = threading.Lock()
# Seeded by process, so two test processes started together do not walk the same sequence.
_pick = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; the range IANA suggests starts higher (49152)


def port_is_free(port: int) -> bool:
    """Whether a server could bind `port` on loopback now, tested as the servers bind: with
    SO_REUSEADDR, so a port in TIME_WAIT after the last stack counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, below the ephemeral range, not given before by this process."""
    top = _ephemeral_start()
    if top - _LOWEST < 1000:  # an unusual range leaves no room below it: the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    with _guard:
        for _ in range(1000):
            port = _pick.randrange(_LOWEST, top)
            if port not in _given and port_is_free(port):
                _given.add(port)
                return port
    raise RuntimeError(f"no free port found between {_LOWEST} and {top}")
