"""Decommissioning ends a device's life, not its history: last month's totals survive the sync.

Two hourly meters at one site (UTC, so local days are UTC days) use 1 kWh every hour of March:
744 kWh each, 48 kWh a day for the site. The next sync brings April 1st and decommissions "b" the
way the connector does it: its row upserted with status and decommissioned_at, then soft-deleted.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.rawfixture import RawStore
from tests.sql.landing import SYNC_1, land, land_rows, utc

MARCH = utc("2026-03-01 00:00")
APRIL = utc("2026-04-01 00:00")
GONE_AT = utc("2026-04-01 12:00")


def _hourly_readings(device_id: str, first: int, last: int) -> list[tuple[str, str, float, float]]:
    """Readings on the hour, `first`..`last` hours after March 1st, register = 1000 Wh per hour."""
    return [
        (device_id, (MARCH + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M"), 1000.0 * i, 1000.0)
        for i in range(first, last + 1)
    ]


def _march_totals(settings: Settings) -> tuple[dict[str, float], dict[str, float]]:
    with open_warehouse(settings) as wh:
        devices = wh.query_df(
            "SELECT device_id, SUM(energy_kwh) AS kwh FROM energy_analytics.hourly_consumption"
            " WHERE hour >= @a AND hour < @b GROUP BY device_id",
            {"a": MARCH, "b": APRIL},
        )
        days = wh.query_df(
            "SELECT day, energy_kwh FROM energy_analytics.daily_site_consumption"
            " WHERE day < DATE '2026-04-01'"
        )
    return (
        dict(zip(devices["device_id"], devices["kwh"], strict=True)),
        {str(d): e for d, e in zip(days["day"], days["energy_kwh"], strict=True)},
    )


def test_decommissioned_device_keeps_last_months_totals(settings: Settings) -> None:
    hours_in_march = 31 * 24
    devices = [{"device_id": "a", "interval_minutes": 60}, {"device_id": "b", "interval_minutes": 60}]
    land_rows(
        settings,
        devices=devices,
        readings=_hourly_readings("a", 0, hours_in_march) + _hourly_readings("b", 0, hours_in_march),
        timezone="UTC",
    )
    refresh_features(settings)
    by_device, by_day = _march_totals(settings)
    assert by_device == pytest.approx({"a": 744.0, "b": 744.0})
    assert by_day == pytest.approx({f"2026-03-{d:02d}": 48.0 for d in range(1, 32)})

    later = SYNC_1 + timedelta(days=29)
    decommissioned = {**devices[1], "status": "decommissioned", "decommissioned_at": GONE_AT}
    land_rows(
        settings,
        devices=[devices[0], decommissioned],
        readings=_hourly_readings("a", hours_in_march + 1, hours_in_march + 24)
        + _hourly_readings("b", hours_in_march + 1, hours_in_march + 12),
        synced_at=later,
        timezone="UTC",
    )

    def decommission(raw: RawStore) -> None:
        raw.delete("device", [{"device_id": "b"}], later)

    land(settings, decommission)
    result = refresh_features(settings)
    assert not result.full

    assert _march_totals(settings) == (by_device, by_day)
    with open_warehouse(settings) as wh:
        device = wh.query_df("SELECT * FROM energy_analytics.dim_device WHERE device_id = 'b'").iloc[0]
        kept = wh.query(
            "SELECT COUNT(*) AS n FROM energy_analytics.fct_reading WHERE device_id = 'b'"
        ).to_pylist()
        april = wh.query_df(
            "SELECT device_id, SUM(energy_kwh) AS kwh FROM energy_analytics.hourly_consumption"
            " WHERE hour >= @a GROUP BY device_id ORDER BY device_id",
            {"a": APRIL},
        )
    assert not device["is_active"]
    assert device["decommissioned_at"] == pd.Timestamp(GONE_AT)
    assert kept == [{"n": hours_in_march + 1 + 12}]
    assert dict(zip(april["device_id"], april["kwh"], strict=True)) == pytest.approx({"a": 24.0, "b": 12.0})
