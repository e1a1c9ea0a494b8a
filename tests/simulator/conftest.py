"""A simulator started in this process on an ephemeral port, with a small fleet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.fleet import Fleet, FleetSpec
from simulator.server import SimulatorServer, VendorApi

KEY = "sim-test-key"


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(FleetSpec(devices=6, days=2, seed=9, late_share=0.5, decommission_share=0.5))


@pytest.fixture
def server(fleet: Fleet) -> Iterator[SimulatorServer]:
    with SimulatorServer(VendorApi(fleet, KEY)) as running:
        yield running
