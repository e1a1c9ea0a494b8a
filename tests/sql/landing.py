"""Helpers for the model tests: a small fleet landed the way `fivetran debug` lands it, snapshots."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa

from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

START = datetime(2026, 3, 1, tzinfo=UTC)
SYNC_1 = datetime(2026, 3, 4, 0, 5, tzinfo=UTC)
N_DEVICES = 6
DAYS = 3


def land(settings: Settings, write: Callable[[RawStore], None]) -> None:
    """One 'sync': open the raw file, write, close (the connector never overlaps a refresh)."""
    with RawStore(settings.raw_duckdb_path) as raw:
        write(raw)


def land_fleet(
    settings: Settings, *, days: int = DAYS, devices: int = N_DEVICES, synced_at: datetime = SYNC_1
) -> None:
    sites, fleet = make_fleet(devices)
    readings = make_readings(fleet["device_id"].to_pylist(), START, START + timedelta(days=days))

    def write(raw: RawStore) -> None:
        raw.upsert("site", sites, synced_at)
        raw.upsert("device", fleet, synced_at)
        raw.upsert("reading", readings, synced_at)

    land(settings, write)


def snapshot(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every model table, sorted by its key, for comparisons."""
    frames = {}
    with open_warehouse(settings) as wh:
        for name, contract in load_contracts().items():
            if not contract.is_model:
                continue
            key = ", ".join(contract.unique_key)
            frames[name] = wh.query_df(f"SELECT * FROM energy_analytics.{name} ORDER BY {key}")
    return frames


def assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        a = left[name].drop(columns=["synced_at"], errors="ignore").reset_index(drop=True)
        b = right[name].drop(columns=["synced_at"], errors="ignore").reset_index(drop=True)
        assert len(a) == len(b), f"{name}: {len(a)} rows vs {len(b)}"
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)


def full_rebuild_elsewhere(settings: Settings, tmp_path: Path) -> dict[str, pd.DataFrame]:
    """The same raw file, modelled from scratch in a fresh home with a full refresh."""
    from shared.refresh import refresh_features

    other = Settings(home=tmp_path / "rebuild-home")
    other.raw_duckdb_path.parent.mkdir(parents=True)
    shutil.copy(settings.raw_duckdb_path, other.raw_duckdb_path)
    refresh_features(other, full=True)
    return snapshot(other)


def mirror_raw_to_bigquery(duck: Settings, bq: Settings) -> None:
    """Copy the raw tables from the DuckDB connector file into the emulator's raw dataset, so both
    backends model exactly the same rows (what Fivetran would have landed in BigQuery)."""
    from infra.local.emulated import land_raw

    land_raw(bq, raw_path=duck.raw_duckdb_path)


def land_rows(
    settings: Settings,
    *,
    devices: Sequence[Mapping[str, object]],
    readings: Sequence[tuple[str, str, float, float]],
    synced_at: datetime = SYNC_1,
    timezone: str = "Europe/Amsterdam",
) -> None:
    """Hand-written meters: `devices` override make_fleet's defaults per device (device_id, meter_type,
    interval_minutes, site_id...), `readings` are (device_id, 'YYYY-MM-DD HH:MM' UTC, register Wh,
    power W). Every device's site is `site-0000` unless given; one sync."""
    site_ids = sorted({str(d.get("site_id", "site-0000")) for d in devices})
    sites = pa.table(
        {
            "site_id": site_ids,
            "name": site_ids,
            "site_type": ["residential"] * len(site_ids),
            "timezone": [timezone] * len(site_ids),
            "latitude": [52.0] * len(site_ids),
            "longitude": [4.9] * len(site_ids),
        }
    )
    base = {
        "site_id": "site-0000",
        "name": "Meter",
        "meter_type": "single_phase",
        "nominal_voltage": 230.0,
        "interval_minutes": 15,
        "installed_at": datetime(2025, 1, 1, tzinfo=UTC),
        "status": "active",
        "decommissioned_at": None,
    }
    fleet = pa.Table.from_pylist(
        [{**base, **d} for d in devices],
        schema=pa.schema(
            [
                ("device_id", pa.string()),
                ("site_id", pa.string()),
                ("name", pa.string()),
                ("meter_type", pa.string()),
                ("nominal_voltage", pa.float64()),
                ("interval_minutes", pa.int32()),
                ("installed_at", pa.timestamp("us", tz="UTC")),
                ("status", pa.string()),
                ("decommissioned_at", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
    times = [utc(t) for _, t, _, _ in readings]
    rows = pa.table(
        {
            "device_id": [d for d, _, _, _ in readings],
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "power_w": [float(p) for _, _, _, p in readings],
            "energy_wh": [float(r) for _, _, r, _ in readings],
            "voltage": [230.0] * len(readings),
            "temp_c": [10.0] * len(readings),
            "occupancy": [True] * len(readings),
            "received_at": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )

    def write(raw: RawStore) -> None:
        raw.upsert("site", sites, synced_at)
        raw.upsert("device", fleet, synced_at)
        raw.upsert("reading", rows, synced_at)

    land(settings, write)


def utc(text: str) -> datetime:
    """'2026-03-01 10:15' -> an aware UTC datetime (the tests write times the way people read them)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
