"""Raw tables as the connector lands them (schema `tester` in the connector's DuckDB file).

(Not conftest.py: test modules import from it, and `conftest` is ambiguous across test folders.)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import duckdb
from filelock import FileLock

from shared.settings import Settings

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LandRaw = Callable[..., None]

_DDL = """
CREATE SCHEMA IF NOT EXISTS tester;
CREATE TABLE IF NOT EXISTS tester.site (site_id VARCHAR PRIMARY KEY, name VARCHAR, site_type VARCHAR,
    timezone VARCHAR, latitude DOUBLE, longitude DOUBLE, _fivetran_synced TIMESTAMPTZ,
    _fivetran_deleted BOOLEAN);
CREATE TABLE IF NOT EXISTS tester.device (device_id VARCHAR PRIMARY KEY, site_id VARCHAR, name VARCHAR,
    meter_type VARCHAR, nominal_voltage DOUBLE, interval_minutes INTEGER, installed_at TIMESTAMPTZ,
    status VARCHAR, decommissioned_at TIMESTAMPTZ, _fivetran_synced TIMESTAMPTZ, _fivetran_deleted BOOLEAN);
CREATE TABLE IF NOT EXISTS tester.reading (device_id VARCHAR, "timestamp" TIMESTAMPTZ, power_w DOUBLE,
    energy_wh DOUBLE, voltage DOUBLE, temp_c DOUBLE, occupancy BOOLEAN, received_at TIMESTAMPTZ,
    _fivetran_synced TIMESTAMPTZ, _fivetran_deleted BOOLEAN, PRIMARY KEY (device_id, "timestamp"));
"""


def land(
    settings: Settings,
    *,
    devices: int = 3,
    start: dt.datetime = START,
    hours: int = 24,
    synced_at: dt.datetime | None = None,
    dimensions: bool = True,
) -> None:
    """Upsert `hours` of 15-minute readings for `devices` meters, as one sync would (with the site
    and device rows too unless `dimensions` is False: an incremental sync re-sends only changes)."""
    synced = synced_at or start + dt.timedelta(hours=hours)
    path = settings.raw_duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.lock_path)):
        con = duckdb.connect(str(path))
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(_DDL)
            if dimensions:
                con.execute(
                    "INSERT OR REPLACE INTO tester.site VALUES ('s1', 'Site 1', 'residential',"
                    " 'Europe/Amsterdam', 52.1, 4.3, ?, false)",
                    [synced],
                )
            rows = []
            for d in range(devices):
                device_id = f"dev-{d:03d}"
                if dimensions:
                    con.execute(
                        "INSERT OR REPLACE INTO tester.device VALUES (?, 's1', ?, 'smart', 230.0, 15, ?,"
                        " 'active', NULL, ?, false)",
                        [device_id, f"Meter {d}", START - dt.timedelta(days=30), synced],
                    )
                for i in range(hours * 4):
                    at = start + dt.timedelta(minutes=15 * i)
                    elapsed_h = (at - START).total_seconds() / 3600
                    power = 400 + 300 * math.sin(2 * math.pi * (elapsed_h % 24) / 24) + 10 * d
                    energy = 1000.0 + elapsed_h * (400 + 10 * d)  # cumulative register, Wh
                    rows.append((device_id, at, power, energy, 231.0, 12.0, i % 3 == 0, at, synced, False))
            con.executemany(
                "INSERT OR REPLACE INTO tester.reading VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        finally:
            con.close()
