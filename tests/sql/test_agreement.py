"""A simulator fleet synced by the real connector: hourly energy recomputed in plain Python from the
raw register readings (tests/sql/agreement.py, no SQL) agrees with hourly_consumption.

Seed 16: 8 devices, 4 uploading 6-hourly backlogs, two decommissioned between the first sync (day
2) and the second (12 h later), malformed records quarantined by the connector.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from simulator.faults import FaultPolicy
from simulator.fleet import Fleet, FleetSpec
from simulator.server import SimulatorServer, VendorApi
from tests.sql.agreement import measure
from tests.sql.test_real_sync import API_KEY, _sync

pytestmark = pytest.mark.slow


@pytest.fixture
def vendor() -> Iterator[tuple[VendorApi, str]]:
    spec = FleetSpec(devices=8, days=2, seed=16, late_share=0.3, decommission_share=0.3)
    api = VendorApi(Fleet(spec), API_KEY, FaultPolicy())
    server = SimulatorServer(api).start()
    yield api, server.url
    server.stop()


def test_hourly_energy_agrees_with_the_register_readings_on_999_of_1000_device_hours(
    settings: Settings, vendor: tuple[VendorApi, str]
) -> None:
    api, url = vendor
    _sync(settings, url)
    refresh_features(settings)
    api.advance(12)
    _sync(settings, url)
    assert not refresh_features(settings).full

    share, total, misses = measure(settings)
    assert total > 8 * 48
    assert share >= 0.999, misses[:5]
