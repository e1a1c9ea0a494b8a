"""The demo report's "what the count is" column: each difference between a raw table and its model
is explained from the data (here: one decommissioned device, two readings the vendor deleted)."""

from __future__ import annotations

from datetime import timedelta

from infra.local.counts import explain_counts
from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from tests.sql.landing import START, SYNC_1, land, land_fleet

DEVICES, DAYS, PER_DAY = 6, 2, 96  # 15-minute readings: 6 × 2 × 96 = 1,152; sites: 6 / 4 per site → 2


def _decommission_one_and_delete_two(settings: Settings) -> None:
    later = SYNC_1 + timedelta(hours=1)

    def write(raw) -> None:  # type: ignore[no-untyped-def]
        raw.delete("device", [{"device_id": "dev-00005"}], later)
        raw.delete(
            "reading",
            [
                {"device_id": "dev-00000", "timestamp": START + timedelta(hours=6)},
                {"device_id": "dev-00000", "timestamp": START + timedelta(hours=6, minutes=15)},
            ],
            later,
        )

    land(settings, write)


def test_each_count_says_what_it_is_made_of(settings: Settings) -> None:
    land_fleet(settings, days=DAYS, devices=DEVICES)
    _decommission_one_and_delete_two(settings)
    refresh_features(settings, full=True)
    counts = {"raw.site": 2, "raw.device": DEVICES, "raw.reading": DEVICES * DAYS * PER_DAY}
    with open_warehouse(settings) as wh:
        for table in ("dim_site", "dim_device", "fct_reading", "hourly_consumption", "forecasts"):
            n = wh.query(f"SELECT COUNT(*) AS n FROM energy_analytics.{table}").to_pylist()[0]["n"]
            counts[f"energy_analytics.{table}"] = int(n)
        columns = wh.query("SELECT * FROM energy_analytics.dim_device LIMIT 0").column_names
        said = explain_counts(wh, counts)

    assert said["raw.site"] == "as landed"
    assert said["raw.device"] == "as landed; 1 decommissioned (kept, flagged deleted)"
    assert said["raw.reading"] == "as landed; 2 deleted by the vendor (kept, flagged deleted)"
    assert said["energy_analytics.dim_site"] == "every row of raw.site"
    assert said["energy_analytics.forecasts"] == "no forecasts yet"
    one_device = DAYS * PER_DAY  # 192 readings of dev-00005
    if "is_active" in columns:  # decommissioned devices stay in dim_device, flagged
        assert counts["energy_analytics.dim_device"] == DEVICES
        assert said["energy_analytics.dim_device"] == (
            "every row of raw.device; 5 active, 1 decommissioned (is_active = false)"
        )
    else:  # decommissioned devices (and their readings) leave the models
        assert counts["energy_analytics.dim_device"] == DEVICES - 1
        assert said["energy_analytics.dim_device"] == "raw.device 6 − 1 decommissioned"
    if counts["energy_analytics.fct_reading"] == DEVICES * DAYS * PER_DAY - 2:
        assert said["energy_analytics.fct_reading"] == "raw.reading 1,152 − 2 deleted by the vendor"
    else:
        assert counts["energy_analytics.fct_reading"] == 1152 - 2 - one_device
        assert said["energy_analytics.fct_reading"] == (
            "raw.reading 1,152 − 2 deleted by the vendor − 192 of decommissioned devices"
        )
    devices_with_hours = counts["energy_analytics.dim_device"] if "is_active" in columns else DEVICES - 1
    hours = DAYS * 24
    full = devices_with_hours * hours
    grid = f"{devices_with_hours} devices × {hours} hours (2026-03-01 00:00 .. 2026-03-02 23:00)"
    if counts["energy_analytics.hourly_consumption"] == full:
        assert said["energy_analytics.hourly_consumption"] == f"one row per device-hour: {grid}"
    else:
        gaps = full - counts["energy_analytics.hourly_consumption"]
        assert said["energy_analytics.hourly_consumption"] == (
            f"one row per device-hour with readings: {grid} = {full}, less {gaps} with none"
        )
