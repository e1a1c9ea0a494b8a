"""Connector-shaped raw tables written straight into a DuckDB file, as `fivetran debug` leaves them.

For tests and the benchmark, which need raw data of a chosen shape (late rows, deletes, resets,
millions of readings) faster than a real sync could land it. It copies what the SDK 3.0.0 tester
does, checked by running it: schema `tester`, declared types (UTC_DATETIME -> TIMESTAMPTZ, DOUBLE),
primary keys, `_fivetran_synced` set on every write, and a delete is a soft delete
(`_fivetran_deleted = true`, `_fivetran_synced` bumped, other columns kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

__all__ = ["RawStore", "make_fleet", "make_readings"]

_COLUMNS = {
    "site": {
        "site_id": "VARCHAR",
        "name": "VARCHAR",
        "site_type": "VARCHAR",
        "timezone": "VARCHAR",
        "latitude": "DOUBLE",
        "longitude": "DOUBLE",
    },
    "device": {
        "device_id": "VARCHAR",
        "site_id": "VARCHAR",
        "name": "VARCHAR",
        "meter_type": "VARCHAR",
        "nominal_voltage": "DOUBLE",
        "interval_minutes": "INTEGER",
        "installed_at": "TIMESTAMPTZ",
        "status": "VARCHAR",
        "decommissioned_at": "TIMESTAMPTZ",
    },
    "reading": {
        "device_id": "VARCHAR",
        "timestamp": "TIMESTAMPTZ",
        "power_w": "DOUBLE",
        "energy_wh": "DOUBLE",
        "voltage": "DOUBLE",
        "temp_c": "DOUBLE",
        "occupancy": "BOOLEAN",
        "received_at": "TIMESTAMPTZ",
    },
}
_KEYS = {"site": ["site_id"], "device": ["device_id"], "reading": ["device_id", "timestamp"]}


class RawStore:
    """Writes the raw tables; `primary_keys=False` skips the PK index for bulk benchmark loads."""

    def __init__(self, path: Path, *, primary_keys: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = duckdb.connect(str(path))
        self._conn.execute("SET TimeZone = 'UTC'")
        self._conn.execute("CREATE SCHEMA IF NOT EXISTS tester")
        self._primary_keys = primary_keys
        for table, columns in _COLUMNS.items():
            cols = [f'"{c}" {t}' for c, t in columns.items()]
            cols += ["_fivetran_deleted BOOLEAN", "_fivetran_synced TIMESTAMPTZ"]
            if primary_keys:
                cols.append(f"PRIMARY KEY ({', '.join(_quote(k) for k in _KEYS[table])})")
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS tester.{table} ({', '.join(cols)})")

    def __enter__(self) -> RawStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, table: str, rows: pa.Table, synced_at: datetime) -> None:
        columns = list(_COLUMNS[table])
        self._conn.register("_upsert_rows", rows)
        try:
            verb = "INSERT OR REPLACE" if self._primary_keys else "INSERT"
            self._conn.execute(
                f"{verb} INTO tester.{table} ({', '.join(map(_quote, columns))}, _fivetran_deleted,"
                f" _fivetran_synced) SELECT {', '.join(map(_quote, columns))}, false, ? FROM _upsert_rows",
                [synced_at],
            )
        finally:
            self._conn.unregister("_upsert_rows")

    def delete(self, table: str, keys: Sequence[dict[str, object]], synced_at: datetime) -> None:
        for key in keys:
            where = " AND ".join(f"{_quote(k)} = ?" for k in key)
            self._conn.execute(
                f"UPDATE tester.{table} SET _fivetran_deleted = true, _fivetran_synced = ? WHERE {where}",
                [synced_at, *key.values()],
            )

    def last_registers(self) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT device_id, arg_max(energy_wh, timestamp) FROM tester.reading GROUP BY device_id"
        ).fetchall()
        return {device: float(register) for device, register in rows}

    def close(self) -> None:
        self._conn.close()


def make_fleet(
    n_devices: int, *, devices_per_site: int = 4, interval_minutes: int = 15
) -> tuple[pa.Table, pa.Table]:
    """Sites and devices; every fourth site is commercial."""
    n_sites = -(-n_devices // devices_per_site)
    site_ids = [f"site-{i:04d}" for i in range(n_sites)]
    sites = pa.table(
        {
            "site_id": site_ids,
            "name": [f"Site {i}" for i in range(n_sites)],
            "site_type": ["commercial" if i % 4 == 3 else "residential" for i in range(n_sites)],
            "timezone": ["Europe/Amsterdam"] * n_sites,
            "latitude": [52.0 + i * 0.001 for i in range(n_sites)],
            "longitude": [4.9 + i * 0.001 for i in range(n_sites)],
        }
    )
    devices = pa.table(
        {
            "device_id": [f"dev-{i:05d}" for i in range(n_devices)],
            "site_id": [site_ids[i // devices_per_site] for i in range(n_devices)],
            "name": [f"Meter {i}" for i in range(n_devices)],
            "meter_type": ["electricity"] * n_devices,
            "nominal_voltage": [230.0] * n_devices,
            "interval_minutes": pa.array([interval_minutes] * n_devices, pa.int32()),
            "installed_at": pa.array([datetime(2025, 1, 1)] * n_devices, pa.timestamp("us", tz="UTC")),
            "status": ["active"] * n_devices,
            "decommissioned_at": pa.array([None] * n_devices, pa.timestamp("us", tz="UTC")),
        }
    )
    return sites, devices


def make_readings(
    device_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    interval_minutes: int = 15,
    start_registers: dict[str, float] | None = None,
    seed: int = 0,
) -> pa.Table:
    """Readings in [start, end) with a daily load shape, weather, occupancy and a cumulative register
    (Wh) that continues from `start_registers` so later batches extend earlier ones."""
    rng = np.random.default_rng(seed)
    step = timedelta(minutes=interval_minutes)
    n_steps = int((end - start) / step)
    times = np.datetime64(start.replace(tzinfo=None), "us") + np.arange(n_steps) * np.timedelta64(
        interval_minutes, "m"
    )
    hour = (times.astype("datetime64[m]").astype(np.int64) / 60.0) % 24
    n_dev = len(device_ids)
    base = rng.uniform(200, 2000, size=(n_dev, 1))
    shape = 1 + 0.6 * np.sin(2 * np.pi * (hour - 8) / 24)[None, :]
    power = np.clip(base * shape + rng.normal(0, 50, size=(n_dev, n_steps)), 0, None)
    energy = power * interval_minutes / 60.0
    starts = np.array([(start_registers or {}).get(d, 1000.0) for d in device_ids])[:, None]
    register = np.round(starts + np.cumsum(energy, axis=1), 3)
    temp = 10 + 6 * np.sin(2 * np.pi * (hour - 15) / 24)[None, :] + rng.normal(0, 0.5, size=(n_dev, n_steps))
    occupancy = np.broadcast_to(((hour >= 7) & (hour < 22))[None, :], (n_dev, n_steps))
    flat_times = np.tile(times, n_dev)
    return pa.table(
        {
            "device_id": pa.array(np.repeat(np.asarray(device_ids, dtype=object), n_steps), pa.string()),
            "timestamp": pa.array(flat_times, pa.timestamp("us", tz="UTC")),
            "power_w": power.ravel(),
            "energy_wh": register.ravel(),
            "voltage": 230 + rng.normal(0, 1.5, size=n_dev * n_steps),
            "temp_c": temp.ravel(),
            "occupancy": occupancy.ravel(),
            "received_at": pa.array(flat_times + np.timedelta64(2, "m"), pa.timestamp("us", tz="UTC")),
        }
    )


def _quote(name: str) -> str:
    return f'"{name}"'
