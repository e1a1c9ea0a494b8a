"""Helpers (imported by the tests here) for driving the real `fivetran debug` runner against
the simulator on loopback.

`Landed` is what a raw warehouse holds (without `_fivetran_synced`, which differs per run), and
`expected(fleet, now)` is what it must hold, computed from the simulator's own records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from infra.local.sync import SyncResult, run_sync
from shared.settings import Settings
from simulator.fleet import DAY_S, Fleet, parse_iso
from simulator.server import VendorApi

API_KEY = "test-vendor-key"
START_DATE = "2026-01-01"


@dataclass
class Vendor:
    fleet: Fleet
    api: VendorApi
    url: str

    def readings_requests(self) -> int:
        return self.api.stats["readings"]


@dataclass
class Landed:
    sites: set[str] = field(default_factory=set)
    devices: dict[str, bool] = field(default_factory=dict)  # device_id -> deleted
    readings: dict[tuple[str, int], tuple] = field(default_factory=dict)
    invalid: dict[tuple[str, str], str] = field(default_factory=dict)  # (device_id, timestamp) -> reason
    reading_rows: int = 0
    invalid_rows: int = 0


def config_for(vendor: Vendor, **overrides: str) -> dict[str, str]:
    config = {
        "base_url": vendor.url,
        "api_key": API_KEY,
        "page_size": "200",
        "start_date": START_DATE,
        "lookback_hours": "3",
    }
    config.update(overrides)
    return config


def sync(home: Path, vendor: Vendor, **overrides: str) -> SyncResult:
    """One sync into the project under `home` (a separate home is a separate warehouse)."""
    home.mkdir(parents=True, exist_ok=True)
    result = run_sync(Settings(home=home), configuration=config_for(vendor, **overrides))
    return result


def read_landed(raw_path: Path) -> Landed:
    landed = Landed()
    with duckdb.connect(str(raw_path), read_only=True) as con:
        landed.sites = {r[0] for r in con.sql("select site_id from tester.site").fetchall()}
        landed.devices = dict(con.sql("select device_id, _fivetran_deleted from tester.device").fetchall())
        for row in con.sql(
            "select device_id, timestamp, power_w, energy_wh, voltage, temp_c, occupancy, received_at "
            "from tester.reading"
        ).fetchall():
            landed.readings[(row[0], int(row[1].timestamp()))] = (*row[2:7], int(row[7].timestamp()))
        landed.reading_rows = con.sql("select count(*) from tester.reading").fetchone()[0]
        tables = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
        if "invalid_reading" in tables:
            for device_id, ts, reason in con.sql(
                "select device_id, timestamp, reason from tester.invalid_reading"
            ).fetchall():
                landed.invalid[(device_id, ts)] = reason
            landed.invalid_rows = con.sql("select count(*) from tester.invalid_reading").fetchone()[0]
    return landed


def expected(fleet: Fleet, now: int) -> Landed:
    """Everything the vendor had published by `now`, split as the connector must split it."""
    since = parse_iso(START_DATE + "T00:00:00Z")
    out = Landed()
    out.sites = {s.site_id for s in fleet.sites()}
    for dev in fleet.devices():
        if dev.installed_at > now:
            continue
        out.devices[dev.device_id] = dev.decommissioned_at is not None and dev.decommissioned_at <= now
        for day in range(fleet.first_reading(dev) // DAY_S, now // DAY_S + 1):
            for rec in fleet.day_records(dev, day):
                if rec.visible > now or rec.received < since:
                    continue
                b = rec.body
                if rec.malformed is None:
                    out.readings[(b["device_id"], rec.ts)] = (
                        b["power_w"],
                        b["energy_wh"],
                        b["voltage"],
                        b["temp_c"],
                        b["occupancy"],
                        rec.received,
                    )
                else:
                    out.invalid[(b["device_id"], b["timestamp"])] = rec.malformed
    out.reading_rows, out.invalid_rows = len(out.readings), len(out.invalid)
    return out


def assert_same(landed: Landed, want: Landed) -> None:
    assert landed.sites == want.sites
    assert landed.devices == want.devices
    assert landed.reading_rows == len(landed.readings), "duplicate readings"
    missing = want.readings.keys() - landed.readings.keys()
    extra = landed.readings.keys() - want.readings.keys()
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected readings, e.g. {sorted(extra)[:3]}"
    assert landed.readings == want.readings
    assert landed.invalid.keys() == want.invalid.keys()
    assert landed.invalid_rows == len(landed.invalid)


def state_of(home: Path) -> dict:
    return json.loads((home / "connector" / "files" / "state.json").read_text())


def at(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
