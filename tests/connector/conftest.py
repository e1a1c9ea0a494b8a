"""The `vendor` fixture: a simulator in this process on an ephemeral port, stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from connector_harness import API_KEY, Vendor

from simulator.faults import FaultPolicy
from simulator.fleet import Fleet, FleetSpec
from simulator.server import SimulatorServer, VendorApi


@pytest.fixture
def vendor() -> Iterator[Callable[..., Vendor]]:
    """Factory: start a simulator for a fleet spec in this process on an ephemeral port."""
    servers: list[SimulatorServer] = []

    def start(spec: FleetSpec, *, fault_rate: float = 0.0, slow_s: float = 0.3) -> Vendor:
        fleet = Fleet(spec)
        api = VendorApi(
            fleet, API_KEY, FaultPolicy(rate=fault_rate, retry_after_s=1, slow_s=slow_s, seed=spec.seed)
        )
        server = SimulatorServer(api).start()
        servers.append(server)
        return Vendor(fleet, api, server.url)

    yield start
    for server in servers:
        server.stop()
