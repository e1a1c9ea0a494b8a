"""The models over what the real `fivetran debug` runner lands from the simulator (not a fixture).

Two syncs with the simulator's clock advanced in between (late backlogs, decommissionings), a
refresh after each; the incremental result must equal a full rebuild of the same raw file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
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
    # seed 11: one device is decommissioned 13 h in, between the two syncs (12 h and 20 h)
    spec = FleetSpec(
        devices=3, days=0.5, seed=11, late_share=0.5, decommission_share=0.5, malformed_rate=0.01
    )
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
    before = snapshot(settings)

    api.advance(8)
    _sync(settings, url)
    second = refresh_features(settings)
    assert not second.full
    assert second.rows_changed["fct_reading"] > 0
    after = snapshot(settings)
    assert_same_tables(after, full_rebuild_elsewhere(settings, tmp_path))

    with open_warehouse(settings) as wh:
        deleted = wh.query("SELECT device_id FROM raw.device WHERE _fivetran_deleted").to_pylist()
        negative = wh.query(
            "SELECT COUNT(*) AS n FROM energy_analytics.hourly_consumption WHERE energy_kwh < 0"
        )
    assert negative.to_pylist() == [{"n": 0}]
    # the connector soft-deleted the decommissioned device; the warehouse keeps it and its history
    assert isinstance(api.source, Fleet)
    [gone] = [d for d in api.source.devices() if d.decommissioned_at is not None]
    assert deleted == [{"device_id": gone.device_id}]
    device = after["dim_device"].set_index("device_id").loc[gone.device_id]
    assert not device["is_active"]
    assert device["decommissioned_at"].timestamp() == gone.decommissioned_at
    assert before["dim_device"].set_index("device_id").loc[gone.device_id]["is_active"]
    # every hour modelled before the decommissioning sync is still there (late data may add to
    # the last ones, so compare the hours more than 3 h before the first sync's data ends)
    old_hours = before["hourly_consumption"].query(f"device_id == '{gone.device_id}'")
    settled = old_hours[old_hours["hour"] < old_hours["hour"].max() - pd.Timedelta(hours=3)]
    new_hours = after["hourly_consumption"].set_index(["device_id", "hour"])
    kept = new_hours.loc[[(gone.device_id, h) for h in settled["hour"]], "energy_kwh"]
    assert len(settled) > 0
    assert kept.to_numpy() == pytest.approx(settled["energy_kwh"].to_numpy(), rel=1e-9)
