"""Ports for throwaway stacks come from below the ephemeral range, so no outgoing connection
can take one between the pick and the server's bind (the first-hour walkthrough's EADDRINUSE)."""

from __future__ import annotations

import socket
from pathlib import Path

from infra.local.ports import free_port


def _ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200, "a port handed out twice in one process"
    assert max(ports) < _ephemeral_start()
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # raises if anything holds it


def test_a_port_somebody_listens_on_is_never_handed_out(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        class Always:  # the picker's only choice is the squatter's port, then a free one
            def __init__(self) -> None:
                self.calls = 0

            def randrange(self, lo: int, hi: int) -> int:
                self.calls += 1
                return taken if self.calls == 1 else lo + self.calls

        monkeypatch.setattr("infra.local.ports._pick", Always())
        monkeypatch.setattr("infra.local.ports._ephemeral_start", lambda: 65000)
        assert free_port() != taken
