"""The demo report's "what the count is" column: each difference between a raw table and its model
is explained from the data (here: one decommissioned device, two readings the vendor deleted)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc

from infra.local.counts import explain_counts
from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.rawfixture import make_fleet
from tests.sql.landing import START, SYNC_1, land, land_fleet

DEVICES, DAYS, PER_DAY = 6, 2, 96  # 15-minute readings: 6 × 2 × 96 = 1,152; sites: 6 / 4 per site → 2


def _decommission_one_and_delete_two(settings: Settings) -> None:
    later = SYNC_1 + timedelta(hours=1)

    _, fleet = make_fleet(DEVICES)
    row = fleet.filter(pc.equal(fleet["device_id"], "dev-00005"))
    # the connector's decommissioning: the row upserted with its status, then soft-deleted
    row = row.set_column(row.schema.get_field_index("status"), "status", pa.array(["decommissioned"]))
    row = row.set_column(
        row.schema.get_field_index("decommissioned_at"),
        "decommissioned_at",
        pa.array([later], pa.timestamp("us", tz="UTC")),
    )

    def write(raw) -> None:  # type: ignore[no-untyped-def]
        raw.upsert("device", row, later)
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
        said = explain_counts(wh, counts)

    assert said["raw.site"] == "as landed"
    assert said["raw.device"] == "as landed; 1 decommissioned (kept, flagged deleted)"
    assert said["raw.reading"] == "as landed; 2 deleted by the vendor (kept, flagged deleted)"
    assert said["energy_analytics.dim_site"] == "every row of raw.site"
    assert said["energy_analytics.forecasts"] == "no forecasts yet"
    # decommissioned devices stay in dim_device, flagged, with every reading
    assert counts["energy_analytics.dim_device"] == DEVICES
    assert said["energy_analytics.dim_device"] == (
        "every row of raw.device; 5 active, 1 decommissioned (is_active = false)"
    )
    assert counts["energy_analytics.fct_reading"] == DEVICES * DAYS * PER_DAY - 2
    assert said["energy_analytics.fct_reading"] == "raw.reading 1,152 − 2 deleted by the vendor"
    devices_with_hours = DEVICES
    hours = DAYS * 24
    full = devices_with_hours * hours
    grid = f"{devices_with_hours} devices × {hours} hours (2026-03-01 00:00 .. 2026-03-02 23:00)"
    # readings every 15 min from 00:00: the first closes no interval, the rest cover all 48 hours
    assert counts["energy_analytics.hourly_consumption"] == full
    assert said["energy_analytics.hourly_consumption"] == f"one row per device-hour: {grid}"
