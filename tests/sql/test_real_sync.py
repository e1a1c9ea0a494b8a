"""The models over what the real `fivetran debug` runner lands from the simulator (not a fixture).

Two syncs with the simulator's clock advanced in between (late backlogs, decommissionings), a
refresh after each; the incremental result must equal a full rebuild of the same raw file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.sync import run_sync
from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from simulator.faults import FaultPolicy
from simulator.fleet import Fleet, FleetSpec
from simulator.server import SimulatorServer, VendorApi
from tests.sql.landing import assert_same_tables, full_rebuild_elsewhere, snapshot

pytestmark = pytest.mark.slow
API_KEY = "warehouse-test-key"


@pytest.fixture
def vendor() -> Iterator[tuple[VendorApi, str]]:
    spec = FleetSpec(devices=3, days=0.5, seed=3, late_share=0.5, decommission_share=0.5, malformed_rate=0.01)
    api = VendorApi(Fleet(spec), API_KEY, FaultPolicy())
    server = SimulatorServer(api).start()
    yield api, server.url
    server.stop()


def _sync(settings: Settings, url: str) -> None:
    config = {
        "base_url": url,
        "api_key": API_KEY,
        "page_size": "500",
        "start_date": "2026-01-01",
        "lookback_hours": "3",
    }
    result = run_sync(settings, configuration=config)
    assert result.ok, result.error


def test_models_over_real_syncs_refresh_incrementally_like_a_full_rebuild(
    settings: Settings, vendor: tuple[VendorApi, str], tmp_path: Path
) -> None:
    api, url = vendor
    _sync(settings, url)
    first = refresh_features(settings)
    assert first.full
    assert first.rows_changed["hourly_consumption"] > 0

    api.advance(8)
    _sync(settings, url)
    second = refresh_features(settings)
    assert not second.full
    assert second.rows_changed["fct_reading"] > 0
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))

    with open_warehouse(settings) as wh:
        deleted = wh.query("SELECT device_id FROM raw.device WHERE _fivetran_deleted").to_pylist()
        modelled = wh.query("SELECT DISTINCT device_id FROM energy_analytics.fct_reading").to_pylist()
        negative = wh.query(
            "SELECT COUNT(*) AS n FROM energy_analytics.hourly_consumption WHERE energy_kwh < 0"
        )
    assert not {r["device_id"] for r in deleted} & {r["device_id"] for r in modelled}
    assert negative.to_pylist() == [{"n": 0}]
